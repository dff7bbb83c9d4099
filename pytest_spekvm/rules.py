"""The rule catalogue (docs/rules.md): each rule as a single-pass checker over a trace."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterator, Mapping

import attrs

from .reference import memory as M
from .reference import registers as R
from .reference.cpu import HW_COUNT, HW_FULL, dsb_completes_records, reset_values
from .reference.features import Features
from .reference.trace import Event, Kind, Trace

__all__ = [
    "BY_ID",
    "FAMILIES",
    "RULES",
    "Judgement",
    "Phase",
    "RegisterReplay",
    "Rule",
    "Severity",
    "Violation",
    "judge_all",
    "registers_after",
    "replay",
    "rules_of_family",
]


class Severity(enum.Enum):
    """How bad a violation is: wrong behaviour, or needless cost on the world switch's path."""

    CORRECTNESS = "correctness"
    LEAN = "lean"


@attrs.frozen
class Violation:
    """One breach of a rule: the first bad event and a message a reader needs nothing else for."""

    rule: str
    event: int  # seq of the first bad event in the trace
    message: str


@attrs.frozen
class Judgement:
    """A rule's verdict on one trace; `exercised` says whether the rule's precondition occurred."""

    rule: str
    exercised: bool
    violations: tuple[Violation, ...] = ()

    @property
    def passed(self) -> bool:
        """No violation (a rule never exercised passes vacuously: read `exercised` too)."""
        return not self.violations


@attrs.frozen
class Rule:
    """One rule of the catalogue: a stable id, where it comes from, and its checker."""

    id: str
    title: str
    rationale: str
    severity: Severity
    family: str
    check: Callable[[Trace, Features], Judgement] = attrs.field(eq=False, repr=False)

    def judge(self, trace: Trace, features: Features) -> Judgement:
        """Judge `trace`, run on a CPU with `features`, against this rule."""
        return self.check(trace, features)


# ------------------------------------------------------------------ architecture facts

PMSCR_EL1_SPE = R.field_mask("PMSCR_EL1", "E0SPE", "E1SPE")  # PMSCR_EL1.E0SPE [0], E1SPE [1]
PMBLIMITR_E = R.field_mask("PMBLIMITR_EL1", "E")  # PMBLIMITR_EL1.E [0]
PMBSR_S = R.field_mask("PMBSR_EL1", "S")  # PMBSR_EL1.S [17]
MDCR_TPMS = R.field_mask("MDCR_EL2", "TPMS")  # MDCR_EL2.TPMS [14]
MDCR_E2PB = R.BY_NAME["MDCR_EL2"].field("E2PB")  # MDCR_EL2.E2PB [13:12]
HCR_VM = R.field_mask("HCR_EL2", "VM")  # HCR_EL2.VM [0]
SPE_KINDS = frozenset({R.SPE_SAMPLING, R.SPE_BUFFER})
SPE_REGISTERS = frozenset(r.name for r in R.REGISTERS if r.kind in SPE_KINDS)
# SPE registers a guest may reach without a trap: PMBIDR_EL1 is trapped only by the fine-grained
# trap HDFGRTR_EL2.PMBIDR_EL1 (FEAT_FGT), and holds no host value (from EL1 it reads P = 1 while EL2
# owns the buffer). Its read must trap only where the switch set that trap (TRAP-COND).
GUEST_READABLE = frozenset({"PMBIDR_EL1"})
HDFGRTR_PMBIDR = R.field_mask("HDFGRTR_EL2", "PMBIDR_EL1")  # HDFGRTR_EL2.PMBIDR_EL1 [63]
# Trap controls the boot code sets for the host, which every exit gives back (HOST-STATE).
BOOT_CONTROLS = ("MDCR_EL2", "HDFGRTR_EL2")
HOST_STAGE1 = ("TTBR0_EL1", "TTBR1_EL1", "TCR_EL1")
# Registers whose change moves the host's EL1-owned buffer to other tables (docs/rules.md, Terms).
TRANSLATION_VALUES = frozenset({*HOST_STAGE1, "VTTBR_EL2"})
# Written in the exit window, these must be in force before host sampling resumes (RESTORE-ORDER).
RESTORE_REGISTERS = frozenset({*HOST_STAGE1, "VTTBR_EL2", "MDCR_EL2", "HCR_EL2"})
# The host's SPE state that every exit gives back (HOST-STATE); PMSCR is added per VHE.
HOST_SPE_STATE = (
    "PMSICR_EL1", "PMSIRR_EL1", "PMSFCR_EL1", "PMSEVFR_EL1", "PMSLATFR_EL1", "PMSNEVFR_EL1", "PMSDSFR_EL1",
    "PMBLIMITR_EL1", "PMBPTR_EL1", "PMBSR_EL1",
)
# The code under test runs as these actors; "boot" is the harness's set-up, "pe" the hardware.
SOFTWARE = frozenset({"host", "hyp"})
RECORD_FATES = frozenset({Kind.WRITE, Kind.DISCARD, Kind.FAULT, Kind.FULL})
ACCESSES = frozenset({Kind.MRS, Kind.MSR, Kind.TRAP, Kind.UNDEF, Kind.TRAP_EL3})


def _is_guest(actor: str) -> bool:
    return actor.startswith("guest")


def _is_spe(name: str) -> bool:
    """Whether `name` (a register, or a *_EL12 alias an UNDEF event may carry) is an SPE register."""
    alias = R.EL12_ALIASES.get(name)
    return (alias[1] if alias else name) in SPE_REGISTERS


def _is_cse(event: Event) -> bool:
    """Whether `event` is a context synchronisation event (ISB; exception entry or return where it is one)."""
    kind = event.kind
    return kind is Kind.ISB or ((kind is Kind.EXCEPTION or kind is Kind.ERET) and event.cse)


# ------------------------------------------------------------------ register replay


class RegisterReplay:
    """Every register's value as the trace's events leave it, rebuilt from the events alone.

    MSR events write their value; the PE's own updates are events too (WRITE carries the
    advanced PMBPTR_EL1, HW the new PMBSR_EL1 or PMSICR_EL1). Values start at the CPU's reset
    values. `stale` holds, for each register written since the last context synchronisation
    event, the value in force before that write: until the next one the PE may use either.
    """

    __slots__ = ("stale", "values")

    def __init__(self, features: Features) -> None:
        self.values: dict[str, int] = reset_values(features)
        self.stale: dict[str, int] = {}

    def step(self, event: Event) -> None:
        """Apply `event`'s effect on the registers, if it has one."""
        kind = event.kind
        if kind is Kind.MSR:
            if event.register not in self.stale:
                self.stale[event.register] = self.values[event.register]
            self.values[event.register] = event.value
        elif kind is Kind.HW or kind is Kind.WRITE:
            self.values[event.register] = event.value
            self.stale.pop(event.register, None)
        elif self.stale and _is_cse(event):
            self.stale.clear()

    def in_force(self, register: str) -> tuple[int, ...]:
        """The values the PE may use for `register` now: the latest, and the one before it if unsynchronised."""
        value = self.values[register]
        old = self.stale.get(register)
        return (value,) if old is None or old == value else (value, old)

    def __getitem__(self, register: str) -> int:
        return self.values[register]


