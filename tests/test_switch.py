"""End to end: the reference world switch across the feature lattice, and broken switches the model catches.

The checks here judge outcomes the model observes (where records landed, what the host's registers
hold after a run, which writes set RES0 bits). They are the project's own test of the reference;
the suite's rules (the package pytest_spekvm/rules/) are tested in tests/test_rules*.py. The broken
switches are the mutant catalogue's (examples/mutants/).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Sequence

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mutant_catalogue import module as mutant_module
from mutant_catalogue import switch as mutant

from pytest_spekvm.reference import memory as M
from pytest_spekvm.reference.actors import HOST, HYP
from pytest_spekvm.reference.chooser import Chooser, EagerChooser, RandomChooser, WorstCaseChooser
from pytest_spekvm.reference.features import Features, PmuLevel, SpeLevel
from pytest_spekvm.reference.profiling import Fate
from pytest_spekvm.reference.switch import ReferenceSwitch
from pytest_spekvm.reference.system import System
from pytest_spekvm.reference.trace import Kind
from pytest_spekvm.reference.vcpu import GuestAccess, GuestAction, GuestCode, GuestExit

PMBSR_S = 1 << 17  # PMBSR_EL1.S
SPE_REGISTERS = frozenset({
    "PMSCR_EL1", "PMSCR_EL2", "PMSICR_EL1", "PMSIRR_EL1", "PMSFCR_EL1", "PMSEVFR_EL1", "PMSLATFR_EL1",
    "PMSIDR_EL1", "PMBLIMITR_EL1", "PMBPTR_EL1", "PMBSR_EL1", "PMBIDR_EL1",
})

# ------------------------------------------------------------------------- the lattice

SPE_CELLS = [(SpeLevel.NONE, False)] + [(level, p) for level in list(SpeLevel)[1:] for p in (False, True)]
PMU_CELLS = [PmuLevel.NONE, PmuLevel.V3, PmuLevel.V3P1, PmuLevel.V3P5, PmuLevel.V3P9]
OPTIONAL_CELLS: list[dict[str, bool]] = [
    {},
    {"exs": True},
    {"trf": True, "trbe": True, "fgt": True, "spmu": True, "debugv8p9": True, "step2": True, "exs": True, "ecv": True},
]


def lattice() -> list[Features]:
    """Every discrete cell: VHE x SPE level x PMBIDR.P x PMU level x two sets of optional features."""
    cells = []
    product = itertools.product((False, True), SPE_CELLS, PMU_CELLS, OPTIONAL_CELLS)
    for vhe, (spe, p), pmu, optional in product:
        extra = dict(optional)
        if pmu != PmuLevel.NONE and len(optional) > 1:
            extra.update(mtpmu=True, pmuv3_ss=True, ebep=True)
        if spe != SpeLevel.NONE and len(optional) > 1:
            extra.update(spe_ernd=True)
        counters = 0 if pmu == PmuLevel.NONE else 1 + len(cells) % 31
        cells.append(
            Features(vhe=vhe, spe=spe, spe_owned_by_higher_el=p, pmu=pmu, pmu_counters=counters, **extra)
        )
    return cells


LATTICE = lattice()

# ------------------------------------------------------------------------- observations

HOST_SPE_REGISTERS = ("PMBLIMITR_EL1", "PMBPTR_EL1", "PMBSR_EL1", "MDCR_EL2")


def host_pmscr(s: System) -> str:
    """The register that holds the host's sampling control: PMSCR_EL2 under VHE."""
    return "PMSCR_EL2" if s.features.vhe else "PMSCR_EL1"


def snapshot(s: System) -> dict[str, int]:
    """The host's SPE state and MDCR_EL2, read without an event."""
    return {name: s.cpu.peek(name) for name in (host_pmscr(s), *HOST_SPE_REGISTERS)}


def host_state_problems(before: dict[str, int], after: dict[str, int], written: int) -> list[str]:
    """HOST-STATE: what changed across a run beyond PMBPTR advancing and a full buffer setting PMBSR.S."""
    problems = []
    for name, old in before.items():
        new = after[name]
        if name == "PMBPTR_EL1":
            if new != old + written * M.RECORD_SIZE:
                problems.append(f"PMBPTR_EL1 moved {old:#x} -> {new:#x} for {written} records written")
        elif name == "PMBSR_EL1":
            if new != old and (old & PMBSR_S or not new & PMBSR_S):
                problems.append(f"PMBSR_EL1 changed {old:#x} -> {new:#x} without the buffer stopping")
        elif new != old:
            problems.append(f"{name} changed across the run: {old:#x} -> {new:#x}")
    return problems


