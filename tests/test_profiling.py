"""Sampling and the profiling buffer, driven by hand: translation at write, PSB CSYNC and DSB, discards, a full buffer, faults.

A little over 400 lines: one section per behaviour of reference/profiling.py, all driving the same
hand-built CPU; split, they would scatter one module's tests."""

from __future__ import annotations

import pytest
from model_harness import (
    BUFFER_LIMIT,
    E2PB_EL1,
    HCR_RW,
    HCR_VHE_HOST,
    HCR_VM,
    PMBLIMITR_E,
    PMSCR_E0_E1,
    Scripted,
    boot,
    kinds,
    mdcr_e2pb,
    start_buffer,
)

from pytest_spekvm.reference import memory as M
from pytest_spekvm.reference.actors import HOST, HYP, guest
from pytest_spekvm.reference.chooser import (
    Chooser,
    EagerChooser,
    WorstCaseChooser,
)
from pytest_spekvm.reference.cpu import CPU, ModelError
from pytest_spekvm.reference.features import Features, SpeLevel
from pytest_spekvm.reference.profiling import Fate
from pytest_spekvm.reference.trace import Dsb, Kind

# ----------------------------------------------------------------------- translate at write


def _record_under_host_tables(chooser: Chooser) -> CPU:
    """A host record collected inside the PE, then the hypervisor installs guest 0's tables."""
    cpu = boot(chooser=chooser)
    start_buffer(cpu)
    cpu.run_code(1, "host kernel code")
    cpu.take_exception(2, HYP, "hvc")
    cpu.msr("VTTBR_EL2", M.vttbr(0))
    cpu.msr("HCR_EL2", HCR_RW | HCR_VM)
    cpu.msr("TTBR1_EL1", M.guest_ttbr1(0))
    cpu.isb()
    return cpu


def test_record_is_translated_by_the_tables_in_force_when_it_is_written() -> None:
    """A record collected under the host's tables but written under the guest's lands in guest memory."""
    cpu = _record_under_host_tables(WorstCaseChooser())
    assert 1 == cpu.pending_records
    cpu.psb_csync()
    cpu.dsb("nsh")
    (record,) = cpu.records
    assert (Fate.WRITTEN, M.guest_owner(0)) == (record.fate, record.landing.owner if record.landing else None)
    assert {M.guest_owner(0): M.RECORD_SIZE} == cpu.memory.contents


def test_record_written_before_the_change_lands_in_the_host_buffer() -> None:
    """The same record written when the chooser lets it out early lands in the host's buffer."""
    cpu = _record_under_host_tables(EagerChooser())
    (record,) = cpu.records
    assert 0 == cpu.pending_records
    assert {M.HOST_BUFFER: M.RECORD_SIZE} == cpu.memory.contents
    assert record.landing is not None
    assert M.BUFFER_PA == record.landing.pa


def test_each_record_is_translated_on_its_own() -> None:
    """Of two records, one written before the table change and one after, each lands where its write went."""
    chooser = Scripted(write=1)
    cpu = boot(chooser=chooser)
    start_buffer(cpu)
    cpu.run_code(2)
    cpu.take_exception(2, HYP, "hvc")  # the chooser lets the oldest record out here
    chooser.write = 0
    cpu.msr("TTBR1_EL1", M.guest_ttbr1(0))
    cpu.isb()
    cpu.psb_csync()
    assert [M.HOST_BUFFER, M.HOST_KERNEL] == [r.landing.owner for r in cpu.records if r.landing]
    assert (2, "exception entry (hvc)") == chooser.write_questions[0]


def test_buffer_owned_by_el2_is_translated_by_the_hypervisor_tables() -> None:
    """On nVHE, MDCR_EL2.E2PB = 0b00 makes the EL2 regime (TTBR0_EL2) translate the host's records: its one VA range faults them."""
    cpu = boot()
    start_buffer(cpu)
    cpu.run_code(1)
    cpu.take_exception(2, HYP, "hvc")
    cpu.msr("MDCR_EL2", mdcr_e2pb(0b00))
    cpu.isb()
    cpu.psb_csync()
    assert {} == cpu.memory.contents
    assert "stage 1 translation fault via EL2 stage 1 (TTBR0_EL2=0x30000)" in str(cpu.records[0].landing)


