"""The CPU: system registers with synchronisation, traps, UNDEFINED, VHE redirection, and SPE."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import attrs

from . import registers as R
from .chooser import Chooser, Moment
from .features import Features, id_aa64dfr0_el1
from .memory import RECORD_SIZE, Landing, Memory
from .trace import Event, Kind, Trace
from .vcpu import ContractError, ExitReason, GuestAccess, GuestCode, Vcpu

# Field masks the model's behaviour reads, each from the register table (register.field).
PMBLIMITR_E = R.field_mask("PMBLIMITR_EL1", "E")
PMBLIMITR_LIMIT = R.field_mask("PMBLIMITR_EL1", "LIMIT")
PMBSR_S = R.field_mask("PMBSR_EL1", "S")
PMBSR_EC = R.BY_NAME["PMBSR_EL1"].field("EC")
PMBSR_MSS = R.BY_NAME["PMBSR_EL1"].field("MSS")
PMBSR_EC_BUF = 0b000000  # PMBSR_EL1.EC: buffer management event
PMBSR_EC_FAULT_S1 = 0b100100  # PMBSR_EL1.EC: stage 1 data abort on write to buffer
PMBSR_EC_FAULT_S2 = 0b100101  # PMBSR_EL1.EC: stage 2 data abort on write to buffer
PMBSR_BSC_FULL = 0b000001  # PMBSR_EL1.MSS.BSC for EC=0: buffer filled
PMBIDR_P = R.field_mask("PMBIDR_EL1", "P")
PMBIDR_ALIGN_64 = 6  # PMBIDR_EL1.ALIGN: 2^6 = 64-byte aligned, matching the model's record size
MDCR_E2PB = R.BY_NAME["MDCR_EL2"].field("E2PB")
MDCR_TPMS = R.field_mask("MDCR_EL2", "TPMS")
HCR_VM = R.field_mask("HCR_EL2", "VM")
HCR_TGE = R.field_mask("HCR_EL2", "TGE")
HCR_E2H = R.field_mask("HCR_EL2", "E2H")
PMSCR_EL1_E0SPE = R.field_mask("PMSCR_EL1", "E0SPE")
PMSCR_EL1_E1SPE = R.field_mask("PMSCR_EL1", "E1SPE")
PMSCR_EL2_E0HSPE = R.field_mask("PMSCR_EL2", "E0HSPE")
PMSCR_EL2_E2SPE = R.field_mask("PMSCR_EL2", "E2SPE")
PMSICR_COUNT = R.BY_NAME["PMSICR_EL1"].field("COUNT")
E2PB_EL2 = 0b00  # MDCR_EL2.E2PB: buffer owned by EL2, EL1 accesses trap
E2PB_RESERVED = 0b01  # MDCR_EL2.E2PB: reserved; behaves as an allocated value (K1.2.19)
E2PB_EL1_TRAP = 0b10  # MDCR_EL2.E2PB: owned by EL1, EL1 accesses trap
E2PB_EL1 = 0b11  # MDCR_EL2.E2PB: owned by EL1, no trap
E2PB_ALLOCATED = (E2PB_EL2, E2PB_EL1_TRAP, E2PB_EL1)
# K1.2.19: after a direct write of a reserved value, "a subsequent read of the field returns an
# UNKNOWN value": any of the field's values.
E2PB_ANY = (E2PB_EL2, E2PB_RESERVED, E2PB_EL1_TRAP, E2PB_EL1)
# E2PB values under which EL1 accesses to PMBLIMITR/PMBPTR/PMBSR trap to EL2 (pseudocode: E2PB IN {'x0'}).
E2PB_TRAPPING = frozenset({E2PB_EL2, E2PB_EL1_TRAP})
# Buffer registers E2PB traps (PMBIDR_EL1 is not among them: only HDFGRTR_EL2.PMBIDR_EL1 traps it).
E2PB_TRAPPED = frozenset({"PMBLIMITR_EL1", "PMBPTR_EL1", "PMBSR_EL1"})
# PMSCR_EL2 reset: E0HSPE [0] and E2SPE [1] are architecturally UNKNOWN (D24.7); the model takes 1.
PMSCR_EL2_RESET = PMSCR_EL2_E0HSPE | PMSCR_EL2_E2SPE
# SCR_EL3.FGTEn [27]: where EL3 is implemented, the fine-grained traps of HDFGRTR_EL2 act only when
# it is 1 (D24.2.67: "either EL3 is not implemented or SCR_EL3.FGTEn == 1"). The model's firmware
# sets it, as Linux's boot protocol asks on FEAT_FGT CPUs (Documentation/arch/arm64/booting.rst).
SCR_EL3_FGTEN = True

MASK64 = R.MASK64

# Why the PE updated a register itself: the `name` of a HW event (and of the FULL event that stopped
# the buffer), so the rules can tell the host's own buffer events from the others.
HW_FULL = "full"  # PMBSR_EL1: the buffer filled (buffer management event, BSC full)
HW_FAULT = "fault"  # PMBSR_EL1: a record's write faulted
HW_COUNT = "count"  # PMSICR_EL1: the sample counter moved

# The bits of each register that a collected record's translation or the buffer's enable
# depends on: a write that changes none of them needs no decision about pending records.
RECORD_DEPENDENCIES: dict[str, int] = {
    "MDCR_EL2": MDCR_E2PB.mask,
    "HCR_EL2": HCR_VM | HCR_E2H | HCR_TGE,
    "PMBLIMITR_EL1": PMBLIMITR_E | PMBLIMITR_LIMIT,
    "PMBSR_EL1": PMBSR_S,
    **dict.fromkeys(
        ("VTTBR_EL2", "TTBR0_EL1", "TTBR1_EL1", "TCR_EL1", "TTBR0_EL2", "TTBR1_EL2", "TCR_EL2", "PMBPTR_EL1"),
        MASK64,
    ),
}

# The SPE registers a vcpu's saved guest context (Vcpu.sysregs) may name, by the key's upper-case
# spelling: an *_EL12 alias names the EL1 register it reaches.
CONTEXT_SPE_KEYS: dict[str, str] = {
    **{r.name: r.name for r in R.REGISTERS if r.kind in (R.SPE_SAMPLING, R.SPE_BUFFER)},
    **{alias: target for alias, (_, target) in R.EL12_ALIASES.items() if R.BY_NAME[target].kind == R.SPE_SAMPLING},
}

DSB_DOMAINS = frozenset({
    "sy", "st", "ld", "ish", "ishst", "ishld", "nsh", "nshst", "nshld", "osh", "oshst", "oshld",
})


def dsb_completes_records(domain: str) -> bool:
    """Whether `dsb domain` waits for the profiling buffer's writes.

    D17.9: the DSB after a PSB CSYNC "must apply to both loads and stores" (not the *ST or *LD
    forms), in a shareability domain that includes the PE: every domain does (NSH is the PE's own).
    """
    return not domain.endswith(("st", "ld"))


def reset_values(features: Features) -> dict[str, int]:
    """Every register's value when the model's CPU comes out of reset.

    Fields the Arm ARM leaves UNKNOWN at reset take the worst case where it matters
    (PMSCR_EL2.E0HSPE and E2SPE: 1, so EL2 is sampled until something writes them); the rest are 0.
    HDFGRTR_EL2 is 0 as well: UNKNOWN where EL3 is implemented (D24.2.67), but the boot code writes
    it before any EL1 code runs, as Linux's EL2 set-up does.
    """
    values = {r.name: 0 for r in R.REGISTERS}
    values["ID_AA64DFR0_EL1"] = id_aa64dfr0_el1(features)
    values["PMBIDR_EL1"] = PMBIDR_ALIGN_64
    if features.has_spe:
        values["PMSCR_EL2"] = PMSCR_EL2_RESET
    return values


class ModelError(ValueError):
    """The model was driven with input that cannot exist (bad register, value or EL)."""


@attrs.define(slots=True)
class Record:
    """A profiling record: who was sampled, and what became of it."""

    id: int
    actor: str
    el: int
    collected_at: int
    epoch: int = 0  # how many context synchronisation events came before its collection
    fate: str = "pending"  # pending, in flight, written, discarded, faulted, full
    landing: Landing | None = None
    discarded_by: str = ""


@attrs.frozen
class Access:
    """The outcome of an MRS/MSR: completed, trapped to EL2, or UNDEFINED."""

    outcome: Literal["ok", "trap", "undef", "trap-el3"]
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


class CPU:
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
        self.actor = "boot"
        self.vcpu = -1
        self.records: list[Record] = []
        self._pending: list[Record] = []  # collected, not yet translated
        self._in_flight: list[Record] = []  # translated by a PSB, writes not yet completed by a DSB
        self._epoch = 0  # context synchronisation events so far
        self._stale: dict[str, int] = {}
        self._disabled_by = ""
        self.buffer_irq = False
        # What the features decide about each register, worked out once: the per-access cost stays small.
        self._res0 = {r.name: r.res0_mask(features) for r in R.REGISTERS}
        self._absent = {r.name: f"{r.name} needs {r.needs.name}, which this CPU does not implement"
                        for r in R.REGISTERS if not r.implemented(features)}
        self._regs: dict[str, int] = reset_values(features)
        # HDFGRTR_EL2's traps act at EL1 with FEAT_FGT, where EL3 is absent or lets them (FGTEn).
        self._fgt = features.fgt and (not features.el3 or SCR_EL3_FGTEN)
        self._fgt_fields = {
            register: (R.BY_NAME["HDFGRTR_EL2"].field(name).mask, trap_when, name)
            for register, (name, trap_when) in R.HDFGRTR_TRAPS.items()
        }

    # ----------------------------------------------------------------- register access

    def _resolve(self, name: str) -> tuple[str, str]:
        """The register `name` reaches from the current EL, or ('', why) when it is UNDEFINED."""
        if name in R.EL12_ALIASES:
            target = R.EL12_ALIASES[name][1]
            if self.el != 2 or not self._e2h(self._regs["HCR_EL2"]):
                return "", f"{name} needs EL2 with HCR_EL2.E2H=1"
        elif self.el == 2 and name in R.VHE_EL2_TWIN and self._e2h(self._regs["HCR_EL2"]):
            target = R.VHE_EL2_TWIN[name]
        else:
            target = name
        if target in self._absent:
            return "", self._absent[target]
        reg = R.BY_NAME[target]
        if self.el < reg.min_el:
            return "", f"{target} is not accessible from EL{self.el}"
        return target, ""

    def _e2h(self, hcr: int) -> bool:
        """HCR_EL2.E2H as it acts: RES0 without FEAT_VHE, where a 1 written there is kept but does nothing."""
        return bool(hcr & HCR_E2H) and self.features.vhe

    def _e2pb(self) -> int:
        """MDCR_EL2.E2PB as it acts now; the reserved 0b01 behaves as an allocated value the chooser picks."""
        e2pb = MDCR_E2PB.get(self._effective("MDCR_EL2"))
        if e2pb == E2PB_RESERVED:
            return self.chooser.reserved_as("MDCR_EL2", "E2PB", E2PB_ALLOCATED)
        return e2pb

    def _trapped(self, register: str, read: bool) -> str:
        """Why an EL1 access to `register` traps to EL2 under the HDFGRTR_EL2 and MDCR_EL2 in
        effect, or ''. The fine-grained read trap comes first, as in the pseudocode (J1)."""
        if self.el != 1:
            return ""
        if read and self._fgt and register in self._fgt_fields:
            mask, trap_when, field = self._fgt_fields[register]
            if bool(self._effective("HDFGRTR_EL2") & mask) == bool(trap_when):
                return f"HDFGRTR_EL2.{field}={trap_when}"
        kind = R.BY_NAME[register].kind
        if kind == R.SPE_SAMPLING:
            if self._effective("MDCR_EL2") & MDCR_TPMS:
                return "MDCR_EL2.TPMS=1"
        elif register in E2PB_TRAPPED:
            e2pb = self._e2pb()
            if e2pb in E2PB_TRAPPING:
                return f"MDCR_EL2.E2PB={e2pb:#04b}"
        return ""

    def _trapped_to_el3(self, register: str) -> str:
        """Why an access to `register` traps to EL3 (MDCR_EL3.NSPB gives the buffer to another
        Security state: every SPE register but PMBIDR_EL1, from EL1 and EL2), or ''."""
        if (
            self.features.spe_owned_by_higher_el
            and register != "PMBIDR_EL1"
            and R.BY_NAME[register].kind in (R.SPE_SAMPLING, R.SPE_BUFFER)
        ):
            return "MDCR_EL3.NSPB gives the profiling buffer to another Security state"
        return ""

    def _pmbidr(self) -> int:
        """PMBIDR_EL1 as the current EL reads it: P is 1 when the owning EL is higher than the reader's
        or the owning Security state differs (D24.7, PMBIDR_EL1.P)."""
        value = self._regs["PMBIDR_EL1"]
        if self.features.spe_owned_by_higher_el or (self.el < 2 and self._e2pb() == E2PB_EL2):
            value |= PMBIDR_P
        return value

    def access(self, name: str | R.Encoding | int, value: int | None = None) -> Access:
        """Perform an MRS (value None) or MSR and say what happened; the trace records it."""
        name = R.lookup(name)
        if value is not None:
            _check_value(name, value)
        target, why = self._resolve(name)
        if not target:
            self.trace.add(self.actor, self.el, Kind.UNDEF, register=name, name=name, value=value or 0,
                           where=why, vcpu=self.vcpu)
            return Access("undef", name, reason=why)
        trap = self._trapped(target, value is None)
        if trap:
            self.trace.add(self.actor, self.el, Kind.TRAP, register=target, name=name, value=value or 0,
                           where=trap, vcpu=self.vcpu)
            return Access("trap", target, reason=trap)
        trap = self._trapped_to_el3(target)
        if trap:
            self.trace.add(self.actor, self.el, Kind.TRAP_EL3, register=target, name=name, value=value or 0,
                           where=trap, vcpu=self.vcpu)
            return Access("trap-el3", target, reason=trap)
        reg = R.BY_NAME[target]
        if value is None:
            result = self._pmbidr() if target == "PMBIDR_EL1" else self._regs[target]
            if target == "MDCR_EL2" and MDCR_E2PB.get(result) == E2PB_RESERVED:
                # The reserved E2PB reads back UNKNOWN (K1.2.19): the chooser picks what this read sees.
                unknown = self.chooser.reserved_as("MDCR_EL2", "E2PB (read back)", E2PB_ANY)
                result = result & ~MDCR_E2PB.mask | MDCR_E2PB.put(unknown)
            self.trace.add(self.actor, self.el, Kind.MRS, register=target, name=name, value=result,
                           vcpu=self.vcpu)
            return Access("ok", target, result)
        if not reg.writable:
            why = f"{target} is read-only"
            self.trace.add(self.actor, self.el, Kind.UNDEF, register=target, name=name, value=value,
                           where=why, vcpu=self.vcpu)
            return Access("undef", target, reason=why)
        old = self._regs[target]
        if (old ^ value) & RECORD_DEPENDENCIES.get(target, 0):
            self._decide_writes(Moment.MSR, f"msr {target}")
        self.trace.add(self.actor, self.el, Kind.MSR, register=target, name=name, value=value, old=old,
                       res0=value & self._res0[target], vcpu=self.vcpu)
        # RES0 bits written as 1 are kept: the worst case, so a read-modify-write carries them on.
        self._regs[target] = value
        if target not in self._stale:
            self._stale[target] = old
        if target == "PMBLIMITR_EL1" and not value & PMBLIMITR_E:
            self._disabled_by = self.actor
            self._buffer_stopped(f"msr PMBLIMITR_EL1 <- {value:#x} by {self.actor}")
        elif target == "PMBPTR_EL1" and value != old:
            self._buffer_stopped(f"msr PMBPTR_EL1 <- {value:#x} by {self.actor} (buffer memory reused)")
        return Access("ok", target, value)

    def mrs(self, name: str | R.Encoding | int) -> int:
        """Read a system register; an access that traps or is UNDEFINED reads as 0."""
        return self.access(name).value

    def msr(self, name: str | R.Encoding | int, value: int) -> None:
        """Write a system register."""
        if value is None:
            msg = f"Cannot write None to {name} because an MSR needs a value (use mrs to read)"
            raise ModelError(msg)
        self.access(name, value)

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
        if self._pending and not self._regs["PMBLIMITR_EL1"] & PMBLIMITR_E:
            self._discard(self._pending, "buffer disabled")
            self._pending = []

    def isb(self) -> None:
        """Instruction synchronisation barrier: every earlier register write is now in effect."""
        self.trace.add(self.actor, self.el, Kind.ISB, vcpu=self.vcpu)
        self._synchronise()

    def dsb(self, domain: str = "sy") -> None:
        """Data synchronisation barrier over `domain` (nsh, ish, osh, sy, ...).

        One that applies to loads and stores completes the writes of every record a PSB CSYNC
        translated (D17.9); the *ST and *LD forms do not.
        """
        if domain not in DSB_DOMAINS:
            options = ", ".join(sorted(DSB_DOMAINS))
            msg = f"Cannot issue dsb {domain!r} because that is not a DSB option (one of {options})"
            raise ModelError(msg)
        self.trace.add(self.actor, self.el, Kind.DSB, where=domain, vcpu=self.vcpu)
        if self._in_flight and dsb_completes_records(domain):
            for rec in self._in_flight:
                rec.fate = "written"
            self._in_flight = []

    def psb_csync(self) -> None:
        """PSB CSYNC (hint #17): synchronise the profiling operations of every instruction before
        the last context synchronisation event (D17.9).

        Those records are translated now, with the registers in force now, and their writes
        started; later register writes cannot change where they land (D17.9 I_MLGHW), and a DSB
        completes them. Records collected after the last context synchronisation event are not
        guaranteed to be synchronised: the chooser says how many of them the PE writes anyway.
        """
        self.trace.add(self.actor, self.el, Kind.PSB, vcpu=self.vcpu)
        if not self.features.has_spe:
            return  # a hint: a NOP without SPE
        synchronised = [r for r in self._pending if r.epoch < self._epoch]
        late = [r for r in self._pending if r.epoch >= self._epoch]
        if late:
            count = self.chooser.records_to_write(len(late), Moment.PSB, "psb csync, for records collected after the last context synchronisation event")
            count = max(0, min(count, len(late)))
            synchronised += late[:count]
            late = late[count:]
        self._pending = late
        for rec in synchronised:
            if self._write(rec) and rec.fate == "written":
                rec.fate = "in flight"
                self._in_flight.append(rec)

    def hint(self, imm: int) -> None:
        """HINT #imm: 17 is PSB CSYNC; other hints the model does not model are NOPs."""
        if imm == 17:
            self.psb_csync()

    def take_exception(self, to_el: int, actor: str, reason: str, *, from_guest: bool = False) -> None:
        """Exception entry to `to_el`: a context synchronisation event unless it enters EL2 with
        FEAT_ExS and SCTLR_EL2.EIS = 0."""
        self._check_el(to_el)
        self._decide_writes(Moment.GUEST_EXIT if from_guest else Moment.EXCEPTION_ENTRY, f"exception entry ({reason})")
        synchronises = to_el != 2 or self.entry_synchronises
        if synchronises:
            self._synchronise()
        self.el, self.actor = to_el, actor
        self.trace.add(actor, to_el, Kind.EXCEPTION, where=reason, vcpu=self.vcpu, cse=synchronises,
                       guest_exit=from_guest)

    def eret(self, to_el: int, actor: str, reason: str = "", *, into_guest: bool = False) -> None:
        """Exception return to `to_el`: a context synchronisation event unless it returns from EL2
        with FEAT_ExS and SCTLR_EL2.EOS = 0."""
        self._check_el(to_el)
        self._decide_writes(Moment.ERET, f"eret ({reason})" if reason else "eret")
        synchronises = self.el != 2 or self.return_synchronises
        self.trace.add(self.actor, self.el, Kind.ERET, where=reason, vcpu=self.vcpu, cse=synchronises,
                       into_guest=into_guest)
        if synchronises:
            self._synchronise()
        self.el, self.actor = to_el, actor

    @staticmethod
    def _check_el(el: int) -> None:
        if el not in (0, 1, 2):
            msg = f"Cannot move to EL{el} because the model has EL0, EL1 and EL2 only"
            raise ModelError(msg)

    # --------------------------------------------------------------------- sampling

    def sampling_enabled(self) -> bool:
        """Whether code running now at the current EL is sampled (D17.4, StatisticalProfilingEnabled())."""
        f = self.features
        if not f.has_spe or f.spe_owned_by_higher_el:
            return False
        if not self._effective("PMBLIMITR_EL1") & PMBLIMITR_E:
            return False
        if self._effective("PMBSR_EL1") & PMBSR_S:
            return False
        owner_el = 2 if self._e2pb() == E2PB_EL2 else 1
        if self.el > owner_el:
            return False  # never sampled above the owning EL: an EL1-owned buffer is idle at EL2
        hcr = self._effective("HCR_EL2")
        tge = bool(hcr & HCR_TGE)
        if owner_el == 1 and tge and self.el < 2:
            return False  # with TGE = 1 the EL1&0 regime is not in use
        if self.el == 2:
            return bool(self._effective("PMSCR_EL2") & PMSCR_EL2_E2SPE)
        if self.el == 1:
            return bool(self._effective("PMSCR_EL1") & PMSCR_EL1_E1SPE)
        if self._e2h(hcr) and tge:
            return bool(self._effective("PMSCR_EL2") & PMSCR_EL2_E0HSPE)
        return bool(self._effective("PMSCR_EL1") & PMSCR_EL1_E0SPE)

    def run_code(self, samples: int, what: str = "") -> list[Record]:
        """Code runs at the current EL; if sampling is on, `samples` records are collected."""
        if samples < 0:
            msg = f"Cannot run code with {samples} samples because the count cannot be negative"
            raise ModelError(msg)
        self.trace.add(self.actor, self.el, Kind.CODE, value=samples, where=what, vcpu=self.vcpu)
        if not samples or not self.sampling_enabled():
            return []
        new = []
        for _ in range(samples):
            rec = Record(len(self.records), self.actor, self.el, len(self.trace), self._epoch)
            self.records.append(rec)
            self._pending.append(rec)
            self.trace.add(self.actor, self.el, Kind.RECORD, record=rec.id, vcpu=self.vcpu)
            new.append(rec)
        # PMSICR_EL1.COUNT moves with every sample taken (its exact value is the PE's business).
        count = (PMSICR_COUNT.get(self._regs["PMSICR_EL1"]) + samples) & PMSICR_COUNT.mask
        self._hw_update("PMSICR_EL1", (self._regs["PMSICR_EL1"] & ~PMSICR_COUNT.mask) | count, "sample counter",
                        HW_COUNT)
        return new

    # ------------------------------------------------------------- the profiling buffer

    @property
    def pending_records(self) -> int:
        """How many collected records are still inside the PE."""
        return len(self._pending)

    def _decide_writes(self, moment: Moment, detail: str) -> None:
        """Something the pending records depend on is about to change: the chooser says how many go first."""
        if self._pending:
            count = self.chooser.records_to_write(len(self._pending), moment, detail)
            writing, self._pending = self._pending[: max(0, count)], self._pending[max(0, count):]
            for rec in writing:
                self._write(rec)

    def _discard(self, records: list[Record], why: str, by: str | None = None) -> None:
        """Discard `records`: the event's `owner` names who stopped the buffer (NO-LOSS reads it)."""
        by = self._disabled_by if by is None else by
        for rec in records:
            rec.fate, rec.discarded_by = "discarded", by
            self.trace.add("pe", self.el, Kind.DISCARD, record=rec.id, where=f"{why} by {by or 'nobody'}",
                           vcpu=self.vcpu, owner=by)

    def _buffer_stopped(self, detail: str) -> None:
        """The buffer was disabled or its pointer moved while PSB-started writes had not completed:
        each is written or discarded, as the chooser says (D17.9.1 R_SXWCP)."""
        if not self._in_flight:
            return
        count = self.chooser.records_to_write(len(self._in_flight), Moment.BUFFER_STOPPED, detail)
        count = max(0, min(count, len(self._in_flight)))
        for rec in self._in_flight[:count]:
            rec.fate = "written"
        self._discard(self._in_flight[count:], "write not completed (no DSB) when the buffer was stopped", self.actor)
        self._in_flight = []

    def _hw_update(self, register: str, value: int, why: str, cause: str, record: int = -1) -> None:
        """The PE updates a register itself: in effect at once, and an event for the rules."""
        self._regs[register] = value
        self._stale.pop(register, None)
        self.trace.add("pe", self.el, Kind.HW, register=register, name=cause, value=value, where=why,
                       record=record, vcpu=self.vcpu)

    def _stop_buffer(self, ec: int, mss: int, why: str, cause: str, rec: Record) -> None:
        value = self._regs["PMBSR_EL1"] | PMBSR_S | PMBSR_EC.put(ec) | PMBSR_MSS.put(mss)
        self.buffer_irq = True
        self._hw_update("PMBSR_EL1", value, why, cause, rec.id)

    def _write(self, rec: Record) -> bool:
        """Translate and write one record through the regime that owns the buffer now; False if it was not written."""
        if not self._effective("PMBLIMITR_EL1") & PMBLIMITR_E:
            self._discard([rec], "buffer disabled")
            return False
        if self._effective("PMBSR_EL1") & PMBSR_S:
            rec.fate = "full"
            self.trace.add("pe", self.el, Kind.FULL, record=rec.id, where="buffer stopped (PMBSR_EL1.S=1)",
                           vcpu=self.vcpu)
            return False
        ptr = self._effective("PMBPTR_EL1")
        limit = self._effective("PMBLIMITR_EL1") & PMBLIMITR_LIMIT
        if ptr + RECORD_SIZE > limit:
            rec.fate = "full"
            self._stop_buffer(PMBSR_EC_BUF, PMBSR_BSC_FULL, "buffer full", HW_FULL, rec)
            self.trace.add("pe", self.el, Kind.FULL, record=rec.id, name=HW_FULL, where="buffer full",
                           vcpu=self.vcpu)
            return False
        landing = self.translate(ptr)
        rec.landing = landing
        if landing.fault:
            rec.fate = "faulted"
            ec = PMBSR_EC_FAULT_S1 if landing.fault == "stage 1" else PMBSR_EC_FAULT_S2
            self._stop_buffer(ec, 0, f"{landing.fault} fault", HW_FAULT, rec)
            self.trace.add("pe", self.el, Kind.FAULT, record=rec.id, where=str(landing), vcpu=self.vcpu)
            return False
        rec.fate = "written"
        self.memory.store(landing, RECORD_SIZE)
        self._regs["PMBPTR_EL1"] = ptr + RECORD_SIZE
        self._stale.pop("PMBPTR_EL1", None)
        self.trace.add("pe", self.el, Kind.WRITE, record=rec.id, register="PMBPTR_EL1",
                       value=ptr + RECORD_SIZE, where=str(landing), vcpu=self.vcpu, owner=landing.owner)
        return True

    def translate(self, va: int) -> Landing:
        """Translate a buffer address through the regime that owns the buffer now (MDCR_EL2.E2PB, E2H)."""
        hcr = self._effective("HCR_EL2")
        upper = bool(va >> 63)
        if self._e2pb() != E2PB_EL2:
            reg = "TTBR1_EL1" if upper else "TTBR0_EL1"
            ttbr = self._effective(reg)
            regime = f"EL1&0 stage 1 ({reg}={ttbr:#x})"
            stage2: int | None = None
            if hcr & HCR_VM:
                stage2 = self._effective("VTTBR_EL2")
                regime += f" + stage 2 (VTTBR_EL2={stage2:#x})"
            return self.memory.walk(va, ttbr, stage2, regime)
        if self._e2h(hcr):
            reg = "TTBR1_EL2" if upper else "TTBR0_EL2"
            ttbr = self._effective(reg)
            return self.memory.walk(va, ttbr, None, f"EL2&0 stage 1 ({reg}={ttbr:#x})")
        ttbr = self._effective("TTBR0_EL2")
        regime = f"EL2 stage 1 (TTBR0_EL2={ttbr:#x})"
        if upper:
            # D8.1.2: the EL2 regime without E2H has a single, lower VA range.
            return Landing(0, "", "stage 1", regime + ", which has no upper VA range")
        return self.memory.walk(va, ttbr, None, regime)

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
        guest = f"guest{vcpu.vm}"
        self.run_code(1, "hyp guest entry code")
        self.eret(1, guest, f"into guest {vcpu.vm}", into_guest=True)
        self.mark(Kind.GUEST, f"vcpu {vcpu.index} running")
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
                outcome = self.access(action.register, action.value if action.write else None)
                if outcome.outcome in ("trap", "trap-el3"):
                    exit_reason = ExitReason("trap", outcome.register)
                    break
            else:
                exit_reason = ExitReason(action.reason)
                break
        self.take_exception(2, "hyp", f"exit from guest {vcpu.vm}: {exit_reason.reason}", from_guest=True)
        self.mark(Kind.EXIT, f"vcpu {vcpu.index} exited ({exit_reason.reason})")
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
            self.trace.add(self.actor, self.el, Kind.CONTEXT, register=register, name=key, value=value,
                           where=when, vcpu=vcpu.index)

    def note(self, text: str) -> None:
        """Put a software step in the trace for the reader (no architectural effect)."""
        self.trace.add(self.actor, self.el, Kind.NOTE, where=text, vcpu=self.vcpu)

    def mark(self, kind: Kind, text: str = "") -> Event:
        """Put a window marker (ENTRY, GUEST, EXIT, RETURN) in the trace."""
        return self.trace.add(self.actor, self.el, kind, where=text, vcpu=self.vcpu)

    def records_of(self, actors: Iterable[str]) -> list[Record]:
        """The records collected while one of `actors` was running."""
        wanted = set(actors)
        return [r for r in self.records if r.actor in wanted]
