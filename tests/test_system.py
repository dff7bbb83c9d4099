"""Tests of the machine around the CPU: host boot, the host's SPE driver, vcpus, and the adapter contract.

A little over 400 lines: one section per part of reference/system.py, sharing its helpers (system, events_since); split,
they would scatter one module's tests."""

from __future__ import annotations

from typing import Any

import pytest
from mutant_catalogue import switch as mutant

from pytest_spekvm.reference import memory as M
from pytest_spekvm.reference.actors import HOST, HYP
from pytest_spekvm.reference.chooser import WorstCaseChooser
from pytest_spekvm.reference.contract import WorldSwitch
from pytest_spekvm.reference.cpu import CPU, ModelError
from pytest_spekvm.reference.features import Features, PmuLevel, SpeLevel
from pytest_spekvm.reference.kvm import host_mdcr_el2
from pytest_spekvm.reference.profiling import Fate
from pytest_spekvm.reference.switch import ReferenceSwitch
from pytest_spekvm.reference.system import Choices, System
from pytest_spekvm.reference.trace import Kind
from pytest_spekvm.reference.vcpu import ContractError, ExitReason, GuestExit, Vcpu

PMBLIMITR_E = 1 << 0  # PMBLIMITR_EL1.E
PMBSR_S = 1 << 17  # PMBSR_EL1.S
BUFFER_LIMIT = M.BUFFER_VA + M.BUFFER_PAGES * M.PAGE_SIZE
RECORDS_PER_BUFFER = M.BUFFER_PAGES * M.PAGE_SIZE // M.RECORD_SIZE


def system(features: Features | None = None, switch: WorldSwitch | None = None, **kw: Any) -> System:
    """A booted system with the reference switch and the worst-case chooser unless told otherwise."""
    return System(
        features if features is not None else Features(),
        switch if switch is not None else ReferenceSwitch(),
        kw.pop("chooser", WorstCaseChooser()),
        **kw,
    )


def events_since(s: System, mark: int) -> list[str]:
    """The timeline descriptions of the events from `mark` on."""
    return [e.describe() for e in s.cpu.trace.events[mark:]]


# ---------------------------------------------------------------------------------- boot


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        (Features(), 0b11 << 12 | 6),  # nVHE: E2PB = 0b11 (host kernel at EL1 owns the buffer), HPMN = 6
        (Features(vhe=True, pmu_counters=4), 1 << 14 | 4),  # VHE: TPMS, E2PB = 0b00 (EL2 owns it), HPMN
        (Features(spe=SpeLevel.NONE), 6),  # no SPE: HPMN only, no SPE bit at all
        (Features(pmu=PmuLevel.NONE, pmu_counters=0), 0b11 << 12),  # no PMUv3: HPMN is RES0
        (Features(spe=SpeLevel.NONE, pmu=PmuLevel.NONE, pmu_counters=0), 0),
    ],
)
def test_host_mdcr_el2_is_what_the_host_configures_at_boot(features: Features, expected: int) -> None:
    """The host's MDCR_EL2 has HPMN = the counters and the SPE ownership Linux gives it at boot: E2PB=0b11 on nVHE, TPMS on VHE."""
    assert hex(expected) == hex(host_mdcr_el2(features))


@pytest.mark.parametrize(
    ("vhe", "el", "registers"),
    [
        (False, 1, {"HCR_EL2": 1 << 31, "TTBR1_EL1": M.HOST_TTBR1, "TTBR0_EL2": M.HYP_TTBR0}),
        (True, 2, {"HCR_EL2": 1 << 34 | 1 << 31 | 1 << 27, "TTBR1_EL2": M.HOST_TTBR1}),
    ],
)
def test_boot_leaves_the_host_running_at_its_el(vhe: bool, el: int, registers: dict[str, int]) -> None:
    """After boot the host runs at EL1 (nVHE) or EL2 (VHE) with its tables and MDCR_EL2 in place."""
    s = system(Features(vhe=vhe))
    assert (HOST, el, el) == (s.cpu.actor, s.cpu.el, s.host_el)
    assert registers == {name: s.cpu.peek(name) for name in registers}
    assert s.host_mdcr_el2 == s.cpu.peek("MDCR_EL2")


