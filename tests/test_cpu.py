"""Tests of the CPU model driven by hand: UNDEF, traps, VHE redirection, synchronisation, SPE.

Also the pieces the CPU reports through and builds on: the trace, memory and the choosers.
"""

from __future__ import annotations

import attrs
import pytest

from pytest_spekvm.reference import memory as M
from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference.chooser import (
    Chooser,
    EagerChooser,
    HoldingChooser,
    Moment,
    RandomChooser,
    SplitChooser,
    WorstCaseChooser,
)
from pytest_spekvm.reference.cpu import CPU, ModelError
from pytest_spekvm.reference.features import Features, SpeLevel
from pytest_spekvm.reference.trace import Event, Kind, Trace
from pytest_spekvm.reference.vcpu import ContractError, ExitReason, GuestAccess, GuestCode, GuestExit, Vcpu

# Values written out from the Arm ARM field positions, not taken from the model's constants.
HCR_RW = 1 << 31  # HCR_EL2.RW
HCR_VM = 1 << 0  # HCR_EL2.VM
HCR_VHE_HOST = 1 << 34 | 1 << 31 | 1 << 27  # HCR_EL2.E2H | RW | TGE
MDCR_TPMS = 1 << 14  # MDCR_EL2.TPMS


def mdcr_e2pb(e2pb: int) -> int:
    """MDCR_EL2 with E2PB [13:12] = `e2pb`."""
    return e2pb << 12


E2PB_EL1 = mdcr_e2pb(0b11)  # host kernel at EL1 owns the buffer, no traps
PMBLIMITR_E = 1 << 0  # PMBLIMITR_EL1.E
PMBSR_S = 1 << 17  # PMBSR_EL1.S
PMSCR_E0_E1 = 0b11  # PMSCR_EL1.E0SPE | E1SPE (E0HSPE | E2SPE in PMSCR_EL2)
BUFFER_LIMIT = M.BUFFER_VA + M.BUFFER_PAGES * M.PAGE_SIZE

SAMPLING_REGISTERS = ["PMSCR_EL1", "PMSICR_EL1", "PMSIRR_EL1", "PMSFCR_EL1", "PMSEVFR_EL1",
                      "PMSLATFR_EL1", "PMSIDR_EL1"]
BUFFER_REGISTERS = ["PMBLIMITR_EL1", "PMBPTR_EL1", "PMBSR_EL1", "PMBIDR_EL1"]


@attrs.define
class Scripted:
    """A chooser that gives fixed answers and remembers every question."""

    visible: bool = False
    write: int = 0
    visibility_questions: list[tuple[str, int, int]] = attrs.field(factory=list)
    write_questions: list[tuple[int, str]] = attrs.field(factory=list)

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """The fixed visibility answer."""
        self.visibility_questions.append((register, old, new))
        return self.visible

    def records_to_write(self, pending: int, moment: Moment, detail: str) -> int:
        """The fixed number of records."""
        self.write_questions.append((pending, detail))
        return self.write

    def reserved_as(self, register: str, field: str, allowed: tuple[int, ...]) -> int:
        """The last allocated value."""
        return allowed[-1]


def boot(
    features: Features | None = None,
    chooser: Chooser | None = None,
    mdcr: int | None = None,
) -> CPU:
    """A CPU with its host running as a kernel would leave it at boot, set up by hand.

    nVHE: host kernel at EL1 with its stage 1 in TTBR1_EL1, the hypervisor's in TTBR0_EL2.
    VHE: host at EL2 with E2H and TGE, its stage 1 in TTBR1_EL2.
    """
    features = features if features is not None else Features()
    cpu = CPU(features, chooser if chooser is not None else WorstCaseChooser())
    if features.vhe:
        cpu.msr("HCR_EL2", HCR_VHE_HOST)
        cpu.isb()
        cpu.msr("TTBR1_EL2", M.HOST_TTBR1)
        cpu.msr("MDCR_EL2", MDCR_TPMS if mdcr is None else mdcr)
        cpu.isb()
        cpu.actor = "host"
    else:
        cpu.msr("HCR_EL2", HCR_RW)
        cpu.msr("TTBR0_EL2", M.HYP_TTBR0)
        cpu.msr("TTBR1_EL1", M.HOST_TTBR1)
        cpu.msr("MDCR_EL2", (E2PB_EL1 if features.has_spe else 0) if mdcr is None else mdcr)
        cpu.eret(1, "host", "to host kernel")
    return cpu


def start_buffer(cpu: CPU, room: int | None = None, pmscr: int = PMSCR_E0_E1) -> None:
    """The host turns its buffer and sampling on, then synchronises.

    With `room`, the write pointer starts that many bytes below the limit (LIMIT is a page
    address, PMBLIMITR_EL1.LIMIT [63:12], so a small buffer is made by moving the pointer).
    """
    limit = BUFFER_LIMIT
    cpu.msr("PMBPTR_EL1", M.BUFFER_VA if room is None else limit - room)
    cpu.msr("PMBLIMITR_EL1", limit | PMBLIMITR_E)
    cpu.msr("PMSCR_EL1", pmscr)
    cpu.isb()


def kinds(cpu: CPU, since: int = 0) -> list[Kind]:
    """The kinds of the events from `since` on."""
    return [e.kind for e in cpu.trace.events[since:]]


# ----------------------------------------------------------------------------------- UNDEF


@pytest.mark.parametrize("register", SAMPLING_REGISTERS + BUFFER_REGISTERS + ["PMSCR_EL2"])
@pytest.mark.parametrize("write", [False, True])
def test_spe_registers_are_undefined_without_spe(register: str, write: bool) -> None:
    """Without FEAT_SPE every SPE register access is UNDEFINED, traced, and changes nothing."""
    cpu = CPU(Features(spe=SpeLevel.NONE), WorstCaseChooser())  # at EL2, where nothing traps
    before = cpu.peek(register)
    access = cpu.access(register, 1 if write else None)
    expected_reason = f"{register} needs FEAT_SPE, which this CPU does not implement"
    assert ("undef", expected_reason) == (access.outcome, access.reason)
    event = cpu.trace[-1]
    assert (Kind.UNDEF, register, expected_reason) == (event.kind, event.register, event.where)
    assert before == cpu.peek(register)


