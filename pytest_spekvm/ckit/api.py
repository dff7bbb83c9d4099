"""The public face of the kit: `c_adapter` makes a target (`CTarget`) whose adapters (`CAdapter`) drive the C code."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..reference.cpu import CPU
from ..reference.vcpu import ExitReason, Vcpu
from ..space import FeatureSpace
from .bridge import Bridge, bridge_of
from .build import build
from .spec import Build, BuildSpec


def c_adapter(
    sources: Sequence[str | os.PathLike[str]],
    *,
    setup: str,
    run: str,
    include_dirs: Sequence[str | os.PathLike[str]] = (),
    cflags: Sequence[str] = (),
    ldflags: Sequence[str] = (),
    build_dir: str | os.PathLike[str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    name: str = "",
    version: str = "",
    feature_space: FeatureSpace | None = None,
) -> CTarget:
    """A `spekvm_adapter` for a world switch written in C; nothing is built until it is first called.

    :param sources: the C files to compile and link together.
    :param setup: the function that plays kvm_arm_setup_debug: ``void (struct spekvm_vcpu *, u64)``.
    :param run: the function that plays __kvm_vcpu_run: ``u64 (struct spekvm_vcpu *)``.
    :param include_dirs: more folders for ``#include`` (the shim's folder and each source's are always on it).
    :param cflags: extra compiler flags (``-DNAME``, ``-Werror``, ...); part of the cache key.
    :param ldflags: extra linker flags (``-lm``, ...); part of the cache key.
    :param build_dir: where builds are cached; default ``$SPEKVM_BUILD_DIR``, else ``.spekvm-build/``
        beside the first source, else the user cache folder.
    :param base_dir: what relative paths are relative to; default the folder of the module that calls
        `c_adapter` (so ``sources=["switch.c"]`` means the file beside the adapter).
    :param name: the target's name in the report header; default the sources' file names.
    :param version: the target's version in the report header.
    :param feature_space: the CPUs the implementation supports, if not all of them.
    """
    if base_dir is None:
        caller = sys._getframe(1).f_globals.get("__file__")
        base = Path(caller).resolve().parent if caller else Path.cwd()
    else:
        base = Path(base_dir).resolve()
    spec = BuildSpec(
        sources=tuple(base / Path(s) for s in sources),
        setup=setup,
        run=run,
        include_dirs=tuple(base / Path(d) for d in include_dirs),
        cflags=tuple(cflags),
        ldflags=tuple(ldflags),
        build_dir=None if build_dir is None else base / Path(build_dir),
    )
    return CTarget(spec, name=name or spec.describe(), version=version, feature_space=feature_space)


class CTarget:
    """A zero-argument factory of adapters for a C world switch: builds on first call, then reuses the build.

    `isolate`: the plugin runs each cell and each sequences test of a C target in a forked process,
    so that a crash in the C code fails that check instead of ending the run (`crash_site` then says
    where the last accessor call was).
    """

    isolate = True

    def __init__(self, spec: BuildSpec, name: str, version: str = "", feature_space: FeatureSpace | None = None) -> None:
        self.spec = spec
        self.name = name
        self.version = version
        self.feature_space = feature_space
        self._build: Build | None = None

    def __repr__(self) -> str:
        return f"<C target {self.name}: setup={self.spec.setup}, run={self.spec.run}>"

    def build(self) -> Build:
        """Build (or take from the cache) and load the extension, once per factory."""
        if self._build is None:
            self._build = build(self.spec)
        return self._build

    def __call__(self) -> CAdapter:
        """A fresh adapter; the first call builds."""
        return CAdapter(self, bridge_of(self.build().module))

    def crash_site(self) -> str | None:
        """'file:line in function' of the last accessor call the C code made (in this process or a forked child), if any."""
        if self._build is None:
            return None
        return bridge_of(self._build.module).last_site()


class CAdapter:
    """The WorldSwitch the suite drives: each call copies the Vcpu into C, calls the entry point, copies it back."""

    def __init__(self, target: CTarget, bridge: Bridge) -> None:
        self.name = target.name
        self.version = target.version
        self.feature_space = target.feature_space
        self._setup = target.spec.setup
        self._run = target.spec.run
        self._bridge = bridge

    def setup_vcpu(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """Call the C setup entry point (kvm_arm_setup_debug)."""
        self._bridge.call_setup(cpu, vcpu, host_mdcr_el2)

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> ExitReason | None:
        """Call the C run entry point (__kvm_vcpu_run) and map its exit code back to the ExitReason."""
        return self._bridge.call_run(cpu, vcpu, self._run)
