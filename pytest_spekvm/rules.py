"""The rule catalogue: each rule of DESIGN.md section 4 as a single-pass checker over a trace."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterator, Mapping

import attrs

from .reference import memory as M
from .reference import registers as R
from .reference.cpu import PMBIDR_ALIGN_64, PMBIDR_P
from .reference.features import Features, id_aa64dfr0_el1
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
MDCR_TPMS = R.field_mask("MDCR_EL2", "TPMS")  # MDCR_EL2.TPMS [14]
MDCR_E2PB = R.BY_NAME["MDCR_EL2"].field("E2PB")  # MDCR_EL2.E2PB [13:12]
HCR_VM = R.field_mask("HCR_EL2", "VM")  # HCR_EL2.VM [0]
# MDCR_EL2.E2PB values under which EL1 accesses to the buffer registers trap to EL2
# (0b00: owned by EL2; 0b10: owned by EL1, accesses trap). 0b11 lets EL1 in; 0b01 is reserved.
E2PB_TRAPPING = frozenset({0b00, 0b10})
SPE_KINDS = frozenset({R.SPE_SAMPLING, R.SPE_BUFFER})
SPE_REGISTERS = frozenset(r.name for r in R.REGISTERS if r.kind in SPE_KINDS)
# Buffer registers that only the owning EL may touch while PMBIDR_EL1.P = 1.
OWNED_BUFFER_REGISTERS = frozenset(
    r.name for r in R.REGISTERS if r.kind == R.SPE_BUFFER and r.name != "PMBIDR_EL1"
)
HOST_STAGE1 = ("TTBR0_EL1", "TTBR1_EL1", "TCR_EL1")
# Registers whose change moves the host's EL1-owned buffer to other tables (DESIGN appendix).
TRANSLATION_VALUES = frozenset({*HOST_STAGE1, "VTTBR_EL2"})
# What the exit must give back before host sampling resumes (RESTORE-ORDER).
RESTORE_REGISTERS = frozenset({*HOST_STAGE1, "MDCR_EL2", "HCR_EL2"})
# The code under test runs as these actors; "boot" is the harness's set-up, "pe" the hardware.
SOFTWARE = frozenset({"host", "hyp"})
INTO_GUEST = "into guest"  # how an ERET into a guest describes itself
EXIT_FROM_GUEST = "exit from guest"  # how the exception entry at a guest's exit describes itself
DISCARDED_BY_HOST = "buffer disabled by host"
RECORD_FATES = frozenset({Kind.WRITE, Kind.DISCARD, Kind.FAULT, Kind.FULL})
ACCESSES = frozenset({Kind.MRS, Kind.MSR, Kind.TRAP, Kind.UNDEF})


def _is_guest(actor: str) -> bool:
    return actor.startswith("guest")


def _is_spe(name: str) -> bool:
    """Whether `name` (a register, or a *_EL12 alias an UNDEF event may carry) is an SPE register."""
    alias = R.EL12_ALIASES.get(name)
    return (alias[1] if alias else name) in SPE_REGISTERS


def _dsb_covers_pe(domain: str) -> bool:
    """DSB NSH or wider that waits for stores: a load-only DSB (*LD) does not complete record writes."""
    return not domain.endswith("ld")


# ------------------------------------------------------------------ register replay


class RegisterReplay:
    """Every register's value as the trace's events leave it, rebuilt from the events alone.

    MSR events write their value; the PE's own updates are events too (WRITE carries the
    advanced PMBPTR_EL1, HW the new PMBSR_EL1). Values start where the CPU's do at reset.
    """

    __slots__ = ("values",)

    def __init__(self, features: Features) -> None:
        self.values: dict[str, int] = dict.fromkeys(R.BY_NAME, 0)
        self.values["ID_AA64DFR0_EL1"] = id_aa64dfr0_el1(features)
        p = PMBIDR_P if features.spe_owned_by_higher_el else 0
        self.values["PMBIDR_EL1"] = p | PMBIDR_ALIGN_64

    def step(self, event: Event) -> None:
        """Apply `event`'s effect on the registers, if it has one."""
        kind = event.kind
        if kind is Kind.MSR or kind is Kind.HW or kind is Kind.WRITE:
            self.values[event.register] = event.value

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
    """Where the trace is, relative to the world switch's windows (DESIGN appendix, Terms)."""

    HOST = "host"  # outside the switch
    ENTRY = "entry"  # from the host's call to the ERET into the guest (inclusive)
    GUEST = "guest"  # the guest runs
    EXIT = "exit"  # from the guest's exit to EL2 to the return to the host (inclusive)


