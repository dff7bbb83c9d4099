"""Register access on the CPU model, driven by hand: UNDEFINED, traps to EL2 and EL3, VHE redirection."""

from __future__ import annotations

import enum

import pytest
from model_harness import (
    BUFFER_LIMIT,
    BUFFER_REGISTERS,
    E2PB_EL1,
    HCR_VHE_HOST,
    MDCR_TPMS,
    PMBLIMITR_E,
    PMSCR_E0_E1,
    SAMPLING_REGISTERS,
    boot,
    mdcr_e2pb,
)

from pytest_spekvm.reference import memory as M
from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference.actors import HOST, HYP, guest
from pytest_spekvm.reference.chooser import (
    Chooser,
    HoldingChooser,
    WorstCaseChooser,
)
from pytest_spekvm.reference.cpu import CPU, Outcome
from pytest_spekvm.reference.features import Features, SpeLevel
from pytest_spekvm.reference.trace import Kind

# ----------------------------------------------------------------------------------- UNDEF


@pytest.mark.parametrize("register", SAMPLING_REGISTERS + BUFFER_REGISTERS + ["PMSCR_EL2"])
@pytest.mark.parametrize("write", [False, True])
def test_spe_registers_are_undefined_without_spe(register: str, write: bool) -> None:
    """Without FEAT_SPE every SPE register access is UNDEFINED, traced, and changes nothing."""
    cpu = CPU(Features(spe=SpeLevel.NONE), WorstCaseChooser())  # at EL2, where nothing traps
    before = cpu.peek(register)
    access = cpu.access(register, 1 if write else None)
    expected_reason = f"{register} needs FEAT_SPE, which this CPU does not implement"
    assert (Outcome.UNDEF, expected_reason) == (access.outcome, access.reason)
    event = cpu.trace[-1]
    assert (Kind.UNDEF, register, expected_reason) == (event.kind, event.register, event.where)
    assert before == cpu.peek(register)


@pytest.mark.parametrize("el", [1, 2])
@pytest.mark.parametrize("register", ["PMBLIMITR_EL1", "PMBPTR_EL1", "PMBSR_EL1"])
def test_buffer_registers_trap_to_el3_when_another_security_state_owns_the_buffer(el: int, register: str) -> None:
    """With MDCR_EL3.NSPB giving the buffer away, every buffer register but PMBIDR_EL1 traps to EL3, from EL1 and EL2."""
    cpu = boot(Features(spe_owned_by_higher_el=True))
    if el == 2:
        cpu.take_exception(2, HYP, "hvc")
    access = cpu.access(register)
    assert (Outcome.TRAP_EL3, "MDCR_EL3.NSPB gives the profiling buffer to another Security state") == (
        access.outcome, access.reason,
    )
    assert Kind.TRAP_EL3 is cpu.trace[-1].kind


def test_el2_traps_come_before_the_el3_trap_at_el1() -> None:
    """At EL1 an access MDCR_EL2 traps goes to EL2 first, even when EL3 has given the buffer away."""
    cpu = boot(Features(spe_owned_by_higher_el=True), mdcr=MDCR_TPMS)
    assert (Outcome.TRAP, Outcome.TRAP) == (cpu.access("PMSCR_EL1").outcome, cpu.access("PMBPTR_EL1").outcome)


def test_pmbidr_stays_readable_and_reports_p_when_owned_by_a_higher_el() -> None:
    """With PMBIDR_EL1.P = 1, PMBIDR_EL1 itself reads, with P [4] set and ALIGN [3:0] = 6."""
    cpu = boot(Features(spe_owned_by_higher_el=True))
    assert 1 << 4 | 6 == cpu.mrs("PMBIDR_EL1")


def test_sampling_registers_trap_to_el3_too_when_another_security_state_owns_the_buffer() -> None:
    """MDCR_EL3.NSPB traps the sampling registers as well (CheckMDCR_EL3_NSPBTrap): PMSCR_EL1 is not written."""
    cpu = boot(Features(spe_owned_by_higher_el=True))
    cpu.msr("PMSCR_EL1", PMSCR_E0_E1)
    assert (Kind.TRAP_EL3, 0) == (cpu.trace[-1].kind, cpu.peek("PMSCR_EL1"))