def test_lower_buffer_address_goes_through_the_hypervisor_tables() -> None:
    """A lower-half buffer address on nVHE with E2PB = 0b00 walks TTBR0_EL2 (here: unmapped, a fault)."""
    cpu = boot()
    cpu.msr("PMBPTR_EL1", 0x1000)
    cpu.msr("PMBLIMITR_EL1", 0x10000 | PMBLIMITR_E)
    cpu.msr("PMSCR_EL1", PMSCR_E0_E1)
    cpu.isb()
    cpu.run_code(1)
    cpu.take_exception(2, HYP, "hvc")
    cpu.msr("MDCR_EL2", mdcr_e2pb(0b00))
    cpu.isb()
    cpu.psb_csync()
    assert "stage 1 translation fault via EL2 stage 1 (TTBR0_EL2=0x30000)" == str(cpu.records[0].landing)


def test_vhe_buffer_is_translated_by_the_el2_and_0_regime() -> None:
    """Under VHE the host's buffer address goes through TTBR1_EL2 into the host's buffer."""
    cpu = boot(Features(vhe=True))
    start_buffer(cpu)
    cpu.run_code(1)
    cpu.isb()
    cpu.psb_csync()
    landing = cpu.records[0].landing
    assert landing is not None
    assert (M.HOST_BUFFER, "EL2&0 stage 1 (TTBR1_EL2=0x10000)") == (landing.owner, landing.regime)


def test_vhe_lower_addresses_use_ttbr0_el2() -> None:
    """Under VHE a buffer at a lower-half address is translated by TTBR0_EL2 (here: no mapping, a fault)."""
    cpu = boot(Features(vhe=True))
    cpu.msr("TTBR0_EL2", M.HOST_TTBR0)
    cpu.msr("PMBPTR_EL1", 0x1000)
    cpu.msr("PMBLIMITR_EL1", 0x10000 | PMBLIMITR_E)
    cpu.msr("PMSCR_EL1", PMSCR_E0_E1)
    cpu.isb()
    cpu.run_code(1)
    cpu.isb()
    cpu.psb_csync()
    assert "stage 1 translation fault via EL2&0 stage 1 (TTBR0_EL2=0x20000)" == str(cpu.records[0].landing)


# ------------------------------------------------------------------------ PSB CSYNC, DSB


def test_psb_csync_writes_every_collected_record_before_the_dsb() -> None:
    """After a CSE, PSB CSYNC translates every pending record and starts its write; the DSB that follows completes them."""
    cpu = boot()
    start_buffer(cpu)
    cpu.run_code(3)
    cpu.isb()
    mark = len(cpu.trace)
    cpu.psb_csync()
    in_flight = [r.fate for r in cpu.records]
    cpu.dsb("nsh")
    assert [Kind.PSB, Kind.WRITE, Kind.WRITE, Kind.WRITE, Kind.DSB] == kinds(cpu, mark)
    assert (0, Dsb.NSH) == (cpu.pending_records, cpu.trace[-1].dsb)
    assert ([Fate.IN_FLIGHT] * 3, [Fate.WRITTEN] * 3) == (in_flight, [r.fate for r in cpu.records])
    assert M.BUFFER_VA + 3 * M.RECORD_SIZE == cpu.peek("PMBPTR_EL1")


def test_psb_csync_does_not_synchronise_records_after_the_last_cse() -> None:
    """Records collected after the last context synchronisation event stay in the PE through a PSB (worst case)."""
    cpu = boot()
    start_buffer(cpu)
    cpu.run_code(2)
    cpu.psb_csync()
    assert (2, [Fate.PENDING, Fate.PENDING]) == (cpu.pending_records, [r.fate for r in cpu.records])


@pytest.mark.parametrize(("domain", "completes"), [("nsh", True), ("sy", True), ("ish", True), ("nshst", False), ("ishld", False)])
def test_only_a_dsb_over_loads_and_stores_completes_the_buffer_writes(domain: str, completes: bool) -> None:
    """D17.9: a DSB over loads and stores completes the PSB's writes; a disable before that discards them (R_SXWCP)."""
    cpu = boot()
    start_buffer(cpu)
    cpu.run_code(2)
    cpu.take_exception(2, HYP, "hvc")
    cpu.psb_csync()
    cpu.dsb(domain)
    cpu.msr("PMBLIMITR_EL1", 0)
    fates = [Fate.WRITTEN] * 2 if completes else [Fate.DISCARDED] * 2
    assert fates == [r.fate for r in cpu.records]