def replay(trace: Trace, features: Features) -> Iterator[tuple[Event, Mapping[str, int]]]:
    """Each event with every register's value just after it, in one pass.

    The mapping is shared and updated in place as the iteration moves on: copy it to keep it.
    """
    regs = RegisterReplay(features)
    for event in trace.events:
        regs.step(event)
        yield event, regs.values


def registers_after(trace: Trace, features: Features, seq: int) -> dict[str, int]:
    """A copy of every register's value just after event `seq` (-1: before the first event)."""
    regs = RegisterReplay(features)
    for event in trace.events[: seq + 1]:
        regs.step(event)
    return dict(regs.values)


class Phase(enum.Enum):
    """Where the trace is, relative to the world switch's windows (docs/rules.md, Terms)."""

    HOST = "host"  # outside the switch
    ENTRY = "entry"  # from the host's call to the ERET into the guest (inclusive)
    GUEST = "guest"  # the guest runs
    EXIT = "exit"  # from the guest's exit to EL2 to the return to the host (inclusive)


class _Walk(RegisterReplay):
    """Register replay plus the window the trace is in, both as they stand *before* the next event.

    Checkers read the state for an event, then `step` past it: so the ERET into the guest is
    seen inside the entry window, and the RETURN marker inside the exit window. The walk also
    follows whether the buffer's limit and pointer are still the host's own in a window (a
    switch may move them: then what the PE does to them is no longer the host's business).
    """

    __slots__ = ("at_entry", "boot", "entry", "foreign", "live", "phase", "spe_usable")

    def __init__(self, features: Features) -> None:
        super().__init__(features)
        self.phase = Phase.HOST
        self.entry = -1  # seq of the ENTRY that opened the current (or last) window
        self.at_entry: dict[str, int] = {}  # registers when that entry window began
        self.live = False  # the host's buffer was live at that entry
        self.foreign = False  # in this window, software moved the buffer's limit or pointer off the host's
        self.boot = dict.fromkeys(BOOT_CONTROLS, 0)  # MDCR_EL2, HDFGRTR_EL2 as the boot code left them
        self.spe_usable = features.has_spe and not features.spe_owned_by_higher_el

    def step(self, event: Event) -> None:
        # The hot path of every checker: one test of the kind for the common events.
        kind = event.kind
        if kind is Kind.WRITE or kind is Kind.HW:
            self.values[event.register] = event.value
            if self.stale:
                self.stale.pop(event.register, None)
        elif kind is Kind.MSR:
            register = event.register
            values = self.values
            if self.phase is not Phase.HOST:
                if register in _BUFFER_POINTERS:
                    # Moved off the value the host's own records left there, or back onto it.
                    self.foreign = event.value != values[register] or self.foreign
                    if register == "PMBLIMITR_EL1" and event.value == self.at_entry[register]:
                        self.foreign = False
            elif event.actor == "boot" and register in self.boot:
                self.boot[register] = event.value
            if register not in self.stale:
                self.stale[register] = values[register]
            values[register] = event.value
        elif kind in _WALK_KINDS:
            if self.stale and _is_cse(event):
                self.stale.clear()
            if kind is Kind.ENTRY:
                self.phase = Phase.ENTRY
                self.entry = event.seq
                self.at_entry = dict(self.values)
                self.foreign = False
                v = self.values
                self.live = self.spe_usable and bool(v["PMBLIMITR_EL1"] & PMBLIMITR_E) and not v["PMBSR_EL1"] & PMBSR_S
            elif kind is Kind.GUEST or (kind is Kind.ERET and event.into_guest):
                self.phase = Phase.GUEST
            elif kind is Kind.EXIT or (kind is Kind.EXCEPTION and event.guest_exit):
                self.phase = Phase.EXIT
            elif kind is Kind.RETURN:
                self.phase = Phase.HOST
                self.foreign = False

    @property
    def in_window(self) -> bool:
        """Inside the entry or the exit window: where the world switch's own code runs."""
        return self.phase is Phase.ENTRY or self.phase is Phase.EXIT

    def host_owns_update(self, event: Event, actors: Mapping[int, str]) -> bool:
        """Whether the PE's update `event` (HW or WRITE) is the architecture acting for the host's
        own records on the host's own buffer: the limit and pointer are the host's, and the record
        was written through the host's regime (a WRITE into the host's buffer, a full buffer, the
        sample counter)."""
        if self.foreign:
            return False
        if event.kind is Kind.WRITE:
            return event.owner == M.HOST_BUFFER
        return event.name in (HW_FULL, HW_COUNT)


_BUFFER_POINTERS = frozenset({"PMBPTR_EL1", "PMBLIMITR_EL1"})
_WALK_KINDS = frozenset({Kind.ISB, Kind.EXCEPTION, Kind.ERET, Kind.ENTRY, Kind.GUEST, Kind.EXIT, Kind.RETURN})


def _into_guest(event: Event) -> bool:
    return event.kind is Kind.ERET and event.into_guest


def _return_to_host(event: Event, walk: _Walk) -> bool:
    return event.kind is Kind.ERET and walk.phase is Phase.EXIT


def _profiling_off(pmscr: int, limitr: int, status: int) -> bool:
    return not pmscr & PMSCR_EL1_SPE or not limitr & PMBLIMITR_E or bool(status & PMBSR_S)


def _guest_profiling_off(walk: _Walk, eret: Event) -> bool:
    """Whether EL1 and EL0 profiling is certainly off under every value the PE may use at `eret`
    (sampling off, the buffer disabled, or the buffer stopped)."""
    v = walk.values
    if eret.cse:
        return _profiling_off(v["PMSCR_EL1"], v["PMBLIMITR_EL1"], v["PMBSR_EL1"])
    return all(
        _profiling_off(pmscr, limitr, status)
        for pmscr in walk.in_force("PMSCR_EL1")
        for limitr in walk.in_force("PMBLIMITR_EL1")
        for status in walk.in_force("PMBSR_EL1")
    )


# ------------------------------------------------------------------ wording helpers


