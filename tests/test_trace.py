"""What the CPU reports through and builds on: the trace and its actors, memory and its owners, the choosers."""

from __future__ import annotations

import attrs
import pytest

from pytest_spekvm.reference import memory as M
from pytest_spekvm.reference.actors import BOOT, HOST, HYP, PE, Actor, Role, guest
from pytest_spekvm.reference.chooser import (
    Chooser,
    EagerChooser,
    HoldingChooser,
    Moment,
    RandomChooser,
    SplitChooser,
    WorstCaseChooser,
)
from pytest_spekvm.reference.trace import Dsb, Event, Kind, Trace

# ---------------------------------------------------------------------------------- trace


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (Event(0, HYP, 2, Kind.MSR, register="VTTBR_EL2", value=0x10), "msr VTTBR_EL2 <- 0x10"),
        (Event(0, HYP, 2, Kind.MSR, register="MDCR_EL2", name="MDCR_EL2", value=0x4000),
         "msr MDCR_EL2 <- 0x4000  = TPMS"),
        (Event(0, HYP, 2, Kind.MSR, register="S3_0_C9_C9_1", value=1, res0=1),
         "msr S3_0_C9_C9_1 <- 0x1   RES0 bits set: bit 0"),
        (Event(0, HYP, 2, Kind.MRS, register="PMBIDR_EL1", value=6), "mrs PMBIDR_EL1 -> 0x6"),
        (Event(0, guest(0), 1, Kind.TRAP, register="PMSCR_EL1", where="MDCR_EL2.TPMS=1"),
         "trap: PMSCR_EL1 (MDCR_EL2.TPMS=1)"),
        (Event(0, HYP, 2, Kind.UNDEF, register="PMSCR_EL1", name="PMSCR_EL12", where="why"),
         "undef: PMSCR_EL12 (why)"),
        (Event(0, HYP, 2, Kind.ISB), "isb"),
        (Event(0, HYP, 2, Kind.PSB), "psb csync"),
        (Event(0, PE, 2, Kind.RECORD, record=4), "record #4"),
        (Event(0, HYP, 2, Kind.ERET, where=""), "eret"),
        (Event(0, HOST, 1, Kind.CODE, where="host kernel code"), "code host kernel code"),
        (Event(0, HYP, 2, Kind.RETURN, where="vcpu 0 back in host"), "return vcpu 0 back in host"),
    ],
)
def test_event_describes_itself_in_one_line(event: Event, text: str) -> None:
    """Each kind of event has a one-line description for the timeline."""
    assert text == event.describe()


def test_timeline_marks_the_event_of_interest_and_keeps_context() -> None:
    """A timeline around an event shows `context` events either side and marks that event."""
    trace = Trace()
    for i in range(10):
        trace.add(HYP, 2, Kind.NOTE if i == 0 else Kind.ISB, where=f"note {i}")
    trace.add(HOST, 1, Kind.NOTE, where="host note")
    lines = trace.timeline(around=5, context=2).splitlines()
    assert ["      3     hyp    EL2 isb", "      4     hyp    EL2 isb", ">>    5     hyp    EL2 isb",
            "      6     hyp    EL2 isb", "      7     hyp    EL2 isb"] == lines
    assert "     10   host   EL1 host note" == trace.timeline().splitlines()[-1]


def test_timeline_shows_the_events_also_named_in_their_place() -> None:
    """Events named in `also` outside the window are shown where they fall, with '...' for each gap;
    those inside the window or outside the trace add nothing."""
    trace = Trace()
    for _ in range(20):
        trace.add(HYP, 2, Kind.ISB)
    lines = trace.timeline(around=10, context=1, also=(2, 11, 19, 25, -1)).splitlines()
    assert ["2", "...", "9", ">>", "11", "...", "19"] == [line.split()[0] for line in lines]


