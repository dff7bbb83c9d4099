"""LEAN: no SPE register access or barrier the switch does not need (docs/rules.md#lean)."""

from __future__ import annotations

from ..reference.actors import SOFTWARE
from ..reference.features import Features
from ..reference.registers import PMBSR_S, SPE_REGISTERS
from ..reference.trace import Kind, Trace
from .rule import Breach, Found, Rule, Severity
from .walk import Phase, Walk, msr_text, shown

# The kinds and phases tested on every event, as module names (CONTRIBUTING.md, Speed: Python 3.11's slow enum member lookup).
_ENTRY, _MRS, _MSR, _PSB = Kind.ENTRY, Kind.MRS, Kind.MSR, Kind.PSB
_IN_ENTRY = Phase.ENTRY


def _why_not_live(features: Features, walk: Walk) -> tuple[str, tuple[int, ...]]:
    """Why the host's buffer is not live in this window, and the events that says so names."""
    if not features.has_spe:
        return "the CPU has no FEAT_SPE", ()
    if features.spe_owned_by_higher_el:
        return "EL3 gives the buffer to another Security state (PMBIDR_EL1.P=1)", ()
    if walk.at_entry.get("PMBSR_EL1", 0) & PMBSR_S:
        return f"the buffer was stopped (PMBSR_EL1.S=1) at entry #{walk.entry}", (walk.entry,)
    return f"the host left PMBLIMITR_EL1.E=0 at entry #{walk.entry}", (walk.entry,)


def check_lean(trace: Trace, features: Features) -> Found:
    """No SPE work the switch does not need: none on VHE, none unless the buffer is live, no needless restore.

    Exercised: at least one window.
    """
    walk = Walk(features)
    exercised = False
    changed = False  # the entry window changed PMSCR_EL1
    found: list[Breach] = []
    cites: tuple[int, ...]
    for e in trace.events:
        kind = e.kind
        msg, cites = "", ()  # the message, and the events it names besides `e`
        if kind is _ENTRY:
            exercised, changed = True, False
        elif walk.in_window and e.actor in SOFTWARE:
            if features.vhe:
                if (kind is _MRS or kind is _MSR) and e.register in SPE_REGISTERS:
                    what = msr_text(e) if kind is _MSR else f"mrs {shown(e)}"
                    msg = (
                        f"{what} at #{e.seq} in the {walk.phase.value} window of a VHE switch (expected no SPE "
                        f"register access: the host's buffer uses EL2 tables the guest never changes)"
                    )
                elif kind is _PSB:
                    msg = (
                        f"PSB CSYNC at #{e.seq} in the {walk.phase.value} window of a VHE switch (expected none: "
                        f"nothing needs draining)"
                    )
            elif not walk.live:
                if (kind is _MSR and e.register == "PMSCR_EL1") or kind is _PSB:
                    what = msr_text(e) if kind is _MSR else "PSB CSYNC"
                    why, cites = _why_not_live(features, walk)
                    msg = (
                        f"{what} at #{e.seq} in the {walk.phase.value} window although the host's buffer is not live "
                        f"({why}); expected no PMSCR_EL1 write and no PSB CSYNC"
                    )
            elif kind is _MSR and e.register == "PMSCR_EL1":
                if walk.phase is _IN_ENTRY:
                    changed = changed or e.value != walk.values["PMSCR_EL1"]
                elif not changed:
                    msg = (
                        f"{msr_text(e)} at #{e.seq} restores PMSCR_EL1 although the entry window did not change "
                        f"it (expected no restore)"
                    )
        if msg:
            found.append(Breach(e.seq, msg, cites))
        walk.step(e)
    return Found(exercised, found)


LEAN = Rule(
    "LEAN",
    "No SPE register access or barrier the switch does not need",
    "Review: 'this feels like hitting the brakes each time we enter the guest', 'I believe you can "
    "avoid that on VHE (host page tables haven't changed)' and 'we never disabled SPE the first place "
    "on VHE (and we're probably only writing zeroes there)'. docs/rules.md#lean",
    Severity.LEAN,
    "lean",
    check_lean,
)

RULES = (LEAN,)
