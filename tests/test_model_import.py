"""The model is usable by hand: importing it, and any name of its public API, loads neither pytest nor hypothesis."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_spekvm import reference

TESTING = ("pytest", "_pytest", "hypothesis")

PROBE = """
import json, sys
import pytest_spekvm.reference as model
before = sorted(m for m in sys.modules if m.startswith("pytest_spekvm"))
{use}
print(json.dumps({{"loaded": before, "testing": sorted(m for m in sys.modules if m.split(".")[0] in {testing!r})}}))
"""


def _probe(tmp_path: Path, use: str) -> dict[str, list[str]]:
    """Run PROBE in a fresh interpreter outside the checkout and return what it saw."""
    code = PROBE.format(use=use, testing=TESTING)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_importing_the_model_loads_no_test_framework_and_no_module_of_it(tmp_path: Path) -> None:
    """`import pytest_spekvm.reference` in a fresh interpreter loads neither pytest nor hypothesis, and none of the model's modules yet (only its lazy-import helper)."""
    seen = _probe(tmp_path, "")
    assert {"loaded": ["pytest_spekvm", "pytest_spekvm.reference", "pytest_spekvm.reference.lazy"], "testing": []} == seen


def test_using_the_whole_public_api_loads_no_test_framework(tmp_path: Path) -> None:
    """Every name of the model's __all__, used, still loads neither pytest nor hypothesis: running the reference switch by hand included."""
    use = (
        "[getattr(model, name) for name in model.__all__]\n"
        "s = model.System(model.Features(), model.ReferenceSwitch(), model.WorstCaseChooser())\n"
        "s.enable_profiling(); s.host_run(2); s.run_vcpu(0); s.finish()"
    )
    assert [] == _probe(tmp_path, use)["testing"]


def test_the_public_api_lists_each_name_with_its_home() -> None:
    """The model's __all__ names exactly the names it knows a home module for."""
    assert sorted(reference._WHERE) == sorted(reference.__all__)


@pytest.mark.parametrize("name", reference.__all__)
def test_each_public_name_is_the_one_its_module_defines(name: str) -> None:
    """Each name of the model's __all__ is the very object its home module holds."""
    home = importlib.import_module(reference._WHERE[name], reference.__name__)
    assert getattr(home, name) is getattr(reference, name)