@pytest.mark.parametrize("el", [1, 2])
@pytest.mark.parametrize("register", ["PMBLIMITR_EL1", "PMBPTR_EL1", "PMBSR_EL1"])
def test_buffer_registers_trap_to_el3_when_another_security_state_owns_the_buffer(el: int, register: str) -> None:
    """With MDCR_EL3.NSPB giving the buffer away, every buffer register but PMBIDR_EL1 traps to EL3, from EL1 and EL2."""
    cpu = boot(Features(spe_owned_by_higher_el=True))
    if el == 2:
        cpu.take_exception(2, "hyp", "hvc")
    access = cpu.access(register)
    assert ("trap-el3", "MDCR_EL3.NSPB gives the profiling buffer to another Security state") == (
        access.outcome, access.reason,
    )
    assert Kind.TRAP_EL3 is cpu.trace[-1].kind


def test_el2_traps_come_before_the_el3_trap_at_el1() -> None:
    """At EL1 an access MDCR_EL2 traps goes to EL2 first, even when EL3 has given the buffer away."""
    cpu = boot(Features(spe_owned_by_higher_el=True), mdcr=MDCR_TPMS)
    assert ("trap", "trap") == (cpu.access("PMSCR_EL1").outcome, cpu.access("PMBPTR_EL1").outcome)


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
    cpu.take_exception(2, "hyp", "hvc")
    assert (1 << 4 | 6, 6) == (at_el1, cpu.mrs("PMBIDR_EL1"))


@pytest.mark.parametrize("register", ["MDCR_EL2", "HCR_EL2", "VTTBR_EL2", "PMSCR_EL2", "TTBR0_EL2"])
def test_el2_registers_are_undefined_from_el1(register: str) -> None:
    """An EL1 access to an EL2 register is UNDEFINED, and says which EL it came from."""
    cpu = boot()
    access = cpu.access(register, 0)
    assert ("undef", f"{register} is not accessible from EL1") == (access.outcome, access.reason)


def test_el1_registers_are_undefined_from_el0() -> None:
    """An EL0 access to PMSCR_EL1 is UNDEFINED."""
    cpu = boot()
    cpu.eret(0, "host", "to user space")
    assert ("undef", "PMSCR_EL1 is not accessible from EL0") == (
        cpu.access("PMSCR_EL1").outcome, cpu.access("PMSCR_EL1").reason,
    )


@pytest.mark.parametrize("register", ["PMSIDR_EL1", "PMBIDR_EL1", "ID_AA64DFR0_EL1"])
def test_writing_a_read_only_register_is_undefined(register: str) -> None:
    """An MSR to a read-only register is UNDEFINED, traced with its value, and changes nothing."""
    cpu = CPU(Features(), WorstCaseChooser())
    before = cpu.peek(register)
    access = cpu.access(register, 0x1234)
    event = cpu.trace[-1]
    assert ("undef", f"{register} is read-only") == (access.outcome, access.reason)
    assert (Kind.UNDEF, 0x1234, before) == (event.kind, event.value, cpu.peek(register))


def test_ttbr1_el2_needs_vhe() -> None:
    """TTBR1_EL2 only exists with FEAT_VHE."""
    cpu = CPU(Features(), WorstCaseChooser())
    assert "TTBR1_EL2 needs FEAT_VHE, which this CPU does not implement" == cpu.access("TTBR1_EL2").reason


# ----------------------------------------------------------------------------------- traps


@pytest.mark.parametrize("register", SAMPLING_REGISTERS)
@pytest.mark.parametrize(("tpms", "expected"), [(1, "trap"), (0, "ok")])
def test_tpms_traps_el1_sampling_register_accesses(register: str, tpms: int, expected: str) -> None:
    """MDCR_EL2.TPMS = 1 traps every EL1 access to a sampling control register to EL2."""
    cpu = boot(mdcr=E2PB_EL1 | tpms << 14)
    access = cpu.access(register)
    assert (expected, "MDCR_EL2.TPMS=1" if tpms else "") == (access.outcome, access.reason)


FDS = Features(spe=SpeLevel.V1P4, spe_fds=True)  # FEAT_SPE_FDS needs FEAT_SPEv1p4


@pytest.mark.parametrize(("features", "expected"), [(Features(spe=SpeLevel.V1P4), "undef"), (FDS, "ok")])
def test_pmsdsfr_exists_only_with_feat_spe_fds(features: Features, expected: str) -> None:
    """PMSDSFR_EL1 (3 0 9 10 4) is UNDEFINED without FEAT_SPE_FDS, even on an SPEv1p4 CPU."""
    cpu = CPU(features, WorstCaseChooser())
    assert expected == cpu.access(R.Encoding(3, 0, 9, 10, 4), 0xF0).outcome


@pytest.mark.parametrize(("tpms", "expected"), [(1, "trap"), (0, "ok")])
def test_tpms_traps_el1_accesses_to_pmsdsfr(tpms: int, expected: str) -> None:
    """MDCR_EL2.TPMS traps the data source filter from EL1 like the other sampling controls."""
    cpu = boot(FDS, mdcr=E2PB_EL1 | tpms << 14)
    assert expected == cpu.access("PMSDSFR_EL1", 1).outcome


def test_pmsdsfr_traps_to_el3_when_another_security_state_owns_the_buffer() -> None:
    """MDCR_EL3.NSPB giving the buffer away traps PMSDSFR_EL1 to EL3 from EL2 as well."""
    cpu = boot(FDS.evolve(spe_owned_by_higher_el=True))
    cpu.take_exception(2, "hyp", "hvc")
    assert "trap-el3" == cpu.access("PMSDSFR_EL1").outcome


@pytest.mark.parametrize("register", ["PMBLIMITR_EL1", "PMBPTR_EL1", "PMBSR_EL1"])
@pytest.mark.parametrize(("e2pb", "expected"), [(0b00, "trap"), (0b10, "trap"), (0b11, "ok")])
def test_e2pb_traps_el1_buffer_register_accesses(register: str, e2pb: int, expected: str) -> None:
    """MDCR_EL2.E2PB 0b00 and 0b10 trap EL1 accesses to PMBLIMITR/PMBPTR/PMBSR (the pseudocode's E2PB IN {'x0'})."""
    cpu = boot(mdcr=mdcr_e2pb(e2pb))
    access = cpu.access(register)
    assert (expected, f"MDCR_EL2.E2PB={e2pb:#04b}" if expected == "trap" else "") == (
        access.outcome, access.reason,
    )


