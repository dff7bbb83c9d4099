"""C line and branch coverage (--spekvm-c-coverage): gcov-instrumented builds, and their counts written on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from .spec import COVERAGE_OBJECTS, BuildSpec

_COVERAGE: dict[str, bool] = {"on": False}
_COVERAGE_BUILDS: dict[Path, tuple[Any, BuildSpec]] = {}


@attrs.frozen
class CoverageBuild:
    """An instrumented build: where gcov's data lies, and the C sources it measures."""

    objects: Path
    sources: tuple[Path, ...]


def set_coverage(on: bool) -> None:
    """Build the C targets loaded from now on with gcov instrumentation (a build slot of their own)."""
    _COVERAGE["on"] = on


def coverage_builds() -> list[CoverageBuild]:
    """The instrumented builds this process loaded."""
    return [CoverageBuild(path.parent / COVERAGE_OBJECTS, spec.sources) for path, (_, spec) in _COVERAGE_BUILDS.items()]


def forget_coverage() -> None:
    """Forget the instrumented builds loaded so far (their counts are written)."""
    _COVERAGE_BUILDS.clear()


def dump_coverage() -> None:
    """Write the counts of every instrumented build this process ran (gcov's __gcov_dump), before it exits."""
    for module, _ in _COVERAGE_BUILDS.values():
        module.lib.spekvm__gcov_dump()


def coverage_on() -> bool:
    """Whether builds made from now on are instrumented."""
    return _COVERAGE["on"]


def note_coverage_build(path: Path, module: Any, spec: BuildSpec) -> None:
    """Remember an instrumented build this process loaded, so its counts can be dumped and reported."""
    _COVERAGE_BUILDS[path] = (module, spec)