def _bit_span(mask: int) -> str:
    """'bit 14', 'bits 13:12' (contiguous) or 'bits 20, 16'."""
    bits = [b for b in range(63, -1, -1) if mask >> b & 1]
    if len(bits) == 1:
        return f"bit {bits[0]}"
    if bits[0] - bits[-1] == len(bits) - 1:
        return f"bits {bits[0]}:{bits[-1]}"
    return "bits " + ", ".join(str(b) for b in bits)


def _shown(event: Event) -> str:
    """The register as the code named it, with the one reached if VHE redirected it."""
    return event.register if event.name in ("", event.register) else f"{event.name}->{event.register}"


def _msr(event: Event) -> str:
    """'msr PMSCR_EL1 <- 0x0' as the code wrote it."""
    return f"msr {_shown(event)} <- {event.value:#x}"


def _why_not_live(features: Features, walk: _Walk) -> str:
    if not features.has_spe:
        return "the CPU has no FEAT_SPE"
    if features.spe_owned_by_higher_el:
        return "EL3 gives the buffer to another Security state (PMBIDR_EL1.P=1)"
    if walk.at_entry.get("PMBSR_EL1", 0) & PMBSR_S:
        return f"the buffer was stopped (PMBSR_EL1.S=1) at entry #{walk.entry}"
    return f"the host left PMBLIMITR_EL1.E=0 at entry #{walk.entry}"


NOT_CSE = "not a context synchronisation event (FEAT_ExS with SCTLR_EL2.EIS/EOS=0)"


# ------------------------------------------------------------------ RES0


@functools.cache  # keyed by Features: the lattice is finite and small, so the cache stays so too
def _res0_masks(features: Features) -> Mapping[str, int]:
    return {r.name: r.res0_mask(features) for r in R.REGISTERS}


def _res0_parts(register: str, bad: int, features: Features) -> list[str]:
    """Each field (or undescribed span) of `bad`, with the feature it would need."""
    reg = R.BY_NAME[register]
    parts: list[str] = []
    rest = bad
    for f in sorted(reg.fields, key=lambda f: -f.lsb):
        hit = bad & f.mask
        if hit:
            rest &= ~f.mask
            verb = "is" if hit & (hit - 1) == 0 else "are"
            parts.append(f"{_bit_span(hit)} ({f.name}) {verb} RES0 without {f.needs.name}")
    if rest:
        verb = "is" if rest & (rest - 1) == 0 else "are"
        parts.append(f"{_bit_span(rest)} {verb} RES0 on every CPU")
    return parts


def _check_res0(trace: Trace, features: Features) -> Judgement:
    """Every MSR by host or hypervisor code against the RES0 mask for these features.

    Exercised: at least one such MSR (the boot set-up is the harness's, guest writes trap).
    """
    masks = _res0_masks(features)
    exercised = False
    found: list[Violation] = []
    for e in trace.events:
        if e.kind is not Kind.MSR or e.actor not in SOFTWARE:
            continue
        exercised = True
        bad = e.value & masks[e.register]
        if bad:
            parts = "; ".join(_res0_parts(e.register, bad, features))
            msg = f"{_msr(e)} by {e.actor}: {parts} (expected {e.value & ~bad:#x}, got {e.value:#x})"
            found.append(Violation("RES0", e.seq, msg))
    return Judgement("RES0", exercised, tuple(found))


# ------------------------------------------------------------------ TRAP-COND


def _guest_access_message(e: Event) -> str:
    if e.kind is Kind.MRS:
        return f"{e.actor} read {e.register} at #{e.seq} without trapping: got {e.value:#x}"
    if e.kind is Kind.TRAP_EL3:
        return f"{e.actor}'s access to {e.register} at #{e.seq} trapped to EL3, not to EL2"
    return f"{e.actor} wrote {e.value:#x} to {e.register} at #{e.seq} without trapping"


def _guest_reached(e: Event) -> bool:
    """A guest access to an SPE register that completed (or went past EL2 to EL3)."""
    return (
        (e.kind is Kind.MRS or e.kind is Kind.MSR or e.kind is Kind.TRAP_EL3)
        and _is_guest(e.actor)
        and _is_spe(e.register)
        and e.register not in GUEST_READABLE
    )


def _trap_problems(mdcr: int) -> list[str]:
    problems = []
    if not mdcr & MDCR_TPMS:
        problems.append("TPMS=0 (expected 1, so the guest's sampling-control accesses trap)")
    e2pb = MDCR_E2PB.get(mdcr)
    if e2pb not in (0b00, 0b10):
        problems.append(f"E2PB={e2pb:#04b} (expected 0b00 or 0b10, so its buffer accesses trap)")
    return problems