def record_problems(s: System) -> list[str]:
    """ISOLATION and NO-LOSS: records outside the host's buffer, and host records lost."""
    problems = [
        f"{size} bytes of profiling data in {owner}" for owner, size in s.cpu.memory.contents.items()
        if owner != M.HOST_BUFFER
    ]
    for r in s.cpu.records:
        if r.fate is Fate.WRITTEN and r.landing is not None and r.landing.owner != M.HOST_BUFFER:
            problems.append(f"record #{r.id} of {r.actor} landed in {r.landing.owner}")
        elif r.fate is Fate.FAULTED:
            problems.append(f"record #{r.id} of {r.actor} faulted: {r.landing}")
        elif r.fate is Fate.DISCARDED and r.discarded_by != HOST:
            problems.append(f"record #{r.id} of {r.actor} discarded by {r.discarded_by if r.discarded_by is not None else 'nobody'}")
    return problems


def trace_problems(s: System, since: int = 0) -> list[str]:
    """RES0, UNDEF, traps to EL3, the host's own accesses trapped, and guest SPE accesses that completed, from `since` on."""
    problems = []
    for e in s.cpu.trace.events[since:]:
        res0_write = e.kind is Kind.MSR and bool(e.res0)
        host_or_hyp = not e.actor.is_guest
        refused = e.kind in (Kind.UNDEF, Kind.TRAP_EL3) or (e.kind is Kind.TRAP and e.actor == HOST)
        if res0_write or (host_or_hyp and refused):
            problems.append(f"{e.actor}: {e.describe()}")
        elif (
            e.kind in (Kind.MRS, Kind.MSR) and e.actor.is_guest
            and e.register in SPE_REGISTERS and e.register != "PMBIDR_EL1"
        ):
            problems.append(f"{e.actor} accessed {e.register} without a trap")
    return problems


def checked_run(s: System, index: int, program: Sequence[GuestAction]) -> list[str]:
    """One run of vcpu `index` with everything the run broke, as readable problems."""
    before = snapshot(s)
    mark = len(s.cpu.trace)
    result = s.run_vcpu(index, program)
    written = len([e for e in s.cpu.trace.events[mark:] if e.kind is Kind.WRITE])
    problems = host_state_problems(before, snapshot(s), written)
    problems += record_problems(s) + trace_problems(s, mark)
    for e in s.cpu.trace.events[mark:]:
        if e.kind is Kind.UNDEF and e.actor.is_guest and traps_to_el2(s.features, e.register):
            problems.append(f"{e.actor} access to {e.register} was UNDEFINED, not trapped to EL2")
    if result.reason == "trap" and not traps_to_el2(s.features, result.register):
        problems.append(f"the run ended with a trap of {result.register}, which cannot trap here")
    return problems


def traps_to_el2(features: Features, register: str) -> bool:
    """Whether a guest access to SPE `register` should trap to EL2 (TRAP-COND).

    Without SPE it is UNDEFINED; PMBIDR_EL1 is trapped only by a fine-grained trap. When EL3 gives
    the buffer to another Security state the EL2 traps still come first at EL1.
    """
    return features.has_spe and register != "PMBIDR_EL1"


# -------------------------------------------------------------------------- scenarios


@attrs.frozen
class Step:
    """One thing the host does between (or as) runs."""

    action: str
    samples: int = 0
    vcpu: int = 0
    program: tuple[GuestAction, ...] = ()

    def __str__(self) -> str:
        if self.action == "run":
            return f"run vcpu {self.vcpu} {list(self.program)}"
        return f"{self.action}({self.samples})" if self.samples else self.action


def play(s: System, steps: Iterable[Step]) -> list[str]:
    """Play the host's steps, handling buffer interrupts after each; every problem seen, step by step."""
    problems: list[str] = []
    for n, step in enumerate(steps):
        found: list[str] = []
        if step.action == "run":
            found = checked_run(s, step.vcpu, step.program)
        elif step.action == "enable":
            s.enable_profiling()
        elif step.action == "disable":
            s.disable_profiling()
        elif step.action == "pause":
            s.pause_sampling()
        elif step.action == "host":
            s.host_run(step.samples)
        elif step.action == "user":
            s.host_run(step.samples, el0=True)
        s.handle_buffer_irq()
        problems += [f"step {n} ({step}): {p}" for p in found]
    s.finish()
    problems += [f"at the end: {p}" for p in record_problems(s) + trace_problems(s)]
    problems += [f"record #{r.id} still pending at the end" for r in s.cpu.records if r.fate is Fate.PENDING]
    return problems


def run(vcpu: int, *program: GuestAction) -> Step:
    """A run step."""
    return Step("run", vcpu=vcpu, program=program)


