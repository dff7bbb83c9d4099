"""The ordering family: DRAIN-ORDER (docs/rules.md#drain-order) and RESTORE-ORDER (docs/rules.md#restore-order)."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ..reference.features import Features
from ..reference.registers import (
    E2PB_EL2,
    E2PB_RESERVED,
    EL1_STAGE1,
    HCR_VM,
    MDCR_E2PB,
    PMBLIMITR_E,
    PMBSR_S,
    PMSCR_EL1_SPE,
)
from ..reference.trace import Event, Kind, Trace
from .rule import Breach, Found, Rule, Severity
from .walk import NOT_CSE, Phase, Walk, into_guest, msr_text

# The kinds and phases tested on every event, as module names (CONTRIBUTING.md, Speed: Python 3.11's slow enum member lookup).
_DSB, _ENTRY, _ERET, _EXCEPTION, _EXIT, _HW, _ISB, _MSR, _PSB = (
    Kind.DSB, Kind.ENTRY, Kind.ERET, Kind.EXCEPTION, Kind.EXIT, Kind.HW, Kind.ISB, Kind.MSR, Kind.PSB,
)
_IN_ENTRY, _IN_EXIT = Phase.ENTRY, Phase.EXIT

HOST_STAGE1 = EL1_STAGE1  # the nVHE host's translation
# Registers whose write can move the host's EL1-owned buffer to other tables or another owner
# (docs/rules.md#terms): changed before the drain (DRAIN-ORDER), or still unsynchronised when host
# sampling resumes (RESTORE-ORDER), in the ways `_moves_buffer` tells.
BUFFER_REGIME = frozenset({*HOST_STAGE1, "VTTBR_EL2", "MDCR_EL2", "HCR_EL2"})


def _owner_changes(was: int, now: int) -> bool:
    """Whether MDCR_EL2.E2PB [13:12] going from `was` to `now` gives the buffer to another EL: the
    pseudocode's ProfilingBufferOwner() gives it to EL2 for 0b00 and to EL1 otherwise, so 0b10 and 0b11
    differ only in whether EL1's buffer accesses trap; the reserved 0b01 may act as any allocated value
    (K1.2.19), so a move to or from it counts."""
    return was != now and (E2PB_RESERVED in (was, now) or (was == E2PB_EL2) != (now == E2PB_EL2))


def _moves_buffer(register: str, old: int, new: int) -> bool:
    """Whether writing `new` over `old` to `register` (one of BUFFER_REGIME) changes the host's buffer's
    translation or owner: any change of its stage 1 or VTTBR_EL2, of HCR_EL2.VM [0], of the E2PB owner."""
    if register == "HCR_EL2":
        return bool((old ^ new) & HCR_VM)
    if register == "MDCR_EL2":
        return _owner_changes(MDCR_E2PB.get(old), MDCR_E2PB.get(new))
    return old != new


# ------------------------------------------------------------------ DRAIN-ORDER

_LINKS = (
    "context synchronisation event at EL2 (the exception entry where it is one, else an ISB)",
    "PSB CSYNC",
    "DSB over loads and stores (NSH or wider; not *ST or *LD)",
)


def _profiling_off(pmscr: int, limitr: int, status: int) -> bool:
    return not pmscr & PMSCR_EL1_SPE or not limitr & PMBLIMITR_E or bool(status & PMBSR_S)


def _guest_profiling_off(walk: Walk, eret: Event) -> bool:
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


def _translation_change(e: Event, values: Mapping[str, int]) -> str:
    """How `e` changes the translation the host's EL1-owned buffer uses, or '' if it does not."""
    kind = e.kind
    if kind is _ERET:
        return f"eret {e.where}" if e.into_guest else ""
    if kind is not _MSR:
        return ""
    reg = e.register
    if reg not in BUFFER_REGIME or not _moves_buffer(reg, values[reg], e.value):
        return ""
    old = values[reg]
    if reg == "HCR_EL2":
        return f"{msr_text(e)} (VM {old & HCR_VM} -> {e.value & HCR_VM})"
    if reg == "MDCR_EL2":
        return f"{msr_text(e)} (E2PB {MDCR_E2PB.get(old):#04b} -> {MDCR_E2PB.get(e.value):#04b})"
    return f"{msr_text(e)} (was {old:#x})"


def _buffer_stop(e: Event, values: Mapping[str, int]) -> str:
    """How `e` disables or stops the host's buffer or reuses its memory, or ''."""
    if e.kind is not _MSR:
        return ""
    if e.register == "PMBLIMITR_EL1" and values["PMBLIMITR_EL1"] & PMBLIMITR_E and not e.value & PMBLIMITR_E:
        return f"{msr_text(e)} (disables the buffer)"
    if e.register == "PMBPTR_EL1" and e.value != values["PMBPTR_EL1"]:
        return f"{msr_text(e)} (moves the buffer's write pointer)"
    if e.register == "PMBSR_EL1" and e.value & PMBSR_S and not values["PMBSR_EL1"] & PMBSR_S:
        return f"{msr_text(e)} (stops the buffer: PMBSR_EL1.S=1)"
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
    if e.kind is _DSB:
        return e.describe()
    if e.kind is _EXCEPTION:
        return "exception entry"
    return "ISB" if e.kind is _ISB else "PSB CSYNC"


