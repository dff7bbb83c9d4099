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
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.machinery
import importlib.util
import io
import json
import mmap
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import attrs

from .reference.cpu import CPU
from .reference.registers import EL1_STAGE1
from .reference.vcpu import ContractError, ExitReason, Vcpu
from .space import FeatureSpace

__all__ = [
    "BUILD_DIR_ENV",
    "SHIM_HEADER",
    "Build",
    "CAdapter",
    "CBuildError",
    "CTarget",
    "c_adapter",
    "find_compiler",
]

SHIM_HEADER = Path(__file__).resolve().with_name("spekvm_shim.h")
"""The shim header C sources include; its folder is on the include path of every build."""

BUILD_DIR_ENV = "SPEKVM_BUILD_DIR"
"""Environment variable naming the build directory (default: `.spekvm-build/` beside the first source)."""

RECIPE = "1"
"""Version of the build recipe below: part of the cache key, so a change to it rebuilds everything."""

CFLAGS = ("-std=gnu11", "-O1", "-fPIC")
COVERAGE_CFLAGS = ("--coverage", "-O0")  # gcov's notes at compile time, its counts when the process dumps them
COVERAGE_OBJECTS = "objects"  # the slot's folder of instrumented objects: .o, .gcno and the .gcda counts
_COVERAGE: dict[str, bool] = {"on": False}
_COVERAGE_BUILDS: dict[Path, tuple[Any, _Spec]] = {}
WARNINGS = ("-Wall",)  # user sources only: the code cffi generates is not the user's to fix
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_UNDEFINED = re.compile(r"undefined symbol: (\S+)")
_CTXT_KEYS = EL1_STAGE1  # struct spekvm_ctxt, field = key.lower()


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
class _Spec:
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