def test_pmbidr_p_reads_one_at_el1_when_el2_owns_the_buffer() -> None:
    """PMBIDR_EL1.P is relative to the reader: at EL1 it reads 1 under E2PB = 0b00, at EL2 it reads 0."""
    cpu = boot(mdcr=mdcr_e2pb(0b00))
    at_el1 = cpu.mrs("PMBIDR_EL1")
    cpu.take_exception(2, HYP, "hvc")
    assert (1 << 4 | 6, 6) == (at_el1, cpu.mrs("PMBIDR_EL1"))


@pytest.mark.parametrize("register", ["MDCR_EL2", "HCR_EL2", "VTTBR_EL2", "PMSCR_EL2", "TTBR0_EL2"])
def test_el2_registers_are_undefined_from_el1(register: str) -> None:
    """An EL1 access to an EL2 register is UNDEFINED, and says which EL it came from."""
    cpu = boot()
    access = cpu.access(register, 0)
    assert (Outcome.UNDEF, f"{register} is not accessible from EL1") == (access.outcome, access.reason)


def test_el1_registers_are_undefined_from_el0() -> None:
    """An EL0 access to PMSCR_EL1 is UNDEFINED."""
    cpu = boot()
    cpu.eret(0, HOST, "to user space")
    assert (Outcome.UNDEF, "PMSCR_EL1 is not accessible from EL0") == (
        cpu.access("PMSCR_EL1").outcome, cpu.access("PMSCR_EL1").reason,
    )


@pytest.mark.parametrize("register", ["PMSIDR_EL1", "PMBIDR_EL1", "ID_AA64DFR0_EL1"])
def test_writing_a_read_only_register_is_undefined(register: str) -> None:
    """An MSR to a read-only register is UNDEFINED, traced with its value, and changes nothing."""
    cpu = CPU(Features(), WorstCaseChooser())
    before = cpu.peek(register)
    access = cpu.access(register, 0x1234)
    event = cpu.trace[-1]
    assert (Outcome.UNDEF, f"{register} is read-only") == (access.outcome, access.reason)
    assert (Kind.UNDEF, 0x1234, before) == (event.kind, event.value, cpu.peek(register))


def test_ttbr1_el2_needs_vhe() -> None:
    """TTBR1_EL2 only exists with FEAT_VHE."""
    cpu = CPU(Features(), WorstCaseChooser())
    assert "TTBR1_EL2 needs FEAT_VHE, which this CPU does not implement" == cpu.access("TTBR1_EL2").reason


# ----------------------------------------------------------------------------------- traps


@pytest.mark.parametrize("register", SAMPLING_REGISTERS)
@pytest.mark.parametrize(("tpms", "expected"), [(1, Outcome.TRAP), (0, Outcome.OK)])
def test_tpms_traps_el1_sampling_register_accesses(register: str, tpms: int, expected: Outcome) -> None:
    """MDCR_EL2.TPMS = 1 traps every EL1 access to a sampling control register to EL2."""
    cpu = boot(mdcr=E2PB_EL1 | tpms << 14)
    access = cpu.access(register)
    assert (expected, "MDCR_EL2.TPMS=1" if tpms else "") == (access.outcome, access.reason)


FDS = Features(spe=SpeLevel.V1P4, spe_fds=True)  # FEAT_SPE_FDS needs FEAT_SPEv1p4


@pytest.mark.parametrize(("features", "expected"), [(Features(spe=SpeLevel.V1P4), Outcome.UNDEF), (FDS, Outcome.OK)])
def test_pmsdsfr_exists_only_with_feat_spe_fds(features: Features, expected: Outcome) -> None:
    """PMSDSFR_EL1 (3 0 9 10 4) is UNDEFINED without FEAT_SPE_FDS, even on an SPEv1p4 CPU."""
    cpu = CPU(features, WorstCaseChooser())
    assert expected == cpu.access(R.Encoding(3, 0, 9, 10, 4), 0xF0).outcome


@pytest.mark.parametrize(("tpms", "expected"), [(1, Outcome.TRAP), (0, Outcome.OK)])
def test_tpms_traps_el1_accesses_to_pmsdsfr(tpms: int, expected: Outcome) -> None:
    """MDCR_EL2.TPMS traps the data source filter from EL1 like the other sampling controls."""
    cpu = boot(FDS, mdcr=E2PB_EL1 | tpms << 14)
    assert expected == cpu.access("PMSDSFR_EL1", 1).outcome