@pytest.mark.parametrize(
    ("features", "written"),
    [
        (Features(), None),  # no FEAT_FGT: HDFGRTR_EL2 does not exist, and boot leaves it alone
        (Features(fgt=True), 0),  # nothing trapped
        (Features(fgt=True, spe=SpeLevel.V1P2), 1 << 62),  # nPMSNEVFR_EL1 = 1: PMSNEVFR_EL1 not trapped
    ],
    ids=["no-fgt", "fgt", "fgt-fne"],
)
def test_boot_writes_hdfgrtr_el2_as_linux_does(features: Features, written: int | None) -> None:
    """On a FEAT_FGT CPU the boot code writes HDFGRTR_EL2 so that no EL1 read traps (Linux's __init_el2_fgt)."""
    s = system(features)
    writes = [e.value for e in s.cpu.trace if e.kind is Kind.MSR and e.register == "HDFGRTR_EL2"]
    assert ([] if written is None else [written]) == writes


@pytest.mark.parametrize(
    ("features", "usable"),
    [
        (Features(), True),
        (Features(spe=SpeLevel.NONE), False),
        (Features(spe_owned_by_higher_el=True), False),
    ],
)
def test_spe_is_usable_only_with_spe_and_the_buffer_not_owned_above(features: Features, usable: bool) -> None:
    """The host's driver can use SPE only with FEAT_SPE and PMBIDR_EL1.P = 0."""
    assert usable == system(features).spe_usable


# ------------------------------------------------------------------------ the SPE driver


@pytest.mark.parametrize(("vhe", "pmscr"), [(False, "PMSCR_EL1"), (True, "PMSCR_EL2")])
def test_enable_profiling_programs_the_buffer_then_sampling(vhe: bool, pmscr: str) -> None:
    """Enabling sets the pointer, clears the status, enables the buffer, then PMSCR, then an ISB."""
    s = system(Features(vhe=vhe))
    s.enable_profiling()
    cpu = s.cpu
    names = ("PMBPTR_EL1", "PMBSR_EL1", "PMBLIMITR_EL1", pmscr)
    assert (M.BUFFER_VA, 0, BUFFER_LIMIT | PMBLIMITR_E, 0b11) == tuple(cpu.peek(n) for n in names)
    assert s.profiling
    assert [Kind.MSR, Kind.MSR, Kind.MSR, Kind.MSR, Kind.ISB] == [e.kind for e in cpu.trace.events[-5:]]


@pytest.mark.parametrize(
    ("features", "programmed"),
    [
        (Features(spe=SpeLevel.V1P1), {}),
        (Features(spe=SpeLevel.V1P2), {"PMSNEVFR_EL1": 0x80}),  # FEAT_SPE_FnE comes with SPEv1p2
        (Features(spe=SpeLevel.V1P4, spe_fds=True), {"PMSNEVFR_EL1": 0x80, "PMSDSFR_EL1": 0xF0}),
    ],
    ids=["spev1p1", "fne", "fds"],
)
def test_enable_profiling_programs_the_newer_filters_where_they_exist(
    features: Features, programmed: dict[str, int]
) -> None:
    """The host's driver programs the inverted event filter and the data source filter only where the CPU has them."""
    s = system(features)
    s.enable_profiling()
    written = {e.register: e.value for e in s.cpu.trace if e.kind is Kind.MSR and e.actor == HOST}
    assert programmed == {r: v for r, v in written.items() if r in ("PMSNEVFR_EL1", "PMSDSFR_EL1")}
    assert [] == [e.describe() for e in s.cpu.trace if e.kind is Kind.UNDEF]


def test_enable_profiling_again_only_changes_sampling() -> None:
    """With the buffer already enabled, enabling again writes PMSCR_EL1 only (the pointer keeps its place)."""
    s = system()
    s.enable_profiling()
    s.host_run(2)
    s.cpu.isb()
    s.cpu.psb_csync()
    mark = len(s.cpu.trace)
    s.enable_profiling(pmscr=0b01)
    assert ["msr PMSCR_EL1 <- 0x1  = E0SPE", "isb"] == events_since(s, mark)
    assert M.BUFFER_VA + 2 * M.RECORD_SIZE == s.cpu.peek("PMBPTR_EL1")