# ---------------------------------------------------------------------------------- the target


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
    spec = _Spec(
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

    def __init__(self, spec: _Spec, name: str, version: str = "", feature_space: FeatureSpace | None = None) -> None:
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
        return CAdapter(self, _bridge(self.build().module))

    def crash_site(self) -> str | None:
        """'file:line in function' of the last accessor call the C code made (in this process or a forked child), if any."""
        if self._build is None:
            return None
        return _bridge(self._build.module).last_site()


class CAdapter:
    """The WorldSwitch the suite drives: each call copies the Vcpu into C, calls the entry point, copies it back."""

    def __init__(self, target: CTarget, bridge: _Bridge) -> None:
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


# ------------------------------------------------------------------------------ calling into C


@attrs.frozen
class _Site:
    """Where in the C sources an accessor was called."""

    file: str
    line: int
    func: str


@attrs.define
class _Call:
    """One call into the C code: the model it acts on, and what its callbacks saw."""

    cpu: CPU
    vcpu: Vcpu
    site: Any = None  # the struct spekvm_site * of the callback running now (valid only inside it)
    error: BaseException | None = None
    where: _Site | None = None
    exits: list[ExitReason] = attrs.field(factory=list)


class _Bridge:
    """The callbacks of one loaded extension: the shim's accessors, answered by the model."""

    def __init__(self, module: Any) -> None:
        self.ffi = module.ffi
        self.lib = module.lib
        self.call: _Call | None = None
        callbacks = {
            "spekvm_cb_mrs": self._mrs,
            "spekvm_cb_mrs_s": self._mrs_s,
            "spekvm_cb_msr": self._msr,
            "spekvm_cb_msr_s": self._msr_s,
            "spekvm_cb_isb": self._isb,
            "spekvm_cb_dsb": self._dsb,
            "spekvm_cb_hint": self._hint,
            "spekvm_cb_has_vhe": self._has_vhe,
            "spekvm_cb_run_guest": self._run_guest,
        }
        for cname, method in callbacks.items():
            self.ffi.def_extern(name=cname, onerror=self._on_error)(method)
        self._debug_fields = [name for name, _ in self.ffi.typeof("struct spekvm_host_debug_state").fields]
        # The last call site, in memory shared with forked children: after a child crashes, the parent
        # reads where it was (the file and function names are string literals of the extension, which
        # the parent has mapped at the same addresses).
        self._shared = mmap.mmap(-1, self.ffi.sizeof("struct spekvm_site"))
        self._last = self.ffi.cast("struct spekvm_site *", self.ffi.from_buffer(self._shared))

    def last_site(self) -> str | None:
        """'file:line in function' of the last accessor call, or None before the first."""
        last = self._last
        if last.file == self.ffi.NULL:
            return None
        file = self.ffi.string(last.file).decode(errors="replace")
        func = self.ffi.string(last.func).decode(errors="replace")
        return f"{file}:{int(last.line)} in {func}"

    def _to_c(self, vcpu: Vcpu, cvcpu: Any) -> None:
        """Copy the Python Vcpu into a struct spekvm_vcpu."""
        cvcpu.index = vcpu.index
        cvcpu.vm = vcpu.vm
        cvcpu.mdcr_el2 = vcpu.mdcr_el2
        cvcpu.vttbr_el2 = vcpu.vttbr_el2
        for key in _CTXT_KEYS:
            setattr(cvcpu.sysregs, key.lower(), vcpu.sysregs.get(key, 0))
            setattr(cvcpu.host_ctxt, key.lower(), vcpu.host_ctxt.get(key, 0))
        for field in self._debug_fields:
            setattr(cvcpu.host_debug_state, field, vcpu.host_debug_state.get(field, 0))

    def _from_c(self, cvcpu: Any, vcpu: Vcpu) -> None:
        """Copy a struct spekvm_vcpu back into the Python Vcpu."""
        vcpu.mdcr_el2 = int(cvcpu.mdcr_el2)
        vcpu.vttbr_el2 = int(cvcpu.vttbr_el2)
        for key in _CTXT_KEYS:
            vcpu.sysregs[key] = int(getattr(cvcpu.sysregs, key.lower()))
            vcpu.host_ctxt[key] = int(getattr(cvcpu.host_ctxt, key.lower()))
        for field in self._debug_fields:
            vcpu.host_debug_state[field] = int(getattr(cvcpu.host_debug_state, field))

    # The callbacks. Each notes its call site first, so an error can name the C line.

    def _enter(self, site: Any) -> _Call:
        call = self.call
        if call is None:  # pragma: no cover - the shim's accessors only run inside a kit call
            msg = "a shim accessor was called outside a call from pytest_spekvm.ckit"
            raise RuntimeError(msg)
        call.site = site
        self._last[0] = site[0]
        return call

    def _mrs(self, site: Any, name: Any, value: Any) -> int:
        call = self._enter(site)
        value[0] = call.cpu.mrs(self.ffi.string(name).decode())
        return 0

    def _mrs_s(self, site: Any, encoding: int, value: Any) -> int:
        call = self._enter(site)
        value[0] = call.cpu.mrs(int(encoding))
        return 0

    def _msr(self, site: Any, name: Any, value: int) -> int:
        call = self._enter(site)
        call.cpu.msr(self.ffi.string(name).decode(), int(value))
        return 0

    def _msr_s(self, site: Any, encoding: int, value: int) -> int:
        call = self._enter(site)
        call.cpu.msr(int(encoding), int(value))
        return 0

    def _isb(self, site: Any) -> int:
        self._enter(site).cpu.isb()
        return 0

    def _dsb(self, site: Any, domain: Any) -> int:
        call = self._enter(site)
        call.cpu.dsb(self.ffi.string(domain).decode())
        return 0

    def _hint(self, site: Any, imm: int) -> int:
        self._enter(site).cpu.hint(int(imm))
        return 0

    def _has_vhe(self, site: Any, vhe: Any) -> int:
        vhe[0] = int(self._enter(site).cpu.features.vhe)
        return 0

    def _run_guest(self, site: Any, cvcpu: Any, exit_code: Any) -> int:
        call = self._enter(site)
        if cvcpu == self.ffi.NULL:
            msg = "spekvm_run_guest() was given a NULL vcpu (pass the vcpu the run entry point was given)"
            raise ContractError("run_guest is given the vcpu", msg)
        self._from_c(cvcpu, call.vcpu)
        reason = call.cpu.run_guest(call.vcpu)
        self._to_c(call.vcpu, cvcpu)
        call.exits.append(reason)
        exit_code[0] = len(call.exits)
        return 0

    def _on_error(self, exc_type: Any, exc_value: BaseException, tb: Any) -> int:
        """A callback raised: keep the exception and where in C it happened; the shim then unwinds.

        Read the site now: it lives in the C caller's frame, which the unwind discards.
        """
        call = self.call
        if call is None:  # pragma: no cover - only C code running outside a kit call (a constructor)
            return 1
        site = call.site  # set by _enter, the first thing every callback does
        call.error = exc_value
        call.where = _Site(
            file=self.ffi.string(site.file).decode(errors="replace"),
            line=int(site.line),
            func=self.ffi.string(site.func).decode(errors="replace"),
        )
        return 1

    # The entry points.

    @contextlib.contextmanager
    def _calling(self, cpu: CPU, vcpu: Vcpu) -> Iterator[_Call]:
        outer, self.call = self.call, _Call(cpu, vcpu)
        try:
            yield self.call
        finally:
            self.call = outer

    def call_setup(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """Run the setup entry point on `vcpu`."""
        cvcpu = self.ffi.new("struct spekvm_vcpu *")
        self._to_c(vcpu, cvcpu)
        with self._calling(cpu, vcpu) as call:
            failed = self.lib.spekvm__call_setup(cvcpu, host_mdcr_el2)
        if failed:
            _reraise(call)
        self._from_c(cvcpu, vcpu)

    def call_run(self, cpu: CPU, vcpu: Vcpu, entry: str) -> ExitReason | None:
        """Run the run entry point on `vcpu`; the exit code it returns names one of the guest's exits."""
        cvcpu = self.ffi.new("struct spekvm_vcpu *")
        code = self.ffi.new("u64 *")
        self._to_c(vcpu, cvcpu)
        with self._calling(cpu, vcpu) as call:
            failed = self.lib.spekvm__call_run(cvcpu, code)
        if failed:
            _reraise(call)
        self._from_c(cvcpu, vcpu)
        if not call.exits:
            return None  # the guest was never entered: the system reports that clause itself
        index = int(code[0])
        if 1 <= index <= len(call.exits):
            return call.exits[index - 1]
        msg = (
            f"{entry}() returned {index:#x}, which is not an exit code spekvm_run_guest() gave "
            f"in this run (return the value spekvm_run_guest(vcpu) returned)"
        )
        raise ContractError("vcpu_run returns the exit reason", msg)


def _reraise(call: _Call) -> NoReturn:
    """Raise what a callback raised, from a frame that names the C file, line and function of the access.

    `scenario` reports an adapter's exception at its innermost frame outside the plugin; the C
    code has no Python frame, so one is made at the C line (the way template engines point a
    traceback into a template).
    """
    error, where = call.error, call.where
    assert error is not None, "the C code unwound without a failed callback"
    assert where is not None, "every callback notes its call site before it can fail"
    code = compile("\n" * max(where.line - 1, 0) + "raise __spekvm_error__", where.file, "exec")
    code = code.replace(co_name=where.func, co_qualname=where.func)
    exec(code, {"__spekvm_error__": error})
    raise AssertionError  # pragma: no cover - the exec above always raises


# ------------------------------------------------------------------------------------ building

_LOADED: dict[Path, Any] = {}  # extension file -> module: each build is loaded once per process
_BRIDGES: dict[str, _Bridge] = {}  # module name -> its callbacks


def _bridge(module: Any) -> _Bridge:
    bridge = _BRIDGES.get(module.__name__)
    if bridge is None:
        bridge = _BRIDGES[module.__name__] = _Bridge(module)
    return bridge


def find_compiler() -> list[str]:
    """The C compiler command: ``$CC`` if set, else the one Python was built with, else cc, gcc or clang.

    :raises CBuildError: when the compiler named by ``$CC``, or any compiler at all, cannot be found.
    """
    configured = os.environ.get("CC", "").strip()
    if configured:
        argv = shlex.split(configured)
        found = shutil.which(argv[0])
        if found is None:
            msg = f"Cannot build the C target because the C compiler CC={configured!r} (from the environment) was not found (install it, point CC at a compiler that exists, or unset CC to use gcc, cc or clang from PATH)"
            raise CBuildError(msg)
        return [found, *argv[1:]]
    python_cc = shlex.split(str(sysconfig.get_config_var("CC") or "")) or ["cc"]
    for argv in (python_cc, ["cc"], ["gcc"], ["clang"]):
        found = shutil.which(argv[0])
        if found is not None:
            return [found, *argv[1:]]
    msg = "Cannot build the C target because no C compiler was found on PATH (looked for $CC, the compiler Python was built with, cc, gcc and clang; install gcc or clang, e.g. `apt-get install gcc`, or set CC)"
    raise CBuildError(msg)


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


def build(spec: _Spec) -> Build:
    """Build the extension for `spec`, or load it from the cache when nothing it depends on changed.

    :raises CBuildError: with the reason, the file concerned and the compiler's output.
    """
    if _COVERAGE["on"] and not spec.coverage:
        spec = attrs.evolve(
            spec, cflags=(*spec.cflags, *COVERAGE_CFLAGS), ldflags=(*spec.ldflags, "--coverage"), coverage=True
        )
    built = _build(spec)
    if spec.coverage:
        _COVERAGE_BUILDS[built.path] = (built.module, spec)
    return built


def _build(spec: _Spec) -> Build:
    if os.name != "posix":  # pragma: no cover - the kit drives a cc-style compiler and flock
        msg = f"Cannot build the C target ({spec.describe()}) because pytest_spekvm.ckit needs a POSIX system with a cc-compatible compiler (gcc or clang)"
        raise CBuildError(msg)
    _check_spec(spec)
    cffi = _import_cffi()
    compiler = find_compiler()
    key = _slot_key(spec, compiler, str(cffi.__version__))
    root = _build_root(spec)
    slot = root / f"{_slug(spec.sources[0].stem)}-{key[:16]}"
    try:
        slot.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"Cannot build the C target ({spec.describe()}) because the build directory {slot} cannot be created ({exc}); point {BUILD_DIR_ENV} or build_dir= at a writable folder"
        raise CBuildError(msg) from None
    with _locked(slot / ".lock"):  # parallel workers (pytest -n) build once and share the result
        cached = _from_cache(spec, slot)
        if cached is not None:
            return cached
        return _compile(spec, cffi, compiler, slot, key)


def _check_spec(spec: _Spec) -> None:
    if not spec.sources:
        msg = "Cannot build the C target because sources= is empty (give the C files of the world switch)"
        raise CBuildError(msg)
    for source in spec.sources:
        if not source.is_file():
            msg = f"Cannot build the C target because the source {source} does not exist (relative paths are relative to the adapter module's folder, or to base_dir= when given)"
            raise CBuildError(msg)
    for role, entry in (("setup", spec.setup), ("run", spec.run)):
        if not _IDENTIFIER.match(entry):
            msg = f"Cannot build the C target ({spec.describe()}) because {role}={entry!r} is not the name of a C function"
            raise CBuildError(msg)
    if spec.setup == spec.run:
        msg = f"Cannot build the C target ({spec.describe()}) because setup= and run= both name {spec.setup!r} (they are two functions with different signatures)"
        raise CBuildError(msg)


def _import_cffi() -> Any:
    try:
        return importlib.import_module("cffi")
    except ImportError:  # pragma: no cover - cffi is in the test extra; this is for users without it
        msg = "Cannot build the C target because cffi is not installed (pip install 'pytest-spekvm[c]')"
        raise CBuildError(msg) from None


def _slot_key(spec: _Spec, compiler: list[str], cffi_version: str) -> str:
    """What decides the build's shape, hashed: the cache slot. Source contents are checked separately."""
    parts = [
        RECIPE, cffi_version, sys.implementation.cache_tag, sysconfig.get_config_var("EXT_SUFFIX"), sys.platform,
        compiler, CFLAGS, WARNINGS, [str(s) for s in spec.sources], spec.setup, spec.run,
        [str(d) for d in spec.include_dirs], spec.cflags, spec.ldflags,
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:40]


def _build_root(spec: _Spec) -> Path:
    """`build_dir=`, else $SPEKVM_BUILD_DIR, else .spekvm-build/ beside the first source, else the user cache."""
    if spec.build_dir is not None:
        return spec.build_dir
    configured = os.environ.get(BUILD_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    beside = spec.sources[0].parent / ".spekvm-build"
    try:
        beside.mkdir(parents=True, exist_ok=True)
        return beside
    except OSError:  # a read-only checkout or install: the sources stay untouched
        pass
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(cache) / "pytest-spekvm"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _from_cache(spec: _Spec, slot: Path) -> Build | None:
    """The slot's build, if its manifest is intact and every file it was built from is unchanged."""
    try:
        manifest = json.loads((slot / "manifest.json").read_text())
        module_name = str(manifest["module"])
        path = slot / str(manifest["extension"])
        deps: dict[str, str] = dict(manifest["deps"])
        log = str(manifest["log"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not path.is_file() or any(_digest(Path(dep)) != digest for dep, digest in deps.items()):
        return None
    try:
        module = _load(spec, path, module_name)
    except CBuildError:
        return None  # the cached file no longer loads (truncated, or another Python): build it again
    return Build(module, path, from_cache=True, log=log)


def _header_block(text: str, name: str) -> str:
    """The declarations between the header's SPEKVM-`name`-BEGIN comment and its END marker."""
    begin = text.index("*/", text.index(f"SPEKVM-{name}-BEGIN")) + 2
    return text[begin : text.index(f"/* SPEKVM-{name}-END */", begin)]


def _cdef(coverage: bool = False) -> str:
    header = SHIM_HEADER.read_text()
    return (
        _header_block(header, "CDEF")
        + 'extern "Python+C" {\n' + _header_block(header, "CALLBACKS") + "}\n"
        + "int spekvm__call_setup(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2);\n"
        + "int spekvm__call_run(struct spekvm_vcpu *vcpu, u64 *exit_code);\n"
        + "int spekvm__entry_missing(void);\n"
        + ("void spekvm__gcov_dump(void);\n" if coverage else "")
    )


def _prototypes(spec: _Spec, attribute: str = "") -> str:
    return (
        f"void {spec.setup}(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2){attribute};\n"
        f"u64 {spec.run}(struct spekvm_vcpu *vcpu){attribute};\n"
    )


def _preamble(spec: _Spec) -> str:
    """The C half of the glue: the unwind target, and calls into the entry points that catch an unwind."""
    return f"""#include "spekvm_shim.h"

jmp_buf *spekvm__abort_to;

/* Weak: a missing entry point reads as NULL, which the kit reports, instead of failing to load. */
{_prototypes(spec, " __attribute__((weak))")}
static int spekvm__entry_missing(void)
{{
	return ({spec.setup} ? 0 : 1) | ({spec.run} ? 0 : 2);
}}

static int spekvm__call_setup(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2)
{{
	jmp_buf env;
	jmp_buf *outer = spekvm__abort_to;

	if (setjmp(env)) {{
		spekvm__abort_to = outer;
		return 1;
	}}
	spekvm__abort_to = &env;
	{spec.setup}(vcpu, host_mdcr_el2);
	spekvm__abort_to = outer;
	return 0;
}}

static int spekvm__call_run(struct spekvm_vcpu *vcpu, u64 *exit_code)
{{
	jmp_buf env;
	jmp_buf *outer = spekvm__abort_to;

	if (setjmp(env)) {{
		spekvm__abort_to = outer;
		return 1;
	}}
	spekvm__abort_to = &env;
	*exit_code = {spec.run}(vcpu);
	spekvm__abort_to = outer;
	return 0;
}}
""" + (_GCOV_DUMP if spec.coverage else "")


_GCOV_DUMP = """
/* The instrumented build: write gcov's counts now (libgcov, linked by --coverage). */
extern void __gcov_dump(void);

static void spekvm__gcov_dump(void)
{
	__gcov_dump();
}
"""


@attrs.frozen
class _Job:
    """One compiler command and what it is for."""

    what: str  # the file it compiles, as the error message names it
    argv: list[str]
    depfile: Path | None = None


def _run_jobs(jobs: Sequence[_Job], log: list[str]) -> list[tuple[_Job, str]]:
    """Run the compiler commands in parallel; (job, output) of each that failed, in order."""
    started: list[tuple[_Job, subprocess.Popen[str]]] = []
    try:
        for job in jobs:
            proc = subprocess.Popen(
                job.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            )
            started.append((job, proc))
    except OSError as exc:
        for _, proc in started:
            proc.kill()
            proc.wait()
        msg = f"Cannot build the C target because the C compiler {jobs[0].argv[0]} cannot be run ({exc}); install gcc or clang, or point CC at a working compiler"
        raise CBuildError(msg) from None
    failed = []
    for job, proc in started:
        output, _ = proc.communicate()
        log.append(f"$ {shlex.join(job.argv)}\n{output}")
        if proc.returncode != 0:
            failed.append((job, output))
    return failed


def _compile_error(spec: _Spec, failed: list[tuple[_Job, str]]) -> CBuildError:
    job, output = failed[0]
    shown = "\n".join(f"    {line}" for line in output.rstrip().splitlines()) or "    (the compiler printed nothing)"
    hint = "fix it and run again; a failed build is not cached"
    if "spekvm_entry.h" in output:
        hint = (
            f"spekvm_entry.h is the kit's declaration of the entry points: setup is `void {spec.setup}(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2)`, "
            f"run is `u64 {spec.run}(struct spekvm_vcpu *vcpu)`, neither static; {hint}"
        )
    if re.search(r"\b(Python|pyconfig)\.h\b", output):
        hint = "the Python development headers are missing: install python3-dev, or your system's package for Python.h"
    msg = (
        f"Cannot build the C target ({spec.describe()}) because the C compiler ({job.argv[0]}) reported errors in {job.what}:\n"
        f"{shown}\n"
        f"  ({hint})"
    )
    return CBuildError(msg)


def _depfile_paths(depfile: Path) -> list[Path]:
    """The files a make-style dependency file (gcc/clang -MMD) lists, resolved (the compiler ran in our cwd)."""
    _, _, deps = depfile.read_text().replace("\\\n", " ").partition(":")
    tokens = re.split(r"(?<!\\)\s+", deps.strip())
    return [Path(token.replace("\\ ", " ")).resolve() for token in tokens if token]


def _objects_dir(spec: _Spec, slot: Path, work: Path) -> Path:
    """Where the sources' objects go: the scratch folder, or for an instrumented build a folder the
    slot keeps, since gcov's notes (.gcno) and counts (.gcda) live beside the objects."""
    if not spec.coverage:
        return work
    objects = slot / COVERAGE_OBJECTS
    shutil.rmtree(objects, ignore_errors=True)
    objects.mkdir()
    return objects


def _compile(spec: _Spec, cffi: Any, compiler: list[str], slot: Path, key: str) -> Build:
    """Compile the glue and the sources, link, load, check the entry points, then record the build."""
    nonce = secrets.token_hex(4)
    module_name = f"_spekvm_{key[:12]}_{nonce}"
    work = slot / f"tmp-{nonce}"
    work.mkdir()
    extension = slot / f"{module_name}{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"
    try:
        ffi = cffi.FFI()
        ffi.cdef(_cdef(spec.coverage))
        ffi.set_source(module_name, _preamble(spec))
        glue = work / f"{module_name}.c"
        with contextlib.redirect_stdout(io.StringIO()):  # cffi announces "generating ..."
            ffi.emit_c_code(str(glue))
        entry = work / "spekvm_entry.h"
        entry.write_text(
            "/* Generated by pytest_spekvm.ckit: the entry points, declared in every source. */\n"
            '#include "spekvm_shim.h"\n' + _prototypes(spec)
        )
        includes = [f"-I{d}" for d in (SHIM_HEADER.parent, *spec.include_dirs)]
        python = [f"-I{d}" for d in dict.fromkeys(sysconfig.get_path(name) for name in ("include", "platinclude"))]
        glue_flags = [f for f in spec.cflags if f != "--coverage"]  # only the user's sources are measured
        jobs = [_Job(f"the glue code cffi generated ({glue.name})", [
            *compiler, *CFLAGS, *glue_flags, *includes, *python, "-c", str(glue), "-o", str(work / "glue.o"),
        ])]
        objects_dir = _objects_dir(spec, slot, work)
        for index, source in enumerate(spec.sources):
            obj, dep = objects_dir / f"{index}-{source.stem}.o", work / f"{index}-{source.stem}.d"
            jobs.append(_Job(str(source), [
                *compiler, *CFLAGS, *WARNINGS, *spec.cflags, *includes, f"-I{source.parent}",
                "-include", str(entry), "-MMD", "-MF", str(dep), "-MT", "spekvm",
                "-c", str(source), "-o", str(obj),
            ], depfile=dep))
        log: list[str] = []
        failed = _run_jobs(jobs, log)
        if failed:
            raise _compile_error(spec, failed)
        shared = ["-bundle", "-undefined", "dynamic_lookup"] if sys.platform == "darwin" else ["-shared"]
        objects = [str(work / "glue.o"), *(str(objects_dir / f"{i}-{s.stem}.o") for i, s in enumerate(spec.sources))]
        link = _Job(f"the link of {spec.describe()}", [
            *compiler, *shared, *objects, *spec.ldflags, "-o", str(work / extension.name),
        ])
        failed = _run_jobs([link], log)
        if failed:
            raise _compile_error(spec, failed)
        os.replace(work / extension.name, extension)
        deps = {SHIM_HEADER, *spec.sources}
        scratch = work.resolve()
        for job in jobs:
            if job.depfile is not None:
                deps.update(p for p in _depfile_paths(job.depfile) if scratch not in p.parents)  # spekvm_entry.h: part of the key
        manifest = {
            "recipe": RECIPE,
            "module": module_name,
            "extension": extension.name,
            "deps": {str(p): _digest(p) for p in sorted(deps)},
            "log": "\n".join(log),
        }
        module = _load(spec, extension, module_name)
    except BaseException:
        extension.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    staged = slot / f"manifest.{nonce}.json"
    staged.write_text(json.dumps(manifest, indent=1))
    os.replace(staged, slot / "manifest.json")
    for old in slot.glob(f"_spekvm_*{extension.suffix}"):
        if old != extension:
            old.unlink(missing_ok=True)
    return Build(module, extension, from_cache=False, log=str(manifest["log"]))


def _load(spec: _Spec, path: Path, module_name: str) -> Any:
    """Import the built extension (once per process) and check that both entry points are defined."""
    module = _LOADED.get(path)
    if module is None:
        loader = importlib.machinery.ExtensionFileLoader(module_name, str(path))
        module_spec = importlib.util.spec_from_file_location(module_name, path, loader=loader)
        assert module_spec is not None
        try:
            module = importlib.util.module_from_spec(module_spec)
            loader.exec_module(module)
        except ImportError as exc:
            undefined = _UNDEFINED.search(str(exc))
            if undefined:
                msg = f"Cannot load the C target ({spec.describe()}) because the symbol {undefined.group(1)!r} is used but defined in none of its sources (add the file that defines it to sources=, or its library to ldflags=)"
            else:
                msg = f"Cannot load the C target ({spec.describe()}) built at {path} because the import failed: {exc}"
            raise CBuildError(msg) from None
        _LOADED[path] = module
    missing = module.lib.spekvm__entry_missing()
    for bit, role, entry, signature in (
        (1, "setup", spec.setup, f"void {spec.setup}(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2)"),
        (2, "run", spec.run, f"u64 {spec.run}(struct spekvm_vcpu *vcpu)"),
    ):
        if missing & bit:
            msg = f"Cannot use the C target ({spec.describe()}) because its entry point {role}={entry!r} is defined in none of its sources (define `{signature}` in one of them, not static, or pass {role}= the name of the function that is)"
            raise CBuildError(msg)
    return module