def test_pmsdsfr_traps_to_el3_when_another_security_state_owns_the_buffer() -> None:
    """MDCR_EL3.NSPB giving the buffer away traps PMSDSFR_EL1 to EL3 from EL2 as well."""
    cpu = boot(FDS.evolve(spe_owned_by_higher_el=True))
    cpu.take_exception(2, HYP, "hvc")
    assert Outcome.TRAP_EL3 == cpu.access("PMSDSFR_EL1").outcome


@pytest.mark.parametrize("register", ["PMBLIMITR_EL1", "PMBPTR_EL1", "PMBSR_EL1"])
@pytest.mark.parametrize(("e2pb", "expected"), [(0b00, Outcome.TRAP), (0b10, Outcome.TRAP), (0b11, Outcome.OK)])
def test_e2pb_traps_el1_buffer_register_accesses(register: str, e2pb: int, expected: Outcome) -> None:
    """MDCR_EL2.E2PB 0b00 and 0b10 trap EL1 accesses to PMBLIMITR/PMBPTR/PMBSR (the pseudocode's E2PB IN {'x0'})."""
    cpu = boot(mdcr=mdcr_e2pb(e2pb))
    access = cpu.access(register)
    assert (expected, f"MDCR_EL2.E2PB={e2pb:#04b}" if expected == Outcome.TRAP else "") == (
        access.outcome, access.reason,
    )


@pytest.mark.parametrize("e2pb", [0b00, 0b01, 0b10, 0b11])
def test_e2pb_never_traps_pmbidr(e2pb: int) -> None:
    """PMBIDR_EL1 is trapped only by the fine-grained trap HDFGRTR_EL2.PMBIDR_EL1, never by E2PB."""
    cpu = boot(mdcr=mdcr_e2pb(e2pb))
    assert Outcome.OK == cpu.access("PMBIDR_EL1").outcome


HDFGRTR_PMBIDR = 1 << 63  # HDFGRTR_EL2.PMBIDR_EL1 [63]
HDFGRTR_PMSCR = 1 << 26  # HDFGRTR_EL2.PMSCR_EL1 [26]
HDFGRTR_NPMSNEVFR = 1 << 62  # HDFGRTR_EL2.nPMSNEVFR_EL1 [62]: 0 traps


def at_el1_with_fgt(features: Features, hdfgrtr: int, mdcr: int = E2PB_EL1, **kw: object) -> CPU:
    """A CPU whose EL2 wrote HDFGRTR_EL2 and MDCR_EL2, then returned to EL1."""
    cpu = CPU(features, kw.pop("chooser", WorstCaseChooser()), **kw)  # type: ignore[arg-type]
    cpu.msr("MDCR_EL2", mdcr)
    cpu.msr("HDFGRTR_EL2", hdfgrtr)
    cpu.eret(1, guest(0), "into guest 0")
    return cpu


@pytest.mark.parametrize("el3", [True, False])
@pytest.mark.parametrize(("hdfgrtr", "expected"), [(HDFGRTR_PMBIDR, Outcome.TRAP), (0, Outcome.OK)])
def test_hdfgrtr_el2_pmbidr_traps_el1_reads_of_pmbidr(el3: bool, hdfgrtr: int, expected: Outcome) -> None:
    """HDFGRTR_EL2.PMBIDR_EL1 = 1 traps EL1 reads of PMBIDR_EL1 to EL2, with or without EL3 (SCR_EL3.FGTEn set)."""
    cpu = at_el1_with_fgt(Features(fgt=True, el3=el3), hdfgrtr)
    access = cpu.access("PMBIDR_EL1")
    assert (expected, "HDFGRTR_EL2.PMBIDR_EL1=1" if hdfgrtr else "") == (access.outcome, access.reason)


def test_hdfgrtr_el2_is_undefined_without_feat_fgt_and_pmbidr_never_traps_then() -> None:
    """Without FEAT_FGT HDFGRTR_EL2 does not exist, and nothing can trap a PMBIDR_EL1 read."""
    cpu = at_el1_with_fgt(Features(), HDFGRTR_PMBIDR)
    assert ([Kind.UNDEF], Outcome.OK) == ([e.kind for e in cpu.trace if e.register == "HDFGRTR_EL2"],
                                    cpu.access("PMBIDR_EL1").outcome)


