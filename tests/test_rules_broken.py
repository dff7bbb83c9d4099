"""The rules against the catalogue of broken switches (examples/mutants/): each mutant, on a CPU and a
scenario that show its mistake, fails exactly the rules pinned here, and every rule fails some mutant."""

from __future__ import annotations

import pytest
from mutant_catalogue import NAMES, caught_by, switch
from rules_harness import (
    EXS,
    FDS,
    FGT,
    FGT_EXS,
    NO_SPE,
    NVHE,
    OWNED,
    RULE_IDS,
    VHE,
    Scenario,
    failing,
    guest_access,
    judge,
    kernel_after_return,
    off_then_on,
    paused_run,
    plain,
    profiling_off,
    run,
)

from pytest_spekvm.reference.chooser import Chooser, HoldingChooser, SplitChooser
from pytest_spekvm.reference.features import Features

# mutant: (CPU, scenario, the rules that fail under the worst-case adversary: exactly these)
PINNED: dict[str, tuple[Features, Scenario, set[str]]] = {
    "clears_data_source_filter": (FDS, plain, {"HOST-STATE"}),
    "disable_before_dsb": (NVHE, plain, {"DRAIN-ORDER", "NO-LOSS"}),
    # The buffer switched off with no drain: the records the PE still holds are discarded.
    "disable_buffer_instead_of_drain": (NVHE, plain, {"DRAIN-ORDER", "NO-LOSS"}),
    # The drain's own ISB puts the guest's E2PB in force before its PSB CSYNC translates: the EL2
    # regime faults the host's records, and the buffer stops.
    "drain_after_activate_traps": (NVHE, plain, {"DRAIN-ORDER", "HOST-STATE", "NO-LOSS"}),
    "drain_idle_buffer": (NVHE, profiling_off, {"LEAN"}),
    "drain_on_vhe": (VHE, plain, {"LEAN"}),
    # No ISB before the PSB, on a FEAT_ExS CPU whose entry to EL2 does not synchronise: the PSB
    # does not synchronise the host's records, which are lost under the guest's regime.
    "drop_isb_before_psb": (EXS, plain, {"DRAIN-ORDER", "HOST-STATE", "NO-LOSS"}),
    "dsb_before_psb": (NVHE, plain, {"DRAIN-ORDER"}),
    # D17.9: the DSB after the PSB must apply to loads and stores. With a store-only one, the
    # buffer disabled after the drain (as Linux does since 2026) discards the unfinished writes.
    "dsb_ishst_then_disable": (NVHE, plain, {"DRAIN-ORDER", "NO-LOSS"}),
    "dsb_nshld": (NVHE, plain, {"DRAIN-ORDER"}),
    # The RFC's __deactivate_traps_nvhe: E2PB written on a CPU without SPE, and kept as host state.
    "e2pb_on_exit_without_spe": (NO_SPE, plain, {"RES0", "TRAP-COND", "HOST-STATE"}),
    # The host gets E2PB = 0b00 back: its own buffer accesses trap to EL2, and its sampling goes
    # through the EL2 regime, which faults it.
    "exit_mdcr_from_vcpu": (NVHE, plain, {"HOST-STATE", "RESTORE-ORDER", "UNDEF", "NO-LOSS"}),
    "fgt_trap_after_isb": (FGT_EXS, guest_access, {"TRAP-COND"}),
    "fgt_trap_left_for_host": (FGT, guest_access, {"HOST-STATE"}),
    # The guest's write to PMBLIMITR_EL1 lands in the host's register.
    "guest_owns_buffer": (VHE, guest_access, {"TRAP-COND", "ISOLATION", "HOST-STATE"}),
    "guest_without_tpms": (NVHE, guest_access, {"TRAP-COND", "ISOLATION"}),
    "host_pmscr_in_guest_context": (NVHE, plain, {"ISOLATION"}),
    "leaks_sampling_interval": (NVHE, plain, {"HOST-STATE"}),
    "mdcr_res0_bit": (NVHE, plain, {"RES0"}),
    "no_dsb": (NVHE, plain, {"DRAIN-ORDER"}),
    # Sampling back on under the guest's stage 1: the host's records go through the guest's tables.
    "no_host_sysregs_restore": (NVHE, plain, {"RESTORE-ORDER", "HOST-STATE", "ISOLATION"}),
    "no_pmbidr_p_check": (OWNED, plain, {"UNDEF"}),
    "no_pmsver_check": (NO_SPE, plain, {"UNDEF"}),
    "no_psb_csync": (NVHE, plain, {"DRAIN-ORDER", "HOST-STATE", "NO-LOSS"}),
    "no_spe_restore": (NVHE, plain, {"HOST-STATE"}),
    # Undrained host records are written under the guest's E2PB = 0b00: the nVHE EL2 regime has no
    # upper VA range, so the first faults and stops the buffer (PMBSR_EL1 changed, records lost).
    "no_spe_save": (NVHE, plain, {"DRAIN-ORDER", "HOST-STATE", "NO-LOSS"}),
    # MDCR_EL2.E2PB = 0b01 is reserved: it may act as any allocated value (here, as the worst case
    # picks, 0b11: the guest owns the buffer and its accesses do not trap).
    "reserved_e2pb": (NVHE, guest_access, {"TRAP-COND", "ISOLATION", "HOST-STATE"}),
    # The guest's EL1 is sampled under E2PB = 0b00: its records fault in the EL2 regime.
    "resample_before_eret": (NVHE, plain, {"DRAIN-ORDER", "HOST-STATE"}),
    # On a FEAT_ExS CPU whose return to the host does not synchronise, sampling comes back before
    # the host's MDCR_EL2 and tables are in force (the split adversary shows the outcome).
    "restore_before_host_sysregs": (EXS, kernel_after_return, {"RESTORE-ORDER"}),
    "restore_guest_pmscr": (NVHE, plain, {"HOST-STATE"}),
    "restore_unconditional": (NVHE, paused_run, {"LEAN"}),
    "restore_without_isb": (EXS, plain, {"RESTORE-ORDER", "UNDEF"}),
    "sampling_before_ownership_check": (OWNED, plain, {"UNDEF"}),
    # The host's records meet a full buffer that is not the host's doing, and PMBSR_EL1 comes back changed.
    "squeeze_limit": (NVHE, plain, {"DRAIN-ORDER", "HOST-STATE", "NO-LOSS"}),
    # The RFC's save returns early without clearing its save area: the next restore is stale.
    "stale_pmscr": (NVHE, off_then_on, {"HOST-STATE", "LEAN"}),
    # The review's finding: TPMS set whether or not the CPU has SPE.
    "tpms_unconditional": (NO_SPE, plain, {"RES0", "TRAP-COND"}),
}


