"""The catalogue of broken switches, as the tests use it: every mutant of examples/mutants/, loaded by path once."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

from pytest_spekvm.reference.switch import ReferenceSwitch

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
MUTANTS_DIR = EXAMPLES_DIR / "mutants"
MUTANTS = sorted(p for p in MUTANTS_DIR.glob("*.py") if not p.name.startswith("_"))
NAMES = [p.stem for p in MUTANTS]


@functools.cache
def module(name: str) -> ModuleType:
    """The mutant module `name` (its file's stem), imported once."""
    path = MUTANTS_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"mutant_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def switch(name: str) -> ReferenceSwitch:
    """A fresh adapter of the mutant `name`."""
    made: ReferenceSwitch = module(name).spekvm_adapter()
    return made


def caught_by(name: str) -> tuple[str, ...]:
    """The rule ids the mutant's CAUGHT_BY names (a string or a tuple of them)."""
    value = module(name).CAUGHT_BY
    return (value,) if isinstance(value, str) else tuple(value)


def source(name: str) -> str:
    """The mutant's source text without its `name`, for a pytester run that writes it into its own folder:
    the target is then named after the file it is written to, as the run's report and replay values show."""
    text = (MUTANTS_DIR / f"{name}.py").read_text()
    line = f'    name = "mutant {name}"\n'
    assert line in text, f"{name}.py names its switch {line.strip()!r}"
    return text.replace(line, "")
