"""What decides a C build (`BuildSpec`), what a build is (`Build`), the kit's error, and the settings every build shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

SHIM_HEADER = Path(__file__).resolve().parent.parent / "spekvm_shim.h"
"""The shim header C sources include; its folder is on the include path of every build."""

BUILD_DIR_ENV = "SPEKVM_BUILD_DIR"
"""Environment variable naming the build directory (default: `.spekvm-build/` beside the first source)."""

RECIPE = "1"
"""Version of the build recipe: part of the cache key, so a change to it rebuilds everything."""

CFLAGS = ("-std=gnu11", "-O1", "-fPIC")
WARNINGS = ("-Wall",)  # user sources only: the code cffi generates is not the user's to fix
COVERAGE_CFLAGS = ("--coverage", "-O0")  # gcov's notes at compile time, its counts when the process dumps them
COVERAGE_OBJECTS = "objects"  # the slot's folder of instrumented objects: .o, .gcno and the .gcda counts


class CBuildError(Exception):
    """The C target cannot be built or loaded; the message says why and what to do."""


@attrs.frozen
class Build:
    """A built and loaded C target: the extension module, where it is, and whether it came from the cache."""

    module: Any = attrs.field(repr=False)
    path: Path
    from_cache: bool
    log: str = attrs.field(repr=False)  # compiler commands and their output (warnings)


@attrs.frozen
class BuildSpec:
    """Everything that decides what a build produces."""

    sources: tuple[Path, ...]
    setup: str
    run: str
    include_dirs: tuple[Path, ...]
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]
    build_dir: Path | None
    coverage: bool = False  # built with gcov instrumentation (set_coverage)

    def describe(self) -> str:
        """The sources, as a person names them."""
        return ", ".join(p.name for p in self.sources)