def _check_trap_cond(trace: Trace, features: Features) -> Judgement:
    """With FEAT_SPE: the guest runs under TPMS=1 and a trapping E2PB in force, and its SPE accesses trap.

    Without FEAT_SPE: no MDCR_EL2 write by host or hypervisor sets TPMS or E2PB. With it, no write
    of the reserved E2PB value 0b01. A guest read of PMBIDR_EL1 need not trap, unless the switch
    set HDFGRTR_EL2.PMBIDR_EL1: then it must.

    Exercised with FEAT_SPE: a guest was entered *and* tried an SPE register, so that the trap
    was observed, not only inferred from MDCR_EL2. Without FEAT_SPE: an MDCR_EL2 write by host
    or hypervisor code.
    """
    found: list[Violation] = []
    if not features.has_spe:
        spe_bits = MDCR_TPMS | MDCR_E2PB.mask
        written = False
        for e in trace.events:
            if e.kind is Kind.MSR and e.register == "MDCR_EL2" and e.actor in SOFTWARE:
                written = True
                if e.value & spe_bits:
                    got = f"TPMS={int(bool(e.value & MDCR_TPMS))}, E2PB={MDCR_E2PB.get(e.value):#04b}"
                    msg = (
                        f"{_msr(e)} by {e.actor} sets SPE trap controls on a CPU without FEAT_SPE "
                        f"(expected TPMS=0, E2PB=0b00, got {got})"
                    )
                    found.append(Violation("TRAP-COND", e.seq, msg))
        return Judgement("TRAP-COND", written or bool(found), tuple(found))

    entered = accessed = False
    fgt_write: Event | None = None  # the last HDFGRTR_EL2 write by host or hypervisor
    regs = RegisterReplay(features)
    for e in trace.events:
        kind = e.kind
        if kind is Kind.MSR and e.register == "MDCR_EL2" and e.actor in SOFTWARE and MDCR_E2PB.get(e.value) == 0b01:
            msg = (
                f"{_msr(e)} by {e.actor} writes the reserved value 0b01 to MDCR_EL2.E2PB "
                f"(it may act as any allocated value, Arm ARM K1.2.19; expected 0b00, 0b10 or 0b11)"
            )
            found.append(Violation("TRAP-COND", e.seq, msg))
        elif _into_guest(e):
            entered = True
            values = (regs["MDCR_EL2"],) if e.cse else regs.in_force("MDCR_EL2")
            for mdcr in values:
                problems = _trap_problems(mdcr)
                if problems:
                    stale = "" if mdcr == regs["MDCR_EL2"] else (
                        f" (the value before the unsynchronised {_msr_of('MDCR_EL2', regs)}: the ERET is {NOT_CSE}; "
                        "expected an ISB before it)"
                    )
                    msg = f"eret {e.where} with MDCR_EL2={mdcr:#x} in force{stale}: " + "; ".join(problems)
                    found.append(Violation("TRAP-COND", e.seq, msg))
                    break
        elif kind is Kind.MSR and e.register == "HDFGRTR_EL2" and e.actor in SOFTWARE:
            fgt_write = e
        if kind in ACCESSES and _is_guest(e.actor) and _is_spe(e.register):
            if e.register not in GUEST_READABLE:
                accessed = True
                if _guest_reached(e):
                    msg = _guest_access_message(e) + " (expected a trap to EL2)"
                    found.append(Violation("TRAP-COND", e.seq, msg))
            elif fgt_write is not None and regs["HDFGRTR_EL2"] & HDFGRTR_PMBIDR and kind is not Kind.UNDEF:
                # The switch asked for the fine-grained trap of PMBIDR_EL1: the read must take it.
                accessed = True
                if kind is Kind.MRS:
                    msg = (
                        f"{_guest_access_message(e)}, though the {_msr(fgt_write)} at #{fgt_write.seq} set "
                        f"HDFGRTR_EL2.PMBIDR_EL1 (expected the read to trap to EL2: the trap was not in force "
                        f"when the guest ran; where the ERET into the guest is {NOT_CSE}, an ISB before it)"
                    )
                    found.append(Violation("TRAP-COND", e.seq, msg))
        regs.step(e)
    return Judgement("TRAP-COND", (entered and accessed) or bool(found), tuple(found))


def _msr_of(register: str, regs: RegisterReplay) -> str:
    return f"msr {register} <- {regs[register]:#x}"


# ------------------------------------------------------------------ UNDEF


def _check_undef(trace: Trace, features: Features) -> Judgement:
    """No host or hypervisor access is UNDEFINED, traps to EL3, or (the host's) traps to EL2.

    Exercised: the world switch ran (an entry) on a CPU where SPE accesses are UNDEFINED or trap
    to EL3 (no FEAT_SPE, or the buffer given to another Security state), or on one with FEAT_ExS
    (where the hypervisor's traps can outlive the ERET to the host); or any violation.
    """
    owned = features.spe_owned_by_higher_el
    switched = False
    found: list[Violation] = []
    for e in trace.events:
        kind = e.kind
        if kind is Kind.ENTRY:
            switched = True
        if e.actor not in SOFTWARE:
            continue
        who = f"{e.name or e.register} by {e.actor} at EL{e.el}"
        if kind is Kind.UNDEF:
            if _is_spe(e.register) and not features.has_spe:
                expected = "no SPE register access without FEAT_SPE: check ID_AA64DFR0_EL1.PMSVer first"
            else:
                expected = "only accesses the architecture defines here"
            msg = f"access to {who} is UNDEFINED ({e.where}); expected {expected}"
            found.append(Violation("UNDEF", e.seq, msg))
        elif kind is Kind.TRAP_EL3:
            msg = (
                f"access to {who} traps to EL3 ({e.where}); expected only PMBIDR_EL1 touched while "
                f"PMBIDR_EL1.P reads 1 at EL2 (check it first, as the patch does: 'is it owned by EL3?')"
            )
            found.append(Violation("UNDEF", e.seq, msg))
        elif kind is Kind.TRAP and e.actor == "host":
            msg = (
                f"the host's own access to {who} trapped to EL2 ({e.where}): the hypervisor's trap "
                f"configuration is still in force after the return to the host (expected the host's "
                f"MDCR_EL2 back, and in force)"
            )
            found.append(Violation("UNDEF", e.seq, msg))
    hazard = not features.has_spe or owned or features.exs
    return Judgement("UNDEF", (hazard and switched) or bool(found), tuple(found))


# ------------------------------------------------------------------ DRAIN-ORDER

_LINKS = (
    "context synchronisation event at EL2 (the exception entry where it is one, else an ISB)",
    "PSB CSYNC",
    "DSB over loads and stores (NSH or wider; not *ST or *LD)",
)


def _translation_change(e: Event, values: Mapping[str, int]) -> str:
    """How `e` changes the translation the host's EL1-owned buffer uses, or '' if it does not."""
    kind = e.kind
    if kind is Kind.ERET:
        return f"eret {e.where}" if e.into_guest else ""
    if kind is not Kind.MSR:
        return ""
    reg = e.register
    old = values[reg]
    if reg in TRANSLATION_VALUES:
        return f"{_msr(e)} (was {old:#x})" if e.value != old else ""
    if reg == "HCR_EL2" and (e.value ^ old) & HCR_VM:
        return f"{_msr(e)} (VM {old & HCR_VM} -> {e.value & HCR_VM})"
    if reg == "MDCR_EL2":
        was, now = MDCR_E2PB.get(old), MDCR_E2PB.get(e.value)
        if was != now:
            return f"{_msr(e)} (E2PB {was:#04b} -> {now:#04b})"
    return ""


def _buffer_stop(e: Event, values: Mapping[str, int]) -> str:
    """How `e` disables the host's buffer or reuses its memory, or ''."""
    if e.kind is not Kind.MSR:
        return ""
    if e.register == "PMBLIMITR_EL1" and values["PMBLIMITR_EL1"] & PMBLIMITR_E and not e.value & PMBLIMITR_E:
        return f"{_msr(e)} (disables the buffer)"
    if e.register == "PMBPTR_EL1" and e.value != values["PMBPTR_EL1"]:
        return f"{_msr(e)} (moves the buffer's write pointer)"
    return ""


@attrs.define
class _Chain:
    """Progress through the drain chain within one entry window: CSE, then PSB, then a full DSB."""

    links: list[Event] = attrs.field(factory=list)  # the event that made each link
    early: dict[int, Event] = attrs.field(factory=dict)  # link index -> an event of that kind that came too early
    weak: Event | None = None  # a DSB that does not wait for the buffer's writes
    judged: bool = False
    stop_judged: bool = False

    @property
    def done(self) -> bool:
        return len(self.links) == len(_LINKS)

    def offer(self, index: int, e: Event) -> None:
        if len(self.links) == index:
            self.links.append(e)
        elif len(self.links) < index:
            self.early.setdefault(index, e)


