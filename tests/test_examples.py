"""The RFC's patch as posted (examples/rfc_v2.py): the suite fails exactly the rules its defects break."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from verdict_table import verdicts

from pytest_spekvm import rules
from pytest_spekvm.reference.actors import HYP
from pytest_spekvm.reference.chooser import WorstCaseChooser
from pytest_spekvm.reference.features import Features, PmuLevel, SpeLevel
from pytest_spekvm.reference.trace import Kind
from pytest_spekvm.scenario import Run, Step
from pytest_spekvm.target import load

RFC = Path(__file__).resolve().parent.parent / "examples" / "rfc_v2.py"

RFC_FAILS = {"RES0", "TRAP-COND", "HOST-STATE", "LEAN"}
RFC_PASSES = {"UNDEF", "DRAIN-ORDER", "RESTORE-ORDER", "ISOLATION", "NO-LOSS"}

def _run(features: Features, steps: Sequence[Step]) -> Run:
    run = Run.start(load(str(RFC)), features, WorstCaseChooser())
    for step in steps:
        run.do(step)
    return run


def _messages(run: Run, rule_id: str) -> list[str]:
    trace = run.system.cpu.trace
    return [v.message for v in rules.BY_ID[rule_id].judge(trace, run.system.features).violations]


ONE_RUN = (Step("enable_profiling"), Step("host_run", samples=2), Step("run_vcpu", vcpu=0))
STALE = (*ONE_RUN, Step("disable_profiling"), Step("run_vcpu", vcpu=0))


@pytest.mark.no_cover
def test_rfc_v2_fails_exactly_the_rules_of_its_defects(spekvm_pytester: pytest.Pytester) -> None:
    """A default run against the RFC as posted fails RES0, TRAP-COND, HOST-STATE and LEAN, and passes the others."""
    # Every rule's scripted cells, and the sequences of the rules those cells pass: the failing rules'
    # sequences add nothing to the verdicts but hypothesis' shrinking (about half the run's time).
    passing = " or ".join(rule_id.lower().replace("-", "_") for rule_id in sorted(RFC_PASSES))
    selection = f"not sequences or {passing}"
    result = spekvm_pytester.runpytest_inprocess(f"--spekvm-target={RFC}", "-p", "no:cacheprovider", "-q", "-k", selection)
    table = verdicts(result.outlines)
    failed = {rule for rule, verdict in table.items() if verdict == "FAILED"}
    passed = {rule for rule, verdict in table.items() if verdict == "passed"}
    assert (RFC_FAILS, RFC_PASSES) == (failed, passed)


def test_review_findings_are_res0_and_trap_cond_at_entry_and_exit() -> None:
    """Without SPE the RFC sets TPMS on entry and E2PB on the nVHE exit; RES0 and TRAP-COND name both writes."""
    run = _run(Features(spe=SpeLevel.NONE), ONE_RUN)
    assert [
        "msr MDCR_EL2 <- 0x4c66 by hyp: bit 14 (TPMS) is RES0 without FEAT_SPE (expected 0xc66, got 0x4c66)",
        "msr MDCR_EL2 <- 0x3006 by hyp: bits 13:12 (E2PB) are RES0 without FEAT_SPE (expected 0x6, got 0x3006)",
    ] == _messages(run, "RES0")
    assert [
        "msr MDCR_EL2 <- 0x4c66 by hyp sets SPE trap controls on a CPU without FEAT_SPE "
        "(expected TPMS=0, E2PB=0b00, got TPMS=1, E2PB=0b00)",
        "msr MDCR_EL2 <- 0x3006 by hyp sets SPE trap controls on a CPU without FEAT_SPE "
        "(expected TPMS=0, E2PB=0b00, got TPMS=0, E2PB=0b11)",
    ] == _messages(run, "TRAP-COND")


def test_tpm_and_tpmcr_are_res0_without_pmuv3() -> None:
    """The era's unconditional TPM and TPMCR are RES0 on a CPU without PMUv3: RES0 fails there, TRAP-COND does not."""
    run = _run(Features(pmu=PmuLevel.NONE, pmu_counters=0), ONE_RUN)
    assert (
        [
            "msr MDCR_EL2 <- 0x4c60 by hyp: bit 6 (TPM) is RES0 without FEAT_PMUv3; bit 5 (TPMCR) is RES0 "
            "without FEAT_PMUv3 (expected 0x4c00, got 0x4c60)"
        ],
        [],
    ) == (_messages(run, "RES0"), _messages(run, "TRAP-COND"))


def test_stale_save_area_restores_an_earlier_pmscr() -> None:
    """After the host disables its buffer, the next exit restores the PMSCR_EL1 an earlier entry saved: HOST-STATE and LEAN."""
    run = _run(Features(), STALE)
    failing = {rid for rid, j in rules.judge_all(run.system.cpu.trace, run.system.features).items() if j.violations}
    restore = [e for e in run.system.cpu.trace if e.kind is Kind.MSR and e.register == "PMSCR_EL1" and e.actor == HYP]
    assert ({"HOST-STATE", "LEAN"}, [0x0, 0x3, 0x3]) == (failing, [e.value for e in restore])


def test_rfc_v2_vhe_path_is_clean_where_spe_exists() -> None:
    """On VHE with SPE the RFC passes every rule: its save does nothing and its restore returns early."""
    run = _run(Features(vhe=True), STALE)
    failing = {rid for rid, j in rules.judge_all(run.system.cpu.trace, run.system.features).items() if j.violations}
    assert set() == failing