@pytest.mark.parametrize("moved", [True, False])
def test_moving_the_buffer_pointer_before_the_dsb_discards_the_writes_in_flight(moved: bool) -> None:
    """R_SXWCP: a PMBPTR_EL1 write that moves the pointer while PSB-started writes are not complete
    discards them (the buffer memory is reused); writing back the same pointer changes nothing."""
    cpu = boot()
    start_buffer(cpu)
    cpu.run_code(2)
    cpu.take_exception(2, HYP, "hvc")
    cpu.psb_csync()
    pointer = cpu.peek("PMBPTR_EL1")
    cpu.msr("PMBPTR_EL1", M.BUFFER_VA if moved else pointer)
    fates = [Fate.DISCARDED] * 2 if moved else [Fate.IN_FLIGHT] * 2
    assert fates == [r.fate for r in cpu.records]


@pytest.mark.parametrize(("eis", "synchronised"), [(True, True), (False, False)])
def test_exception_entry_to_el2_synchronises_only_with_eis_on_a_feat_exs_cpu(eis: bool, synchronised: bool) -> None:
    """With FEAT_ExS, the entry to EL2 is a context synchronisation event only with SCTLR_EL2.EIS=1: a PSB after it synchronises host records or not."""
    cpu = CPU(Features(exs=True), WorstCaseChooser(), eis=eis, eos=True)
    cpu.msr("HCR_EL2", HCR_RW)
    cpu.msr("TTBR1_EL1", M.HOST_TTBR1)
    cpu.msr("MDCR_EL2", E2PB_EL1)
    cpu.eret(1, HOST, "to host kernel")
    start_buffer(cpu)
    cpu.run_code(1)
    cpu.take_exception(2, HYP, "hvc")
    cpu.psb_csync()
    assert (0 if synchronised else 1) == cpu.pending_records
    assert synchronised == cpu.trace.of(Kind.EXCEPTION)[-1].cse


def test_psb_csync_is_a_nop_without_spe() -> None:
    """Without SPE, PSB CSYNC is a hint that does nothing but appear in the trace."""
    cpu = CPU(Features(spe=SpeLevel.NONE), WorstCaseChooser())
    cpu.psb_csync()
    assert [Kind.PSB] == kinds(cpu)


@pytest.mark.parametrize(("imm", "expected"), [(17, [Kind.PSB]), (0, []), (16, [])])
def test_hint_17_is_psb_csync(imm: int, expected: list[Kind]) -> None:
    """`hint #17` is PSB CSYNC; the other hints are NOPs the trace does not show."""
    cpu = CPU(Features(), WorstCaseChooser())
    cpu.hint(imm)
    assert expected == kinds(cpu)


@pytest.mark.parametrize("domain", ["sy", "ish", "nsh", "osh", "nshst", "ld"])
def test_dsb_records_its_domain(domain: str) -> None:
    """A DSB with any architectural option is an event carrying that option."""
    cpu = CPU(Features(), WorstCaseChooser())
    cpu.dsb(domain)
    event = cpu.trace[-1]
    assert (Kind.DSB, Dsb(domain), f"dsb {domain}") == (event.kind, event.dsb, event.describe())


def test_dsb_with_a_bad_domain_is_refused() -> None:
    """A DSB option that does not exist is a ModelError naming it and listing the real ones."""
    cpu = CPU(Features(), WorstCaseChooser())
    expected = r"Cannot issue dsb 'inner' because that is not a DSB option \(one of ish, "
    with pytest.raises(ModelError, match=expected):
        cpu.dsb("inner")


# ------------------------------------------------------------------- discard on disable


def test_disabling_the_buffer_discards_unwritten_records() -> None:
    """Records still inside the PE when a disable takes effect are discarded, naming who disabled."""
    cpu = boot()
    start_buffer(cpu)
    cpu.run_code(2)
    cpu.msr("PMBLIMITR_EL1", 0)
    cpu.isb()
    assert [(Fate.DISCARDED, HOST), (Fate.DISCARDED, HOST)] == [(r.fate, r.discarded_by) for r in cpu.records]
    assert ["discard #0 buffer disabled by host", "discard #1 buffer disabled by host"] == [
        e.describe() for e in cpu.trace.of(Kind.DISCARD)
    ]
    assert {} == cpu.memory.contents


def test_records_written_before_the_disable_survive() -> None:
    """A chooser that writes records as soon as anything changes saves them from the disable."""
    cpu = boot(chooser=EagerChooser())
    start_buffer(cpu)
    cpu.run_code(2)
    cpu.msr("PMBLIMITR_EL1", 0)
    cpu.isb()
    assert [Fate.WRITTEN, Fate.WRITTEN] == [r.fate for r in cpu.records]