def _link_label(e: Event) -> str:
    if e.kind is Kind.DSB:
        return f"dsb {e.where}"
    if e.kind is Kind.EXCEPTION:
        return "exception entry"
    return "ISB" if e.kind is Kind.ISB else "PSB CSYNC"


def _drain_message(chain: _Chain, what: str, e: Event, walk: _Walk, stop: bool) -> str:
    """Name the first missing link of the chain before `what`."""
    s = len(chain.links)
    if s == 0:
        lead = f"no {_LINKS[0]} before a PSB CSYNC (the exception entry into EL2 was {NOT_CSE})"
    else:
        prev = chain.links[-1]
        lead = f"no {_LINKS[s]} after the {_link_label(prev)} at #{prev.seq}"
    early = chain.early.get(s + 1 if s == 0 else s)
    if early is not None:
        lead += f" (the {_link_label(early)} at #{early.seq} came before the {_link_label(chain.links[-1]) if s else 'CSE'})"
    if s == 2 and chain.weak is not None:
        lead += f" (dsb {chain.weak.where} at #{chain.weak.seq} does not wait for the buffer's writes: D17.9 asks for one that applies to loads and stores)"
    consequence = (
        "so records not synchronised or not yet written may be discarded"
        if stop else "so records collected before it may be translated by the new regime"
    )
    return (
        f"{lead}, before the {what} at #{e.seq} while the host's buffer was live "
        f"(PMBLIMITR_EL1.E=1 at entry #{walk.entry}), {consequence}; expected a context synchronisation "
        f"event at EL2, PSB CSYNC, then a DSB over loads and stores, in that order"
    )


def _check_drain_order(trace: Trace, features: Features) -> Judgement:
    """nVHE, buffer live at entry: the drain chain completes before the first translation change
    and before the buffer is stopped, and the guest's profiling is off in force at its ERET.

    Exercised: an nVHE entry window with the host's buffer live reached a translation change
    (every entry does: the ERET into the guest is one).
    """
    if features.vhe:
        return Judgement("DRAIN-ORDER", False)
    walk = _Walk(features)
    exercised = False
    found: list[Violation] = []
    chain = _Chain()
    for e in trace.events:
        kind = e.kind
        if walk.phase is Phase.ENTRY and walk.live:
            if not chain.judged:
                change = _translation_change(e, walk.values)
                stop = "" if change or chain.stop_judged else _buffer_stop(e, walk.values)
                if change:
                    chain.judged = exercised = True
                    if not chain.done:
                        found.append(Violation("DRAIN-ORDER", e.seq, _drain_message(chain, change, e, walk, False)))
                elif stop:
                    chain.stop_judged = True
                    if not chain.done:
                        found.append(Violation("DRAIN-ORDER", e.seq, _drain_message(chain, stop, e, walk, True)))
                elif kind is Kind.ISB:
                    chain.offer(0, e)
                elif kind is Kind.HW and e.register == "PMBSR_EL1" and e.value & PMBSR_S:
                    chain.judged = exercised = True  # the buffer stopped itself: nothing is left to drain
                elif kind is Kind.PSB:
                    chain.offer(1, e)
                elif kind is Kind.DSB:
                    if dsb_completes_records(e.where):
                        chain.offer(2, e)
                    else:
                        chain.weak = e
            if _into_guest(e) and not _guest_profiling_off(walk, e):
                pmscr = "/".join(f"{v:#x}" for v in walk.in_force("PMSCR_EL1"))
                limitr = "/".join(f"{v:#x}" for v in walk.in_force("PMBLIMITR_EL1"))
                sync = "" if e.cse else f" (the ERET is {NOT_CSE}, so an unsynchronised write may not be in force yet)"
                msg = (
                    f"eret {e.where} at #{e.seq} with the guest's EL1/EL0 profiling possibly on: PMSCR_EL1 "
                    f"{pmscr}, PMBLIMITR_EL1 {limitr} may be in force{sync}; expected PMSCR_EL1.E0SPE/E1SPE=0 "
                    f"or PMBLIMITR_EL1.E=0 in force, so the guest is not sampled into the host's buffer"
                )
                found.append(Violation("DRAIN-ORDER", e.seq, msg))
        walk.step(e)
        if kind is Kind.ENTRY:
            chain = _Chain()
        elif kind is Kind.EXCEPTION and walk.phase is Phase.ENTRY and e.el == 2 and e.cse:
            chain.offer(0, e)  # EL2 never samples the host's EL1-owned buffer: profiling is off at this CSE
    return Judgement("DRAIN-ORDER", exercised, tuple(found))


# ------------------------------------------------------------------ RESTORE-ORDER


def _host_sampling_on(values: Mapping[str, int]) -> bool:
    return bool(values["PMSCR_EL1"] & PMSCR_EL1_SPE and values["PMBLIMITR_EL1"] & PMBLIMITR_E)


