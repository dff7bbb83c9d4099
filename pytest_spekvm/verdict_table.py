"""The verdict table, the plugin for that job: each rule's verdict and the feature combinations the
run exercised, at the end of a run with a target; under xdist, each worker's verdicts are sent to the
controller, which adds them up before the table is written."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pytest

from .options import REPRODUCE_OPTION
from .plugin import FINISHED_KEY, session_of

if TYPE_CHECKING:
    from .rules import Rule


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker, send the verdicts to the controller."""
    spekvm_session = session_of(session.config)
    workeroutput = getattr(session.config, "workeroutput", None)
    if spekvm_session is not None and workeroutput is not None:
        workeroutput["spekvm_verdicts"] = spekvm_session.verdicts.to_dict()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the xdist controller, add a worker's verdicts."""
    data = getattr(node, "workeroutput", {}).get("spekvm_verdicts")
    spekvm_session = session_of(node.config)
    if data and spekvm_session is not None:
        spekvm_session.verdicts.merge(data)


def _rule_rows(rules: Iterable[Rule]) -> list[tuple[str, str, str]]:
    return [(r.id, r.severity.value, r.title) for r in rules]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The verdict per rule, and which feature combinations the run exercised."""
    session = session_of(config)
    if session is None:
        return
    tr = terminalreporter
    for line in session.replayed:
        tr.write_line(f"spekvm {REPRODUCE_OPTION}: {line}")
    if not session.verdicts.tallies:
        return
    tr.write_sep("=", f"spekvm verdicts for {session.target.name}")
    finished = config.stash.get(FINISHED_KEY, None)  # the gates' verdicts, in a run that got that far
    final = finished["verdicts"] if finished is not None else None
    for line in session.verdicts.table(_rule_rows(session.rules.values()), final):
        tr.write_line(line)
    dims = session.verdicts.dimensions
    verdicts = session.verdicts
    rate = f" ({verdicts.steps / verdicts.seconds:,.0f} steps/s)" if verdicts.seconds else ""
    tr.write_line(f"scenario steps: {verdicts.steps:,} in {verdicts.seconds:.1f} s of checks{rate}")
    tr.write_line(
        f"feature combinations exercised: {len(session.verdicts.combinations)}; "
        + "; ".join(f"{name} {{{', '.join(sorted(values))}}}" for name, values in sorted(dims.items()))
    )