def test_write_after_a_visible_unsynchronised_disable_is_discarded() -> None:
    """A record the PE writes while an unsynchronised disable is already in effect is discarded."""
    cpu = boot(chooser=Scripted(visible=True, write=0))
    start_buffer(cpu)
    cpu.run_code(1)
    cpu.msr("PMBLIMITR_EL1", BUFFER_LIMIT)  # E = 0, not yet synchronised
    cpu.isb()  # (a CSE: the PSB below synchronises the record; the disable is then in effect for certain)
    cpu.psb_csync()
    assert [(Fate.DISCARDED, HOST)] == [(r.fate, r.discarded_by) for r in cpu.records]


def test_exception_entry_synchronises_a_disable() -> None:
    """Exception entry is a context synchronisation event: it makes a disable discard too."""
    cpu = boot()
    start_buffer(cpu)
    cpu.run_code(1)
    cpu.msr("PMBLIMITR_EL1", 0)
    cpu.take_exception(2, HYP, "hvc")
    assert [Fate.DISCARDED] == [r.fate for r in cpu.records]


# ---------------------------------------------------------------------------- buffer full


def test_buffer_full_stops_the_buffer_and_raises_the_interrupt() -> None:
    """A record that does not fit sets PMBSR_EL1.S with EC=0 (buffer management) and BSC=full."""
    cpu = boot()
    start_buffer(cpu, room=2 * M.RECORD_SIZE)
    cpu.run_code(3)
    cpu.isb()
    cpu.psb_csync()
    cpu.dsb("nsh")
    assert [Fate.WRITTEN, Fate.WRITTEN, Fate.FULL] == [r.fate for r in cpu.records]
    # PMBSR_EL1: S [17], EC [31:26] = 0b000000, MSS [15:0] BSC = 0b000001 (buffer filled).
    assert (1 << 17 | 0b1, True) == (cpu.peek("PMBSR_EL1"), cpu.buffer_irq)
    assert BUFFER_LIMIT == cpu.peek("PMBPTR_EL1")
    assert ["pe    PMBSR_EL1 <- 0x20001 (buffer full)", "full #2 buffer full"] == [
        e.describe() for e in cpu.trace.of(Kind.HW, Kind.FULL) if e.register != "PMSICR_EL1"
    ]


def test_records_behind_a_full_one_are_not_written() -> None:
    """Once the buffer stopped, the remaining pending records are not written either."""
    cpu = boot()
    start_buffer(cpu, room=M.RECORD_SIZE)
    cpu.run_code(3)
    cpu.isb()
    cpu.psb_csync()
    cpu.dsb("sy")
    assert [Fate.WRITTEN, Fate.FULL, Fate.FULL] == [r.fate for r in cpu.records]
    assert "full #2 buffer stopped (PMBSR_EL1.S=1)" == cpu.trace.of(Kind.FULL)[-1].describe()


def test_a_stopped_buffer_collects_nothing() -> None:
    """With PMBSR_EL1.S set, sampling produces no records."""
    cpu = boot()
    start_buffer(cpu, room=0)
    cpu.run_code(1)
    cpu.isb()
    cpu.psb_csync()
    assert ([], False) == (cpu.run_code(5), cpu.sampling_enabled())


# ---------------------------------------------------------------------- translation faults


def test_stage1_fault_stops_the_buffer() -> None:
    """A record whose address has no stage 1 mapping faults: PMBSR_EL1.S with EC = stage 1 data abort."""
    cpu = boot()
    start_buffer(cpu)
    cpu.msr("TTBR1_EL1", M.HOST_TTBR0)  # an empty table
    cpu.isb()
    cpu.run_code(1)
    cpu.isb()
    cpu.psb_csync()
    assert ([Fate.FAULTED], 1 << 17 | 0b100100 << 26, True) == (
        [r.fate for r in cpu.records], cpu.peek("PMBSR_EL1"), cpu.buffer_irq,
    )
    assert cpu.trace.of(Kind.FAULT)[0].describe().startswith("fault #0 stage 1 translation fault via EL1&0")