def _check_restore_order(trace: Trace, features: Features) -> Judgement:
    """nVHE: host sampling resumes only once the host's translation and buffer ownership are in force.

    At the return to the host with host sampling on: the translation registers hold the host's
    values, and, where that return is not context synchronising, none of the exit window's
    writes to them is still unsynchronised.

    Exercised: on nVHE, a return to the host with host sampling on.
    """
    if features.vhe:
        return Judgement("RESTORE-ORDER", False)
    walk = _Walk(features)
    exercised = False
    found: list[Violation] = []
    writes: dict[str, Event] = {}  # the exit window's last write to each restore register
    for e in trace.events:
        kind = e.kind
        if walk.phase is Phase.EXIT:
            if kind is Kind.MSR and e.register in RESTORE_REGISTERS:
                writes[e.register] = e
            elif _return_to_host(e, walk) and _host_sampling_on(walk.values):
                exercised = True
                values, host = walk.values, walk.at_entry
                wrong = [
                    f"{reg}={values[reg]:#x} (expected the host's {host[reg]:#x})"
                    for reg in (*HOST_STAGE1, "VTTBR_EL2")
                    if values[reg] != host[reg] and (reg != "VTTBR_EL2" or values["HCR_EL2"] & HCR_VM)
                ]
                e2pb, host_e2pb = MDCR_E2PB.get(values["MDCR_EL2"]), MDCR_E2PB.get(walk.boot["MDCR_EL2"])
                if e2pb != host_e2pb:
                    wrong.append(f"MDCR_EL2.E2PB={e2pb:#04b} (expected the host's {host_e2pb:#04b})")
                if (values["HCR_EL2"] ^ host["HCR_EL2"]) & HCR_VM:
                    wrong.append(f"HCR_EL2.VM={values['HCR_EL2'] & HCR_VM} (expected the host's {host['HCR_EL2'] & HCR_VM})")
                if wrong:
                    msg = (
                        f"the return to the host at #{e.seq} resumes host sampling (PMSCR_EL1={values['PMSCR_EL1']:#x}) "
                        f"under a translation that is not the host's: " + "; ".join(wrong)
                    )
                    found.append(Violation("RESTORE-ORDER", e.seq, msg))
                elif not e.cse:
                    pending = [writes[r] for r in sorted(RESTORE_REGISTERS) if r in walk.stale and r in writes]
                    if pending:
                        last = max(pending, key=lambda w: w.seq)
                        msg = (
                            f"no ISB between the {_msr(last)} at #{last.seq} and the return to the host at #{e.seq}, "
                            f"which is {NOT_CSE}: host sampling (PMSCR_EL1={values['PMSCR_EL1']:#x}) may resume under "
                            f"the guest's translation (expected an ISB after the writes restoring the host's "
                            f"translation and before the PMSCR_EL1 write or the ERET)"
                        )
                        found.append(Violation("RESTORE-ORDER", e.seq, msg))
        walk.step(e)
        if kind is Kind.EXIT or (kind is Kind.EXCEPTION and e.guest_exit):
            writes = {}
    return Judgement("RESTORE-ORDER", exercised, tuple(found))


# ------------------------------------------------------------------ HOST-STATE


def _check_host_state(trace: Trace, features: Features) -> Judgement:
    """At every return: the host's SPE registers as at entry (plus the PE's updates for the host's
    own records, while the limit and pointer are the host's), MDCR_EL2 (and HDFGRTR_EL2 with FEAT_FGT)
    as at boot.

    Exercised: at least one return to the host.
    """
    if features.has_spe and not features.spe_owned_by_higher_el:
        tracked: tuple[str, ...] = ("PMSCR_EL2" if features.vhe else "PMSCR_EL1", *HOST_SPE_STATE)
    else:
        tracked = ()
    controls = BOOT_CONTROLS if features.fgt else BOOT_CONTROLS[:1]
    walk = _Walk(features)
    exercised = False
    found: list[Violation] = []
    expected: dict[str, int] = {}
    hw: dict[str, int] = {}  # register -> how many updates the PE made for the host in this window
    last_write: dict[str, Event] = {}  # register -> last software write in this window
    actors: dict[int, str] = {}  # record id -> who was sampled
    for e in trace.events:
        kind = e.kind
        if kind is Kind.RECORD:
            actors[e.record] = e.actor
        if walk.phase is not Phase.HOST:
            if kind is Kind.MSR:
                last_write[e.register] = e
            elif (kind is Kind.HW or kind is Kind.WRITE) and e.register in expected and walk.host_owns_update(e, actors):
                expected[e.register] = e.value
                hw[e.register] = hw.get(e.register, 0) + 1
        if kind is Kind.RETURN and walk.phase is Phase.EXIT:
            exercised = True
            for reg in tracked:
                got, want = walk.values[reg], expected[reg]
                if got != want:
                    why = f"its value at entry #{walk.entry}"
                    if hw.get(reg):
                        why += f", then {hw[reg]} update(s) by the PE for the host's own records"
                    msg = _state_message(e, reg, (want, got), why, last_write.get(reg))
                    found.append(Violation("HOST-STATE", e.seq, msg))
            for reg in controls:
                got, want = walk.values[reg], walk.boot[reg]
                if got != want:
                    why = "the host's boot value"
                    msg = _state_message(e, reg, (want, got), why, last_write.get(reg))
                    found.append(Violation("HOST-STATE", e.seq, msg))
        walk.step(e)
        if kind is Kind.ENTRY:
            expected = {reg: walk.values[reg] for reg in tracked}
            hw, last_write = {}, {}
    return Judgement("HOST-STATE", exercised, tuple(found))


def _state_message(e: Event, reg: str, want_got: tuple[int, int], why: str, w: Event | None) -> str:
    want, got = want_got
    last = "no software write in the window"
    if w is not None:
        last = f"last software write: {_msr(w)} by {w.actor} at #{w.seq}"
    return f"at the return to the host (#{e.seq}): {reg} expected {want:#x} ({why}), got {got:#x}; {last}"


# ------------------------------------------------------------------ ISOLATION


# The host's SPE values ISOLATION keeps out of the guest's saved context, by register family (the
# VHE host's PMSCR is PMSCR_EL2).
_HOST_VALUE_FAMILY: Mapping[str, str] = {
    "PMSCR_EL1": "PMSCR", "PMSCR_EL2": "PMSCR", **{r: r for r in HOST_SPE_STATE},
}


def _context_leaks(trace: Trace, features: Features) -> list[Violation]:
    """Each value the vcpu's saved guest context holds (CONTEXT events) that is a value the host had
    in that register by then: non-zero, and written by the host, or held by the host's register at
    an entry, or put there by the PE for the host's own records.

    Zero is never taken as a host value: a switch that keeps an all-zero guest SPE context leaks
    nothing.
    """
    walk = _Walk(features)
    own = ("PMSCR_EL2" if features.vhe else "PMSCR_EL1", *HOST_SPE_STATE)
    seen: dict[str, dict[int, str]] = {family: {} for family in _HOST_VALUE_FAMILY.values()}
    actors: dict[int, str] = {}
    found: list[Violation] = []
    for e in trace.events:
        kind = e.kind
        family = _HOST_VALUE_FAMILY.get(e.register, "")
        if kind is Kind.RECORD:
            actors[e.record] = e.actor
        elif kind is Kind.CONTEXT:
            origin = seen.get(family, {}).get(e.value) if e.value else None
            if origin is not None:
                shown = e.register if e.name in ("", e.register) else f"{e.name}->{e.register}"
                msg = (
                    f"the saved guest context of vcpu {e.vcpu} holds {shown}={e.value:#x} {e.where} (#{e.seq}), "
                    f"a value the host had ({origin}): KVM shows this context to the guest, when it emulates a "
                    f"trapped access, and to userspace (KVM_GET_ONE_REG); expected the host's SPE values kept in "
                    f"the host's own save area, never in the guest's context"
                )
                found.append(Violation("ISOLATION", e.seq, msg))
        elif family and e.value:
            if kind is Kind.MSR and e.actor == "host":
                seen[family].setdefault(e.value, f"written to {e.register} by the host at #{e.seq}")
            elif (kind is Kind.HW or kind is Kind.WRITE) and (
                walk.phase is Phase.HOST or walk.host_owns_update(e, actors)
            ):
                seen[family].setdefault(e.value, f"{e.register} as the PE updated it for the host at #{e.seq}")
        walk.step(e)
        if kind is Kind.ENTRY and walk.spe_usable:
            for reg in own:
                value = walk.values[reg]
                if value:
                    seen[_HOST_VALUE_FAMILY[reg]].setdefault(value, f"{reg} at entry #{e.seq}")
    return found


