"""pytest-xdist: each feature cell's tests run on one worker.

Every rule's check on a cell judges the same scripted scenario, which a worker runs once and keeps
for the session; spread over workers, the same scenario would run on each. With a target and
xdist's default distribution (`-n N`, `--dist load`), the plugin schedules by cell: the tests of one
cell (whatever their rule or file, and a project's own tests on `spekvm_cell`) form one unit of
work, every other test is a unit of its own, and units go to whichever worker is free, as `load`
does. `--dist loadscope`, `loadfile`, `loadgroup`, `worksteal` and `each` are left as they are.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

# The cell part of a parametrised test id, as pytest_spekvm.space.cell_id spells it (after a project
# rule's id, when there is one): 'nvhe-spe1-el3-pmuv3-flags-noel3', with pytest's suffix for repeated
# ids. Written out here, not imported from space.py, which would import the model into every pytest
# run; a test checks it against every cell id of the full space.
_CELL = re.compile(r"\[(?:[^\]]*?-)?((?:n?vhe)-spe\d+(?:-el3)?-pmu[a-z0-9]+(?:-exs|-flags)?(?:-noel3)?\d*)\]$")


def cell_scope(nodeid: str) -> str:
    """The unit of work of a test: its cell's id if it is parametrised over a cell, else its own node id."""
    found = _CELL.search(nodeid)
    return f"spekvm cell {found[1]}" if found else nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With a target and `--dist load`, a scheduler that keeps each cell's tests together."""
    from .plugin import session_of

    if session_of(config) is None or config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped, import-not-found, unused-ignore]

    class CellScheduling(LoadScopeScheduling):  # type: ignore[misc, unused-ignore]
        """Load scheduling by unit of work: a cell's tests, or a single test."""

        def _split_scope(self, nodeid: str) -> str:
            return cell_scope(nodeid)

    return CellScheduling(config, log)
