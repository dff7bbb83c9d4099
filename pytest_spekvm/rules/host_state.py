"""HOST-STATE: after every exit the host has the SPE state and trap controls it had (docs/rules.md#host-state)."""

from __future__ import annotations

from ..reference.features import Features
from ..reference.trace import Event, Kind, Trace
from .rule import Breach, Found, Rule, Severity
from .walk import BOOT_CONTROLS, HOST_SPE_STATE, Phase, Walk, msr_text

# The kinds and phases tested on every event, as module names (CONTRIBUTING.md, Speed: Python 3.11's slow enum member lookup).
_ENTRY, _HW, _MSR, _RETURN, _WRITE = Kind.ENTRY, Kind.HW, Kind.MSR, Kind.RETURN, Kind.WRITE
_IN_EXIT, _IN_HOST = Phase.EXIT, Phase.HOST


def check_host_state(trace: Trace, features: Features) -> Found:
    """At every return: the host's SPE registers as at entry (plus the PE's updates for the host's
    own records, while the limit and pointer are the host's), MDCR_EL2 (and HDFGRTR_EL2 with FEAT_FGT,
    on nVHE) as at boot.

    Exercised: at least one return to the host.
    """
    if features.has_spe and not features.spe_owned_by_higher_el:
        tracked: tuple[str, ...] = ("PMSCR_EL2" if features.vhe else "PMSCR_EL1", *HOST_SPE_STATE)
    else:
        tracked = ()
    # HDFGRTR_EL2's traps act on EL1's reads (and EL0's only where HCR_EL2.{E2H,TGE} is not {1,1}): they
    # can trap an nVHE host, never a VHE one, which runs at EL2 and at EL0 under TGE.
    controls = BOOT_CONTROLS if features.fgt and not features.vhe else BOOT_CONTROLS[:1]
    walk = Walk(features)
    exercised = False
    found: list[Breach] = []
    expected: dict[str, int] = {}
    hw: dict[str, int] = {}  # register -> how many updates the PE made for the host in this window
    last_write: dict[str, Event] = {}  # register -> last software write in this window
    for e in trace.events:
        kind = e.kind
        if walk.phase is not _IN_HOST:
            if kind is _MSR:
                last_write[e.register] = e
            elif (kind is _HW or kind is _WRITE) and e.register in expected and walk.host_owns_update(e):
                expected[e.register] = e.value
                hw[e.register] = hw.get(e.register, 0) + 1
        if kind is _RETURN and walk.phase is _IN_EXIT:
            exercised = True
            for reg in tracked:
                got, want = walk.values[reg], expected[reg]
                if got != want:
                    why = f"its value at entry #{walk.entry}"
                    if hw.get(reg):
                        why += f", then {hw[reg]} update(s) by the PE for the host's own records"
                    found.append(_state_breach(e, reg, (want, got), why, last_write.get(reg), entry=walk.entry))
            for reg in controls:
                got, want = walk.values[reg], walk.boot[reg]
                if got != want:
                    why = "the host's boot value"
                    found.append(_state_breach(e, reg, (want, got), why, last_write.get(reg)))
        walk.step(e)
        if kind is _ENTRY:
            expected = {reg: walk.values[reg] for reg in tracked}
            hw, last_write = {}, {}
    return Found(exercised, found)


def _state_breach(e: Event, reg: str, want_got: tuple[int, int], why: str, w: Event | None, *, entry: int = -1) -> Breach:
    """The breach at the return `e`: `reg` wrong, `why` the value expected (citing the window's `entry`
    where it names it), and the window's last software write to it (`w`)."""
    want, got = want_got
    last = "no software write in the window"
    cites = [entry] if entry >= 0 else []
    if w is not None:
        last = f"last software write: {msr_text(w)} by {w.actor} at #{w.seq}"
        cites.append(w.seq)
    return Breach(e.seq, f"on the return to the host, {reg} expected {want:#x} ({why}), got {got:#x}; {last}", cites)


HOST_STATE = Rule(
    "HOST-STATE",
    "After every exit the host sees the SPE state and MDCR_EL2 host bits it had before entry",
    "Patch title: 'Save/restore the host SPE state when entering/leaving a VM'; review of "
    "__deactivate_traps: the host's MDCR_EL2 bits must come back bit for bit. Judged on the register "
    "values the model holds at each return. docs/rules.md#host-state",
    Severity.CORRECTNESS,
    "host_state",
    check_host_state,
)

RULES = (HOST_STATE,)
