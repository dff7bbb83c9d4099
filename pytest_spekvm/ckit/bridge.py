"""Calling into the C code: a vcpu copied in and out, and the shim's accessors (mrs, msr, isb, ...) answered by the model."""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Iterator
from typing import Any, NoReturn

import attrs

from ..reference.cpu import CPU
from ..reference.registers import EL1_STAGE1
from ..reference.vcpu import ContractError, ExitReason, Vcpu

CTXT_KEYS = EL1_STAGE1  # struct spekvm_ctxt, field = key.lower()


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


class Bridge:
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
        for key in CTXT_KEYS:
            setattr(cvcpu.sysregs, key.lower(), vcpu.sysregs.get(key, 0))
            setattr(cvcpu.host_ctxt, key.lower(), vcpu.host_ctxt.get(key, 0))
        for field in self._debug_fields:
            setattr(cvcpu.host_debug_state, field, vcpu.host_debug_state.get(field, 0))

    def _from_c(self, cvcpu: Any, vcpu: Vcpu) -> None:
        """Copy a struct spekvm_vcpu back into the Python Vcpu."""
        vcpu.mdcr_el2 = int(cvcpu.mdcr_el2)
        vcpu.vttbr_el2 = int(cvcpu.vttbr_el2)
        for key in CTXT_KEYS:
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
            reraise(call)
        self._from_c(cvcpu, vcpu)

    def call_run(self, cpu: CPU, vcpu: Vcpu, entry: str) -> ExitReason | None:
        """Run the run entry point on `vcpu`; the exit code it returns names one of the guest's exits."""
        cvcpu = self.ffi.new("struct spekvm_vcpu *")
        code = self.ffi.new("u64 *")
        self._to_c(vcpu, cvcpu)
        with self._calling(cpu, vcpu) as call:
            failed = self.lib.spekvm__call_run(cvcpu, code)
        if failed:
            reraise(call)
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


def reraise(call: _Call) -> NoReturn:
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


_BRIDGES: dict[str, Bridge] = {}  # module name -> its callbacks


def bridge_of(module: Any) -> Bridge:
    """The callbacks of a loaded extension, made once per process."""
    bridge = _BRIDGES.get(module.__name__)
    if bridge is None:
        bridge = _BRIDGES[module.__name__] = Bridge(module)
    return bridge
