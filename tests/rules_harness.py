"""What the rule tests share: the CPUs they run on, the host scenarios they play, and the run and judgement of a switch.

The broken switches come from the mutant catalogue (tests/mutant_catalogue.py), never from here.
"""

from __future__ import annotations

from collections.abc import Callable

from pytest_spekvm import rules
from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.actors import Actor
from pytest_spekvm.reference.chooser import Chooser, WorstCaseChooser
from pytest_spekvm.reference.features import Features, PmuLevel, SpeLevel
from pytest_spekvm.reference.system import Choices, System
from pytest_spekvm.reference.trace import Kind, Trace
from pytest_spekvm.reference.vcpu import GuestAccess, GuestCode, GuestExit

RULE_IDS = (
    "RES0",
    "TRAP-COND",
    "UNDEF",
    "DRAIN-ORDER",
    "RESTORE-ORDER",
    "HOST-STATE",
    "ISOLATION",
    "NO-LOSS",
    "LEAN",
)
CORRECTNESS = [r.id for r in rules.RULES if r.severity is rules.Severity.CORRECTNESS]

# ------------------------------------------------------------------ CPUs

NVHE = Features()
VHE = Features(vhe=True)
NO_SPE = Features(spe=SpeLevel.NONE)
OWNED = Features(spe_owned_by_higher_el=True)
# FEAT_ExS: with SCTLR_EL2.EIS/EOS = 0 (the default choices) exception entry to and return from
# EL2 are not context synchronisation events.
EXS = Features(exs=True)
VHE_EXS = Features(vhe=True, exs=True)
# FEAT_SPE_FDS (the data source filter, PMSDSFR_EL1) needs FEAT_SPEv1p4.
FDS = Features(spe=SpeLevel.V1P4, spe_fds=True)
# FEAT_FGT: HDFGRTR_EL2 can trap the guest's PMBIDR_EL1 reads; with FEAT_ExS its write may not be in
# force at an ERET into the guest that does not synchronise.
FGT = Features(fgt=True)
FGT_EXS = Features(fgt=True, exs=True)
SYNCHRONISING = Choices(sctlr_el2_eis=True, sctlr_el2_eos=True)


def _cpu(vhe: bool, spe: SpeLevel, p: bool, pmu: PmuLevel) -> Features:
    return Features(
        vhe=vhe, spe=spe, spe_owned_by_higher_el=p, pmu=pmu, pmu_counters=0 if pmu == PmuLevel.NONE else 6
    )


# VHE/nVHE x SPE levels x PMBIDR_EL1.P (only with SPE) x PMU none/v3/v3p7.
GRID = [
    _cpu(vhe, spe, p, pmu)
    for vhe in (False, True)
    for spe in (SpeLevel.NONE, SpeLevel.SPE, SpeLevel.V1P2, SpeLevel.V1P4)
    for p in ((False,) if spe == SpeLevel.NONE else (False, True))
    for pmu in (PmuLevel.NONE, PmuLevel.V3, PmuLevel.V3P7)
] + [
    # FEAT_FGT (HDFGRTR_EL2 written at boot) and FEAT_SPE_FDS (PMSDSFR_EL1 programmed by the host).
    Features(vhe=vhe, spe=SpeLevel.V1P4, fgt=True, spe_fds=True, exs=exs) for vhe in (False, True) for exs in (False, True)
]

# ------------------------------------------------------------------ host scenarios

Scenario = Callable[[System], None]


def plain(s: System) -> None:
    """Profiling on: host code, runs of both vcpus, host user space in between."""
    s.enable_profiling()
    s.host_run(3)
    s.run_vcpu(0, [GuestCode(2)])
    s.host_run(2, el0=True)
    s.run_vcpu(1)
    s.run_vcpu(0, [GuestCode(1), GuestExit("hvc")])
    s.finish()


