"""What the rules say and point at, family by family: each violation's message, on a mutant of the
catalogue or on a trace made by hand for an edge case the scenarios do not reach."""

from __future__ import annotations

import re

import pytest
from mutant_catalogue import NAMES, module, switch
from rules_harness import (
    EXS,
    FGT,
    FGT_EXS,
    NO_SPE,
    NVHE,
    OWNED,
    SCENARIOS,
    VHE,
    Scenario,
    guest_access,
    kernel_after_return,
    plain,
    profiling_off,
    run,
    trace_of,
)

from pytest_spekvm import rules
from pytest_spekvm.failure_report import violation_body
from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.actors import BOOT, HOST, HYP, PE, guest
from pytest_spekvm.reference.features import Features
from pytest_spekvm.reference.trace import Dsb, Kind, Trace
from pytest_spekvm.scenario import Run


def _messages(mutant: str, features: Features, scenario: Scenario, rule_id: str) -> list[str]:
    """The messages of `rule_id`'s violations on the mutant's run of `scenario` on `features`."""
    trace = run(switch(mutant), features, scenario).cpu.trace
    return [v.message for v in rules.BY_ID[rule_id].judge(trace, features).violations]


def _trace_of(mutant: str, features: Features, scenario: Scenario = plain) -> Trace:
    return run(switch(mutant), features, scenario).cpu.trace


# ------------------------------------------------------------------ res0


def test_res0_message_names_the_field_and_the_feature() -> None:
    """RES0 names the bit, its field and the feature it needs (docs/rules.md#res0)."""
    assert (
        "msr MDCR_EL2 <- 0x4c66 by hyp: bit 14 (TPMS) is RES0 without FEAT_SPE (expected 0xc66, got 0x4c66)"
        == _messages("tpms_unconditional", NO_SPE, plain, "RES0")[0]
    )


def test_res0_message_names_always_res0_bits() -> None:
    """A bit no feature brings is named as RES0 on every CPU."""
    assert (
        "msr MDCR_EL2 <- 0x14c66 by hyp: bit 16 is RES0 on every CPU (expected 0x4c66, got 0x14c66)"
        == _messages("mdcr_res0_bit", NVHE, plain, "RES0")[0]
    )


# ------------------------------------------------------------------ traps


def test_rfc_findings_show_under_res0_and_trap_cond() -> None:
    """The review's TPMS finding is reported by both RES0 and TRAP-COND, at the same MSR."""
    trace = _trace_of("tpms_unconditional", NO_SPE)
    res0 = rules.BY_ID["RES0"].judge(trace, NO_SPE).violations
    trap = rules.BY_ID["TRAP-COND"].judge(trace, NO_SPE).violations
    assert [v.event for v in res0] == [v.event for v in trap]
    assert (
        "sets SPE trap controls on a CPU without FEAT_SPE (expected TPMS=0, E2PB=0b00, got TPMS=1, E2PB=0b00)"
        in trap[0].message
    )


@pytest.mark.parametrize(("hdfgrtr", "violations"), [(0, []), (1 << 63, [1])])
def test_trap_cond_asks_for_the_pmbidr_trap_only_where_the_switch_set_it(hdfgrtr: int, violations: list[int]) -> None:
    """A guest's PMBIDR_EL1 read may complete, unless the switch set HDFGRTR_EL2.PMBIDR_EL1 [63]: then it had to trap."""
    trace = trace_of(
        (HYP, 2, Kind.MSR, {"register": "HDFGRTR_EL2", "value": hdfgrtr}),
        (guest(0), 1, Kind.MRS, {"register": "PMBIDR_EL1", "value": 0x16}),
    )
    judgement = rules.BY_ID["TRAP-COND"].judge(trace, FGT)
    assert violations == [v.event for v in judgement.violations]


def test_trap_cond_names_the_fine_grained_trap_that_was_not_in_force() -> None:
    """The violation names the HDFGRTR_EL2 write that asked for the trap, and the missing synchronisation."""
    fgt_exs = Features(fgt=True, exs=True)
    message = _messages("fgt_trap_after_isb", fgt_exs, guest_access, "TRAP-COND")[0]
    assert "read PMBIDR_EL1 at #" in message
    assert "set HDFGRTR_EL2.PMBIDR_EL1 (expected the read to trap to EL2" in message