def test_stage2_fault_stops_the_buffer() -> None:
    """A record whose IPA has no stage 2 mapping faults with EC = stage 2 data abort."""
    cpu = boot()
    start_buffer(cpu)
    cpu.run_code(1)
    cpu.take_exception(2, HYP, "hvc")
    cpu.msr("HCR_EL2", HCR_RW | HCR_VM)
    cpu.msr("VTTBR_EL2", 0)  # no stage 2 tables there
    cpu.isb()
    cpu.psb_csync()
    assert ([Fate.FAULTED], 1 << 17 | 0b100101 << 26) == ([r.fate for r in cpu.records], cpu.peek("PMBSR_EL1"))


# -------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(
    ("features", "mdcr", "el", "pmscr_el1", "pmscr_el2", "expected"),
    [
        (Features(), E2PB_EL1, 1, 0b10, 0, True),  # E1SPE
        (Features(), E2PB_EL1, 1, 0b01, 0, False),
        (Features(), E2PB_EL1, 0, 0b01, 0, True),  # E0SPE
        (Features(), E2PB_EL1, 0, 0b10, 0, False),
        (Features(), mdcr_e2pb(0b10), 1, 0b10, 0, True),  # owned by EL1 even though EL1 traps
        (Features(), mdcr_e2pb(0b00), 1, 0b10, 0, True),  # EL1 is below the owning EL2
        (Features(), E2PB_EL1, 2, 0, 0b10, False),  # EL2 is above the owning EL1
        (Features(vhe=True), 0, 2, 0, 0b10, True),  # E2SPE
        (Features(vhe=True), 0, 2, 0b10, 0b01, False),
        (Features(vhe=True), 0, 0, 0b01, 0b01, True),  # EL0 under E2H+TGE: E0HSPE
        (Features(vhe=True), 0, 0, 0b01, 0b10, False),  # ... not PMSCR_EL1.E0SPE
        (Features(spe_owned_by_higher_el=True), E2PB_EL1, 1, 0b11, 0, False),
        (Features(spe=SpeLevel.NONE), 0, 1, 0, 0, False),
    ],
)
def test_sampling_follows_ownership_el_and_pmscr(  # noqa: PLR0917 - one argument per table column
    features: Features, mdcr: int, el: int, pmscr_el1: int, pmscr_el2: int, expected: bool,
) -> None:
    """Sampling needs SPE, an enabled buffer, an EL at or below the owner and that EL's PMSCR bit."""
    cpu = CPU(features, WorstCaseChooser())
    cpu.msr("HCR_EL2", HCR_VHE_HOST if features.vhe else HCR_RW)
    cpu.msr("MDCR_EL2", mdcr)
    if features.has_spe and not features.spe_owned_by_higher_el:
        cpu.msr("PMBLIMITR_EL1", BUFFER_LIMIT | PMBLIMITR_E)
        cpu.msr("PMSCR_EL12" if features.vhe else "PMSCR_EL1", pmscr_el1)
        cpu.msr("PMSCR_EL2", pmscr_el2)
    cpu.isb()
    cpu.el = el  # placed directly: only the EL matters here, not how it was reached
    assert expected == cpu.sampling_enabled()


def test_disabled_buffer_samples_nothing() -> None:
    """With PMBLIMITR_EL1.E = 0, code is not sampled whatever PMSCR_EL1 says."""
    cpu = boot()
    cpu.msr("PMBLIMITR_EL1", BUFFER_LIMIT)
    cpu.msr("PMSCR_EL1", PMSCR_E0_E1)
    cpu.isb()
    assert (False, []) == (cpu.sampling_enabled(), cpu.run_code(3))


def test_sampled_code_collects_records_in_the_trace() -> None:
    """Sampled code adds a CODE event, one RECORD per sample attributed to the actor, and the sample counter's update."""
    cpu = boot()
    start_buffer(cpu)
    mark = len(cpu.trace)
    records = cpu.run_code(2, "host kernel code")
    assert [Kind.CODE, Kind.RECORD, Kind.RECORD, Kind.HW] == kinds(cpu, mark)
    assert ("PMSICR_EL1", 2) == (cpu.trace[-1].register, cpu.peek("PMSICR_EL1"))
    assert [(HOST, 1, Fate.PENDING)] * 2 == [(r.actor, r.el, r.fate) for r in records]
    assert records == cpu.records_of([HOST])
    assert [] == cpu.records_of([guest(0)])


def test_unsampled_code_collects_nothing() -> None:
    """Code that runs while sampling is off is only a CODE event; zero samples collects nothing."""
    cpu = boot()
    start_buffer(cpu)
    mark = len(cpu.trace)
    cpu.run_code(0)
    assert ([Kind.CODE], []) == (kinds(cpu, mark), cpu.records)