class _Walk(RegisterReplay):
    """Register replay plus the window the trace is in, both as they stand *before* the next event.

    Checkers read the state for an event, then `step` past it: so the ERET into the guest is
    seen inside the entry window, and the RETURN marker inside the exit window.
    """

    __slots__ = ("at_entry", "boot_mdcr", "entry", "live", "phase", "spe_usable")

    def __init__(self, features: Features) -> None:
        super().__init__(features)
        self.phase = Phase.HOST
        self.entry = -1  # seq of the ENTRY that opened the current (or last) window
        self.at_entry: dict[str, int] = {}  # registers when that entry window began
        self.live = False  # the host's buffer was live at that entry
        self.boot_mdcr = 0  # MDCR_EL2 as the boot code left it: the host bits
        self.spe_usable = features.has_spe and not features.spe_owned_by_higher_el

    def step(self, event: Event) -> None:
        kind = event.kind
        if kind is Kind.MSR or kind is Kind.HW or kind is Kind.WRITE:
            self.values[event.register] = event.value
            if kind is Kind.MSR and event.actor == "boot" and event.register == "MDCR_EL2":
                self.boot_mdcr = event.value
        elif kind is Kind.ENTRY:
            self.phase = Phase.ENTRY
            self.entry = event.seq
            self.at_entry = dict(self.values)
            self.live = self.spe_usable and bool(self.values["PMBLIMITR_EL1"] & PMBLIMITR_E)
        elif kind is Kind.GUEST or (
            kind is Kind.ERET and self.phase is Phase.ENTRY and event.where.startswith(INTO_GUEST)
        ):
            self.phase = Phase.GUEST
        elif kind is Kind.EXIT or (
            kind is Kind.EXCEPTION and self.phase is Phase.GUEST and event.where.startswith(EXIT_FROM_GUEST)
        ):
            self.phase = Phase.EXIT
        elif kind is Kind.RETURN:
            self.phase = Phase.HOST

    @property
    def in_window(self) -> bool:
        """Inside the entry or the exit window: where the world switch's own code runs."""
        return self.phase is Phase.ENTRY or self.phase is Phase.EXIT


def _into_guest(event: Event) -> bool:
    return event.kind is Kind.ERET and event.where.startswith(INTO_GUEST)


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
        return "the buffer belongs to a higher EL (PMBIDR_EL1.P=1)"
    return f"the host left PMBLIMITR_EL1.E=0 at entry #{walk.entry}"


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
    return f"{e.actor} wrote {e.value:#x} to {e.register} at #{e.seq} without trapping"