# A host's evening: profiling on, guests run, the buffer fills and is restarted, the host pauses,
# stops and restarts profiling, user space is sampled, and guests poke at the SPE registers.
SCRIPT = (
    Step("enable"),
    Step("host", 5),
    run(0, GuestCode(3), GuestAccess("PMSCR_EL1", write=True, value=3)),
    Step("host", 130),
    run(1, GuestAccess("PMBPTR_EL1")),
    Step("user", 130),  # the buffer (64 records) has filled by here
    run(0, GuestCode(1), GuestExit("hvc")),
    Step("host", 10),
    run(1, GuestAccess("PMBLIMITR_EL1", write=True, value=1)),
    Step("pause"),
    Step("host", 3),
    run(0),
    Step("enable"),
    Step("host", 4),
    Step("disable"),
    run(1, GuestCode(2)),
    run(0, GuestAccess("PMSIDR_EL1")),
    Step("enable"),
    Step("host", 260),  # fills again: under the worst case, inside the next entry's drain
    run(0),
    Step("host", 1),
    run(0, GuestCode(1)),
)

CHOOSERS: list[tuple[str, Callable[[], Chooser]]] = [("worst", WorstCaseChooser), ("eager", EagerChooser)]


@pytest.mark.no_cover
@pytest.mark.parametrize("chooser", [f for _, f in CHOOSERS], ids=[n for n, _ in CHOOSERS])
@pytest.mark.parametrize("features", LATTICE, ids=[f.describe() for f in LATTICE])
def test_reference_switch_across_the_lattice(features: Features, chooser: Callable[[], Chooser]) -> None:
    """On every cell of the lattice the reference keeps records in the host's buffer and its state intact."""
    s = System(features, ReferenceSwitch(), chooser())
    assert [] == play(s, SCRIPT)


def test_the_script_exercises_what_it_claims() -> None:
    """On a plain nVHE SPE CPU the script fills the buffer, restarts it, and drains through entries."""
    s = System(Features(), ReferenceSwitch(), WorstCaseChooser())
    play(s, SCRIPT)
    fates = {r.fate for r in s.cpu.records}
    drains = [e for e in s.cpu.trace.of(Kind.PSB) if e.actor == HYP]
    assert ({Fate.WRITTEN, Fate.FULL}, True) == (fates, len(drains) >= 3)
    assert 2 <= len([e for e in s.cpu.trace.of(Kind.HW) if e.where == "buffer full"])


def random_script(rng: random.Random, length: int) -> list[Step]:
    """A random evening of the host: `length` steps drawn from `rng`."""
    steps = []
    for _ in range(length):
        action = rng.choice(["enable", "disable", "pause", "host", "user", "run", "run", "run"])
        if action == "run":
            program: list[GuestAction] = []
            for _ in range(rng.randint(0, 3)):
                kind = rng.randrange(3)
                if kind == 0:
                    program.append(GuestCode(rng.randint(0, 4)))
                elif kind == 1:
                    register = rng.choice(sorted(SPE_REGISTERS - {"PMSCR_EL2"}))
                    program.append(GuestAccess(register, write=rng.random() < 0.5, value=rng.getrandbits(4)))
                else:
                    program.append(GuestExit(rng.choice(["hvc", "irq", "dabt"])))
            steps.append(Step("run", vcpu=rng.randrange(2), program=tuple(program)))
        else:
            steps.append(Step(action, samples=rng.randint(0, 90) if action in ("host", "user") else 0))
    return steps


@pytest.mark.parametrize("seed", range(40))
def test_reference_switch_under_random_choices(seed: int) -> None:
    """Over many seeds of random choices, features and host behaviour, the reference breaks nothing."""
    rng = random.Random(seed)
    features = rng.choice(LATTICE)
    s = System(features, ReferenceSwitch(), RandomChooser(seed))
    steps = random_script(rng, 25)
    assert [] == play(s, steps), f"{features.describe()}, {RandomChooser(seed)!r}"


@st.composite
def features_strategy(draw: st.DrawFn) -> Features:
    """A cell of the lattice."""
    return draw(st.sampled_from(LATTICE), label="features")


@settings(max_examples=60, deadline=None)
@given(
    features=features_strategy(),
    seed=st.integers(0, 2**32 - 1),
    script_seed=st.integers(0, 2**32 - 1),
    length=st.integers(1, 30),
)
def test_reference_switch_holds_for_any_script(
    features: Features, seed: int, script_seed: int, length: int,
) -> None:
    """For any features, chooser seed and host script, the reference breaks nothing."""
    s = System(features, ReferenceSwitch(), RandomChooser(seed))
    assert [] == play(s, random_script(random.Random(script_seed), length))