@pytest.mark.parametrize("e2pb", [0b00, 0b01, 0b10, 0b11])
def test_e2pb_never_traps_pmbidr(e2pb: int) -> None:
    """PMBIDR_EL1 is trapped only by the fine-grained trap HDFGRTR_EL2.PMBIDR_EL1, never by E2PB."""
    cpu = boot(mdcr=mdcr_e2pb(e2pb))
    assert "ok" == cpu.access("PMBIDR_EL1").outcome


HDFGRTR_PMBIDR = 1 << 63  # HDFGRTR_EL2.PMBIDR_EL1 [63]
HDFGRTR_PMSCR = 1 << 26  # HDFGRTR_EL2.PMSCR_EL1 [26]
HDFGRTR_NPMSNEVFR = 1 << 62  # HDFGRTR_EL2.nPMSNEVFR_EL1 [62]: 0 traps


def at_el1_with_fgt(features: Features, hdfgrtr: int, mdcr: int = E2PB_EL1, **kw: object) -> CPU:
    """A CPU whose EL2 wrote HDFGRTR_EL2 and MDCR_EL2, then returned to EL1."""
    cpu = CPU(features, kw.pop("chooser", WorstCaseChooser()), **kw)  # type: ignore[arg-type]
    cpu.msr("MDCR_EL2", mdcr)
    cpu.msr("HDFGRTR_EL2", hdfgrtr)
    cpu.eret(1, "guest0", "into guest 0")
    return cpu


@pytest.mark.parametrize("el3", [True, False])
@pytest.mark.parametrize(("hdfgrtr", "expected"), [(HDFGRTR_PMBIDR, "trap"), (0, "ok")])
def test_hdfgrtr_el2_pmbidr_traps_el1_reads_of_pmbidr(el3: bool, hdfgrtr: int, expected: str) -> None:
    """HDFGRTR_EL2.PMBIDR_EL1 = 1 traps EL1 reads of PMBIDR_EL1 to EL2, with or without EL3 (SCR_EL3.FGTEn set)."""
    cpu = at_el1_with_fgt(Features(fgt=True, el3=el3), hdfgrtr)
    access = cpu.access("PMBIDR_EL1")
    assert (expected, "HDFGRTR_EL2.PMBIDR_EL1=1" if hdfgrtr else "") == (access.outcome, access.reason)


def test_hdfgrtr_el2_is_undefined_without_feat_fgt_and_pmbidr_never_traps_then() -> None:
    """Without FEAT_FGT HDFGRTR_EL2 does not exist, and nothing can trap a PMBIDR_EL1 read."""
    cpu = at_el1_with_fgt(Features(), HDFGRTR_PMBIDR)
    assert ([Kind.UNDEF], "ok") == ([e.kind for e in cpu.trace if e.register == "HDFGRTR_EL2"],
                                    cpu.access("PMBIDR_EL1").outcome)


def test_hdfgrtr_el2_traps_reads_only_and_only_at_el1() -> None:
    """A read trap leaves EL1 writes alone (those are HDFGWTR_EL2's) and does nothing at EL2."""
    cpu = at_el1_with_fgt(Features(fgt=True), 1 << 24)  # HDFGRTR_EL2.PMBPTR_EL1 [24]
    outcomes = (cpu.access("PMBPTR_EL1").outcome, cpu.access("PMBPTR_EL1", 0x40).outcome)
    cpu.take_exception(2, "hyp", "hvc")
    assert ("trap", "ok", "ok") == (*outcomes, cpu.access("PMBPTR_EL1").outcome)


def test_fine_grained_read_trap_comes_before_tpms() -> None:
    """Where HDFGRTR_EL2 and MDCR_EL2.TPMS both trap a read, the fine-grained trap is the one taken (J1 order)."""
    cpu = at_el1_with_fgt(Features(fgt=True), HDFGRTR_PMSCR, mdcr=E2PB_EL1 | MDCR_TPMS)
    assert "HDFGRTR_EL2.PMSCR_EL1=1" == cpu.access("PMSCR_EL1").reason


@pytest.mark.parametrize(("hdfgrtr", "expected"), [(0, "trap"), (HDFGRTR_NPMSNEVFR, "ok")])
def test_npmsnevfr_traps_el1_reads_of_pmsnevfr_when_zero(hdfgrtr: int, expected: str) -> None:
    """HDFGRTR_EL2.nPMSNEVFR_EL1 has the opposite sense: 0 traps EL1 reads of PMSNEVFR_EL1."""
    cpu = at_el1_with_fgt(Features(fgt=True, spe=SpeLevel.V1P2), hdfgrtr)
    assert expected == cpu.access("PMSNEVFR_EL1").outcome


@pytest.mark.parametrize(("chooser", "expected"), [(WorstCaseChooser(), "ok"), (HoldingChooser(), "trap")])
def test_unsynchronised_fine_grained_trap_may_not_be_in_force(chooser: Chooser, expected: str) -> None:
    """With FEAT_ExS and EOS = 0 the ERET does not synchronise: an HDFGRTR_EL2 write just before it may not trap yet."""
    cpu = at_el1_with_fgt(Features(fgt=True, exs=True), HDFGRTR_PMBIDR, chooser=chooser)
    assert expected == cpu.access("PMBIDR_EL1").outcome


@pytest.mark.parametrize(("chooser", "expected"), [(WorstCaseChooser(), "ok"), (HoldingChooser(), "trap")])
def test_reserved_e2pb_acts_as_the_value_the_chooser_picks(chooser: Chooser, expected: str) -> None:
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
    assert ("ok", "ok") == (tpms_only.access("PMBPTR_EL1").outcome, e2pb_only.access("PMSCR_EL1").outcome)


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
    cpu.take_exception(2, "hyp", "hvc")
    assert ["ok", "ok"] == [cpu.access("PMSCR_EL1").outcome, cpu.access("PMBPTR_EL1").outcome]


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
    assert ("undef", f"{name} needs EL2 with HCR_EL2.E2H=1") == (access.outcome, access.reason)