def _drain_breach(chain: _Chain, what: str, e: Event, walk: Walk, stop: bool) -> Breach:
    """Name the first missing link of the chain before `what`, citing the entry and the events it names."""
    s = len(chain.links)
    cites = [walk.entry]
    if s == 0:
        lead = f"no {_LINKS[0]} before a PSB CSYNC (the exception entry into EL2 was {NOT_CSE})"
    else:
        prev = chain.links[-1]
        lead = f"no {_LINKS[s]} after the {_link_label(prev)} at #{prev.seq}"
        cites.append(prev.seq)
    early = chain.early.get(s + 1 if s == 0 else s)
    if early is not None:
        lead += f" (the {_link_label(early)} at #{early.seq} came before the {_link_label(chain.links[-1]) if s else 'CSE'})"
        cites.append(early.seq)
    if s == 2 and chain.weak is not None:
        lead += f" ({chain.weak.describe()} at #{chain.weak.seq} does not wait for the buffer's writes: D17.9 asks for one that applies to loads and stores)"
        cites.append(chain.weak.seq)
    consequence = (
        "so records not synchronised or not yet written may be discarded"
        if stop else "so records collected before it may be translated by the new regime"
    )
    return Breach(e.seq, (
        f"{lead}, before the {what} at #{e.seq} while the host's buffer was live "
        f"(PMBLIMITR_EL1.E=1 at entry #{walk.entry}), {consequence}; expected a context synchronisation "
        f"event at EL2, PSB CSYNC, then a DSB over loads and stores, in that order"
    ), cites)


def check_drain_order(trace: Trace, features: Features) -> Found:
    """nVHE, buffer live at entry: the drain chain completes before the first translation change
    and before the buffer is stopped, and the guest's profiling is off in force at its ERET.

    Exercised: an nVHE entry window with the host's buffer live reached a translation change
    (every entry does: the ERET into the guest is one).
    """
    if features.vhe:
        return Found(False)
    walk = Walk(features)
    exercised = False
    found: list[Breach] = []
    chain = _Chain()
    for e in trace.events:
        kind = e.kind
        if walk.phase is _IN_ENTRY and walk.live:
            if not chain.judged:
                change = _translation_change(e, walk.values)
                stop = "" if change or chain.stop_judged else _buffer_stop(e, walk.values)
                if change:
                    chain.judged = exercised = True
                    if not chain.done:
                        found.append(_drain_breach(chain, change, e, walk, False))
                elif stop:
                    chain.stop_judged = True
                    if not chain.done:
                        found.append(_drain_breach(chain, stop, e, walk, True))
                elif kind is _ISB:
                    chain.offer(0, e)
                elif kind is _HW and e.register == "PMBSR_EL1" and e.value & PMBSR_S:
                    chain.judged = exercised = True  # the buffer stopped itself: nothing is left to drain
                elif kind is _PSB:
                    chain.offer(1, e)
                elif kind is _DSB:
                    if e.dsb is not None and e.dsb.completes_records:
                        chain.offer(2, e)
                    else:
                        chain.weak = e
            if into_guest(e) and not _guest_profiling_off(walk, e):
                pmscr = "/".join(f"{v:#x}" for v in walk.in_force("PMSCR_EL1"))
                limitr = "/".join(f"{v:#x}" for v in walk.in_force("PMBLIMITR_EL1"))
                sync = "" if e.cse else f" (the ERET is {NOT_CSE}, so an unsynchronised write may not be in force yet)"
                msg = (
                    f"eret {e.where} at #{e.seq} with the guest's EL1/EL0 profiling possibly on: PMSCR_EL1 "
                    f"{pmscr}, PMBLIMITR_EL1 {limitr} may be in force{sync}; expected PMSCR_EL1.E0SPE/E1SPE=0 "
                    f"or PMBLIMITR_EL1.E=0 in force, so the guest is not sampled into the host's buffer"
                )
                found.append(Breach(e.seq, msg))
        walk.step(e)
        if kind is _ENTRY:
            chain = _Chain()
        elif kind is _EXCEPTION and walk.phase is _IN_ENTRY and e.el == 2 and e.cse:
            chain.offer(0, e)  # EL2 never samples the host's EL1-owned buffer: profiling is off at this CSE
    return Found(exercised, found)


# ------------------------------------------------------------------ RESTORE-ORDER


def _host_sampling_on(values: Mapping[str, int]) -> bool:
    return bool(values["PMSCR_EL1"] & PMSCR_EL1_SPE and values["PMBLIMITR_EL1"] & PMBLIMITR_E)