def _check_isolation(trace: Trace, features: Features) -> Judgement:
    """No record lands outside the host's buffer; no guest access reaches an SPE register holding host
    state; the vcpu's saved guest context holds no host SPE value.

    Exercised: a record was still inside the PE when an entry began, or one was written while
    the switch or the guest ran, or a guest tried an SPE register, or the guest's saved context
    held an SPE register.
    """
    walk_phase = Phase.HOST
    collected: dict[int, Event] = {}
    pending = 0
    exercised = context = False
    found: list[Violation] = []
    for e in trace.events:
        kind = e.kind
        if kind is Kind.RECORD:
            collected[e.record] = e
            pending += 1
        elif kind in RECORD_FATES:
            pending -= 1
            if kind is Kind.WRITE:
                if walk_phase is not Phase.HOST:
                    exercised = True
                if e.owner != M.HOST_BUFFER:
                    rec = collected.get(e.record)
                    origin = f"collected at #{rec.seq} while {rec.actor} ran" if rec else "of unknown origin"
                    msg = (
                        f"record #{e.record} ({origin}) was written at #{e.seq} to {e.where}: expected the "
                        f"host's profiling buffer, got {e.owner or 'unowned'} memory"
                    )
                    found.append(Violation("ISOLATION", e.seq, msg))
        elif kind is Kind.ENTRY:
            walk_phase = Phase.ENTRY
            exercised = exercised or pending > 0
        elif kind is Kind.RETURN:
            walk_phase = Phase.HOST
        elif kind in ACCESSES and _is_guest(e.actor) and _is_spe(e.register):
            exercised = True
            if _guest_reached(e) and e.kind is not Kind.TRAP_EL3:
                msg = _guest_access_message(e) + " (expected a trap to EL2: no guest reaches host SPE state)"
                found.append(Violation("ISOLATION", e.seq, msg))
        elif kind is Kind.CONTEXT:
            context = True
    if context:
        # Only a switch that keeps SPE registers in the guest's context pays for this second pass.
        found = sorted((*found, *_context_leaks(trace, features)), key=lambda v: v.event)
    return Judgement("ISOLATION", exercised or context or bool(found), tuple(found))


# ------------------------------------------------------------------ NO-LOSS


def _check_no_loss(trace: Trace, features: Features) -> Judgement:
    """Host records are written, unless the host itself disabled the buffer or the buffer filled
    or stopped for the host's own reasons while its limit and pointer were the host's.

    Exercised: a record was collected while the host ran.
    """
    walk = _Walk(features)
    host: dict[int, Event] = {}
    actors: dict[int, str] = {}
    stop_is_hosts = True  # the last stop of the buffer (PMBSR_EL1.S set) was the host's own business
    found: list[Violation] = []
    for e in trace.events:
        kind = e.kind
        if kind is Kind.RECORD:
            actors[e.record] = e.actor
            if e.actor == "host":
                host[e.record] = e
        elif kind is Kind.HW and e.register == "PMBSR_EL1":
            stop_is_hosts = walk.host_owns_update(e, actors)
        elif kind is Kind.MSR and e.register == "PMBSR_EL1" and not e.value & PMBSR_S:
            stop_is_hosts = True
        elif kind is Kind.DISCARD or kind is Kind.FAULT or kind is Kind.FULL:
            rec = host.get(e.record)
            if rec is not None:
                if kind is Kind.DISCARD:
                    lost = "" if e.owner == "host" else f"discarded ({e.where})"
                elif kind is Kind.FAULT:
                    lost = f"lost to a {e.where}"
                elif e.name == HW_FULL:
                    lost = "" if not walk.foreign else "lost as 'buffer full' while the switch had moved the buffer's limit or pointer"
                else:
                    lost = "" if stop_is_hosts else "lost: the buffer had been stopped by an event that was not the host's own"
                if lost:
                    msg = (
                        f"record #{e.record} collected while the host ran (#{rec.seq}) was {lost} at #{e.seq}: "
                        f"expected it written to the host's buffer"
                    )
                    found.append(Violation("NO-LOSS", e.seq, msg))
        walk.step(e)
    return Judgement("NO-LOSS", bool(host), tuple(found))


# ------------------------------------------------------------------ LEAN


def _check_lean(trace: Trace, features: Features) -> Judgement:
    """No SPE work the switch does not need: none on VHE, none unless the buffer is live, no needless restore.

    Exercised: at least one window.
    """
    walk = _Walk(features)
    exercised = False
    changed = False  # the entry window changed PMSCR_EL1
    found: list[Violation] = []
    for e in trace.events:
        kind = e.kind
        msg = ""
        if kind is Kind.ENTRY:
            exercised, changed = True, False
        elif walk.in_window and e.actor in SOFTWARE:
            window = walk.phase.value
            if features.vhe:
                if (kind is Kind.MRS or kind is Kind.MSR) and e.register in SPE_REGISTERS:
                    what = _msr(e) if kind is Kind.MSR else f"mrs {_shown(e)}"
                    msg = (
                        f"{what} at #{e.seq} in the {window} window of a VHE switch (expected no SPE "
                        f"register access: the host's buffer uses EL2 tables the guest never changes)"
                    )
                elif kind is Kind.PSB:
                    msg = (
                        f"PSB CSYNC at #{e.seq} in the {window} window of a VHE switch (expected none: "
                        f"nothing needs draining)"
                    )
            elif not walk.live:
                if (kind is Kind.MSR and e.register == "PMSCR_EL1") or kind is Kind.PSB:
                    what = _msr(e) if kind is Kind.MSR else "PSB CSYNC"
                    msg = (
                        f"{what} at #{e.seq} in the {window} window although the host's buffer is not live "
                        f"({_why_not_live(features, walk)}); expected no PMSCR_EL1 write and no PSB CSYNC"
                    )
            elif kind is Kind.MSR and e.register == "PMSCR_EL1":
                if walk.phase is Phase.ENTRY:
                    changed = changed or e.value != walk.values["PMSCR_EL1"]
                elif not changed:
                    msg = (
                        f"{_msr(e)} at #{e.seq} restores PMSCR_EL1 although the entry window did not change "
                        f"it (expected no restore)"
                    )
        if msg:
            found.append(Violation("LEAN", e.seq, msg))
        walk.step(e)
    return Judgement("LEAN", exercised, tuple(found))