def test_undef_reports_accesses_that_trap_to_el3_and_host_accesses_trapped_to_el2() -> None:
    """UNDEF reports a hypervisor access that trapped to EL3 and a host access that trapped to EL2, not a guest's trap."""
    trace = trace_of(
        (HYP, 2, Kind.TRAP_EL3, {"register": "PMSCR_EL1", "where": "MDCR_EL3.NSPB"}),
        (HYP, 2, Kind.MRS, {"register": "PMBIDR_EL1"}),
        (HOST, 1, Kind.TRAP, {"register": "PMBPTR_EL1", "where": "MDCR_EL2.E2PB=0b00"}),
        (guest(0), 1, Kind.TRAP, {"register": "PMBPTR_EL1", "where": "MDCR_EL2.E2PB=0b00"}),
    )
    assert [0, 2] == [v.event for v in rules.BY_ID["UNDEF"].judge(trace, OWNED).violations]


# ------------------------------------------------------------------ ordering


@pytest.mark.parametrize(
    ("mutant", "features", "fragment"),
    [
        ("no_spe_save", NVHE, "no PSB CSYNC after the exception entry at #"),
        ("drop_isb_before_psb", EXS, "no context synchronisation event at EL2 (the exception entry where it is one, else an ISB) before a PSB CSYNC"),
        ("no_spe_save", NVHE, "before the msr HCR_EL2 <- 0x8008003b (VM 0 -> 1) at #"),
        ("dsb_nshld", NVHE, "does not wait for the buffer's writes: D17.9 asks for one that applies to loads and stores"),
        ("dsb_ishst_then_disable", NVHE, "before the msr PMBLIMITR_EL1 <- 0x0 (disables the buffer) at #"),
        ("drain_after_activate_traps", NVHE, "no PSB CSYNC after the exception entry at #"),
        ("resample_before_eret", NVHE, "with the guest's EL1/EL0 profiling possibly on: PMSCR_EL1 0x3"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v else None,
)
def test_drain_order_message_names_the_missing_link(mutant: str, features: Features, fragment: str) -> None:
    """DRAIN-ORDER says which link of the chain is missing, and before which translation change."""
    messages = _messages(mutant, features, plain, "DRAIN-ORDER")
    assert any(fragment in m for m in messages), messages


def test_drain_order_points_at_the_translation_change() -> None:
    """The violation's event is the translation change that came too early."""
    trace = _trace_of("drain_after_activate_traps", NVHE)
    event = trace[rules.BY_ID["DRAIN-ORDER"].judge(trace, NVHE).violations[0].event]
    assert (Kind.MSR, "HCR_EL2") == (event.kind, event.register)


def test_drain_order_names_the_psb_that_came_too_early() -> None:
    """Without a synchronising entry, a PSB before any ISB is named as too early for the chain."""
    trace = _trace_of("drop_isb_before_psb", EXS)
    message = rules.BY_ID["DRAIN-ORDER"].judge(trace, EXS).violations[0].message
    psb = next(e for e in trace if e.kind is Kind.PSB and e.actor == HYP)
    assert f"(the PSB CSYNC at #{psb.seq} came before the CSE)" in message


def test_drain_order_accepts_other_instructions_between_links_and_one_wide_dsb() -> None:
    """Links may have other events between them, and a DSB SY serves as well as a DSB NSH."""
    trace = trace_of(
        (BOOT, 2, Kind.MSR, {"register": "PMBLIMITR_EL1", "value": 1}),
        (HOST, 1, Kind.ENTRY, {}),
        (HYP, 2, Kind.MSR, {"register": "PMSCR_EL1", "value": 0}),
        (HYP, 2, Kind.MRS, {"register": "TTBR0_EL1"}),
        (HYP, 2, Kind.ISB, {}),
        (HYP, 2, Kind.ISB, {}),
        (HYP, 2, Kind.PSB, {}),
        (HYP, 2, Kind.MSR, {"register": "HCR_EL2", "value": 0}),  # VM unchanged: no translation change
        (HYP, 2, Kind.DSB, {"dsb": Dsb.SY}),
        (HYP, 2, Kind.MSR, {"register": "VTTBR_EL2", "value": 5}),
    )
    assert rules.Judgement("DRAIN-ORDER", True, ()) == rules.BY_ID["DRAIN-ORDER"].judge(trace, NVHE)


def test_drain_order_accepts_an_isb_before_the_pmscr_write() -> None:
    """At EL2 the host's EL1-owned buffer is not sampled: an ISB there is the synchronising point, whatever PMSCR_EL1 holds."""
    trace = trace_of(
        (BOOT, 2, Kind.MSR, {"register": "PMBLIMITR_EL1", "value": 1}),
        (HOST, 1, Kind.ENTRY, {}),
        (HYP, 2, Kind.EXCEPTION, {"where": "hvc", "cse": False}),
        (HYP, 2, Kind.ISB, {}),
        (HYP, 2, Kind.MSR, {"register": "PMSCR_EL1", "value": 0}),
        (HYP, 2, Kind.PSB, {}),
        (HYP, 2, Kind.DSB, {"dsb": Dsb.NSH}),
        (HYP, 2, Kind.ERET, {"where": "into guest 0", "into_guest": True}),
    )
    assert rules.Judgement("DRAIN-ORDER", True, ()) == rules.BY_ID["DRAIN-ORDER"].judge(trace, NVHE)


def test_drain_order_rejects_a_psb_with_no_synchronising_point_before_it() -> None:
    """With an entry that does not synchronise and no ISB, the PSB synchronises nothing: the message says so."""
    trace = trace_of(
        (BOOT, 2, Kind.MSR, {"register": "PMBLIMITR_EL1", "value": 1}),
        (HOST, 1, Kind.ENTRY, {}),
        (HYP, 2, Kind.EXCEPTION, {"where": "hvc", "cse": False}),
        (HYP, 2, Kind.MSR, {"register": "PMSCR_EL1", "value": 0}),
        (HYP, 2, Kind.PSB, {}),
        (HYP, 2, Kind.DSB, {"dsb": Dsb.NSH}),
        (HYP, 2, Kind.ERET, {"where": "into guest 0", "into_guest": True}),
    )
    (violation,) = rules.BY_ID["DRAIN-ORDER"].judge(trace, NVHE).violations
    assert 6 == violation.event
    assert violation.message.startswith(
        "no context synchronisation event at EL2 (the exception entry where it is one, else an ISB) before a PSB CSYNC"
    )


def test_restore_order_message_names_the_unsynchronised_write() -> None:
    """RESTORE-ORDER names the restoring write no ISB followed, and why the return does not make up for it."""
    message = _messages("restore_before_host_sysregs", EXS, kernel_after_return, "RESTORE-ORDER")[0]
    assert message.startswith("no ISB between the msr TCR_EL1 <- 0x32b5103510 at #")
    assert "which is not a context synchronisation event (FEAT_ExS with SCTLR_EL2.EIS/EOS=0)" in message


def test_restore_order_names_a_translation_that_is_not_the_hosts() -> None:
    """A return to the host with sampling on and the guest's stage 1 still installed names the register."""
    message = _messages("no_host_sysregs_restore", NVHE, plain, "RESTORE-ORDER")[0]
    assert "under a translation that is not the host's: TTBR0_EL1=0x1008000 (expected the host's 0x20000)" in message


# ------------------------------------------------------------------ host state


def test_host_state_message_names_register_values_and_last_write() -> None:
    """HOST-STATE names the register, expected and actual values, and the last software write to it."""
    message = _messages("no_spe_restore", NVHE, plain, "HOST-STATE")[0]
    assert (True, True) == (
        "PMSCR_EL1 expected 0x3 (its value at entry #" in message,
        "got 0x0; last software write: msr PMSCR_EL1 <- 0x0 by hyp at #" in message,
    )


# ------------------------------------------------------------------ records


def test_isolation_message_names_record_origin_and_regime() -> None:
    """ISOLATION says which record, who was sampled, where it landed and through which tables."""

    class NoSaveGuestOwns(module("no_spe_save").Switch, module("guest_owns_buffer").Switch):  # type: ignore[misc]
        """Two mutants of the catalogue at once: no drain, and the guest owns the buffer."""

    trace = run(NoSaveGuestOwns(), NVHE, plain).cpu.trace
    message = rules.BY_ID["ISOLATION"].judge(trace, NVHE).violations[0].message
    assert "while host ran) was written at #" in message
    assert "to guest 0 (PA 0x1000000000) via EL1&0 stage 1 (TTBR1_EL1=0x1000000) + stage 2" in message


def test_isolation_message_names_the_leaked_context_value_and_its_origin() -> None:
    """ISOLATION names the vcpu, the register the guest context holds, its value and where the host had it."""
    messages = _messages("host_pmscr_in_guest_context", NVHE, plain, "ISOLATION")
    assert messages[0].startswith("the saved guest context of vcpu 0 holds PMSCR_EL1=0x3 while the guest ran (#")
    assert "a value the host had (written to PMSCR_EL1 by the host at #" in messages[0]


@pytest.mark.parametrize(("value", "leaks"), [(0, False), (0x3, True), (0x2, False)])
def test_isolation_takes_only_values_the_host_had_from_the_guest_context(value: int, leaks: bool) -> None:
    """A guest context value counts as the host's only if it is non-zero and the host had it in that register."""
    trace = trace_of(
        (HOST, 1, Kind.MSR, {"register": "PMSCR_EL1", "value": 0x3}),
        (HYP, 2, Kind.CONTEXT, {"register": "PMSCR_EL1", "value": value, "vcpu": 0, "where": "at the return"}),
        (HYP, 2, Kind.CONTEXT, {"register": "PMSIRR_EL1", "value": 0x3, "vcpu": 0, "where": "at the return"}),
    )
    judgement = rules.BY_ID["ISOLATION"].judge(trace, NVHE)
    assert (True, [1] if leaks else []) == (judgement.exercised, [v.event for v in judgement.violations])


def test_isolation_sees_a_host_value_in_the_guest_context_only_once_the_host_had_it() -> None:
    """A context value the host programs only later is no leak at the time it is recorded (the rule is causal)."""
    trace = trace_of(
        (HYP, 2, Kind.CONTEXT, {"register": "PMSIRR_EL1", "value": 0x40001, "vcpu": 1, "where": "then"}),
        (HOST, 1, Kind.MSR, {"register": "PMSIRR_EL1", "value": 0x40001}),
        (HYP, 2, Kind.CONTEXT, {"register": "PMSIRR_EL1", "value": 0x40001, "vcpu": 1, "where": "now"}),
    )
    assert [2] == [v.event for v in rules.BY_ID["ISOLATION"].judge(trace, NVHE).violations]


def test_no_loss_message_names_who_disabled_the_buffer() -> None:
    """NO-LOSS says the record was discarded because the hypervisor, not the host, disabled the buffer."""
    message = _messages("disable_buffer_instead_of_drain", NVHE, plain, "NO-LOSS")[0]
    assert "collected while the host ran" in message
    assert "discarded (buffer disabled by hyp)" in message


def test_no_loss_allows_full_buffer_and_host_disable() -> None:
    """A host record meeting a full buffer, or discarded because the host disabled its buffer, is no loss."""
    trace = trace_of(
        (HOST, 1, Kind.RECORD, {"record": 0}),
        (HOST, 1, Kind.RECORD, {"record": 1}),
        (PE, 1, Kind.FULL, {"record": 0, "where": "buffer full"}),
        (PE, 1, Kind.DISCARD, {"record": 1, "where": "buffer disabled by host", "by": HOST}),
    )
    assert rules.Judgement("NO-LOSS", True, ()) == rules.BY_ID["NO-LOSS"].judge(trace, NVHE)


def test_no_loss_reports_a_fault() -> None:
    """A host record whose write faults is lost."""
    trace = trace_of(
        (HOST, 1, Kind.RECORD, {"record": 0}),
        (PE, 1, Kind.FAULT, {"record": 0, "where": "stage 2 translation fault via EL1&0"}),
    )
    assert [1] == [v.event for v in rules.BY_ID["NO-LOSS"].judge(trace, NVHE).violations]


# ------------------------------------------------------------------ cited events

_CITED = re.compile(r"(?<!record )#(\d+)")  # "#12" names an event; "record #3" a record


@pytest.mark.parametrize("mutant", NAMES)
def test_every_event_a_message_names_is_cited(mutant: str) -> None:
    """Each event number a violation's message names is its own event or one of its `cites`, so the
    failure's timeline can show it (the mutant's worst-case runs of every scenario, on five CPUs)."""
    for features in (NVHE, VHE, EXS, FGT_EXS, OWNED):
        for scenario in SCENARIOS.values():
            trace = _trace_of(mutant, features, scenario)
            for judgement in rules.judge_all(trace, features).values():
                for v in judgement.violations:
                    named = {int(n) for n in _CITED.findall(v.message)}
                    assert named <= {v.event, *v.cites}, (judgement.rule, v.message, v.cites)


def test_failure_timeline_shows_a_cited_event_outside_its_window() -> None:
    """A violation whose message names an event more than a window's width earlier (LEAN's entry, say)
    shows that event in its place in the failure's timeline, with '...' for the events left out."""
    features = Features()
    system = run(S.ReferenceSwitch(), features, profiling_off)
    assert len(system.cpu.trace) > 60
    judgement = rules.Judgement("LEAN", True, (rules.Violation("LEAN", 50, "cites #3", cites=(3,)),))
    body = violation_body(rules.BY_ID["LEAN"], judgement, features, Run(system))
    timeline = body.split("timeline around event #50 (>>):\n")[1].splitlines()
    assert [line.split()[0] for line in timeline[:2]] == ["3", "..."]
    assert timeline[2].split()[0] == "38"
    assert timeline[14].startswith(">>   50")
