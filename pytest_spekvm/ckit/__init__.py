"""Run a world switch written in C on the model: build it with cffi against the shim header, and adapt it.

A target module for a C implementation is three lines::

    from pytest_spekvm.ckit import c_adapter

    spekvm_adapter = c_adapter(sources=["switch.c"], setup="kvm_arm_setup_debug", run="__kvm_vcpu_run")

The C sources include ``spekvm_shim.h`` (shipped next to this module) and define the two entry
points the adapter names::

    void kvm_arm_setup_debug(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2);
    u64 __kvm_vcpu_run(struct spekvm_vcpu *vcpu);

Nothing is compiled when the module is imported. The first call of ``spekvm_adapter`` (the plugin
makes it when it validates the target, before any test runs) compiles the sources with the C
compiler (``$CC``, else the one Python was built with, else cc, gcc or clang) into a CPython
extension made by cffi, and loads it. The build is cached in a build directory and reused while
the sources, every header they include and the build settings are unchanged. Anything that keeps
the build from working (no compiler, a compile error, an entry point the sources do not define)
is a `CBuildError` whose message says which file and shows the compiler's output; the plugin
reports it as a usage error, without a traceback.

The kit is a package, one module per job: `api` (c_adapter and the adapter it makes), `bridge`
(calling into the C code, and the shim's accessors answered by the model), `build` (the build, its
cache and the loading of the extension), `compiler` (finding and running the C compiler), `glue`
(the C text cffi compiles around the sources), `coverage` (gcov-instrumented builds) and `spec`
(what decides a build, and its errors).
"""

from __future__ import annotations

from .api import CAdapter, CTarget, c_adapter
from .compiler import find_compiler
from .coverage import CoverageBuild, coverage_builds, dump_coverage, forget_coverage, set_coverage
from .spec import BUILD_DIR_ENV, SHIM_HEADER, Build, CBuildError

__all__ = [
    "BUILD_DIR_ENV",
    "SHIM_HEADER",
    "Build",
    "CAdapter",
    "CBuildError",
    "CTarget",
    "CoverageBuild",
    "c_adapter",
    "coverage_builds",
    "dump_coverage",
    "find_compiler",
    "forget_coverage",
    "set_coverage",
]