def test_el12_names_are_undefined_at_el1_even_with_e2h() -> None:
    """A guest at EL1 of a VHE CPU cannot use the *_EL12 names."""
    cpu = boot(Features(vhe=True), mdcr=0)
    cpu.eret(1, "guest0", "into guest")
    assert "undef" == cpu.access("PMSCR_EL12").outcome


def test_el1_names_are_not_redirected_at_el1() -> None:
    """A guest at EL1 of a VHE CPU writing PMSCR_EL1 reaches PMSCR_EL1, not the host's PMSCR_EL2."""
    cpu = boot(Features(vhe=True), mdcr=0)
    cpu.eret(1, "guest0", "into guest")
    before = cpu.peek("PMSCR_EL2")
    cpu.msr("PMSCR_EL1", PMSCR_E0_E1)
    assert (PMSCR_E0_E1, before) == (cpu.peek("PMSCR_EL1"), cpu.peek("PMSCR_EL2"))


def test_e2h_written_on_a_cpu_without_vhe_redirects_nothing() -> None:
    """HCR_EL2.E2H is RES0 without FEAT_VHE: a 1 written there is flagged and has no effect."""
    cpu = CPU(Features(), WorstCaseChooser())
    cpu.msr("HCR_EL2", HCR_VHE_HOST)
    res0 = cpu.trace[-1].res0
    cpu.msr("PMSCR_EL1", 1)
    assert (1 << 34, "PMSCR_EL1", "undef") == (res0, cpu.trace[-1].register, cpu.access("PMSCR_EL12").outcome)


def test_e2h_written_on_a_cpu_without_vhe_changes_neither_sampling_nor_translation() -> None:
    """Without FEAT_VHE, EL0 stays sampled by PMSCR_EL1.E0SPE and EL2's buffer uses the EL2 regime."""
    cpu = CPU(Features(), WorstCaseChooser())
    cpu.msr("HCR_EL2", HCR_VHE_HOST)
    cpu.msr("TTBR0_EL2", M.HYP_TTBR0)
    cpu.msr("MDCR_EL2", mdcr_e2pb(0b00))
    cpu.msr("PMBPTR_EL1", M.BUFFER_VA)
    cpu.msr("PMBLIMITR_EL1", BUFFER_LIMIT | PMBLIMITR_E)
    cpu.msr("PMSCR_EL1", 0b01)  # E0SPE
    cpu.eret(0, "host", "to user space")
    cpu.run_code(1)
    cpu.isb()
    cpu.psb_csync()
    landing = cpu.records[0].landing
    assert landing is not None
    assert ("stage 1", "EL2 stage 1 (TTBR0_EL2=0x30000), which has no upper VA range") == (landing.fault, landing.regime)


def test_pmscr_el1_at_el2_without_e2h_is_pmscr_el1() -> None:
    """On a non-VHE CPU the hypervisor's PMSCR_EL1 access reaches PMSCR_EL1."""
    cpu = boot()
    cpu.take_exception(2, "hyp", "hvc")
    before = cpu.peek("PMSCR_EL2")
    cpu.msr("PMSCR_EL1", 1)
    assert (1, before) == (cpu.peek("PMSCR_EL1"), cpu.peek("PMSCR_EL2"))


# ------------------------------------------------------------------------- synchronisation


@pytest.mark.parametrize(
    ("chooser", "synchronise", "expected_records"),
    [
        (EagerChooser(), False, 2),
        (WorstCaseChooser(), False, 0),
        (EagerChooser(), True, 2),
        (WorstCaseChooser(), True, 2),
    ],
    ids=["eager-unsynchronised", "worst-unsynchronised", "eager-after-isb", "worst-after-isb"],
)
def test_unsynchronised_write_may_or_may_not_be_visible(
    chooser: Chooser, synchronise: bool, expected_records: int,
) -> None:
    """Sampling turned on without an ISB may be in effect or not (chooser); after an ISB it is."""
    cpu = boot(chooser=chooser)
    start_buffer(cpu, pmscr=0)
    cpu.msr("PMSCR_EL1", PMSCR_E0_E1)
    if synchronise:
        cpu.isb()
    assert expected_records == len(cpu.run_code(2))


def test_reads_see_a_write_at_once() -> None:
    """An MRS after an MSR reads the new value even before synchronisation."""
    cpu = boot()
    cpu.msr("PMSCR_EL1", PMSCR_E0_E1)
    assert PMSCR_E0_E1 == cpu.mrs("PMSCR_EL1")


def test_chooser_is_asked_each_time_an_unsynchronised_write_matters() -> None:
    """Every sampling decision between an MSR and the next ISB asks the chooser again."""
    chooser = Scripted(visible=False)
    cpu = boot(chooser=chooser)
    start_buffer(cpu, pmscr=0)
    cpu.msr("PMSCR_EL1", PMSCR_E0_E1)
    cpu.run_code(1)
    cpu.run_code(1)
    cpu.isb()
    cpu.run_code(1)
    assert [("PMSCR_EL1", 0, PMSCR_E0_E1)] * 2 == chooser.visibility_questions


def test_chooser_is_not_asked_when_a_write_changes_nothing() -> None:
    """Writing the value a register already holds leaves nothing to decide."""
    chooser = Scripted()
    cpu = boot(chooser=chooser)
    start_buffer(cpu)
    cpu.msr("PMSCR_EL1", PMSCR_E0_E1)
    cpu.run_code(1)
    assert [] == chooser.visibility_questions


@pytest.mark.parametrize(
    ("chooser", "owner"),
    [(Scripted(visible=False), M.HOST_BUFFER), (Scripted(visible=True), M.HOST_KERNEL)],
    ids=["old-tables", "new-tables"],
)
def test_unsynchronised_table_change_may_translate_either_way(chooser: Chooser, owner: str) -> None:
    """A record written after an unsynchronised TTBR1_EL1 write goes through the old or the new tables."""
    cpu = boot(chooser=chooser)
    start_buffer(cpu)
    cpu.run_code(1)
    cpu.take_exception(2, "hyp", "hvc")
    cpu.msr("TTBR1_EL1", M.guest_ttbr1(0))  # guest stage 1, no stage 2: IPAs are host PAs
    cpu.psb_csync()
    (record,) = cpu.records
    assert record.landing is not None
    assert owner == record.landing.owner