def _check_trap_cond(trace: Trace, features: Features) -> Judgement:
    """With FEAT_SPE: the guest runs under TPMS=1 and a trapping E2PB, and its SPE accesses trap.

    Without FEAT_SPE: no MDCR_EL2 write by host or hypervisor sets TPMS or E2PB.

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
    mdcr = 0  # MDCR_EL2 replayed: only its latest value matters here
    for e in trace.events:
        kind = e.kind
        if kind is Kind.MSR and e.register == "MDCR_EL2":
            mdcr = e.value
        elif _into_guest(e):
            entered = True
            problems = []
            if not mdcr & MDCR_TPMS:
                problems.append("TPMS=0 (expected 1, so the guest's sampling-control accesses trap)")
            e2pb = MDCR_E2PB.get(mdcr)
            if e2pb not in E2PB_TRAPPING:
                problems.append(f"E2PB={e2pb:#04b} (expected 0b00 or 0b10, so its buffer accesses trap)")
            if problems:
                msg = f"eret {e.where} with MDCR_EL2={mdcr:#x}: " + "; ".join(problems)
                found.append(Violation("TRAP-COND", e.seq, msg))
        if kind in ACCESSES and _is_guest(e.actor) and _is_spe(e.register):
            accessed = True
            if kind is Kind.MRS or kind is Kind.MSR:
                msg = _guest_access_message(e) + " (expected a trap to EL2)"
                found.append(Violation("TRAP-COND", e.seq, msg))
    return Judgement("TRAP-COND", (entered and accessed) or bool(found), tuple(found))


# ------------------------------------------------------------------ UNDEF


def _check_undef(trace: Trace, features: Features) -> Judgement:
    """No host or hypervisor access the model answers with UNDEFINED; only PMBIDR_EL1 while P=1.

    Exercised: the world switch ran (an entry) on a CPU where SPE accesses are UNDEFINED (no
    FEAT_SPE, or PMBIDR_EL1.P=1); or any violation.
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
        if kind is Kind.UNDEF:
            if _is_spe(e.register) and not features.has_spe:
                expected = "no SPE register access without FEAT_SPE: check ID_AA64DFR0_EL1.PMSVer first"
            elif owned and e.register in OWNED_BUFFER_REGISTERS:
                expected = "no buffer register but PMBIDR_EL1 touched while PMBIDR_EL1.P=1"
            else:
                expected = "only accesses the architecture defines here"
            who = f"{e.name or e.register} by {e.actor} at EL{e.el}"
            msg = f"access to {who} is UNDEFINED ({e.where}); expected {expected}"
            found.append(Violation("UNDEF", e.seq, msg))
        elif owned and (kind is Kind.MRS or kind is Kind.MSR) and e.register in OWNED_BUFFER_REGISTERS:
            msg = (
                f"{e.actor} accessed {e.register} at #{e.seq} while PMBIDR_EL1.P=1 "
                f"(expected only PMBIDR_EL1 touched: the buffer belongs to a higher EL)"
            )
            found.append(Violation("UNDEF", e.seq, msg))
    hazard = not features.has_spe or owned
    return Judgement("UNDEF", (hazard and switched) or bool(found), tuple(found))


# ------------------------------------------------------------------ DRAIN-ORDER

_LINKS = ("msr PMSCR_EL1 clearing E0SPE and E1SPE", "ISB", "PSB CSYNC", "DSB (NSH or wider)")


def _translation_change(e: Event, values: Mapping[str, int]) -> str:
    """How `e` changes the translation the host's EL1-owned buffer uses, or '' if it does not."""
    kind = e.kind
    if kind is Kind.ERET:
        return f"eret {e.where}" if e.where.startswith(INTO_GUEST) else ""
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


@attrs.define
class _Chain:
    """Progress through the drain chain within one entry window."""

    state: int = 0  # links done, in order
    links: list[Event] = attrs.field(factory=list)  # the event that made each link
    since: dict[str, Event] = attrs.field(factory=dict)  # first ISB/PSB/DSB since the last link
    seen: dict[str, Event] = attrs.field(factory=dict)  # first ISB/PSB/DSB in the window
    reenabled: Event | None = None  # a write that set sampling again after a clear
    judged: bool = False

    def advance(self, e: Event) -> None:
        self.state += 1
        self.links.append(e)
        self.since = {}

    def note(self, label: str, e: Event) -> None:
        self.since.setdefault(label, e)
        self.seen.setdefault(label, e)

    def restart(self, e: Event) -> None:
        """Sampling was set again: the chain starts over."""
        if self.state:
            self.reenabled = e
        self.state, self.links, self.since = 0, [], {}


def _link_label(e: Event) -> str:
    if e.kind is Kind.MSR:
        return _msr(e)
    if e.kind is Kind.DSB:
        return f"dsb {e.where}"
    return "ISB" if e.kind is Kind.ISB else "PSB CSYNC"


