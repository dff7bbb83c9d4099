"""The CPU: system registers with synchronisation, traps, UNDEFINED, VHE redirection, and SPE."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import attrs

from . import registers as R
from .chooser import Chooser
from .features import Features, id_aa64dfr0_el1
from .memory import RECORD_SIZE, Landing, Memory
from .trace import Kind, Trace
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
E2PB_EL2 = 0b00  # MDCR_EL2.E2PB: buffer owned by EL2, EL1 accesses trap
E2PB_EL1_TRAP = 0b10  # MDCR_EL2.E2PB: owned by EL1, EL1 accesses trap
E2PB_EL1 = 0b11  # MDCR_EL2.E2PB: owned by EL1, no trap

MASK64 = R.MASK64

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

DSB_DOMAINS = frozenset({
    "sy", "st", "ld", "ish", "ishst", "ishld", "nsh", "nshst", "nshld", "osh", "oshst", "oshld",
})



class ModelError(ValueError):
    """The model was driven with input that cannot exist (bad register, value or EL)."""


@attrs.define(slots=True)
class Record:
    """A profiling record: who was sampled, and what became of it."""

    id: int
    actor: str
    el: int
    collected_at: int
    fate: str = "pending"  # pending, written, discarded, faulted, full
    landing: Landing | None = None
    discarded_by: str = ""


@attrs.frozen
class Access:
    """The outcome of an MRS/MSR: completed, trapped to EL2, or UNDEFINED."""

    outcome: Literal["ok", "trap", "undef"]
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

    def __init__(self, features: Features, chooser: Chooser, memory: Memory | None = None) -> None:
        self.features = features
        self.chooser = chooser
        self.memory = memory if memory is not None else Memory.standard()
        self.trace = Trace()
        self.el = 2
        self.actor = "boot"
        self.vcpu = -1
        self.records: list[Record] = []
        self._pending: list[Record] = []
        self._stale: dict[str, int] = {}
        self._disabled_by = ""
        self.buffer_irq = False
        # What the features decide about each register, worked out once: the per-access cost stays small.
        self._res0 = {r.name: r.res0_mask(features) for r in R.REGISTERS}
        self._absent = {r.name: f"{r.name} needs {r.needs.name}, which this CPU does not implement"
                        for r in R.REGISTERS if not r.implemented(features)}
        self._regs: dict[str, int] = {r.name: 0 for r in R.REGISTERS}
        self._regs["ID_AA64DFR0_EL1"] = id_aa64dfr0_el1(features)
        self._regs["PMBIDR_EL1"] = (PMBIDR_P if features.spe_owned_by_higher_el else 0) | PMBIDR_ALIGN_64

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
        if (
            reg.kind == R.SPE_BUFFER
            and target != "PMBIDR_EL1"
            and self.features.spe_owned_by_higher_el
        ):
            return "", "PMBIDR_EL1.P=1: the profiling buffer belongs to a higher exception level"
        return target, ""

    def _e2h(self, hcr: int) -> bool:
        """HCR_EL2.E2H as it acts: RES0 without FEAT_VHE, where a 1 written there is kept but does nothing."""
        return bool(hcr & HCR_E2H) and self.features.vhe

    def _trapped(self, register: str) -> str:
        """Why an EL1 access to `register` traps to EL2 under the MDCR_EL2 in effect, or ''."""
        if self.el != 1:
            return ""
        kind = R.BY_NAME[register].kind
        if kind == R.SPE_SAMPLING:
            if self._effective("MDCR_EL2") & MDCR_TPMS:
                return "MDCR_EL2.TPMS=1"
        elif kind == R.SPE_BUFFER:
            e2pb = MDCR_E2PB.get(self._effective("MDCR_EL2"))
            if e2pb != E2PB_EL1:
                return f"MDCR_EL2.E2PB={e2pb:#04b}"
        return ""

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
        trap = self._trapped(target)
        if trap:
            self.trace.add(self.actor, self.el, Kind.TRAP, register=target, name=name, value=value or 0,
                           where=trap, vcpu=self.vcpu)
            return Access("trap", target, reason=trap)
        reg = R.BY_NAME[target]
        if value is None:
            result = self._regs[target]
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
            self._decide_writes(f"msr {target}")
        self.trace.add(self.actor, self.el, Kind.MSR, register=target, name=name, value=value, old=old,
                       res0=value & self._res0[target], vcpu=self.vcpu)
        # RES0 bits written as 1 are kept: the worst case, so a read-modify-write carries them on.
        self._regs[target] = value
        if target not in self._stale:
            self._stale[target] = old
        if target == "PMBLIMITR_EL1" and not value & PMBLIMITR_E:
            self._disabled_by = self.actor
        return Access("ok", target, value)

    def mrs(self, name: str | R.Encoding | int) -> int:
        """Read a system register; an access that traps or is UNDEFINED reads as 0."""
        return self.access(name).value

    def msr(self, name: str | R.Encoding | int, value: int) -> None:
        """Write a system register."""
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
        self._stale.clear()
        if self._pending and not self._regs["PMBLIMITR_EL1"] & PMBLIMITR_E:
            self._discard_pending()

    def isb(self) -> None:
        """Instruction synchronisation barrier: every earlier register write is now in effect."""
        self.trace.add(self.actor, self.el, Kind.ISB, vcpu=self.vcpu)
        self._synchronise()

    def dsb(self, domain: str = "sy") -> None:
        """Data synchronisation barrier over `domain` (nsh, ish, osh, sy, ...): started writes complete."""
        if domain not in DSB_DOMAINS:
            options = ", ".join(sorted(DSB_DOMAINS))
            msg = f"Cannot issue dsb {domain!r} because that is not a DSB option (one of {options})"
            raise ModelError(msg)
        self.trace.add(self.actor, self.el, Kind.DSB, where=domain, vcpu=self.vcpu)

    def psb_csync(self) -> None:
        """PSB CSYNC (hint #17): every record collected so far is translated and its write started."""
        self.trace.add(self.actor, self.el, Kind.PSB, vcpu=self.vcpu)
        if not self.features.has_spe:
            return  # a hint: a NOP without SPE
        self._write_pending(len(self._pending))

    def hint(self, imm: int) -> None:
        """HINT #imm: 17 is PSB CSYNC; other hints the model does not model are NOPs."""
        if imm == 17:
            self.psb_csync()

    def take_exception(self, to_el: int, actor: str, reason: str) -> None:
        """Exception entry to `to_el`: a context synchronisation event."""
        self._check_el(to_el)
        self._decide_writes(f"exception entry ({reason})")
        self._synchronise()
        self.el, self.actor = to_el, actor
        self.trace.add(actor, to_el, Kind.EXCEPTION, where=reason, vcpu=self.vcpu)

    def eret(self, to_el: int, actor: str, reason: str = "") -> None:
        """Exception return to `to_el`: a context synchronisation event."""
        self._check_el(to_el)
        self._decide_writes(f"eret ({reason})" if reason else "eret")
        self.trace.add(self.actor, self.el, Kind.ERET, where=reason, vcpu=self.vcpu)
        self._synchronise()
        self.el, self.actor = to_el, actor

    @staticmethod
    def _check_el(el: int) -> None:
        if el not in (0, 1, 2):
            msg = f"Cannot move to EL{el} because the model has EL0, EL1 and EL2 only"
            raise ModelError(msg)

    # --------------------------------------------------------------------- sampling

    def sampling_enabled(self) -> bool:
        """Whether code running now at the current EL is sampled (DESIGN.md section 2)."""
        f = self.features
        if not f.has_spe or f.spe_owned_by_higher_el:
            return False
        if not self._effective("PMBLIMITR_EL1") & PMBLIMITR_E:
            return False
        if self._effective("PMBSR_EL1") & PMBSR_S:
            return False
        owner_el = 1 if MDCR_E2PB.get(self._effective("MDCR_EL2")) in (E2PB_EL1_TRAP, E2PB_EL1) else 2
        if self.el > owner_el:
            return False
        if self.el == 2:
            return bool(self._effective("PMSCR_EL2") & PMSCR_EL2_E2SPE)
        if self.el == 1:
            return bool(self._effective("PMSCR_EL1") & PMSCR_EL1_E1SPE)
        hcr = self._effective("HCR_EL2")
        if self._e2h(hcr) and hcr & HCR_TGE:
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
            rec = Record(len(self.records), self.actor, self.el, len(self.trace))
            self.records.append(rec)
            self._pending.append(rec)
            self.trace.add(self.actor, self.el, Kind.RECORD, record=rec.id, vcpu=self.vcpu)
            new.append(rec)
        return new

    # ------------------------------------------------------------- the profiling buffer

    @property
    def pending_records(self) -> int:
        """How many collected records are still inside the PE."""
        return len(self._pending)

    def _decide_writes(self, reason: str) -> None:
        """Something the pending records depend on is about to change: the chooser says how many go first."""
        if self._pending:
            count = self.chooser.records_to_write(len(self._pending), reason)
            self._write_pending(max(0, min(count, len(self._pending))))

    def _write_pending(self, count: int) -> None:
        writing, self._pending = self._pending[:count], self._pending[count:]
        for rec in writing:
            self._write(rec)

    def _discard_pending(self) -> None:
        for rec in self._pending:
            rec.fate, rec.discarded_by = "discarded", self._disabled_by
            self.trace.add("pe", self.el, Kind.DISCARD, record=rec.id,
                           where=f"buffer disabled by {self._disabled_by or 'nobody'}", vcpu=self.vcpu)
        self._pending = []

    def _stop_buffer(self, ec: int, mss: int, why: str) -> None:
        value = self._regs["PMBSR_EL1"] | PMBSR_S | PMBSR_EC.put(ec) | PMBSR_MSS.put(mss)
        self._regs["PMBSR_EL1"] = value
        self._stale.pop("PMBSR_EL1", None)
        self.buffer_irq = True
        self.trace.add("pe", self.el, Kind.HW, register="PMBSR_EL1", value=value, where=why, vcpu=self.vcpu)

    def _write(self, rec: Record) -> None:
        """Translate and write one record through the regime that owns the buffer now."""
        if not self._effective("PMBLIMITR_EL1") & PMBLIMITR_E:
            rec.fate, rec.discarded_by = "discarded", self._disabled_by
            self.trace.add("pe", self.el, Kind.DISCARD, record=rec.id,
                           where=f"buffer disabled by {self._disabled_by or 'nobody'}", vcpu=self.vcpu)
            return
        if self._effective("PMBSR_EL1") & PMBSR_S:
            rec.fate = "full"
            self.trace.add("pe", self.el, Kind.FULL, record=rec.id, where="buffer stopped (PMBSR_EL1.S=1)",
                           vcpu=self.vcpu)
            return
        ptr = self._effective("PMBPTR_EL1")
        limit = self._effective("PMBLIMITR_EL1") & PMBLIMITR_LIMIT
        if ptr + RECORD_SIZE > limit:
            rec.fate = "full"
            self._stop_buffer(PMBSR_EC_BUF, PMBSR_BSC_FULL, "buffer full")
            self.trace.add("pe", self.el, Kind.FULL, record=rec.id, where="buffer full", vcpu=self.vcpu)
            return
        landing = self.translate(ptr)
        rec.landing = landing
        if landing.fault:
            rec.fate = "faulted"
            ec = PMBSR_EC_FAULT_S1 if landing.fault == "stage 1" else PMBSR_EC_FAULT_S2
            self._stop_buffer(ec, 0, f"{landing.fault} fault")
            self.trace.add("pe", self.el, Kind.FAULT, record=rec.id, where=str(landing), vcpu=self.vcpu)
            return
        rec.fate = "written"
        self.memory.store(landing, RECORD_SIZE)
        self._regs["PMBPTR_EL1"] = ptr + RECORD_SIZE
        self._stale.pop("PMBPTR_EL1", None)
        self.trace.add("pe", self.el, Kind.WRITE, record=rec.id, register="PMBPTR_EL1",
                       value=ptr + RECORD_SIZE, where=str(landing), vcpu=self.vcpu, owner=landing.owner)

    def translate(self, va: int) -> Landing:
        """Translate a buffer address through the regime that owns the buffer now (MDCR_EL2.E2PB, E2H)."""
        e2pb = MDCR_E2PB.get(self._effective("MDCR_EL2"))
        hcr = self._effective("HCR_EL2")
        upper = bool(va >> 63)
        if e2pb in (E2PB_EL1_TRAP, E2PB_EL1):
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
        return self.memory.walk(va, ttbr, None, f"EL2 stage 1 (TTBR0_EL2={ttbr:#x})")

    # ------------------------------------------------------------------------ the guest

    def run_guest(self, vcpu: Vcpu) -> ExitReason:
        """ERET into the guest, run its program, take the exit back to EL2 (the job of __guest_enter)."""
        if self.el != 2:
            msg = f"Cannot enter the guest from EL{self.el} because only EL2 can ERET into a guest"
            raise ContractError("run_guest is called at EL2", msg)
        vcpu.entered += 1
        guest = f"guest{vcpu.vm}"
        self.eret(1, guest, f"into guest {vcpu.vm}")
        self.mark(Kind.GUEST, f"vcpu {vcpu.index} running")
        exit_reason = ExitReason("irq")
        program, vcpu.program = vcpu.program, []
        for action in program:
            if isinstance(action, GuestCode):
                self.run_code(action.samples, "guest code")
            elif isinstance(action, GuestAccess):
                outcome = self.access(action.register, action.value if action.write else None)
                if outcome.outcome == "trap":
                    exit_reason = ExitReason("trap", outcome.register)
                    break
            else:
                exit_reason = ExitReason(action.reason)
                break
        self.take_exception(2, "hyp", f"exit from guest {vcpu.vm}: {exit_reason.reason}")
        self.mark(Kind.EXIT, f"vcpu {vcpu.index} exited ({exit_reason.reason})")
        return exit_reason

    def note(self, text: str) -> None:
        """Put a software step in the trace for the reader (no architectural effect)."""
        self.trace.add(self.actor, self.el, Kind.NOTE, where=text, vcpu=self.vcpu)

    def mark(self, kind: Kind, text: str = "") -> None:
        """Put a window marker (ENTRY, GUEST, EXIT, RETURN) in the trace."""
        self.trace.add(self.actor, self.el, kind, where=text, vcpu=self.vcpu)

    def records_of(self, actors: Iterable[str]) -> list[Record]:
        """The records collected while one of `actors` was running."""
        wanted = set(actors)
        return [r for r in self.records if r.actor in wanted]