def test_hdfgrtr_el2_traps_reads_only_and_only_at_el1() -> None:
    """A read trap leaves EL1 writes alone (those are HDFGWTR_EL2's) and does nothing at EL2."""
    cpu = at_el1_with_fgt(Features(fgt=True), 1 << 24)  # HDFGRTR_EL2.PMBPTR_EL1 [24]
    outcomes = (cpu.access("PMBPTR_EL1").outcome, cpu.access("PMBPTR_EL1", 0x40).outcome)
    cpu.take_exception(2, HYP, "hvc")
    assert (Outcome.TRAP, Outcome.OK, Outcome.OK) == (*outcomes, cpu.access("PMBPTR_EL1").outcome)


def test_fine_grained_read_trap_comes_before_tpms() -> None:
    """Where HDFGRTR_EL2 and MDCR_EL2.TPMS both trap a read, the fine-grained trap is the one taken (J1 order)."""
    cpu = at_el1_with_fgt(Features(fgt=True), HDFGRTR_PMSCR, mdcr=E2PB_EL1 | MDCR_TPMS)
    assert "HDFGRTR_EL2.PMSCR_EL1=1" == cpu.access("PMSCR_EL1").reason


@pytest.mark.parametrize(("hdfgrtr", "expected"), [(0, Outcome.TRAP), (HDFGRTR_NPMSNEVFR, Outcome.OK)])
def test_npmsnevfr_traps_el1_reads_of_pmsnevfr_when_zero(hdfgrtr: int, expected: Outcome) -> None:
    """HDFGRTR_EL2.nPMSNEVFR_EL1 has the opposite sense: 0 traps EL1 reads of PMSNEVFR_EL1."""
    cpu = at_el1_with_fgt(Features(fgt=True, spe=SpeLevel.V1P2), hdfgrtr)
    assert expected == cpu.access("PMSNEVFR_EL1").outcome


@pytest.mark.parametrize(("chooser", "expected"), [(WorstCaseChooser(), Outcome.OK), (HoldingChooser(), Outcome.TRAP)])
def test_unsynchronised_fine_grained_trap_may_not_be_in_force(chooser: Chooser, expected: Outcome) -> None:
    """With FEAT_ExS and EOS = 0 the ERET does not synchronise: an HDFGRTR_EL2 write just before it may not trap yet."""
    cpu = at_el1_with_fgt(Features(fgt=True, exs=True), HDFGRTR_PMBIDR, chooser=chooser)
    assert expected == cpu.access("PMBIDR_EL1").outcome


@pytest.mark.parametrize(("chooser", "expected"), [(WorstCaseChooser(), Outcome.OK), (HoldingChooser(), Outcome.TRAP)])
def test_reserved_e2pb_acts_as_the_value_the_chooser_picks(chooser: Chooser, expected: Outcome) -> None:
    """E2PB = 0b01 is reserved: it behaves as an allocated value of the chooser's picking (0b11 or 0b00 here)."""
    cpu = boot(chooser=chooser, mdcr=mdcr_e2pb(0b01))
    assert expected == cpu.access("PMBPTR_EL1").outcome


@pytest.mark.parametrize(("chooser", "read_back"), [(WorstCaseChooser(), 0b11), (HoldingChooser(), 0b00)])
def test_reserved_e2pb_reads_back_unknown(chooser: Chooser, read_back: int) -> None:
    """After a write of the reserved E2PB 0b01, a read of MDCR_EL2 returns an UNKNOWN E2PB (K1.2.19): the chooser's pick."""
    cpu = CPU(Features(), chooser)
    cpu.msr("MDCR_EL2", mdcr_e2pb(0b01) | MDCR_TPMS | 6)
    read = cpu.mrs("MDCR_EL2")
    assert (mdcr_e2pb(read_back) | MDCR_TPMS | 6, mdcr_e2pb(0b01) | MDCR_TPMS | 6) == (read, cpu.peek("MDCR_EL2"))
    assert read == cpu.trace[-1].value


