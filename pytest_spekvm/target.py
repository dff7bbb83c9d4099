"""Finding, loading and validating the implementation under test (`--spekvm-target`)."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import keyword
import sys
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from .guard import Limit, safe_text, time_limit
from .reference.contract import WorldSwitch
from .reference.switch import ReferenceSwitch
from .reference.system import Choices
from .space import FULL_SPACE, FeatureSpace
from .timeouts import DEFAULT_TIMEOUT

ENTRY_POINT_GROUP = "spekvm_targets"
"""Entry-point group through which installed packages offer targets."""

ADAPTER_ATTRIBUTE = "spekvm_adapter"
"""The attribute a target module defines: a zero-argument callable returning a fresh adapter."""

BUILTIN = "reference"


class TargetError(Exception):
    """A target that cannot be used; `clause` names the contract clause, the message says why."""

    def __init__(self, clause: str, message: str) -> None:
        super().__init__(message)
        self.clause = clause

    def __str__(self) -> str:
        return f"--spekvm-target: {self.args[0]} [contract: {self.clause}]"


@attrs.frozen
class Target:
    """A loaded implementation: how to make a fresh adapter, and what it declares."""

    spec: str
    name: str
    origin: str
    factory: Callable[[], WorldSwitch] = attrs.field(eq=False)
    version: str = ""
    space: FeatureSpace = FULL_SPACE
    choices: Choices = attrs.field(factory=Choices)
    isolated: bool = False  # each cell and each sequence test runs in a forked process (native code may crash)

    def make(self) -> WorldSwitch:
        """A fresh adapter for one scenario."""
        return self.factory()


def entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """Targets offered by installed packages, by name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _same_file(module: Any, path: Path) -> bool:
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve() == path


def _module_name(path: Path) -> str:
    """The name a .py target is imported under: its file's own name ('my_switch') when that name is
    free, so coverage.py and pytest-cov (--cov=my_switch) know it; else a name made from its path."""
    stem = path.stem
    if stem.isidentifier() and not keyword.iskeyword(stem):
        loaded = sys.modules.get(stem)
        if loaded is not None:
            if _same_file(loaded, path):
                return stem
        else:
            try:
                found = importlib.util.find_spec(stem)
            except (ImportError, ValueError):  # pragma: no cover - a broken finder on sys.path
                found = None
            if found is None or (found.origin is not None and Path(found.origin).resolve() == path):
                return stem
    return f"spekvm_target_{stem}_{zlib.crc32(str(path).encode()):08x}"


def _import_module(spec: str) -> tuple[Any, str]:
    """Import a dotted module name or a path to a .py file; (module, where it was loaded from)."""
    looks_like_path = spec.endswith(".py") or "/" in spec or "\\" in spec
    if looks_like_path:
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            msg = f"Cannot load target {spec!r} because there is no file at {path} (give a path to a .py file, a dotted module name, or 'reference')"
            raise TargetError("target names an importable module", msg)
        name = _module_name(path)
        existing = sys.modules.get(name)
        if existing is not None:
            return existing, str(path)
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:  # pragma: no cover - .py files always get a loader
            msg = f"Cannot load target {spec!r} because Python cannot import {path}"
            raise TargetError("target names an importable module", msg)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException as exc:
            del sys.modules[name]
            msg = f"Cannot load target {spec!r} because importing {path} raised {type(exc).__name__}: {safe_text(exc, str)}"
            raise TargetError("target names an importable module", msg) from exc
        return module, str(path)
    try:
        module = importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        known = ", ".join(sorted({BUILTIN, *entry_points()}))
        msg = f"Cannot load target {spec!r} because no module of that name can be imported ({exc}); give 'reference', an installed target ({known}), a dotted module name on sys.path, or a path to a .py file"
        raise TargetError("target names an importable module", msg) from exc
    except BaseException as exc:
        msg = f"Cannot load target {spec!r} because importing it raised {type(exc).__name__}: {safe_text(exc, str)}"
        raise TargetError("target names an importable module", msg) from exc
    return module, getattr(module, "__file__", None) or spec


def _check_method(adapter: object, name: str, arity: int, spec: str) -> None:
    method = getattr(adapter, name, None)
    if method is None or not callable(method):
        msg = f"Cannot use target {spec!r} because its adapter {safe_text(adapter)} has no method {name}() (expected the WorldSwitch protocol: setup_vcpu(cpu, vcpu, host_mdcr_el2) and vcpu_run(cpu, vcpu))"
        raise TargetError(f"adapter has {name}()", msg)
    if inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method) or inspect.isgeneratorfunction(method):
        msg = f"Cannot use target {spec!r} because its adapter's {name}() is an `async def` or a generator, which returns without running (the adapter contract is synchronous: make {name} a plain def)"
        raise TargetError(f"{name}() is a plain function", msg)
    try:
        inspect.signature(method).bind(*range(arity))
    except TypeError as exc:
        params = "cpu, vcpu, host_mdcr_el2" if arity == 3 else "cpu, vcpu"
        msg = f"Cannot use target {spec!r} because {name}{inspect.signature(method)} cannot be called as {name}({params}) ({exc})"
        raise TargetError(f"{name}() takes ({params})", msg) from exc
    except ValueError:  # pragma: no cover - builtins without signatures are accepted as they are
        return