def test_trace_is_a_sequence_of_events() -> None:
    """The trace numbers its events in order and can be indexed, iterated and filtered by kind."""
    trace = Trace()
    trace.add(HYP, 2, Kind.ISB)
    trace.add(HYP, 2, Kind.DSB, dsb=Dsb.SY)
    assert ([0, 1], 2, Kind.DSB, [1]) == (
        [e.seq for e in trace], len(trace), trace[1].kind, [e.seq for e in trace.of(Kind.DSB)],
    )


def test_trace_add_takes_every_field_of_the_event_with_its_default() -> None:
    """Trace.add spells out Event's fields: left out, each is Event's default; given, each lands in its own field."""
    fields = [f for f in attrs.fields(Event) if f.name not in ("seq", "actor", "el", "kind")]
    given = {f.alias: f"value of {f.alias}" for f in fields}  # a distinct value per field shows a swap
    trace = Trace()
    trace.add(HYP, 2, Kind.NOTE)
    trace.add(HYP, 2, Kind.NOTE, **given)  # type: ignore[arg-type]
    assert (Event(0, HYP, 2, Kind.NOTE), Event(1, HYP, 2, Kind.NOTE, **given)) == (trace[0], trace[1])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- memory


def test_actors_are_values_rendered_for_the_reader() -> None:
    """Actors compare by role and VM, and render as the timeline shows them: host, hyp, guest0."""
    assert (True, False, ["boot", "host", "hyp", "pe", "guest0"]) == (
        guest(1) == Actor(Role.GUEST, 1), guest(0) == guest(1), [str(a) for a in (BOOT, HOST, HYP, PE, guest(0))],
    )


@pytest.mark.parametrize("value", [HOST, M.HOST_BUFFER], ids=["actor", "owner"])
def test_actors_and_owners_refuse_to_be_compared_with_text(value: object) -> None:
    """Comparing an actor or a memory owner with a string raises instead of silently never matching."""
    with pytest.raises(TypeError, match=r"because (actors|owners) are values"):
        _ = value == "host"


@pytest.mark.parametrize("value", [HOST, M.HOST_BUFFER], ids=["actor", "owner"])
def test_actors_and_owners_differ_from_any_other_value(value: object) -> None:
    """An actor or an owner is not equal to a value of another kind (None, a number): only strings are refused."""
    assert (False, True) == (value == None, value != 0)  # noqa: E711 - the comparison is the behaviour tested


def test_owners_are_values_rendered_for_the_reader() -> None:
    """Memory owners compare by region and VM, and render as the messages show them: host buffer, guest 0."""
    assert (True, ["host buffer", "host kernel", "hypervisor", "guest 0"]) == (
        M.guest_owner(0) == M.Owner(M.Region.GUEST, 0),
        [str(o) for o in (M.HOST_BUFFER, M.HOST_KERNEL, M.HYPERVISOR, M.guest_owner(0))],
    )


def test_memory_walk_through_stage1_and_stage2() -> None:
    """Guest 1's stage 1 and stage 2 take the buffer's VA to guest 1's own pages."""
    mem = M.Memory.standard(vms=2)
    landing = mem.walk(M.BUFFER_VA + 0x48, M.guest_ttbr1(1), M.vttbr(1), "guest")
    expected = (M.GUEST_PA + M.GUEST_PA_STRIDE + 0x48, M.guest_owner(1), None)
    assert expected == (landing.pa, landing.owner, landing.fault)
    assert f"guest 1 (PA {landing.pa:#x}) via guest" == str(landing)


@pytest.mark.parametrize(
    ("ttbr", "vttbr", "fault"),
    [(0xDEAD_0000, None, M.Fault.STAGE1), (M.HOST_TTBR1, None, None), (M.guest_ttbr1(0), 0xDEAD_0000, M.Fault.STAGE2)],
)
def test_memory_walk_faults_without_a_mapping(ttbr: int, vttbr: int | None, fault: M.Fault | None) -> None:
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
