"""The CPU model driven by hand: synchronisation, bad input, RES0 recording, and the guest's run."""

from __future__ import annotations

import pytest
from model_harness import (
    E2PB_EL1,
    MDCR_TPMS,
    PMSCR_E0_E1,
    Scripted,
    boot,
    kinds,
    start_buffer,
)

from pytest_spekvm.reference import memory as M
from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference.actors import HOST, HYP, guest
from pytest_spekvm.reference.chooser import (
    Chooser,
    EagerChooser,
    WorstCaseChooser,
)
from pytest_spekvm.reference.cpu import CPU, ModelError
from pytest_spekvm.reference.features import Features, SpeLevel
from pytest_spekvm.reference.trace import Kind
from pytest_spekvm.reference.vcpu import ContractError, ExitReason, GuestAccess, GuestCode, GuestExit, Vcpu

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
    cpu.take_exception(2, HYP, "hvc")
    cpu.msr("TTBR1_EL1", M.guest_ttbr1(0))  # guest stage 1, no stage 2: IPAs are host PAs
    cpu.psb_csync()
    (record,) = cpu.records
    assert record.landing is not None
    assert owner == record.landing.owner


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
        getattr(cpu, operation)(el, HOST, "why")


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
    cpu.take_exception(2, HYP, "hvc")
    cpu.msr("MDCR_EL2", mdcr)
    return cpu, Vcpu(index=0, vm=0)


def test_guest_access_that_traps_ends_the_run() -> None:
    """A trapped guest SPE access exits to EL2 with reason 'trap' and the register; the rest does not run."""
    cpu, vcpu = _guest_ready()
    vcpu.program = [GuestAccess("PMSCR_EL1", write=True, value=3), GuestCode(1)]
    result = cpu.run_guest(vcpu)
    assert (ExitReason("trap", "PMSCR_EL1"), 2, HYP, 1, []) == (
        result, cpu.el, cpu.actor, len(cpu.trace.of(Kind.GUEST)), vcpu.program,
    )
    assert ["hyp guest entry code", "hyp exit vector"] == [e.where for e in cpu.trace.of(Kind.CODE)]


def test_guest_access_that_completes_lets_the_guest_go_on() -> None:
    """An untrapped guest access completes and the guest carries on to its exit."""
    cpu, vcpu = _guest_ready(mdcr=E2PB_EL1)
    vcpu.program = [GuestAccess("PMBIDR_EL1"), GuestExit("hvc")]
    assert ExitReason("hvc") == cpu.run_guest(vcpu)
    assert [guest(0)] == [e.actor for e in cpu.trace.of(Kind.MRS) if e.register == "PMBIDR_EL1"]


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