def test_every_mutant_is_pinned() -> None:
    """Each mutant of the catalogue has its row here, and no row names a mutant that is not in it."""
    assert sorted(NAMES) == sorted(PINNED)


@pytest.mark.parametrize("mutant", list(PINNED))
def test_mutant_fails_exactly_its_rules(mutant: str) -> None:
    """Each broken switch fails the rules its defect breaks, and no others."""
    features, scenario, expected = PINNED[mutant]
    assert expected == failing(run(switch(mutant), features, scenario))


# Mistakes whose outcome only another adversary shows: (mutant, adversary, the rules that fail).
OTHER_ADVERSARIES = [
    # Sampling comes back while the guest's tables are still what the PE may use: the split
    # adversary writes the host's records through them, into memory that is not the buffer.
    ("restore_before_host_sysregs", SplitChooser, {"RESTORE-ORDER", "HOST-STATE", "ISOLATION"}),
    # Holding records makes the missing drain harmless (they leave the PE only at the host's own
    # PSB): the shape rule alone reports it, on the "software must" of D17.9 it enforces.
    ("no_spe_save", HoldingChooser, {"DRAIN-ORDER"}),
    # The same store-only DSB: the split adversary writes the records at once, before the disable.
    ("dsb_ishst_then_disable", SplitChooser, {"DRAIN-ORDER"}),
    ("guest_without_tpms", SplitChooser, {"TRAP-COND", "ISOLATION", "HOST-STATE"}),
]


@pytest.mark.parametrize(("mutant", "adversary", "expected"), OTHER_ADVERSARIES, ids=[m for m, _, _ in OTHER_ADVERSARIES])
def test_other_adversaries_expose_other_outcomes(mutant: str, adversary: type[Chooser], expected: set[str]) -> None:
    """Each fixed adversary shows the outcomes its timing choices lead to, which the worst case may not."""
    features, scenario, _ = PINNED[mutant]
    assert expected == failing(run(switch(mutant), features, scenario, adversary()))


def test_every_rule_is_caught_by_some_mutant() -> None:
    """Every rule of the catalogue fails at least one mutant in the table above, and is named by one in CAUGHT_BY."""
    pinned = set().union(*(expected for *_, expected in PINNED.values()))
    named = {rule_id for name in NAMES for rule_id in caught_by(name)}
    assert (set(RULE_IDS), set(RULE_IDS)) == (pinned, named)


@pytest.mark.parametrize("mutant", list(PINNED))
def test_violations_point_inside_the_trace_and_are_exercised(mutant: str) -> None:
    """A violation names its rule and an event of the trace, and a rule that found one counts as exercised."""
    features, scenario, _ = PINNED[mutant]
    system = run(switch(mutant), features, scenario)
    n = len(system.cpu.trace)
    for rid, judgement in judge(system).items():
        for v in judgement.violations:
            assert (rid, True) == (v.rule, 0 <= v.event < n)
            assert judgement.exercised
            assert v.message