# ----------------------------------------------------------------------- translate at write


def _record_under_host_tables(chooser: Chooser) -> CPU:
    """A host record collected inside the PE, then the hypervisor installs guest 0's tables."""
    cpu = boot(chooser=chooser)
    start_buffer(cpu)
    cpu.run_code(1, "host kernel code")
    cpu.take_exception(2, "hyp", "hvc")
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
    assert ("written", M.guest_owner(0)) == (record.fate, record.landing.owner if record.landing else "")
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
    cpu.take_exception(2, "hyp", "hvc")  # the chooser lets the oldest record out here
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
    cpu.take_exception(2, "hyp", "hvc")
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
    cpu.take_exception(2, "hyp", "hvc")
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
    assert (0, "nsh") == (cpu.pending_records, cpu.trace[-1].where)
    assert (["in flight"] * 3, ["written"] * 3) == (in_flight, [r.fate for r in cpu.records])
    assert M.BUFFER_VA + 3 * M.RECORD_SIZE == cpu.peek("PMBPTR_EL1")


def test_psb_csync_does_not_synchronise_records_after_the_last_cse() -> None:
    """Records collected after the last context synchronisation event stay in the PE through a PSB (worst case)."""
    cpu = boot()
    start_buffer(cpu)
    cpu.run_code(2)
    cpu.psb_csync()
    assert (2, ["pending", "pending"]) == (cpu.pending_records, [r.fate for r in cpu.records])


@pytest.mark.parametrize(("domain", "completes"), [("nsh", True), ("sy", True), ("ish", True), ("nshst", False), ("ishld", False)])
def test_only_a_dsb_over_loads_and_stores_completes_the_buffer_writes(domain: str, completes: bool) -> None:
    """D17.9: a DSB over loads and stores completes the PSB's writes; a disable before that discards them (R_SXWCP)."""
    cpu = boot()
    start_buffer(cpu)
    cpu.run_code(2)
    cpu.take_exception(2, "hyp", "hvc")
    cpu.psb_csync()
    cpu.dsb(domain)
    cpu.msr("PMBLIMITR_EL1", 0)
    fates = ["written"] * 2 if completes else ["discarded"] * 2
    assert fates == [r.fate for r in cpu.records]


@pytest.mark.parametrize(("eis", "synchronised"), [(True, True), (False, False)])
def test_exception_entry_to_el2_synchronises_only_with_eis_on_a_feat_exs_cpu(eis: bool, synchronised: bool) -> None:
    """With FEAT_ExS, the entry to EL2 is a context synchronisation event only with SCTLR_EL2.EIS=1: a PSB after it synchronises host records or not."""
    cpu = CPU(Features(exs=True), WorstCaseChooser(), eis=eis, eos=True)
    cpu.msr("HCR_EL2", HCR_RW)
    cpu.msr("TTBR1_EL1", M.HOST_TTBR1)
    cpu.msr("MDCR_EL2", E2PB_EL1)
    cpu.eret(1, "host", "to host kernel")
    start_buffer(cpu)
    cpu.run_code(1)
    cpu.take_exception(2, "hyp", "hvc")
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
    assert (Kind.DSB, domain, f"dsb {domain}") == (event.kind, event.where, event.describe())


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
    assert [("discarded", "host"), ("discarded", "host")] == [(r.fate, r.discarded_by) for r in cpu.records]
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
    assert ["written", "written"] == [r.fate for r in cpu.records]


def test_write_after_a_visible_unsynchronised_disable_is_discarded() -> None:
    """A record the PE writes while an unsynchronised disable is already in effect is discarded."""
    cpu = boot(chooser=Scripted(visible=True, write=0))
    start_buffer(cpu)
    cpu.run_code(1)
    cpu.msr("PMBLIMITR_EL1", BUFFER_LIMIT)  # E = 0, not yet synchronised
    cpu.isb()  # (a CSE: the PSB below synchronises the record; the disable is then in effect for certain)
    cpu.psb_csync()
    assert [("discarded", "host")] == [(r.fate, r.discarded_by) for r in cpu.records]


def test_exception_entry_synchronises_a_disable() -> None:
    """Exception entry is a context synchronisation event: it makes a disable discard too."""
    cpu = boot()
    start_buffer(cpu)
    cpu.run_code(1)
    cpu.msr("PMBLIMITR_EL1", 0)
    cpu.take_exception(2, "hyp", "hvc")
    assert ["discarded"] == [r.fate for r in cpu.records]


# ---------------------------------------------------------------------------- buffer full


def test_buffer_full_stops_the_buffer_and_raises_the_interrupt() -> None:
    """A record that does not fit sets PMBSR_EL1.S with EC=0 (buffer management) and BSC=full."""
    cpu = boot()
    start_buffer(cpu, room=2 * M.RECORD_SIZE)
    cpu.run_code(3)
    cpu.isb()
    cpu.psb_csync()
    cpu.dsb("nsh")
    assert ["written", "written", "full"] == [r.fate for r in cpu.records]
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
    assert ["written", "full", "full"] == [r.fate for r in cpu.records]
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
    assert (["faulted"], 1 << 17 | 0b100100 << 26, True) == (
        [r.fate for r in cpu.records], cpu.peek("PMBSR_EL1"), cpu.buffer_irq,
    )
    assert cpu.trace.of(Kind.FAULT)[0].describe().startswith("fault #0 stage 1 translation fault via EL1&0")


def test_stage2_fault_stops_the_buffer() -> None:
    """A record whose IPA has no stage 2 mapping faults with EC = stage 2 data abort."""
    cpu = boot()
    start_buffer(cpu)
    cpu.run_code(1)
    cpu.take_exception(2, "hyp", "hvc")
    cpu.msr("HCR_EL2", HCR_RW | HCR_VM)
    cpu.msr("VTTBR_EL2", 0)  # no stage 2 tables there
    cpu.isb()
    cpu.psb_csync()
    assert (["faulted"], 1 << 17 | 0b100101 << 26) == ([r.fate for r in cpu.records], cpu.peek("PMBSR_EL1"))


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
    assert [("host", 1, "pending")] * 2 == [(r.actor, r.el, r.fate) for r in records]
    assert records == cpu.records_of(["host"])
    assert [] == cpu.records_of(["guest0"])