def test_reserved_e2pb_read_back_may_be_any_value_of_the_field() -> None:
    """The UNKNOWN read is asked of the chooser among all four E2PB values, the reserved one included."""
    asked: list[tuple[str, str, tuple[int, ...]]] = []

    class Asking(WorstCaseChooser):
        def reserved_as(self, register: str, field: str, allowed: tuple[int, ...]) -> int:
            asked.append((register, field, allowed))
            return allowed[1]

    cpu = CPU(Features(), Asking())
    cpu.msr("MDCR_EL2", mdcr_e2pb(0b01))
    assert (mdcr_e2pb(0b01), [("MDCR_EL2", "E2PB (read back)", (0b00, 0b01, 0b10, 0b11))]) == (
        cpu.mrs("MDCR_EL2"), asked,
    )


def test_tpms_does_not_trap_buffer_registers_and_e2pb_does_not_trap_sampling_registers() -> None:
    """Each trap control covers its own group of SPE registers only."""
    tpms_only = boot(mdcr=E2PB_EL1 | MDCR_TPMS)
    e2pb_only = boot(mdcr=mdcr_e2pb(0b00))
    assert (Outcome.OK, Outcome.OK) == (tpms_only.access("PMBPTR_EL1").outcome, e2pb_only.access("PMSCR_EL1").outcome)


def test_a_trapped_access_does_not_complete() -> None:
    """A trapped MSR leaves the register unchanged, a trapped MRS reads 0, and both are TRAP events."""
    cpu = boot(mdcr=E2PB_EL1 | MDCR_TPMS)
    cpu.msr("PMSCR_EL1", PMSCR_E0_E1)
    value = cpu.mrs("PMSCR_EL1")
    traps = cpu.trace.of(Kind.TRAP)
    assert (0, 0) == (value, cpu.peek("PMSCR_EL1"))
    assert [("PMSCR_EL1", PMSCR_E0_E1, "MDCR_EL2.TPMS=1"), ("PMSCR_EL1", 0, "MDCR_EL2.TPMS=1")] == [
        (e.register, e.value, e.where) for e in traps
    ]


def test_nothing_traps_at_el2() -> None:
    """TPMS and E2PB trap EL1 accesses only: the same accesses at EL2 complete."""
    cpu = boot(mdcr=mdcr_e2pb(0b00) | MDCR_TPMS)
    cpu.take_exception(2, HYP, "hvc")
    assert [Outcome.OK, Outcome.OK] == [cpu.access("PMSCR_EL1").outcome, cpu.access("PMBPTR_EL1").outcome]


# ------------------------------------------------------------------------- VHE redirection


@pytest.mark.parametrize(
    ("name", "reaches"),
    [
        ("PMSCR_EL1", "PMSCR_EL2"),
        ("PMSCR_EL12", "PMSCR_EL1"),
        ("TTBR0_EL1", "TTBR0_EL2"),
        ("TTBR1_EL1", "TTBR1_EL2"),
        ("TCR_EL1", "TCR_EL2"),
        ("TTBR0_EL12", "TTBR0_EL1"),
        ("TTBR1_EL12", "TTBR1_EL1"),
        ("TCR_EL12", "TCR_EL1"),
        # The buffer registers exist once: no twin, no redirection.
        ("PMBPTR_EL1", "PMBPTR_EL1"),
        ("PMSICR_EL1", "PMSICR_EL1"),
    ],
)
def test_vhe_redirects_at_el2_with_e2h(name: str, reaches: str) -> None:
    """At EL2 with E2H = 1, *_EL1 names reach the EL2 twin and *_EL12 names reach the EL1 register."""
    cpu = boot(Features(vhe=True))
    cpu.msr(name, 0x5000)
    event = cpu.trace[-1]
    assert (Kind.MSR, reaches, name, 0x5000) == (event.kind, event.register, event.name, cpu.peek(reaches))


def test_redirected_access_shows_both_names_in_the_timeline() -> None:
    """The timeline shows the name the code used and the register it reached."""
    cpu = boot(Features(vhe=True))
    cpu.msr("PMSCR_EL1", 0)
    cpu.mrs("PMSCR_EL12")
    assert ["msr PMSCR_EL1->PMSCR_EL2 <- 0x0  = 0", "mrs PMSCR_EL12->PMSCR_EL1 -> 0x0"] == [
        e.describe() for e in cpu.trace.events[-2:]
    ]