def _drain_message(chain: _Chain, change: str, e: Event, walk: _Walk) -> str:
    """Name the first missing link, between the last link made and the next one (or the change)."""
    s = chain.state
    if s == 0:
        r = chain.reenabled
        lead = f"no {_LINKS[0]}" if r is None else f"{_msr(r)} at #{r.seq} set sampling again after the clear"
    else:
        prev = chain.links[-1]
        following = chain.since.get(_LINKS[s + 1]) if s + 1 < len(_LINKS) else None
        if following is not None:
            lead = f"no {_LINKS[s]} between the {_link_label(prev)} at #{prev.seq} and the "
            lead += f"{_link_label(following)} at #{following.seq}"
        else:
            lead = f"no {_LINKS[s]} after the {_link_label(prev)} at #{prev.seq}"
        early = chain.seen.get(_LINKS[s])
        if early is not None and early.seq < prev.seq:
            lead += f" (the {_link_label(early)} at #{early.seq} came too early)"
        weak = chain.since.get("weak dsb")
        if s == 3 and weak is not None:
            lead += f" (dsb {weak.where} at #{weak.seq} waits for loads only)"
    return (
        f"{lead}, before the {change} at #{e.seq} changed the translation of the host's live buffer "
        f"(PMBLIMITR_EL1.E=1 at entry #{walk.entry}); expected msr PMSCR_EL1 clearing E0SPE and E1SPE, "
        f"ISB, PSB CSYNC and a DSB (NSH or wider), in that order"
    )