def _unsynchronised(walk: Walk, writes: Mapping[str, Event]) -> list[Event]:
    """The exit window's last writes to BUFFER_REGIME after which the PE may still use a value that puts the
    host's buffer under another translation or owner than the new one (`_moves_buffer`)."""
    stale, values = walk.stale, walk.values
    return [writes[r] for r in sorted(BUFFER_REGIME) if r in writes and r in stale and _moves_buffer(r, stale[r], values[r])]


def check_restore_order(trace: Trace, features: Features) -> Found:
    """nVHE: host sampling resumes only once the host's translation and buffer ownership are in force.

    At the return to the host with host sampling on: the translation registers hold the host's
    values, and, where that return is not context synchronising, none of the exit window's
    writes to them is still unsynchronised.

    Exercised: on nVHE, a return to the host with host sampling on.
    """
    if features.vhe:
        return Found(False)
    walk = Walk(features)
    exercised = False
    found: list[Breach] = []
    writes: dict[str, Event] = {}  # the exit window's last write to each restore register
    for e in trace.events:
        kind = e.kind
        if walk.phase is _IN_EXIT:
            if kind is _MSR and e.register in BUFFER_REGIME:
                writes[e.register] = e
            elif walk.returns_to_host(e) and _host_sampling_on(walk.values):
                exercised = True
                values, host = walk.values, walk.at_entry
                wrong = [
                    f"{reg}={values[reg]:#x} (expected the host's {host[reg]:#x})"
                    for reg in (*HOST_STAGE1, "VTTBR_EL2")
                    if values[reg] != host[reg] and (reg != "VTTBR_EL2" or values["HCR_EL2"] & HCR_VM)
                ]
                e2pb, host_e2pb = MDCR_E2PB.get(values["MDCR_EL2"]), MDCR_E2PB.get(walk.boot["MDCR_EL2"])
                if _owner_changes(host_e2pb, e2pb):
                    wrong.append(f"MDCR_EL2.E2PB={e2pb:#04b} (expected the host's {host_e2pb:#04b}, or one giving the buffer to the same EL)")
                if (values["HCR_EL2"] ^ host["HCR_EL2"]) & HCR_VM:
                    wrong.append(f"HCR_EL2.VM={values['HCR_EL2'] & HCR_VM} (expected the host's {host['HCR_EL2'] & HCR_VM})")
                if wrong:
                    msg = (
                        f"the return to the host at #{e.seq} resumes host sampling (PMSCR_EL1={values['PMSCR_EL1']:#x}) "
                        f"under a translation that is not the host's: " + "; ".join(wrong)
                    )
                    found.append(Breach(e.seq, msg))
                elif not e.cse:
                    pending = _unsynchronised(walk, writes)
                    if pending:
                        last = max(pending, key=lambda w: w.seq)
                        msg = (
                            f"no ISB between the {msr_text(last)} at #{last.seq} and the return to the host at #{e.seq}, "
                            f"which is {NOT_CSE}: host sampling (PMSCR_EL1={values['PMSCR_EL1']:#x}) may resume under "
                            f"the guest's translation (expected an ISB after the writes restoring the host's "
                            f"translation and before the PMSCR_EL1 write or the ERET)"
                        )
                        found.append(Breach(e.seq, msg, (last.seq,)))
        walk.step(e)
        if kind is _EXIT or (kind is _EXCEPTION and e.guest_exit):
            writes = {}
    return Found(exercised, found)


DRAIN_ORDER = Rule(
    "DRAIN-ORDER",
    "A CSE, PSB CSYNC and a full DSB before the live buffer's translation changes; guest profiling off",
    "Patch: 'the EL0/1 page table may be live whilst we're executing at EL2 on non-VHE'. Arm ARM "
    "D17.9 R_TRDTK: 'To synchronize previous profiling operations, software must execute a PSB'; a "
    "PSB synchronises the operations before the last context synchronisation event; D17.9: the DSB "
    "after it 'must apply to both loads and stores'; D8.1.5 I_JZRDG (informative): PSB then DSB before "
    "the lower EL's regime changes. Outcomes: ISOLATION, NO-LOSS. docs/rules.md#drain-order",
    Severity.CORRECTNESS,
    "ordering",
    check_drain_order,
)

RESTORE_ORDER = Rule(
    "RESTORE-ORDER",
    "Host sampling resumes only with the host's translation and buffer ownership in force",
    "Patch: 'The host page table is installed, but not yet synchronised'; review: 'if you now depend on "
    "the debug restore being run after the rest of the sysregs, please add a comment'. Arm ARM: a "
    "register write affects indirect reads only after a context synchronisation event; with FEAT_ExS "
    "and SCTLR_EL2.EOS = 0 the return to the host is not one. Outcomes: ISOLATION, NO-LOSS, UNDEF. "
    "docs/rules.md#restore-order",
    Severity.CORRECTNESS,
    "ordering",
    check_restore_order,
)

RULES = (DRAIN_ORDER, RESTORE_ORDER)