@pytest.mark.parametrize("vhe", [False, True])
def test_vhe_switch_touches_no_spe_register(vhe: bool) -> None:
    """On VHE the reference does no SPE work in its windows; on nVHE with a live buffer it drains."""
    s = System(Features(vhe=vhe), ReferenceSwitch(), WorstCaseChooser())
    s.enable_profiling()
    s.host_run(3)
    mark = len(s.cpu.trace)
    s.run_vcpu(0)
    hyp = [e for e in s.cpu.trace.events[mark:] if e.actor == HYP]
    spe_work = [e.describe() for e in hyp if e.register in SPE_REGISTERS or e.kind is Kind.PSB]
    expected = [] if vhe else [
        "mrs PMBIDR_EL1 -> 0x6", "mrs PMBLIMITR_EL1 -> 0xffff800010001001", "mrs PMBSR_EL1 -> 0x0", "mrs PMSCR_EL1 -> 0x3",
        "msr PMSCR_EL1 <- 0x0  = 0", "psb csync", "msr PMSCR_EL1 <- 0x3  = E1SPE | E0SPE",
    ]
    assert expected == spe_work


# --------------------------------------------------------------------- broken switches (from the mutant catalogue)


class MissingDrainGuestOwnsBuffer(mutant_module("no_spe_save").Switch, mutant_module("guest_owns_buffer").Switch):  # type: ignore[misc]
    """Two mutants of the catalogue at once: no drain, and the guest owns the buffer (E2PB = 0b11), so
    the buffer is translated by the guest's tables."""


def test_missing_drain_puts_host_records_in_the_guests_memory() -> None:
    """Without the drain, and the guest owning the buffer, the worst case writes host records through the guest's regime."""
    s = System(Features(), MissingDrainGuestOwnsBuffer(), WorstCaseChooser())
    s.enable_profiling()
    s.host_run(3)
    problems = checked_run(s, 0, [GuestCode(0)])
    host_records = s.cpu.records_of([HOST])
    owner = M.guest_owner(0)
    assert [owner] * 3 == [r.landing.owner for r in host_records if r.landing]
    assert f"{3 * M.RECORD_SIZE} bytes of profiling data in {owner}" in problems


def test_missing_drain_loses_host_records_to_the_el2_regime() -> None:
    """Without the drain, with EL2 owning the buffer, the first host record faults in the nVHE EL2 regime and stops the buffer."""
    s = System(Features(), mutant("no_spe_save"), WorstCaseChooser())
    s.enable_profiling()
    s.host_run(3)
    checked_run(s, 0, [GuestCode(0)])
    assert [Fate.FAULTED, Fate.FULL, Fate.FULL] == [r.fate for r in s.cpu.records_of([HOST])]


def test_missing_drain_is_harmless_on_vhe() -> None:
    """Under VHE the host's buffer is translated by EL2 tables the guest never changes: nothing to drain."""
    s = System(Features(vhe=True), mutant("no_spe_save"), WorstCaseChooser())
    assert [] == play(s, SCRIPT)


def test_unconditional_tpms_writes_a_res0_bit_without_spe() -> None:
    """The review's first remark: TPMS is RES0 without SPE, and the model flags the MSR that sets it."""
    s = System(Features(spe=SpeLevel.NONE), mutant("tpms_unconditional"), WorstCaseChooser())
    s.run_vcpu(0)
    bad = [e for e in s.cpu.trace.of(Kind.MSR) if e.res0]
    assert [("MDCR_EL2", 1 << 14, 0x4C66)] == [(e.register, e.res0, e.value) for e in bad]
    assert bad[0].describe().endswith("RES0 bits set: bit 14 (TPMS)")


def test_unconditional_tpms_is_fine_with_spe() -> None:
    """With SPE the same setup is correct: the same scenario shows no problem."""
    s = System(Features(), mutant("tpms_unconditional"), WorstCaseChooser())
    assert [] == play(s, SCRIPT)


def test_unconditional_e2pb_on_exit_writes_res0_bits_without_spe() -> None:
    """The review's second remark: E2PB written on a CPU without SPE sets RES0 bits 13:12."""
    s = System(Features(spe=SpeLevel.NONE), mutant("e2pb_on_exit_without_spe"), WorstCaseChooser())
    problems = checked_run(s, 0, [GuestCode(1)])
    assert [
        "hyp: msr MDCR_EL2 <- 0x3006  = E2PB(3) | HPMN(6)   RES0 bits set: bit 12 (E2PB), bit 13 (E2PB)",
        "MDCR_EL2 changed across the run: 0x6 -> 0x3006",
    ] == sorted(problems, key=lambda p: not p.startswith("hyp"))


def test_stale_save_area_turns_host_sampling_back_on() -> None:
    """A save area left from an earlier run turns sampling on after the host stopped it."""
    s = System(Features(), mutant("stale_pmscr"), WorstCaseChooser())
    problems = play(s, [Step("enable"), run(0), Step("disable"), run(0)])
    assert ["step 3 (run vcpu 0 []): PMSCR_EL1 changed across the run: 0x0 -> 0x3"] == problems