def _check_drain_order(trace: Trace, features: Features) -> Judgement:
    """nVHE, buffer live at entry: sampling off, ISB, PSB CSYNC, DSB before the first translation change.

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
        if walk.phase is Phase.ENTRY and walk.live and not chain.judged:
            change = _translation_change(e, walk.values)
            if change:
                chain.judged = exercised = True
                if chain.state < len(_LINKS):
                    found.append(Violation("DRAIN-ORDER", e.seq, _drain_message(chain, change, e, walk)))
            elif kind is Kind.MSR and e.register == "PMSCR_EL1":
                if e.value & PMSCR_EL1_SPE:
                    chain.restart(e)
                elif chain.state == 0:
                    chain.advance(e)
            elif kind is Kind.ISB:
                if chain.state == 1:
                    chain.advance(e)
                else:
                    chain.note("ISB", e)
            elif kind is Kind.PSB:
                if chain.state == 2:
                    chain.advance(e)
                else:
                    chain.note("PSB CSYNC", e)
            elif kind is Kind.DSB:
                if not _dsb_covers_pe(e.where):
                    chain.note("weak dsb", e)
                elif chain.state == 3:
                    chain.advance(e)
                else:
                    chain.note(_LINKS[3], e)
        walk.step(e)
        if kind is Kind.ENTRY:
            chain = _Chain()
    return Judgement("DRAIN-ORDER", exercised, tuple(found))


# ------------------------------------------------------------------ RESTORE-ORDER


def _check_restore_order(trace: Trace, features: Features) -> Judgement:
    """nVHE: a write setting PMSCR_EL1.E0SPE/E1SPE on exit follows the host's translation, synchronised.

    Exercised: on nVHE, an exit window turned host sampling back on.
    """
    if features.vhe:
        return Judgement("RESTORE-ORDER", False)
    walk = _Walk(features)
    exercised = False
    found: list[Violation] = []
    last_restore: Event | None = None  # the last write in this exit window that puts host state back
    synced = True
    for e in trace.events:
        kind = e.kind
        if kind is Kind.EXCEPTION and walk.phase is Phase.GUEST:
            last_restore, synced = None, True  # exception entry synchronises the guest's state
        elif walk.phase is Phase.EXIT:
            if kind is Kind.ISB:
                synced = True
            elif kind is Kind.MSR and e.register in RESTORE_REGISTERS:
                last_restore, synced = e, False
            elif kind is Kind.MSR and e.register == "PMSCR_EL1" and e.value & PMSCR_EL1_SPE:
                exercised = True
                values, host = walk.values, walk.at_entry
                missing = [
                    f"{reg}={values[reg]:#x} (expected the host's {host[reg]:#x})"
                    for reg in HOST_STAGE1
                    if values[reg] != host[reg]
                ]
                e2pb, host_e2pb = MDCR_E2PB.get(values["MDCR_EL2"]), MDCR_E2PB.get(walk.boot_mdcr)
                if e2pb != host_e2pb:
                    missing.append(f"MDCR_EL2.E2PB={e2pb:#04b} (expected the host's {host_e2pb:#04b})")
                if values["HCR_EL2"] & HCR_VM:
                    missing.append("HCR_EL2.VM=1 (expected 0)")
                if missing:
                    msg = (
                        f"{_msr(e)} at #{e.seq} turns host sampling back on before the host's translation "
                        f"is back: " + "; ".join(missing)
                    )
                    found.append(Violation("RESTORE-ORDER", e.seq, msg))
                elif not synced and last_restore is not None:
                    msg = (
                        f"no ISB between the {_msr(last_restore)} at #{last_restore.seq} and the {_msr(e)} "
                        f"at #{e.seq} (expected the host's translation synchronised before sampling resumes)"
                    )
                    found.append(Violation("RESTORE-ORDER", e.seq, msg))
        walk.step(e)
    return Judgement("RESTORE-ORDER", exercised, tuple(found))


# ------------------------------------------------------------------ HOST-STATE


def _check_host_state(trace: Trace, features: Features) -> Judgement:
    """At every return: the host's SPE registers as at entry (plus the PE's own updates), MDCR_EL2 as at boot.

    Exercised: at least one return to the host.
    """
    if features.has_spe:
        tracked: tuple[str, ...] = (
            "PMSCR_EL2" if features.vhe else "PMSCR_EL1",
            "PMBLIMITR_EL1",
            "PMBPTR_EL1",
            "PMBSR_EL1",
        )
    else:
        tracked = ()
    walk = _Walk(features)
    exercised = False
    found: list[Violation] = []
    expected: dict[str, int] = {}
    hw: dict[str, int] = {}  # register -> how many updates the PE made in this window
    last_write: dict[str, Event] = {}  # register -> last software write in this window
    for e in trace.events:
        kind = e.kind
        if walk.phase is not Phase.HOST:
            if kind is Kind.MSR:
                last_write[e.register] = e
            elif (kind is Kind.HW or kind is Kind.WRITE) and e.register in expected:
                expected[e.register] = e.value
                hw[e.register] = hw.get(e.register, 0) + 1
        if kind is Kind.RETURN and walk.phase is Phase.EXIT:
            exercised = True
            for reg in tracked:
                got, want = walk.values[reg], expected[reg]
                if got != want:
                    why = f"its value at entry #{walk.entry}"
                    if hw.get(reg):
                        why += f", then {hw[reg]} update(s) by the PE"
                    msg = _state_message(e, reg, (want, got), why, last_write.get(reg))
                    found.append(Violation("HOST-STATE", e.seq, msg))
            got, want = walk.values["MDCR_EL2"], walk.boot_mdcr
            if got != want:
                why = "the host's boot value"
                msg = _state_message(e, "MDCR_EL2", (want, got), why, last_write.get("MDCR_EL2"))
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


def _check_isolation(trace: Trace, features: Features) -> Judgement:
    """No record lands outside the host's buffer; no guest SPE access completes.

    Exercised: a record was still inside the PE when an entry began, or one was written while
    the switch or the guest ran, or a guest tried an SPE register.
    """
    walk_phase = Phase.HOST
    collected: dict[int, Event] = {}
    pending = 0
    exercised = False
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
            if kind is Kind.MRS or kind is Kind.MSR:
                msg = _guest_access_message(e) + " (expected a trap to EL2: no guest reaches host SPE state)"
                found.append(Violation("ISOLATION", e.seq, msg))
    return Judgement("ISOLATION", exercised or bool(found), tuple(found))


# ------------------------------------------------------------------ NO-LOSS


def _check_no_loss(trace: Trace, features: Features) -> Judgement:
    """Host records are written (or meet a full buffer); only the host's own disable may discard them.

    Exercised: a record was collected while the host ran.
    """
    host: dict[int, Event] = {}
    found: list[Violation] = []
    for e in trace.events:
        kind = e.kind
        if kind is Kind.RECORD:
            if e.actor == "host":
                host[e.record] = e
        elif kind is Kind.DISCARD or kind is Kind.FAULT:
            rec = host.get(e.record)
            if rec is None or (kind is Kind.DISCARD and e.where == DISCARDED_BY_HOST):
                continue
            fate = f"discarded ({e.where})" if kind is Kind.DISCARD else f"lost to a {e.where}"
            msg = (
                f"record #{e.record} collected while the host ran (#{rec.seq}) was {fate} at #{e.seq}: "
                f"expected it written to the host's buffer"
            )
            found.append(Violation("NO-LOSS", e.seq, msg))
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
        "necessarily implement the feature.'",
        Severity.CORRECTNESS,
        "res0",
        _check_res0,
    ),
    Rule(
        "TRAP-COND",
        "MDCR_EL2.TPMS/E2PB are set only with FEAT_SPE; with it, every guest SPE access traps to EL2",
        "Patch: 'any attempts by a guest to use SPE will result in a trap'; review: 'Can we make this "
        "conditional on SPE being available?'",
        Severity.CORRECTNESS,
        "traps",
        _check_trap_cond,
    ),
    Rule(
        "UNDEF",
        "No SPE register is accessed without FEAT_SPE; only PMBIDR_EL1 while PMBIDR_EL1.P is 1",
        "Arm: without FEAT_SPE the SPE registers are UNDEFINED; with PMBIDR_EL1.P=1 the buffer belongs "
        "to a higher EL (the patch: 'Yes; is it owned by EL3?').",
        Severity.CORRECTNESS,
        "traps",
        _check_undef,
    ),
    Rule(
        "DRAIN-ORDER",
        "Before the live buffer's translation changes: sampling off, ISB, PSB CSYNC, DSB",
        "Patch: 'The SPE buffer is virtually addressed, using the page tables of the CPU MMU. Unusually, "
        "this means that the EL0/1 page table may be live whilst we're executing at EL2 on non-VHE "
        "configurations.'",
        Severity.CORRECTNESS,
        "ordering",
        _check_drain_order,
    ),
    Rule(
        "RESTORE-ORDER",
        "Host sampling resumes only after its translation and buffer ownership are back and synchronised",
        "Patch: 'The host page table is installed, but not yet synchronised'; review: 'if you now depend on "
        "the debug restore being run after the rest of the sysregs, please add a comment'",
        Severity.CORRECTNESS,
        "ordering",
        _check_restore_order,
    ),
    Rule(
        "HOST-STATE",
        "After every exit the host sees the SPE state and MDCR_EL2 host bits it had before entry",
        "Patch title: 'Save/restore the host SPE state when entering/leaving a VM'; review of "
        "__deactivate_traps: the host's MDCR_EL2 bits must come back bit for bit.",
        Severity.CORRECTNESS,
        "host_state",
        _check_host_state,
    ),
    Rule(
        "ISOLATION",
        "No profiling record reaches guest or hypervisor memory; the guest never reads host SPE state",
        "Patch: 'so that the host can make use of SPE without corrupting guest memory'",
        Severity.CORRECTNESS,
        "records",
        _check_isolation,
    ),
    Rule(
        "NO-LOSS",
        "Every host record reaches the host's buffer unless the buffer filled or the host disabled it",
        "Patch: 'Now drain all buffered data to memory'; Arm: disabling the buffer discards records "
        "collected but not yet written.",
        Severity.CORRECTNESS,
        "records",
        _check_no_loss,
    ),
    Rule(
        "LEAN",
        "No SPE register access or barrier the switch does not need",
        "Review: 'this feels like hitting the brakes each time we enter the guest', 'I believe you can "
        "avoid that on VHE (host page tables haven't changed)' and 'we never disabled SPE the first place "
        "on VHE (and we're probably only writing zeroes there)'",
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