def kernel_after_return(s: System) -> None:
    """Profiling on; after each run the host kernel runs sampled code straight away, then enters again."""
    s.enable_profiling()
    s.host_run(2)
    s.run_vcpu(0, [GuestCode(1)])
    s.host_run(3)
    s.run_vcpu(1)
    s.host_run(1)
    s.finish()


def toggle(s: System) -> None:
    """Profiling off, on, paused, on again (user space only), off, on, between runs."""
    s.run_vcpu(0)
    s.enable_profiling()
    s.host_run(2)
    s.run_vcpu(1)
    s.pause_sampling()
    s.host_run(1)
    s.run_vcpu(0)
    s.enable_profiling(pmscr=0b01)
    s.host_run(2, el0=True)
    s.run_vcpu(0)
    s.disable_profiling()
    s.run_vcpu(1)
    s.enable_profiling()
    s.host_run(1)
    s.run_vcpu(0)
    s.finish()


def guest_access(s: System) -> None:
    """Guests try the sampling controls and the buffer registers, reading and writing."""
    s.enable_profiling()
    s.host_run(2)
    s.run_vcpu(0, [GuestCode(1), GuestAccess("PMSCR_EL1")])
    s.run_vcpu(0, [GuestAccess("PMBLIMITR_EL1", write=True, value=1)])
    s.run_vcpu(1, [GuestAccess("PMBIDR_EL1"), GuestAccess("PMSIDR_EL1")])
    s.run_vcpu(1, [GuestAccess("PMSCR_EL1", write=True, value=0b11), GuestCode(1)])
    s.finish()


def fill(s: System) -> None:
    """The host fills its buffer (64 records fit), takes the interrupt, and fills it again."""
    s.enable_profiling()
    s.host_run(300)
    s.run_vcpu(0)
    s.handle_buffer_irq()
    s.host_run(5)
    s.run_vcpu(1)
    s.host_run(260)
    s.run_vcpu(0)
    s.handle_buffer_irq()
    s.host_run(1)
    s.finish()


def idle(s: System) -> None:
    """Boot only: no window, no record, no guest."""


def paused_run(s: System) -> None:
    """The host pauses sampling but leaves its buffer enabled, then runs a vcpu."""
    s.enable_profiling()
    s.host_run(2)
    s.pause_sampling()
    s.run_vcpu(0)
    s.finish()


def off_then_on(s: System) -> None:
    """A run with profiling on, then one with it off: a stale save area shows on the second."""
    s.enable_profiling()
    s.host_run(1)
    s.run_vcpu(0)
    s.disable_profiling()
    s.run_vcpu(0)


def profiling_off(s: System) -> None:
    """Runs with the host's buffer never enabled."""
    s.run_vcpu(0)
    s.run_vcpu(1)


SCENARIOS: dict[str, Scenario] = {
    "plain": plain,
    "toggle": toggle,
    "guest_access": guest_access,
    "fill": fill,
    "kernel_after_return": kernel_after_return,
}

# ------------------------------------------------------------------ running and judging


def run(
    switch: S.ReferenceSwitch,
    features: Features,
    scenario: Scenario,
    chooser: Chooser | None = None,
    choices: Choices | None = None,
) -> System:
    """`scenario` played on a system of `features` with `switch`, under `chooser` (the worst case by default)."""
    system = System(features, switch, chooser if chooser is not None else WorstCaseChooser(), choices=choices)
    scenario(system)
    return system


def judge(system: System) -> dict[str, rules.Judgement]:
    """Every rule of the catalogue, judged on the system's trace."""
    return rules.judge_all(system.cpu.trace, system.features)


def failing(system: System) -> set[str]:
    """The ids of the rules the system's trace fails."""
    return {rid for rid, j in judge(system).items() if not j.passed}


def trace_of(*events: tuple[Actor, int, Kind, dict[str, object]]) -> Trace:
    """A trace made by hand: (actor, EL, kind, the event's fields) for each event."""
    trace = Trace()
    for actor, el, kind, kw in events:
        trace.add(actor, el, kind, **kw)
    return trace