# ------------------------------------------------------------------ the catalogue

RULES: tuple[Rule, ...] = (
    Rule(
        "RES0",
        "No write puts a 1 in a bit that is RES0 for this CPU's features",
        "Review: 'This is RES0 on CPUs that do not implement SPE. Can we make this conditional on SPE "
        "being available?' and 'I'm not completely confident writing new bits to registers that do not "
        "necessarily implement the feature.' Arm ARM, Glossary RES0: software must write the field as 0 "
        "(or the value it read) to stay compatible with a future use of the bit. docs/rules.md#res0",
        Severity.CORRECTNESS,
        "res0",
        _check_res0,
    ),
    Rule(
        "TRAP-COND",
        "MDCR_EL2.TPMS/E2PB are set only with FEAT_SPE; with them in force, every guest SPE access traps to EL2",
        "Patch: 'any attempts by a guest to use SPE will result in a trap'; review: 'Can we make this "
        "conditional on SPE being available?'. Arm ARM D24.7 (MDCR_EL2.TPMS, E2PB: E2PB IN {'x0'} traps "
        "PMBLIMITR/PMBPTR/PMBSR; PMBIDR_EL1 only through HDFGRTR_EL2.PMBIDR_EL1, D24.2.67, which must "
        "trap once the switch sets it); K1.2.19 (a reserved value may act as any allocated one). Judged "
        "by the guest's accesses the model observes. docs/rules.md#trap-cond",
        Severity.CORRECTNESS,
        "traps",
        _check_trap_cond,
    ),
    Rule(
        "UNDEF",
        "No host or hypervisor SPE access is UNDEFINED or traps to EL3, and the host's own never traps to EL2",
        "Arm ARM D24.7: without FEAT_SPE the SPE registers are UNDEFINED; with MDCR_EL3.NSPB giving the "
        "buffer to another Security state every SPE register but PMBIDR_EL1 traps to EL3 "
        "(CheckMDCR_EL3_NSPBTrap); the patch: 'Yes; is it owned by EL3?'. Judged by the accesses the model "
        "answers. docs/rules.md#undef",
        Severity.CORRECTNESS,
        "traps",
        _check_undef,
    ),
    Rule(
        "DRAIN-ORDER",
        "A CSE, PSB CSYNC and a full DSB before the live buffer's translation changes; guest profiling off",
        "Patch: 'the EL0/1 page table may be live whilst we're executing at EL2 on non-VHE'. Arm ARM "
        "D17.9 R_TRDTK: 'To synchronize previous profiling operations, software must execute a PSB'; a "
        "PSB synchronises the operations before the last context synchronisation event; D17.9: the DSB "
        "after it 'must apply to both loads and stores'; D8.1.5 I_JZRDG (informative): PSB then DSB before "
        "the lower EL's regime changes. Outcomes: ISOLATION, NO-LOSS. docs/rules.md#drain-order",
        Severity.CORRECTNESS,
        "ordering",
        _check_drain_order,
    ),
    Rule(
        "RESTORE-ORDER",
        "Host sampling resumes only with the host's translation and buffer ownership in force",
        "Patch: 'The host page table is installed, but not yet synchronised'; review: 'if you now depend on "
        "the debug restore being run after the rest of the sysregs, please add a comment'. Arm ARM: a "
        "register write affects indirect reads only after a context synchronisation event; with FEAT_ExS "
        "and SCTLR_EL2.EOS = 0 the return to the host is not one. Outcomes: ISOLATION, NO-LOSS, UNDEF. "
        "docs/rules.md#restore-order",
        Severity.CORRECTNESS,
        "ordering",
        _check_restore_order,
    ),
    Rule(
        "HOST-STATE",
        "After every exit the host sees the SPE state and MDCR_EL2 host bits it had before entry",
        "Patch title: 'Save/restore the host SPE state when entering/leaving a VM'; review of "
        "__deactivate_traps: the host's MDCR_EL2 bits must come back bit for bit. Judged on the register "
        "values the model holds at each return. docs/rules.md#host-state",
        Severity.CORRECTNESS,
        "host_state",
        _check_host_state,
    ),
    Rule(
        "ISOLATION",
        "No profiling record reaches guest or hypervisor memory; the guest never reaches host SPE state",
        "Patch: 'so that the host can make use of SPE without corrupting guest memory'. Judged on where "
        "the model writes each record, on the guest's accesses, and on the SPE values the vcpu's saved "
        "guest context holds (shown to the guest by trap emulation and to userspace). docs/rules.md#isolation",
        Severity.CORRECTNESS,
        "records",
        _check_isolation,
    ),
    Rule(
        "NO-LOSS",
        "Every host record reaches the host's buffer unless the buffer filled or the host stopped it",
        "Patch: 'Now drain all buffered data to memory'; Arm ARM D17.4 and D17.9.1 R_SXWCP: disabling the "
        "buffer discards records collected but not yet written. Judged on each record's fate in the "
        "model. docs/rules.md#no-loss",
        Severity.CORRECTNESS,
        "records",
        _check_no_loss,
    ),
    Rule(
        "LEAN",
        "No SPE register access or barrier the switch does not need",
        "Review: 'this feels like hitting the brakes each time we enter the guest', 'I believe you can "
        "avoid that on VHE (host page tables haven't changed)' and 'we never disabled SPE the first place "
        "on VHE (and we're probably only writing zeroes there)'. docs/rules.md#lean",
        Severity.LEAN,
        "lean",
        _check_lean,
    ),
)

BY_ID: Mapping[str, Rule] = {rule.id: rule for rule in RULES}

FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(rule.family for rule in RULES))


def rules_of_family(family: str) -> tuple[Rule, ...]:
    """The rules a suite file of `family` checks, in catalogue order."""
    if family not in FAMILIES:
        known = ", ".join(FAMILIES)
        msg = f"Cannot list the rules of family {family!r} because there is no such family (one of {known})"
        raise ValueError(msg)
    return tuple(rule for rule in RULES if rule.family == family)


def judge_all(trace: Trace, features: Features, rules: tuple[Rule, ...] = RULES) -> dict[str, Judgement]:
    """Every rule's judgement of `trace`, by rule id."""
    return {rule.id: rule.judge(trace, features) for rule in rules}