def _declared_space(adapter: object, spec: str) -> FeatureSpace:
    declared = getattr(adapter, "feature_space", None)
    if declared is None:
        return FULL_SPACE
    if callable(declared) and not isinstance(declared, FeatureSpace):
        try:
            declared = declared()
        except BaseException as exc:
            msg = f"Cannot use target {spec!r} because its feature_space() raised {type(exc).__name__}: {safe_text(exc, str)} (expected it to return a pytest_spekvm.FeatureSpace)"
            raise TargetError("feature_space is a FeatureSpace", msg) from exc
    if not isinstance(declared, FeatureSpace):
        msg = f"Cannot use target {spec!r} because its feature_space is {safe_text(declared)} (expected a pytest_spekvm.FeatureSpace, or a method returning one)"
        raise TargetError("feature_space is a FeatureSpace", msg)
    return declared


def _declared_choices(adapter: object, spec: str) -> Choices:
    """The adapter's optional implementation-defined choices (a Choices, or a mapping of its fields)."""
    declared = getattr(adapter, "choices", None)
    if declared is None or isinstance(declared, Choices):
        return declared or Choices()
    known = [f.name for f in attrs.fields(Choices)]
    if not isinstance(declared, Mapping) or not set(declared) <= set(known):
        msg = f"Cannot use target {spec!r} because its choices are {safe_text(declared)} (expected a pytest_spekvm.Choices, or a mapping with keys from {known})"
        raise TargetError("choices names known choices", msg)
    try:
        return Choices(**declared)
    except TypeError as exc:
        msg = f"Cannot use target {spec!r} because its choices {safe_text(declared)} have a value of the wrong type: {exc}"
        raise TargetError("choices names known choices", msg) from exc


def _declared_text(adapter: object, attribute: str, spec: str) -> str:
    """The adapter's optional `name` or `version`, as text ('' when it declares none)."""
    try:
        return str(getattr(adapter, attribute, "") or "")
    except BaseException as exc:
        msg = f"Cannot use target {spec!r} because reading its adapter's {attribute} raised {type(exc).__name__}: {safe_text(exc, str)} (expected a str, or no {attribute} attribute at all)"
        raise TargetError(f"{attribute} is a str", msg) from exc


def from_factory(spec: str, name: str, origin: str, factory: object, timeout: float = DEFAULT_TIMEOUT) -> Target:
    """Validate `factory` against the contract and wrap it as a Target (`timeout`: seconds `factory()` may take)."""
    if not callable(factory):
        msg = f"Cannot use target {spec!r} because {ADAPTER_ATTRIBUTE} is {safe_text(factory)}, not a callable (expected a class or function returning a fresh adapter)"
        raise TargetError(f"{ADAPTER_ATTRIBUTE} is callable", msg)
    error: BaseException | None = None
    limit = Limit(timeout)
    adapter: object = None
    try:
        with time_limit(timeout) as limit:
            adapter = factory()
    except BaseException as exc:
        error = exc
    if limit.expired:
        msg = f"Cannot use target {spec!r} because calling its {ADAPTER_ATTRIBUTE}() did not return within {timeout:g}s (--spekvm-timeout)"
        raise TargetError(f"{ADAPTER_ATTRIBUTE}() returns promptly", msg) from None
    if error is not None:
        msg = f"Cannot use target {spec!r} because calling its {ADAPTER_ATTRIBUTE}() raised {type(error).__name__}: {safe_text(error, str)}"
        raise TargetError(f"{ADAPTER_ATTRIBUTE}() returns an adapter", msg) from error
    _check_method(adapter, "setup_vcpu", 3, spec)
    _check_method(adapter, "vcpu_run", 2, spec)
    space = _declared_space(adapter, spec)
    choices = _declared_choices(adapter, spec)
    version = _declared_text(adapter, "version", spec)
    label = _declared_text(adapter, "name", spec) or name
    if label == BUILTIN and factory is not ReferenceSwitch:
        label = name  # a subclass of the reference inherits its name, but it is not the reference
    return Target(
        spec=spec, name=label, origin=origin, factory=factory, version=version, space=space, choices=choices,
        isolated=bool(getattr(factory, "isolate", False)),
    )


def load(spec: str, timeout: float = DEFAULT_TIMEOUT) -> Target:
    """Load the target `spec`: 'reference', an entry-point name, a dotted module, or a .py path.

    `timeout` bounds the call that makes the first adapter (0: no limit).
    """
    spec = spec.strip()
    if not spec:
        msg = "Cannot load an empty target name (give 'reference', a dotted module name, or a path to a .py file)"
        raise TargetError("target names an importable module", msg)
    if spec == BUILTIN:
        return from_factory(spec, BUILTIN, "pytest_spekvm.reference.switch (built in)", ReferenceSwitch, timeout)
    eps = entry_points()
    if spec in eps:
        ep = eps[spec]
        try:
            factory = ep.load()
        except BaseException as exc:
            msg = f"Cannot load target {spec!r} because its entry point {ep.value!r} raised {type(exc).__name__}: {safe_text(exc, str)}"
            raise TargetError("target names an importable module", msg) from exc
        dist = ep.dist.name if ep.dist is not None else "?"
        return from_factory(spec, spec, f"entry point {ep.value} ({dist})", factory, timeout)
    module, origin = _import_module(spec)
    factory = getattr(module, ADAPTER_ATTRIBUTE, None)
    if factory is None:
        msg = f"Cannot use target {spec!r} because {origin} defines no {ADAPTER_ATTRIBUTE} (expected `{ADAPTER_ATTRIBUTE} = MySwitch`, a class or function returning a fresh adapter)"
        raise TargetError(f"module defines {ADAPTER_ATTRIBUTE}", msg)
    return from_factory(spec, Path(origin).stem if origin.endswith(".py") else spec, origin, factory, timeout)