def test_disable_profiling_drains_before_turning_the_buffer_off() -> None:
    """Disabling stops sampling, synchronises, drains (PSB CSYNC, DSB), then disables the buffer."""
    s = system()
    s.enable_profiling()
    s.host_run(1)
    mark = len(s.cpu.trace)
    s.disable_profiling()
    assert [
        "msr PMSCR_EL1 <- 0x0  = 0", "isb", "psb csync",
        f"write #0 host buffer (PA {M.BUFFER_PA:#x}) via EL1&0 stage 1 (TTBR1_EL1={M.HOST_TTBR1:#x})",
        "dsb nsh", "msr PMBLIMITR_EL1 <- 0x0  = 0", "isb",
    ] == events_since(s, mark)
    assert (False, [Fate.WRITTEN]) == (s.profiling, [r.fate for r in s.cpu.records])


def test_pause_sampling_leaves_the_buffer_enabled() -> None:
    """Pausing clears PMSCR_EL1 but keeps PMBLIMITR_EL1.E: the buffer stays live, unsampled."""
    s = system()
    s.enable_profiling()
    s.pause_sampling()
    s.host_run(3)
    assert (0, PMBLIMITR_E, []) == (
        s.cpu.peek("PMSCR_EL1"), s.cpu.peek("PMBLIMITR_EL1") & PMBLIMITR_E, s.cpu.records,
    )


@pytest.mark.parametrize("features", [Features(spe=SpeLevel.NONE), Features(spe_owned_by_higher_el=True)])
def test_driver_does_nothing_without_a_usable_buffer(features: Features) -> None:
    """Without SPE, or with the buffer owned by a higher EL, the driver touches no SPE register."""
    s = system(features)
    mark = len(s.cpu.trace)
    s.enable_profiling()
    s.pause_sampling()
    s.host_run(2)
    s.disable_profiling()
    irq = s.handle_buffer_irq()
    assert (False, False, ["code host kernel code"]) == (s.profiling, irq, events_since(s, mark))


def test_buffer_irq_handler_restarts_a_full_buffer() -> None:
    """After the buffer fills, the handler reads PMBSR_EL1, rewinds the pointer and clears the status."""
    s = system()
    s.enable_profiling()
    s.host_run(RECORDS_PER_BUFFER + 1)
    s.cpu.isb()
    s.cpu.psb_csync()
    s.cpu.dsb("nsh")
    assert (True, PMBSR_S) == (s.cpu.buffer_irq, s.cpu.peek("PMBSR_EL1") & PMBSR_S)
    assert s.handle_buffer_irq()
    assert (False, 0, M.BUFFER_VA) == (s.cpu.buffer_irq, s.cpu.peek("PMBSR_EL1"), s.cpu.peek("PMBPTR_EL1"))
    s.host_run(1)  # sampling is back on
    assert (RECORDS_PER_BUFFER + 2, Fate.PENDING) == (len(s.cpu.records), s.cpu.records[-1].fate)


def test_buffer_irq_handler_ignores_a_spurious_interrupt() -> None:
    """With no interrupt pending, or PMBSR_EL1.S already clear, the handler does nothing."""
    s = system()
    s.enable_profiling()
    assert not s.handle_buffer_irq()
    s.cpu.buffer_irq = True  # raised, but the status was cleared behind the handler's back
    mark = len(s.cpu.trace)
    assert (False, ["mrs PMBSR_EL1 -> 0x0"]) == (s.handle_buffer_irq(), events_since(s, mark))


@pytest.mark.parametrize("vhe", [False, True])
def test_host_user_space_is_sampled_through_e0(vhe: bool) -> None:
    """Host user code runs at EL0 (E0SPE, or E0HSPE under VHE) and the host is back at its EL after."""
    s = system(Features(vhe=vhe))
    s.enable_profiling(pmscr=0b01)  # E0SPE (E0HSPE) only
    s.host_run(2, el0=True)
    s.host_run(2)  # kernel code: E1SPE / E2SPE is off
    assert ([0, 0], s.host_el) == ([r.el for r in s.cpu.records], s.cpu.el)


def test_host_code_cannot_run_while_the_hypervisor_is() -> None:
    """Driving the host while the CPU runs something else is a ModelError naming who runs."""
    s = system()
    s.cpu.take_exception(2, HYP, "hvc")
    with pytest.raises(ModelError, match="Cannot run host code because the CPU is running hyp at EL2"):
        s.enable_profiling()


