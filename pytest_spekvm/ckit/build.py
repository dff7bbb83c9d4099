"""Building a C target: the cache slot its settings decide, the compile and link, and loading the extension once per process."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import io
import json
import os
import re
import secrets
import shutil
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from .compiler import Job, compile_error, depfile_paths, find_compiler, run_jobs
from .coverage import coverage_on, note_coverage_build
from .glue import cdef, preamble, prototypes
from .spec import (
    BUILD_DIR_ENV,
    CFLAGS,
    COVERAGE_CFLAGS,
    COVERAGE_OBJECTS,
    RECIPE,
    SHIM_HEADER,
    WARNINGS,
    Build,
    BuildSpec,
    CBuildError,
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_UNDEFINED = re.compile(r"undefined symbol: (\S+)")
_LOADED: dict[Path, Any] = {}  # extension file -> module: each build is loaded once per process


def build(spec: BuildSpec) -> Build:
    """Build the extension for `spec`, or load it from the cache when nothing it depends on changed.

    :raises CBuildError: with the reason, the file concerned and the compiler's output.
    """
    if coverage_on() and not spec.coverage:
        spec = attrs.evolve(
            spec, cflags=(*spec.cflags, *COVERAGE_CFLAGS), ldflags=(*spec.ldflags, "--coverage"), coverage=True
        )
    built = _build(spec)
    if spec.coverage:
        note_coverage_build(built.path, built.module, spec)
    return built


def _build(spec: BuildSpec) -> Build:
    fcntl = _import_fcntl(spec)
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
    with _locked(fcntl, slot / ".lock"):  # parallel workers (pytest -n) build once and share the result
        cached = _from_cache(spec, slot)
        if cached is not None:
            return cached
        return _compile(spec, cffi, compiler, slot, key)


def _check_spec(spec: BuildSpec) -> None:
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


def _import_fcntl(spec: BuildSpec) -> Any:
    """The fcntl module, imported here rather than with the kit, so that the kit imports anywhere and
    says what it needs where a build cannot work: flock to share builds, and a cc-style compiler."""
    try:
        return importlib.import_module("fcntl")
    except ImportError:
        msg = f"Cannot build the C target ({spec.describe()}) because pytest_spekvm.ckit needs a POSIX system (for the fcntl module) with a cc-compatible compiler (gcc or clang)"
        raise CBuildError(msg) from None


def _import_cffi() -> Any:
    try:
        return importlib.import_module("cffi")
    except ImportError:  # pragma: no cover - cffi is in the test extra; this is for users without it
        msg = "Cannot build the C target because cffi is not installed (pip install 'pytest-spekvm[c]')"
        raise CBuildError(msg) from None


def _slot_key(spec: BuildSpec, compiler: list[str], cffi_version: str) -> str:
    """What decides the build's shape, hashed: the cache slot. Source contents are checked separately."""
    parts = [
        RECIPE, cffi_version, sys.implementation.cache_tag, sysconfig.get_config_var("EXT_SUFFIX"), sys.platform,
        compiler, CFLAGS, WARNINGS, [str(s) for s in spec.sources], spec.setup, spec.run,
        [str(d) for d in spec.include_dirs], spec.cflags, spec.ldflags,
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:40]


def _build_root(spec: BuildSpec) -> Path:
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
def _locked(fcntl: Any, path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (flock, through the `fcntl` module given)."""
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


def _from_cache(spec: BuildSpec, slot: Path) -> Build | None:
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


def _objects_dir(spec: BuildSpec, slot: Path, work: Path) -> Path:
    """Where the sources' objects go: the scratch folder, or for an instrumented build a folder the
    slot keeps, since gcov's notes (.gcno) and counts (.gcda) live beside the objects."""
    if not spec.coverage:
        return work
    objects = slot / COVERAGE_OBJECTS
    shutil.rmtree(objects, ignore_errors=True)
    objects.mkdir()
    return objects


def _compile(spec: BuildSpec, cffi: Any, compiler: list[str], slot: Path, key: str) -> Build:
    """Compile the glue and the sources, link, load, check the entry points, then record the build."""
    nonce = secrets.token_hex(4)
    module_name = f"_spekvm_{key[:12]}_{nonce}"
    work = slot / f"tmp-{nonce}"
    work.mkdir()
    extension = slot / f"{module_name}{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"
    try:
        ffi = cffi.FFI()
        ffi.cdef(cdef(spec.coverage))
        ffi.set_source(module_name, preamble(spec))
        glue = work / f"{module_name}.c"
        with contextlib.redirect_stdout(io.StringIO()):  # cffi announces "generating ..."
            ffi.emit_c_code(str(glue))
        entry = work / "spekvm_entry.h"
        entry.write_text(
            "/* Generated by pytest_spekvm.ckit: the entry points, declared in every source. */\n"
            '#include "spekvm_shim.h"\n' + prototypes(spec)
        )
        includes = [f"-I{d}" for d in (SHIM_HEADER.parent, *spec.include_dirs)]
        python = [f"-I{d}" for d in dict.fromkeys(sysconfig.get_path(name) for name in ("include", "platinclude"))]
        glue_flags = [f for f in spec.cflags if f != "--coverage"]  # only the user's sources are measured
        jobs = [Job(f"the glue code cffi generated ({glue.name})", [
            *compiler, *CFLAGS, *glue_flags, *includes, *python, "-c", str(glue), "-o", str(work / "glue.o"),
        ])]
        objects_dir = _objects_dir(spec, slot, work)
        for index, source in enumerate(spec.sources):
            obj, dep = objects_dir / f"{index}-{source.stem}.o", work / f"{index}-{source.stem}.d"
            jobs.append(Job(str(source), [
                *compiler, *CFLAGS, *WARNINGS, *spec.cflags, *includes, f"-I{source.parent}",
                "-include", str(entry), "-MMD", "-MF", str(dep), "-MT", "spekvm",
                "-c", str(source), "-o", str(obj),
            ], depfile=dep))
        log: list[str] = []
        failed = run_jobs(jobs, log)
        if failed:
            raise compile_error(spec, failed)
        shared = ["-bundle", "-undefined", "dynamic_lookup"] if sys.platform == "darwin" else ["-shared"]
        objects = [str(work / "glue.o"), *(str(objects_dir / f"{i}-{s.stem}.o") for i, s in enumerate(spec.sources))]
        link = Job(f"the link of {spec.describe()}", [
            *compiler, *shared, *objects, *spec.ldflags, "-o", str(work / extension.name),
        ])
        failed = run_jobs([link], log)
        if failed:
            raise compile_error(spec, failed)
        os.replace(work / extension.name, extension)
        deps = {SHIM_HEADER, *spec.sources}
        scratch = work.resolve()
        for job in jobs:
            if job.depfile is not None:
                deps.update(p for p in depfile_paths(job.depfile) if scratch not in p.parents)  # spekvm_entry.h: part of the key
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


def _load(spec: BuildSpec, path: Path, module_name: str) -> Any:
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
