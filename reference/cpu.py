"""The CPU: system registers with synchronisation, traps, UNDEFINED and VHE redirection, and the guest's run.

Sampling and the profiling buffer are the other half of the CPU, in `profiling.py`.

About 430 lines, a little over the project's usual: the tables the access path reads, worked out
once per set of features, sit beside the access they serve.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from typing import NoReturn

import attrs

from . import registers as R
from .actors import BOOT, HYP, Actor, guest
from .chooser import Chooser, Moment
from .errors import ModelError
from .features import Features
from .memory import Memory
from .profiling import RECORD_DEPENDENCIES, Profiling, Record
from .registers import (
    E2PB_ALLOCATED,
    E2PB_ANY,
    E2PB_EL2,
    E2PB_RESERVED,
    E2PB_TRAPPED,
    E2PB_TRAPPING,
    HCR_E2H,
    MASK64,
    MDCR_E2PB,
    MDCR_TPMS,
    PMBIDR_P,
    PMBLIMITR_E,
    reset_values,
)
from .trace import Dsb, Event, Kind, Trace
from .vcpu import ContractError, ExitReason, GuestAccess, GuestCode, Vcpu

# ModelError is defined in errors.py (profiling.py raises it too) and is the CPU's to export.
__all__ = ["CONTEXT_SPE_KEYS", "CPU", "SCR_EL3_FGTEN", "Access", "ModelError", "Outcome"]

# SCR_EL3.FGTEn [27]: where EL3 is implemented, the fine-grained traps of HDFGRTR_EL2 act only when
# it is 1 (D24.2.67: "either EL3 is not implemented or SCR_EL3.FGTEn == 1"). The model's firmware
# sets it, as Linux's boot protocol asks on FEAT_FGT CPUs (Documentation/arch/arm64/booting.rst).
SCR_EL3_FGTEN = True

# The SPE registers a vcpu's saved guest context (Vcpu.sysregs) may name, by the key's upper-case
# spelling: an *_EL12 alias names the EL1 register it reaches.
CONTEXT_SPE_KEYS: dict[str, str] = {
    **{name: name for name in R.SPE_REGISTERS},
    **{alias: target for alias, (_, target) in R.EL12_ALIASES.items() if R.BY_NAME[target].kind == R.SPE_SAMPLING},
}


_DSB_BY_NAME: dict[str, Dsb] = {option.value: option for option in Dsb}
_ELS = frozenset({0, 1, 2})  # the exception levels the model has

# The kinds of event the CPU puts in the trace, one per event, as module names (CONTRIBUTING.md, Speed: Python 3.11's slow enum member lookup).
_MRS, _MSR, _TRAP, _TRAP_EL3, _UNDEF = Kind.MRS, Kind.MSR, Kind.TRAP, Kind.TRAP_EL3, Kind.UNDEF
_ISB, _DSB, _EXCEPTION, _ERET = Kind.ISB, Kind.DSB, Kind.EXCEPTION, Kind.ERET
_GUEST, _EXIT, _CONTEXT, _NOTE = Kind.GUEST, Kind.EXIT, Kind.CONTEXT, Kind.NOTE

# MDCR_EL2.E2PB [13:12] as a mask and a shift: the access path reads the field at every buffer access.
_E2PB_MASK, _E2PB_LSB = MDCR_E2PB.mask, MDCR_E2PB.lsb


class Outcome(enum.Enum):
    """How an MRS or MSR ended."""

    OK = "ok"  # completed
    TRAP = "trap"  # trapped to EL2
    UNDEF = "undef"  # UNDEFINED
    TRAP_EL3 = "trap-el3"  # trapped to EL3


# An access's outcome, from the kind of the event it put in the trace.
_OUTCOMES = {
    _MRS: Outcome.OK, _MSR: Outcome.OK, _TRAP: Outcome.TRAP, _TRAP_EL3: Outcome.TRAP_EL3, _UNDEF: Outcome.UNDEF,
}


@attrs.frozen
class Access:
    """The outcome of an MRS/MSR: completed, trapped to EL2 or EL3, or UNDEFINED (`reason` says why, for a reader)."""

    outcome: Outcome
    register: str
    value: int = 0
    reason: str = ""


def _check_value(register: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"Cannot write {value!r} to {register} because a system register value is an int"
        raise ModelError(msg)
    if not 0 <= value <= MASK64:
        msg = f"Cannot write {value:#x} to {register} because it does not fit in 64 bits"
        raise ModelError(msg)
    return value


@attrs.frozen
class _Decoded:
    """What a CPU's features decide about its registers, worked out once per set of features: an
    access then only looks them up, and a new CPU with features seen before costs nothing more."""

    res0: Mapping[str, int]  # each register's RES0 bits
    reach: tuple[Mapping[str, tuple[str, str]], ...]  # from EL0, EL1, EL2: the register a name reaches, or ('', why not)
    reach_e2h: Mapping[str, tuple[str, str]]  # the same from EL2 with HCR_EL2.E2H in effect
    el3_trapped: frozenset[str]  # the registers MDCR_EL3.NSPB traps to EL3, from EL1 and EL2
    read_only: frozenset[str]  # the registers an MSR cannot write (UNDEFINED)


@functools.cache
def _decoded(features: Features) -> _Decoded:
    absent = {r.name: f"{r.name} needs {r.needs.name}, which this CPU does not implement"
              for r in R.REGISTERS if not r.implemented(features)}

    def reached(name: str, el: int, e2h: bool) -> tuple[str, str]:
        """The register `name` reaches from `el` with HCR_EL2.E2H in effect `e2h`, or ('', why) when it is UNDEFINED."""
        if name in R.EL12_ALIASES:
            target = R.EL12_ALIASES[name][1]
            if el != 2 or not e2h:
                return "", f"{name} needs EL2 with HCR_EL2.E2H=1"
        elif el == 2 and name in R.VHE_EL2_TWIN and e2h:
            target = R.VHE_EL2_TWIN[name]
        else:
            target = name
        if target in absent:
            return "", absent[target]
        reg = R.BY_NAME[target]
        if el < reg.min_el:
            return "", f"{target} is not accessible from EL{el}"
        return target, ""

    return _Decoded(
        res0={r.name: r.res0_mask(features) for r in R.REGISTERS},
        reach=tuple({name: reached(name, el, False) for name in R.ALL_NAMES} for el in (0, 1, 2)),
        reach_e2h={name: reached(name, 2, True) for name in R.ALL_NAMES},
        # MDCR_EL3.NSPB gives the buffer to another Security state: every SPE register but
        # PMBIDR_EL1 traps to EL3, from EL1 and EL2.
        el3_trapped=frozenset(
            r.name for r in R.REGISTERS
            if features.spe_owned_by_higher_el and r.name != "PMBIDR_EL1" and r.kind in (R.SPE_SAMPLING, R.SPE_BUFFER)
        ),
        read_only=frozenset(r.name for r in R.REGISTERS if not r.writable),
    )


class CPU(Profiling):
    """One PE. Code acts on it through `mrs`, `msr`, barriers, and exception entry and return.

    Register writes are seen by later reads at once, but take effect on the PE's behaviour
    (traps, sampling, translation) for certain only after a context synchronisation event;
    before that the chooser decides each time it matters.
    """

    def __init__(
        self,
        features: Features,
        chooser: Chooser,
        memory: Memory | None = None,
        *,
        eis: bool = False,
        eos: bool = False,
    ) -> None:
        self.features = features
        # SCTLR_EL2.EIS / EOS: with FEAT_ExS, whether exception entry to / return from EL2 is a
        # context synchronisation event; without FEAT_ExS both always are.
        self.entry_synchronises = eis or not features.exs
        self.return_synchronises = eos or not features.exs
        self.chooser = chooser
        self.memory = memory if memory is not None else Memory.standard()
        self.trace = Trace()
        self.el = 2
        self.actor = BOOT
        self.vcpu = -1
        self.records: list[Record] = []
        self._pending: list[Record] = []  # collected, not yet translated
        self._in_flight: list[Record] = []  # translated by a PSB, writes not yet completed by a DSB
        self._epoch = 0  # context synchronisation events so far
        self._stale: dict[str, int] = {}
        self._disabled_by: Actor | None = None  # who last disabled the buffer
        self.buffer_irq = False
        self._has_spe = features.has_spe
        self._buffer_usable = features.has_spe and not features.spe_owned_by_higher_el
        decoded = _decoded(features)
        self._res0 = decoded.res0
        self._reach = decoded.reach
        self._reach_e2h = decoded.reach_e2h
        self._el3_trapped = decoded.el3_trapped
        self._read_only = decoded.read_only
        self._vhe = features.vhe
        self.guest_entries = 0  # entries into a guest so far, counted by run_guest (the harness checks vcpu_run enters once)
        self._regs: dict[str, int] = reset_values(features)
        # HDFGRTR_EL2's traps act at EL1 with FEAT_FGT, where EL3 is absent or lets them (FGTEn).
        self._fgt = features.fgt and (not features.el3 or SCR_EL3_FGTEN)
        self._fgt_fields = {
            register: (R.BY_NAME["HDFGRTR_EL2"].field(name).mask, trap_when, name)
            for register, (name, trap_when) in R.HDFGRTR_TRAPS.items()
        }

    # ----------------------------------------------------------------- register access

    def _e2h(self, hcr: int) -> bool:
        """HCR_EL2.E2H as it acts: RES0 without FEAT_VHE, where a 1 written there is kept but does nothing."""
        return bool(hcr & HCR_E2H) and self._vhe

    def _e2pb(self, mdcr: int) -> int:
        """MDCR_EL2.E2PB as it acts, given the MDCR_EL2 in effect; the reserved 0b01 behaves as an
        allocated value the chooser picks."""
        e2pb = (mdcr & _E2PB_MASK) >> _E2PB_LSB
        if e2pb == E2PB_RESERVED:
            return self.chooser.reserved_as("MDCR_EL2", "E2PB", E2PB_ALLOCATED)
        return e2pb

    def _trapped(self, register: str, read: bool) -> str:
        """Why an access to `register` from EL1 traps to EL2 under the HDFGRTR_EL2 and MDCR_EL2 in
        effect, or ''. The fine-grained read trap comes first, as in the pseudocode (J1)."""
        if read and self._fgt and register in self._fgt_fields:
            mask, trap_when, field = self._fgt_fields[register]
            if bool(self._effective("HDFGRTR_EL2") & mask) == bool(trap_when):
                return f"HDFGRTR_EL2.{field}={trap_when}"
        kind = R.BY_NAME[register].kind
        if kind == R.SPE_SAMPLING:
            if self._effective("MDCR_EL2") & MDCR_TPMS:
                return "MDCR_EL2.TPMS=1"
        elif register in E2PB_TRAPPED:
            e2pb = self._e2pb(self._effective("MDCR_EL2"))
            if e2pb in E2PB_TRAPPING:
                return f"MDCR_EL2.E2PB={e2pb:#04b}"
        return ""

    def _pmbidr(self) -> int:
        """PMBIDR_EL1 as the current EL reads it: P is 1 when the owning EL is higher than the reader's
        or the owning Security state differs (D24.7, PMBIDR_EL1.P)."""
        value = self._regs["PMBIDR_EL1"]
        if self.features.spe_owned_by_higher_el or (self.el < 2 and self._e2pb(self._effective("MDCR_EL2")) == E2PB_EL2):
            value |= PMBIDR_P
        return value

    def access(self, name: str | R.Encoding | int, value: int | None = None) -> Access:
        """Perform an MRS (value None) or MSR and say what happened; the trace records it."""
        kind, register, result, reason = self._access(name, value)
        return Access(_OUTCOMES[kind], register, result, reason)

    def mrs(self, name: str | R.Encoding | int) -> int:
        """Read a system register; an access that traps or is UNDEFINED reads as 0."""
        return self._access(name, None)[2]

    def msr(self, name: str | R.Encoding | int, value: int) -> None:
        """Write a system register."""
        if value is None:
            msg = f"Cannot write None to {name} because an MSR needs a value (use mrs to read)"
            raise ModelError(msg)
        self._access(name, value)

    def _access(self, name: str | R.Encoding | int, value: int | None) -> tuple[Kind, str, int, str]:
        """`access`, as the kind of the event it made and the other fields of its `Access`: mrs and
        msr, the common case, need no object."""
        if type(name) is not str or name not in R.ALL_NAMES:  # a name the model spells as given needs no lookup
            name = R.lookup(name)
        if value is not None and not (type(value) is int and 0 <= value <= MASK64):
            _check_value(name, value)
        # The register `name` reaches from the current EL, or ('', why) where it is UNDEFINED; E2H as it acts (_e2h).
        if self.el == 2 and self._regs["HCR_EL2"] & HCR_E2H and self._vhe:
            target, why = self._reach_e2h[name]
        else:
            target, why = self._reach[self.el][name]
        if not target:
            self.trace.add(self.actor, self.el, _UNDEF, register=name, name=name, value=value or 0,
                           where=why, vcpu=self.vcpu)
            return _UNDEF, name, 0, why
        trap = self._trapped(target, value is None) if self.el == 1 else ""
        if trap:
            self.trace.add(self.actor, self.el, _TRAP, register=target, name=name, value=value or 0,
                           where=trap, vcpu=self.vcpu)
            return _TRAP, target, 0, trap
        if target in self._el3_trapped:
            trap = "MDCR_EL3.NSPB gives the profiling buffer to another Security state"
            self.trace.add(self.actor, self.el, _TRAP_EL3, register=target, name=name, value=value or 0,
                           where=trap, vcpu=self.vcpu)
            return _TRAP_EL3, target, 0, trap
        if value is None:
            result = self._pmbidr() if target == "PMBIDR_EL1" else self._regs[target]
            if target == "MDCR_EL2" and MDCR_E2PB.get(result) == E2PB_RESERVED:
                # The reserved E2PB reads back UNKNOWN (K1.2.19): the chooser picks what this read sees.
                unknown = self.chooser.reserved_as("MDCR_EL2", "E2PB (read back)", E2PB_ANY)
                result = result & ~MDCR_E2PB.mask | MDCR_E2PB.put(unknown)
            self.trace.add(self.actor, self.el, _MRS, register=target, name=name, value=result,
                           vcpu=self.vcpu)
            return _MRS, target, result, ""
        if target in self._read_only:
            why = f"{target} is read-only"
            self.trace.add(self.actor, self.el, _UNDEF, register=target, name=name, value=value,
                           where=why, vcpu=self.vcpu)
            return _UNDEF, target, 0, why
        old = self._regs[target]
        if self._pending and (old ^ value) & RECORD_DEPENDENCIES.get(target, 0):
            self._decide_writes(Moment.MSR, f"msr {target}")
        self.trace.add(self.actor, self.el, _MSR, register=target, name=name, value=value, old=old,
                       res0=value & self._res0[target], vcpu=self.vcpu)
        # RES0 bits written as 1 are kept: the worst case, so a read-modify-write carries them on.
        self._regs[target] = value
        if target not in self._stale:
            self._stale[target] = old
        if target == "PMBLIMITR_EL1" and not value & PMBLIMITR_E:
            self._disabled_by = self.actor
            if self._in_flight:
                self._buffer_stopped(f"msr PMBLIMITR_EL1 <- {value:#x} by {self.actor}")
        elif target == "PMBPTR_EL1" and value != old and self._in_flight:
            self._buffer_stopped(f"msr PMBPTR_EL1 <- {value:#x} by {self.actor} (buffer memory reused)")
        return _MSR, target, value, ""

    def peek(self, register: str) -> int:
        """The latest value, with no event: for the harness and the rules, not for the code under test."""
        return self._regs[R.lookup(register)]

    def _effective(self, register: str) -> int:
        """The value the PE's behaviour uses now: chooser-decided while a write is unsynchronised."""
        new = self._regs[register]
        old = self._stale.get(register)
        if old is None or old == new:
            return new
        return new if self.chooser.write_visible(register, old, new) else old

    # ----------------------------------------------------------- synchronisation, barriers

    def _synchronise(self) -> None:
        """A context synchronisation event: every earlier write is in effect from here on."""
        self._stale.clear()
        self._epoch += 1
        if self._pending:
            self._discard_pending_if_disabled()

    def isb(self) -> None:
        """Instruction synchronisation barrier: every earlier register write is now in effect."""
        self.trace.add(self.actor, self.el, _ISB, vcpu=self.vcpu)
        self._synchronise()

    def dsb(self, domain: str | Dsb = Dsb.SY) -> None:
        """Data synchronisation barrier with option `domain` ("nsh", "ish", "osh", "sy", ..., or a `Dsb`).

        One that applies to loads and stores completes the writes of every record a PSB CSYNC
        translated (D17.9); the *ST and *LD forms do not.
        """
        option = _DSB_BY_NAME.get(domain) if isinstance(domain, str) else domain
        if not isinstance(option, Dsb):
            options = ", ".join(sorted(_DSB_BY_NAME))
            msg = f"Cannot issue dsb {domain!r} because that is not a DSB option (one of {options})"
            raise ModelError(msg)
        self.trace.add(self.actor, self.el, _DSB, dsb=option, vcpu=self.vcpu)
        if option.completes_records:
            self._complete_writes()

    def hint(self, imm: int) -> None:
        """HINT #imm: 17 is PSB CSYNC; other hints the model does not model are NOPs."""
        if imm == 17:
            self.psb_csync()

    def take_exception(self, to_el: int, actor: Actor, reason: str, *, from_guest: bool = False) -> None:
        """Exception entry to `to_el`: a context synchronisation event unless it enters EL2 with
        FEAT_ExS and SCTLR_EL2.EIS = 0."""
        if to_el not in _ELS:
            self._bad_el(to_el)
        if self._pending:
            self._decide_writes(Moment.GUEST_EXIT if from_guest else Moment.EXCEPTION_ENTRY, f"exception entry ({reason})")
        synchronises = to_el != 2 or self.entry_synchronises
        if synchronises:
            self._synchronise()
        self.el, self.actor = to_el, actor
        self.trace.add(actor, to_el, _EXCEPTION, where=reason, vcpu=self.vcpu, cse=synchronises,
                       guest_exit=from_guest)

    def eret(self, to_el: int, actor: Actor, reason: str = "", *, into_guest: bool = False) -> None:
        """Exception return to `to_el`: a context synchronisation event unless it returns from EL2
        with FEAT_ExS and SCTLR_EL2.EOS = 0."""
        if to_el not in _ELS:
            self._bad_el(to_el)
        if self._pending:
            self._decide_writes(Moment.ERET, f"eret ({reason})" if reason else "eret")
        synchronises = self.el != 2 or self.return_synchronises
        self.trace.add(self.actor, self.el, _ERET, where=reason, vcpu=self.vcpu, cse=synchronises,
                       into_guest=into_guest)
        if synchronises:
            self._synchronise()
        self.el, self.actor = to_el, actor

    @staticmethod
    def _bad_el(el: int) -> NoReturn:
        msg = f"Cannot move to EL{el} because the model has EL0, EL1 and EL2 only"
        raise ModelError(msg)

    # ------------------------------------------------------------------------ the guest

    def run_guest(self, vcpu: Vcpu) -> ExitReason:
        """ERET into the guest, run its program, take the exit back to EL2 (the job of __guest_enter).

        The hypervisor's own entry and exit code (__guest_enter restoring the guest's registers,
        the exit vector saving them) runs at EL2 and is sampled when the configuration in force
        says so: one sample each.
        """
        if self.el != 2:
            msg = f"Cannot enter the guest from EL{self.el} because only EL2 can ERET into a guest"
            raise ContractError("run_guest is called at EL2", msg)
        self.run_code(1, "hyp guest entry code")
        self.eret(1, guest(vcpu.vm), f"into guest {vcpu.vm}", into_guest=True)
        self.mark(_GUEST, f"vcpu {vcpu.index} running")
        self.guest_entries += 1
        exit_reason = ExitReason("irq")
        program, vcpu.program = vcpu.program, []
        for action in program:
            if isinstance(action, GuestCode):
                if action.el0:
                    self.el = 0  # guest user space: its own EL1<->EL0 transitions are the guest's business
                    self.run_code(action.samples, "guest user code")
                    self.el = 1
                else:
                    self.run_code(action.samples, "guest code")
            elif isinstance(action, GuestAccess):
                kind, register, _, _ = self._access(action.register, action.value if action.write else None)
                if kind is _TRAP or kind is _TRAP_EL3:
                    exit_reason = ExitReason("trap", register)
                    break
            else:
                exit_reason = ExitReason(action.reason)
                break
        self.take_exception(2, HYP, f"exit from guest {vcpu.vm}: {exit_reason.reason}", from_guest=True)
        self.mark(_EXIT, f"vcpu {vcpu.index} exited ({exit_reason.reason})")
        # What the guest could have been shown while it ran: its saved context as the entry left it.
        self.record_guest_context(vcpu, "while the guest ran")
        self.run_code(1, "hyp exit vector")
        return exit_reason

    def record_guest_context(self, vcpu: Vcpu, when: str) -> None:
        """Put in the trace, as CONTEXT events, every SPE register value the vcpu's saved guest
        context (`vcpu.sysregs`) holds now.

        That context is the guest's: KVM shows it to the guest when it emulates a trapped access,
        and to userspace through KVM_GET_ONE_REG. The rules judge these events, never the vcpu.
        Keys that name no SPE register, and values that are no 64-bit int, are not recorded.
        """
        for key, value in vcpu.sysregs.items():
            register = CONTEXT_SPE_KEYS.get(key.upper()) if isinstance(key, str) else None
            if register is None or isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MASK64:
                continue
            self.trace.add(self.actor, self.el, _CONTEXT, register=register, name=key, value=value,
                           where=when, vcpu=vcpu.index)

    def note(self, text: str) -> None:
        """Put a software step in the trace for the reader (no architectural effect)."""
        self.trace.add(self.actor, self.el, _NOTE, where=text, vcpu=self.vcpu)

    def mark(self, kind: Kind, text: str = "") -> Event:
        """Put a window marker (ENTRY, GUEST, EXIT, RETURN) in the trace."""
        return self.trace.add(self.actor, self.el, kind, where=text, vcpu=self.vcpu)