def test_unsampled_code_collects_nothing() -> None:
    """Code that runs while sampling is off is only a CODE event; zero samples collects nothing."""
    cpu = boot()
    start_buffer(cpu)
    mark = len(cpu.trace)
    cpu.run_code(0)
    assert ([Kind.CODE], []) == (kinds(cpu, mark), cpu.records)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("operation", ["mrs", "msr", "peek"])
def test_unknown_register_name_is_named(operation: str) -> None:
    """Reading or writing a register the model does not know names it in the error."""
    cpu = CPU(Features(), WorstCaseChooser())
    call = {"mrs": cpu.mrs, "msr": lambda name: cpu.msr(name, 0), "peek": cpu.peek}[operation]
    with pytest.raises(R.UnknownRegisterError, match="Cannot access system register 'PMBMAR_EL1' because"):
        call("PMBMAR_EL1")


def test_unknown_encoding_is_named() -> None:
    """An access by an encoding the model does not know names the encoding."""
    cpu = CPU(Features(), WorstCaseChooser())
    with pytest.raises(R.UnknownRegisterError, match="Cannot access system register S3_0_C9_C10_2 because"):
        cpu.mrs(R.Encoding(3, 0, 9, 10, 2))


def test_access_by_encoding_reaches_the_register() -> None:
    """An MSR by sys_reg() value writes the register with that encoding."""
    cpu = CPU(Features(), WorstCaseChooser())
    cpu.msr(R.Encoding(3, 0, 9, 10, 1).sys_reg, 0x40)
    assert 0x40 == cpu.peek("PMBPTR_EL1")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (1 << 64, "Cannot write 0x10000000000000000 to PMSCR_EL1 because it does not fit in 64 bits"),
        (-1, "Cannot write -0x1 to PMSCR_EL1 because it does not fit in 64 bits"),
        (True, "Cannot write True to PMSCR_EL1 because a system register value is an int"),
        ("3", "Cannot write '3' to PMSCR_EL1 because a system register value is an int"),
    ],
)
def test_value_that_is_no_64_bit_int_is_refused(value: object, why: str) -> None:
    """A value that is not a 64-bit unsigned int is a ModelError naming the register and the value."""
    cpu = CPU(Features(), WorstCaseChooser())
    with pytest.raises(ModelError) as info:
        cpu.msr("PMSCR_EL1", value)  # type: ignore[arg-type]
    assert why == str(info.value)
    assert [] == cpu.trace.events


@pytest.mark.parametrize("el", [3, -1])
@pytest.mark.parametrize("operation", ["take_exception", "eret"])
def test_el_outside_the_model_is_refused(el: int, operation: str) -> None:
    """Moving to an EL other than 0, 1 or 2 is a ModelError naming the EL."""
    cpu = CPU(Features(), WorstCaseChooser())
    expected = rf"Cannot move to EL{el} because the model has EL0, EL1 and EL2 only"
    with pytest.raises(ModelError, match=expected):
        getattr(cpu, operation)(el, "host", "why")


def test_negative_sample_count_is_refused() -> None:
    """Code cannot run with a negative number of samples."""
    cpu = CPU(Features(), WorstCaseChooser())
    expected = "Cannot run code with -1 samples because the count cannot be negative"
    with pytest.raises(ModelError, match=expected):
        cpu.run_code(-1)


def test_model_error_is_a_value_error() -> None:
    """ModelError is a ValueError: bad input, not a broken rule."""
    assert issubclass(ModelError, ValueError)


# ---------------------------------------------------------------------- RES0 recording


def test_res0_bits_written_are_recorded_and_kept() -> None:
    """An MSR that sets a RES0 bit records which, keeps the value, and the timeline names the field."""
    cpu = CPU(Features(spe=SpeLevel.NONE), WorstCaseChooser())
    cpu.msr("MDCR_EL2", 0x4C66)
    event = cpu.trace[-1]
    assert (1 << 14, 0x4C66) == (event.res0, cpu.peek("MDCR_EL2"))
    assert event.describe().endswith("RES0 bits set: bit 14 (TPMS)")


def test_res0_bits_outside_any_field_are_named_by_number() -> None:
    """RES0 bits that belong to no field are shown as bare bit numbers."""
    cpu = CPU(Features(), WorstCaseChooser())
    cpu.msr("MDCR_EL2", 1 << 16 | 1 << 63)
    assert cpu.trace[-1].describe().endswith("RES0 bits set: bit 16, bit 63")


def test_write_records_the_old_value() -> None:
    """An MSR event carries the value it replaced."""
    cpu = CPU(Features(), WorstCaseChooser())
    cpu.msr("PMBPTR_EL1", 0x100)
    cpu.msr("PMBPTR_EL1", 0x200)
    assert (0x100, 0x200) == (cpu.trace[-1].old, cpu.trace[-1].value)


# ------------------------------------------------------------------------------ the guest


def _guest_ready(mdcr: int = MDCR_TPMS) -> tuple[CPU, Vcpu]:
    cpu = boot(mdcr=E2PB_EL1)
    cpu.take_exception(2, "hyp", "hvc")
    cpu.msr("MDCR_EL2", mdcr)
    return cpu, Vcpu(index=0, vm=0)


def test_guest_access_that_traps_ends_the_run() -> None:
    """A trapped guest SPE access exits to EL2 with reason 'trap' and the register; the rest does not run."""
    cpu, vcpu = _guest_ready()
    vcpu.program = [GuestAccess("PMSCR_EL1", write=True, value=3), GuestCode(1)]
    result = cpu.run_guest(vcpu)
    assert (ExitReason("trap", "PMSCR_EL1"), 2, "hyp", 1, []) == (
        result, cpu.el, cpu.actor, len(cpu.trace.of(Kind.GUEST)), vcpu.program,
    )
    assert ["hyp guest entry code", "hyp exit vector"] == [e.where for e in cpu.trace.of(Kind.CODE)]