@pytest.mark.parametrize("name", ["PMSCR_EL12", "TTBR0_EL12", "TCR_EL12"])
def test_el12_names_are_undefined_without_e2h(name: str) -> None:
    """Without E2H (a non-VHE CPU at EL2) the *_EL12 names are UNDEFINED."""
    cpu = CPU(Features(), WorstCaseChooser())
    access = cpu.access(name)
    assert (Outcome.UNDEF, f"{name} needs EL2 with HCR_EL2.E2H=1") == (access.outcome, access.reason)


def test_el12_names_are_undefined_at_el1_even_with_e2h() -> None:
    """A guest at EL1 of a VHE CPU cannot use the *_EL12 names."""
    cpu = boot(Features(vhe=True), mdcr=0)
    cpu.eret(1, guest(0), "into guest")
    assert Outcome.UNDEF == cpu.access("PMSCR_EL12").outcome


def test_el1_names_are_not_redirected_at_el1() -> None:
    """A guest at EL1 of a VHE CPU writing PMSCR_EL1 reaches PMSCR_EL1, not the host's PMSCR_EL2."""
    cpu = boot(Features(vhe=True), mdcr=0)
    cpu.eret(1, guest(0), "into guest")
    before = cpu.peek("PMSCR_EL2")
    cpu.msr("PMSCR_EL1", PMSCR_E0_E1)
    assert (PMSCR_E0_E1, before) == (cpu.peek("PMSCR_EL1"), cpu.peek("PMSCR_EL2"))


def test_e2h_written_on_a_cpu_without_vhe_redirects_nothing() -> None:
    """HCR_EL2.E2H is RES0 without FEAT_VHE: a 1 written there is flagged and has no effect."""
    cpu = CPU(Features(), WorstCaseChooser())
    cpu.msr("HCR_EL2", HCR_VHE_HOST)
    res0 = cpu.trace[-1].res0
    cpu.msr("PMSCR_EL1", 1)
    assert (1 << 34, "PMSCR_EL1", Outcome.UNDEF) == (res0, cpu.trace[-1].register, cpu.access("PMSCR_EL12").outcome)


def test_e2h_written_on_a_cpu_without_vhe_changes_neither_sampling_nor_translation() -> None:
    """Without FEAT_VHE, EL0 stays sampled by PMSCR_EL1.E0SPE and EL2's buffer uses the EL2 regime."""
    cpu = CPU(Features(), WorstCaseChooser())
    cpu.msr("HCR_EL2", HCR_VHE_HOST)
    cpu.msr("TTBR0_EL2", M.HYP_TTBR0)
    cpu.msr("MDCR_EL2", mdcr_e2pb(0b00))
    cpu.msr("PMBPTR_EL1", M.BUFFER_VA)
    cpu.msr("PMBLIMITR_EL1", BUFFER_LIMIT | PMBLIMITR_E)
    cpu.msr("PMSCR_EL1", 0b01)  # E0SPE
    cpu.eret(0, HOST, "to user space")
    cpu.run_code(1)
    cpu.isb()
    cpu.psb_csync()
    landing = cpu.records[0].landing
    assert landing is not None
    assert (M.Fault.STAGE1, "EL2 stage 1 (TTBR0_EL2=0x30000), which has no upper VA range") == (landing.fault, landing.regime)


def test_pmscr_el1_at_el2_without_e2h_is_pmscr_el1() -> None:
    """On a non-VHE CPU the hypervisor's PMSCR_EL1 access reaches PMSCR_EL1."""
    cpu = boot()
    cpu.take_exception(2, HYP, "hvc")
    before = cpu.peek("PMSCR_EL2")
    cpu.msr("PMSCR_EL1", 1)
    assert (1, before) == (cpu.peek("PMSCR_EL1"), cpu.peek("PMSCR_EL2"))


def test_a_value_of_an_int_subclass_is_written_as_its_int() -> None:
    """A value whose type is a subclass of int (an IntFlag, say) is a value like any other: written, read back."""

    class Flags(enum.IntFlag):
        VM = 1

    cpu = CPU(Features(), WorstCaseChooser())  # at EL2
    cpu.msr("VTTBR_EL2", Flags.VM)
    assert (1, Kind.MSR) == (cpu.mrs("VTTBR_EL2"), cpu.trace[-2].kind)