# -------------------------------------------------------------------------------- vcpus


def test_setup_vcpu_notes_the_mdcr_el2_it_computed() -> None:
    """Setting a vcpu up records its MDCR_EL2 in the trace, decoded, as the counterexample shows it."""
    s = system(Features(spe=SpeLevel.NONE))
    s.setup_vcpu(0)
    assert "vcpu0.mdcr_el2 = TDRA | TDOSA | TPM | TPMCR | HPMN(6) (0xc66)" == s.cpu.trace[-1].describe()
    assert s.vcpus[0].prepared


@pytest.mark.parametrize("vhe", [False, True])
def test_run_vcpu_frames_the_run_with_window_markers(vhe: bool) -> None:
    """A run is an ENTRY, the switch's work, the guest, and a RETURN, with the host back where it was."""
    s = system(Features(vhe=vhe))
    result = s.run_vcpu(1, [GuestExit("hvc")])
    markers = [e.where for e in s.cpu.trace.of(Kind.ENTRY, Kind.GUEST, Kind.EXIT, Kind.RETURN)]
    assert ExitReason("hvc") == result
    assert ["run vcpu 1", "vcpu 1 running", "vcpu 1 exited (hvc)", "vcpu 1 back in host"] == markers
    assert (1, True, HOST, s.host_el, -1) == (
        s.vcpus[1].runs, s.vcpus[1].prepared, s.cpu.actor, s.cpu.el, s.cpu.vcpu,
    )


def test_run_vcpu_records_the_saved_guest_context_at_the_exit_and_the_return() -> None:
    """A run records the SPE registers the guest's saved context holds while the guest runs and when the host gets control back."""

    class KeepsGuestPmscr(ReferenceSwitch):
        def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> ExitReason:
            vcpu.sysregs["PMSCR_EL1"] = 0x1
            reason = super().vcpu_run(cpu, vcpu)
            vcpu.sysregs["PMSCR_EL1"] = 0x2
            return reason

    s = system(switch=KeepsGuestPmscr())
    s.run_vcpu(0)
    contexts = [(e.value, e.where, e.actor, e.el) for e in s.cpu.trace.of(Kind.CONTEXT)]
    assert [(0x1, "while the guest ran", HYP, 2), (0x2, "at the return to the host", HYP, 2)] == contexts
    events = s.cpu.trace.events
    assert Kind.RETURN in [e.kind for e in events[s.cpu.trace.of(Kind.CONTEXT)[-1].seq:]]


def test_reference_keeps_no_spe_register_in_the_guest_context() -> None:
    """The reference's guest context is its stage 1 only: no run records a guest SPE context."""
    s = system()
    s.enable_profiling()
    s.run_vcpu(0)
    assert [] == s.cpu.trace.of(Kind.CONTEXT)


def test_run_vcpu_sets_the_vcpu_up_once() -> None:
    """The first run prepares the vcpu; later runs reuse that preparation."""
    s = system()
    s.run_vcpu(0)
    s.run_vcpu(0)
    assert 1 == sum(1 for e in s.cpu.trace.of(Kind.NOTE) if e.where == "setup vcpu 0")


@pytest.mark.parametrize("index", [-1, 2])
def test_unknown_vcpu_is_refused(index: int) -> None:
    """A vcpu index the system does not have is a ModelError listing the ones it has."""
    with pytest.raises(ModelError, match=rf"Cannot use vcpu {index} because this system has vcpus 0\.\.1"):
        system().run_vcpu(index)


class NeverEnters(ReferenceSwitch):
    """Returns without running the guest."""

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> ExitReason:
        return ExitReason("irq")


class EntersTwice(ReferenceSwitch):
    """Runs the guest twice in one call."""

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> ExitReason:
        cpu.run_guest(vcpu)
        return cpu.run_guest(vcpu)


class ReturnsAtEl1(ReferenceSwitch):
    """Drops to EL1 itself instead of returning to the caller at EL2."""

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> ExitReason:
        result = super().vcpu_run(cpu, vcpu)
        cpu.eret(1, HOST, "too early")
        return result


class ReturnsGarbage(ReferenceSwitch):
    """Returns something that is not an exit reason."""

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> Any:
        super().vcpu_run(cpu, vcpu)
        return 42