def test_guest_access_that_completes_lets_the_guest_go_on() -> None:
    """An untrapped guest access completes and the guest carries on to its exit."""
    cpu, vcpu = _guest_ready(mdcr=E2PB_EL1)
    vcpu.program = [GuestAccess("PMBIDR_EL1"), GuestExit("hvc")]
    assert ExitReason("hvc") == cpu.run_guest(vcpu)
    assert ["guest0"] == [e.actor for e in cpu.trace.of(Kind.MRS) if e.register == "PMBIDR_EL1"]


def test_guest_run_is_framed_by_eret_and_exception_entry() -> None:
    """Entering the guest is an ERET and a GUEST marker; leaving is exception entry and an EXIT marker."""
    cpu, vcpu = _guest_ready()
    mark = len(cpu.trace)
    vcpu.program = [GuestCode(0)]
    assert ExitReason("irq") == cpu.run_guest(vcpu)
    assert [Kind.CODE, Kind.ERET, Kind.GUEST, Kind.CODE, Kind.EXCEPTION, Kind.EXIT, Kind.CODE] == kinds(cpu, mark)
    exit_event = cpu.trace.of(Kind.EXCEPTION)[-1]
    assert ("exit from guest 0: irq", True) == (exit_event.where, exit_event.guest_exit)
    assert cpu.trace.of(Kind.ERET)[-1].into_guest


def test_guest_exit_records_the_spe_registers_of_the_saved_guest_context() -> None:
    """At the guest's exit the model records each SPE register the vcpu's saved context holds, by its register name."""
    cpu, vcpu = _guest_ready()
    vcpu.sysregs.update({"pmscr_el12": 0x3, "PMBPTR_EL1": 0x40, "TTBR0_EL1": 0x1000, "PMSIRR_EL1": "x", "PMSICR_EL1": True})
    vcpu.program = [GuestCode(0)]
    cpu.run_guest(vcpu)
    recorded = [(e.register, e.name, e.value, e.where, e.vcpu) for e in cpu.trace.of(Kind.CONTEXT)]
    assert [
        ("PMSCR_EL1", "pmscr_el12", 0x3, "while the guest ran", 0),
        ("PMBPTR_EL1", "PMBPTR_EL1", 0x40, "while the guest ran", 0),
    ] == recorded
    assert "vcpu0.sysregs[pmscr_el12->PMSCR_EL1] = 0x3 (while the guest ran)" == cpu.trace.of(Kind.CONTEXT)[0].describe()


def test_guest_can_only_be_entered_from_el2() -> None:
    """run_guest from EL1 breaks the adapter contract, naming the clause."""
    cpu = boot()
    with pytest.raises(ContractError) as info:
        cpu.run_guest(Vcpu(index=0, vm=0))
    expected = (
        "[run_guest is called at EL2] Cannot enter the guest from EL1 because only EL2 can ERET into a guest"
    )
    assert (expected, "run_guest is called at EL2") == (str(info.value), info.value.clause)


def test_note_and_mark_add_events_without_effect() -> None:
    """A note and a window marker are events for the reader and change no register."""
    cpu = CPU(Features(), WorstCaseChooser())
    cpu.note("setup vcpu 0")
    cpu.mark(Kind.ENTRY, "run vcpu 0")
    assert ["setup vcpu 0", "entry run vcpu 0"] == [e.describe() for e in cpu.trace]


# ---------------------------------------------------------------------------------- trace


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (Event(0, "hyp", 2, Kind.MSR, register="VTTBR_EL2", value=0x10), "msr VTTBR_EL2 <- 0x10"),
        (Event(0, "hyp", 2, Kind.MSR, register="MDCR_EL2", name="MDCR_EL2", value=0x4000),
         "msr MDCR_EL2 <- 0x4000  = TPMS"),
        (Event(0, "hyp", 2, Kind.MSR, register="S3_0_C9_C9_1", value=1, res0=1),
         "msr S3_0_C9_C9_1 <- 0x1   RES0 bits set: bit 0"),
        (Event(0, "hyp", 2, Kind.MRS, register="PMBIDR_EL1", value=6), "mrs PMBIDR_EL1 -> 0x6"),
        (Event(0, "guest0", 1, Kind.TRAP, register="PMSCR_EL1", where="MDCR_EL2.TPMS=1"),
         "trap: PMSCR_EL1 (MDCR_EL2.TPMS=1)"),
        (Event(0, "hyp", 2, Kind.UNDEF, register="PMSCR_EL1", name="PMSCR_EL12", where="why"),
         "undef: PMSCR_EL12 (why)"),
        (Event(0, "hyp", 2, Kind.ISB), "isb"),
        (Event(0, "hyp", 2, Kind.PSB), "psb csync"),
        (Event(0, "pe", 2, Kind.RECORD, record=4), "record #4"),
        (Event(0, "hyp", 2, Kind.ERET, where=""), "eret"),
        (Event(0, "host", 1, Kind.CODE, where="host kernel code"), "code host kernel code"),
        (Event(0, "hyp", 2, Kind.RETURN, where="vcpu 0 back in host"), "return vcpu 0 back in host"),
    ],
)
def test_event_describes_itself_in_one_line(event: Event, text: str) -> None:
    """Each kind of event has a one-line description for the timeline."""
    assert text == event.describe()


def test_timeline_marks_the_event_of_interest_and_keeps_context() -> None:
    """A timeline around an event shows `context` events either side and marks that event."""
    trace = Trace()
    for i in range(10):
        trace.add("hyp", 2, Kind.NOTE if i == 0 else Kind.ISB, where=f"note {i}")
    trace.add("host", 1, Kind.NOTE, where="host note")
    lines = trace.timeline(around=5, context=2).splitlines()
    assert ["      3     hyp    EL2 isb", "      4     hyp    EL2 isb", ">>    5     hyp    EL2 isb",
            "      6     hyp    EL2 isb", "      7     hyp    EL2 isb"] == lines
    assert "     10   host   EL1 host note" == trace.timeline().splitlines()[-1]


def test_trace_is_a_sequence_of_events() -> None:
    """The trace numbers its events in order and can be indexed, iterated and filtered by kind."""
    trace = Trace()
    trace.add("hyp", 2, Kind.ISB)
    trace.add("hyp", 2, Kind.DSB, where="sy")
    assert ([0, 1], 2, Kind.DSB, [1]) == (
        [e.seq for e in trace], len(trace), trace[1].kind, [e.seq for e in trace.of(Kind.DSB)],
    )


# --------------------------------------------------------------------------------- memory


def test_memory_walk_through_stage1_and_stage2() -> None:
    """Guest 1's stage 1 and stage 2 take the buffer's VA to guest 1's own pages."""
    mem = M.Memory.standard(vms=2)
    landing = mem.walk(M.BUFFER_VA + 0x48, M.guest_ttbr1(1), M.vttbr(1), "guest")
    expected = (M.GUEST_PA + M.GUEST_PA_STRIDE + 0x48, "guest 1", "")
    assert expected == (landing.pa, landing.owner, landing.fault)
    assert f"guest 1 (PA {landing.pa:#x}) via guest" == str(landing)


@pytest.mark.parametrize(
    ("ttbr", "vttbr", "fault"),
    [(0xDEAD_0000, None, "stage 1"), (M.HOST_TTBR1, None, ""), (M.guest_ttbr1(0), 0xDEAD_0000, "stage 2")],
)
def test_memory_walk_faults_without_a_mapping(ttbr: int, vttbr: int | None, fault: str) -> None:
    """A missing table or entry at either stage is a fault of that stage."""
    landing = M.Memory.standard().walk(M.BUFFER_VA, ttbr, vttbr, "r")
    assert fault == landing.fault


def test_unowned_pages_belong_to_the_host_kernel() -> None:
    """A physical page nobody claims is host kernel memory (the model's default owner)."""
    mem = M.Memory()
    mem.stage1[0x1000] = {5: 7}
    assert M.HOST_KERNEL == mem.walk(5 << M.PAGE_SHIFT, 0x1000, None, "r").owner


def test_store_accounts_bytes_per_owner() -> None:
    """Stores add up per owner."""
    mem = M.Memory()
    landing = M.Landing(0, M.HOST_BUFFER)
    mem.store(landing, 64)
    mem.store(landing, 64)
    assert {M.HOST_BUFFER: 128} == mem.contents


def test_vttbr_carries_the_vmid() -> None:
    """A guest's VTTBR_EL2 has VMID [63:48] = vm + 1 above its stage 2 base."""
    assert (2 << 48 | (M.VTTBR_BASE + 0x1_0000)) == M.vttbr(1)


# -------------------------------------------------------------------------------- choosers


@pytest.mark.parametrize("chooser", [WorstCaseChooser(), EagerChooser(), RandomChooser(1)])
def test_choosers_satisfy_the_protocol(chooser: object) -> None:
    """The shipped choosers are Choosers."""
    assert isinstance(chooser, Chooser)


def test_worst_case_chooser_hides_writes_and_holds_records_until_a_guest_exit() -> None:
    """The worst case never shows an unsynchronised write and lets records out only at a guest exit."""
    c = WorstCaseChooser()
    assert (False, 0, 0, 5, 0b11) == (
        c.write_visible("PMSCR_EL1", 0, 1),
        c.records_to_write(5, Moment.MSR, "msr TTBR1_EL1"),
        c.records_to_write(5, Moment.EXCEPTION_ENTRY, "renamed: any text at all"),
        c.records_to_write(5, Moment.GUEST_EXIT, "renamed: any text at all"),
        c.reserved_as("MDCR_EL2", "E2PB", (0b00, 0b10, 0b11)),
    )


def test_holding_chooser_shows_writes_and_holds_every_record() -> None:
    """The holding adversary makes writes visible at once and lets no record out by itself."""
    c = HoldingChooser()
    assert (True, 0, 0, 0b00) == (
        c.write_visible("TTBR1_EL1", 0, 1),
        c.records_to_write(5, Moment.GUEST_EXIT, ""),
        c.records_to_write(5, Moment.BUFFER_STOPPED, ""),
        c.reserved_as("MDCR_EL2", "E2PB", (0b00, 0b10, 0b11)),
    )


def test_split_chooser_lets_sampling_controls_through_and_keeps_translation_stale() -> None:
    """The split adversary shows PMSCR/PMBLIMITR writes at once, hides the others, and writes every record."""
    c = SplitChooser()
    assert (True, True, False, False, 5) == (
        c.write_visible("PMSCR_EL1", 0, 1),
        c.write_visible("PMBLIMITR_EL1", 0, 1),
        c.write_visible("TTBR1_EL1", 0, 1),
        c.write_visible("MDCR_EL2", 0, 1),
        c.records_to_write(5, Moment.MSR, ""),
    )
    assert ("SplitChooser()", "HoldingChooser()", "WorstCaseChooser()") == (
        repr(c), repr(HoldingChooser()), repr(WorstCaseChooser()),
    )


def test_eager_chooser_shows_writes_and_writes_records_at_once() -> None:
    """The eager chooser makes every write visible and writes every pending record."""
    c = EagerChooser()
    assert (True, 5, 0b00) == (
        c.write_visible("PMSCR_EL1", 0, 1),
        c.records_to_write(5, Moment.MSR, "msr TTBR1_EL1"),
        c.reserved_as("MDCR_EL2", "E2PB", (0b00, 0b10, 0b11)),
    )
    assert "EagerChooser()" == repr(c)


def test_random_chooser_is_reproducible() -> None:
    """Two random choosers with the same seed give the same answers, within range."""
    a, b = RandomChooser(7), RandomChooser(7)
    answers_a = [(a.write_visible("R", 0, 1), a.records_to_write(3, Moment.MSR, "x")) for _ in range(50)]
    answers_b = [(b.write_visible("R", 0, 1), b.records_to_write(3, Moment.MSR, "x")) for _ in range(50)]
    assert a.reserved_as("R", "F", (1, 2)) == b.reserved_as("R", "F", (1, 2))
    assert answers_a == answers_b
    assert {0, 1, 2, 3} == {n for _, n in answers_a}
    assert {False, True} == {v for v, _ in answers_a}
    assert "RandomChooser(seed=7)" == repr(a)