@pytest.mark.parametrize(
    ("switch", "clause", "message"),
    [
        (NeverEnters(), "vcpu_run enters the guest once", "it entered 0 times"),
        (EntersTwice(), "vcpu_run enters the guest once", "it entered 2 times"),
        (ReturnsAtEl1(), "vcpu_run returns at EL2", "it returned at EL1 as host"),
        (ReturnsGarbage(), "vcpu_run returns the exit reason", "it returned 42"),
    ],
    ids=["never-enters", "enters-twice", "returns-at-el1", "returns-garbage"],
)
def test_contract_breaches_are_named(switch: WorldSwitch, clause: str, message: str) -> None:
    """An adapter that breaks the contract gets a ContractError naming the clause and what it did."""
    s = system(switch=switch)
    with pytest.raises(ContractError) as info:
        s.run_vcpu(0)
    assert clause == info.value.clause
    assert str(info.value).startswith(f"[{clause}] vcpu_run must ")
    assert str(info.value).endswith(message)


class ReturnsNone(ReferenceSwitch):
    """Returns None, as a C function returning void would through a shim."""

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> None:  # type: ignore[override]
        super().vcpu_run(cpu, vcpu)


def test_none_is_an_unknown_exit_reason() -> None:
    """An adapter that returns None is allowed; the run's exit reason is then 'unknown'."""
    assert ExitReason("unknown") == system(switch=ReturnsNone()).run_vcpu(0)


def test_reference_switch_satisfies_the_contract() -> None:
    """The reference switch is a WorldSwitch."""
    assert isinstance(ReferenceSwitch(), WorldSwitch)


# ------------------------------------------------------------------------------- finish


def test_finish_drains_a_profiling_host() -> None:
    """At the end of a scenario the host's profiling is stopped and every record written."""
    s = system()
    s.enable_profiling()
    s.host_run(3)
    s.finish()
    assert (False, [Fate.WRITTEN] * 3) == (s.profiling, [r.fate for r in s.cpu.records])


@pytest.mark.parametrize("in_host", [True, False])
def test_finish_without_profiling_does_nothing(in_host: bool) -> None:
    """Finishing when the host is not profiling, or is not running, adds no event."""
    s = system()
    if not in_host:
        s.enable_profiling()
        s.cpu.take_exception(2, HYP, "hvc")
    mark = len(s.cpu.trace)
    s.finish()
    assert [] == events_since(s, mark)


def test_an_undrained_record_translated_by_the_nvhe_el2_regime_faults() -> None:
    """A host record written while EL2 owns the buffer on nVHE faults: the EL2 regime has no upper VA range (D8.1.2)."""
    s = System(Features(), mutant("no_psb_csync"), WorstCaseChooser())
    s.enable_profiling()
    s.host_run(2)
    s.run_vcpu(0, [GuestExit("hvc")])
    fates = {(r.fate, r.landing.owner if r.landing else None) for r in s.cpu.records if r.actor == HOST}
    assert {(Fate.FAULTED, None), (Fate.FULL, None)} == fates


@pytest.mark.parametrize(
    ("choices", "hyp_records"),
    [(Choices(), 0), (Choices(boot_writes_pmscr_el2=False), 1)],
    ids=["linux-boot", "pmscr-el2-unknown"],
)
def test_el2_code_is_sampled_only_where_pmscr_el2_is_left_unknown(choices: Choices, hyp_records: int) -> None:
    """With PMSCR_EL2 left at its UNKNOWN reset (taken as E2SPE=1), the exit vector running under the guest's E2PB=0b00 is sampled."""
    s = System(Features(), ReferenceSwitch(), WorstCaseChooser(), choices=choices)
    s.enable_profiling()
    s.host_run(1)
    s.run_vcpu(0, [GuestExit("hvc")])
    assert hyp_records == sum(1 for r in s.cpu.records if r.actor == HYP)


def test_choices_reject_a_non_boolean() -> None:
    """Choices is validated: sctlr_el2_eis must be a bool, and the error names it, the value and the type expected."""
    with pytest.raises(TypeError) as raised:
        Choices(sctlr_el2_eis="no")  # type: ignore[arg-type]
    assert "Choices.sctlr_el2_eis is 'no'; expected a bool (True or False)" == str(raised.value)
