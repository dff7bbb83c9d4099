"""Tests of the rule catalogue itself: its ids, families and documentation, what a rule and a judgement
are, the window walk and register replay the checkers share, and rules honest about being exercised.

The rules against broken switches are in test_rules_broken.py (the mutant catalogue), their messages
in test_rules_messages.py, and the absence of false alarms in test_rules_unusual.py.
"""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import pytest
from mutant_catalogue import switch
from rules_harness import (
    GRID,
    NO_SPE,
    NVHE,
    OWNED,
    RULE_IDS,
    SCENARIOS,
    VHE,
    Scenario,
    guest_access,
    idle,
    paused_run,
    plain,
    profiling_off,
    run,
)

from pytest_spekvm import rules
from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.actors import HYP
from pytest_spekvm.reference.chooser import EagerChooser
from pytest_spekvm.reference.features import Features, SpeLevel
from pytest_spekvm.reference.trace import Kind, Trace

# ------------------------------------------------------------------ exercised, honestly

EXERCISING: dict[str, tuple[Features, Scenario]] = {
    "RES0": (NVHE, plain),
    "TRAP-COND": (NVHE, guest_access),
    "UNDEF": (NO_SPE, plain),
    "DRAIN-ORDER": (NVHE, plain),
    "RESTORE-ORDER": (NVHE, plain),
    "HOST-STATE": (VHE, plain),
    "ISOLATION": (VHE, plain),
    "NO-LOSS": (VHE, plain),
    "LEAN": (NVHE, profiling_off),
}


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_is_exercised_by_a_scenario_made_for_it(rule_id: str) -> None:
    """Each rule reports itself exercised, and passed, on a reference run that meets its precondition."""
    features, scenario = EXERCISING[rule_id]
    judgement = rules.BY_ID[rule_id].judge(run(S.ReferenceSwitch(), features, scenario).cpu.trace, features)
    assert (rule_id, True, True) == (judgement.rule, judgement.exercised, judgement.passed)


@pytest.mark.parametrize("rule_id", RULE_IDS)
@pytest.mark.parametrize("features", [NVHE, VHE, NO_SPE, OWNED], ids=str)
def test_rule_is_never_exercised_by_boot_alone(rule_id: str, features: Features) -> None:
    """On a trace of the boot alone, every rule says it was never exercised rather than passing silently."""
    trace = run(S.ReferenceSwitch(), features, idle).cpu.trace
    assert rules.Judgement(rule_id, False, ()) == rules.BY_ID[rule_id].judge(trace, features)


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_is_never_exercised_by_an_empty_trace(rule_id: str) -> None:
    """An empty trace exercises no rule."""
    assert rules.Judgement(rule_id, False, ()) == rules.BY_ID[rule_id].judge(Trace(), NVHE)


@pytest.mark.parametrize(
    ("rule_id", "features", "scenario"),
    [
        ("DRAIN-ORDER", VHE, plain),  # the VHE host's buffer never changes translation
        ("DRAIN-ORDER", NVHE, profiling_off),  # no live buffer to drain
        ("DRAIN-ORDER", OWNED, plain),  # the buffer is EL3's
        ("RESTORE-ORDER", VHE, plain),
        ("RESTORE-ORDER", NVHE, paused_run),  # sampling was off: nothing to turn back on
        ("TRAP-COND", NVHE, plain),  # the guest never tried an SPE register
        ("UNDEF", NVHE, plain),  # every SPE access is defined on this CPU
        ("NO-LOSS", NVHE, profiling_off),  # the host produced no record
        ("NO-LOSS", NO_SPE, plain),
        ("ISOLATION", NO_SPE, plain),  # no record and no guest SPE access
    ],
    ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", None),
)
def test_rule_is_not_exercised_without_its_precondition(
    rule_id: str, features: Features, scenario: Scenario
) -> None:
    """A rule whose precondition never occurs on a run says so, even though the run has windows."""
    trace = run(S.ReferenceSwitch(), features, scenario).cpu.trace
    assert rules.Judgement(rule_id, False, ()) == rules.BY_ID[rule_id].judge(trace, features)


# ------------------------------------------------------------------ register replay


@pytest.mark.parametrize(
    "features", [NVHE, VHE, NO_SPE, OWNED, Features(spe=SpeLevel.V1P4, vhe=True)], ids=str
)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_replay_ends_where_the_cpu_does(features: Features, name: str) -> None:
    """Replaying a trace's events gives every register the value the CPU holds at the end."""
    cpu = run(S.ReferenceSwitch(), features, SCENARIOS[name], EagerChooser()).cpu
    final = rules.registers_after(cpu.trace, features, len(cpu.trace) - 1)
    assert {r.name: cpu.peek(r.name) for r in R.REGISTERS} == final


def test_replay_yields_the_state_after_each_event() -> None:
    """`replay` gives, at each event, what `registers_after` gives for that event's seq."""
    trace = run(S.ReferenceSwitch(), NVHE, plain).cpu.trace
    for event, values in rules.replay(trace, NVHE):
        if event.kind in (Kind.ENTRY, Kind.RETURN):
            assert rules.registers_after(trace, NVHE, event.seq) == dict(values)


@pytest.mark.parametrize("features", GRID[::5], ids=str)
def test_res0_judged_from_the_table_agrees_with_the_model(features: Features) -> None:
    """The RES0 bits the rule computes from the register table are the ones the model recorded on each MSR."""
    trace = run(switch("tpms_unconditional"), features, guest_access).cpu.trace
    masks = {r.name: r.res0_mask(features) for r in R.REGISTERS}
    assert [e.res0 for e in trace if e.kind is Kind.MSR] == [
        e.value & masks[e.register] for e in trace if e.kind is Kind.MSR
    ]


# ------------------------------------------------------------------ the catalogue


def test_catalogue_ids_and_order() -> None:
    """The catalogue holds the nine rules docs/rules.md documents, by their stable ids, in order."""
    assert RULE_IDS == tuple(rule.id for rule in rules.RULES)
    assert list(RULE_IDS) == list(rules.BY_ID)


def test_catalogue_families_cover_every_rule_once() -> None:
    """Each rule belongs to exactly one suite family, and the families are the suite's files."""
    assert ("res0", "traps", "ordering", "host_state", "records", "lean") == rules.FAMILIES
    assert sorted(RULE_IDS) == sorted(r.id for f in rules.FAMILIES for r in rules.rules_of_family(f))
    assert ("DRAIN-ORDER", "RESTORE-ORDER") == tuple(r.id for r in rules.rules_of_family("ordering"))


def test_unknown_family_is_refused_with_the_known_ones() -> None:
    """Asking for a family that does not exist names the families that do."""
    with pytest.raises(ValueError, match=r"no such family \(one of res0, traps, ordering"):
        rules.rules_of_family("ordring")


def test_only_lean_is_lean() -> None:
    """LEAN is the one rule of severity LEAN; the others are correctness rules."""
    assert {"LEAN"} == {r.id for r in rules.RULES if r.severity is rules.Severity.LEAN}


@pytest.mark.parametrize("rule", rules.RULES, ids=lambda r: r.id)
def test_rule_texts_are_one_line_and_sourced(rule: rules.Rule) -> None:
    """Every rule has a one-line title and a rationale that quotes the review or names an Arm fact."""
    assert (False, True) == ("\n" in rule.title, rule.rationale.startswith(("Review:", "Patch", "Arm ARM")))


def test_judgement_passed_means_no_violation() -> None:
    """A judgement passes exactly when it holds no violation."""
    bad = rules.Judgement("LEAN", True, (rules.Violation("LEAN", 3, "expected none, got one"),))
    assert (True, False) == (rules.Judgement("LEAN", True).passed, bad.passed)


def test_rules_compare_without_their_checkers() -> None:
    """Two rules with the same texts are equal whatever their check functions are (check is eq=False)."""
    rule = rules.BY_ID["LEAN"]
    twin = rules.Rule(
        rule.id,
        rule.title,
        rule.rationale,
        rule.severity,
        rule.family,
        lambda t, f: rules.Judgement("LEAN", False),
    )
    assert rule == twin


def test_judge_stamps_the_rule_id_on_what_its_checker_found() -> None:
    """A checker returns breaches without naming its rule: the judgement and each violation carry the rule's id."""
    rule = rules.Rule("PROJ-X", "t", "r", rules.Severity.LEAN, "lean", lambda t, f: rules.Found(True, [rules.Breach(2, "m")]))
    assert rules.Judgement("PROJ-X", True, (rules.Violation("PROJ-X", 2, "m"),)) == rule.judge(Trace(), NVHE)


def test_judge_stamps_the_rule_id_on_a_judgement_its_checker_returned() -> None:
    """A checker that returns a whole Judgement (as project rules may) gets the rule's own id on it and its violations."""
    made = rules.Judgement("OTHER", True, (rules.Violation("OTHER", 0, "m"),))
    rule = rules.Rule("PROJ-Y", "t", "r", rules.Severity.LEAN, "lean", lambda t, f: made)
    assert rules.Judgement("PROJ-Y", True, (rules.Violation("PROJ-Y", 0, "m"),)) == rule.judge(Trace(), NVHE)


def test_walk_docstring_example_is_a_working_project_rule() -> None:
    """The project rule the window walk's documentation shows runs as written and finds the exit window's PMSCR_EL1 writes."""
    doc = rules.walk.__doc__ or ""
    code = textwrap.dedent(doc.split("::\n", 1)[1].split("\nThe terms", 1)[0])
    namespace: dict[str, object] = {}
    exec(compile(code, "walk-example", "exec"), namespace)
    rule = rules.Rule("PROJ-EXIT-PMSCR", "t", "r", rules.Severity.LEAN, "lean", namespace["check"])  # type: ignore[arg-type]
    system = run(switch("restore_unconditional"), NVHE, plain)
    writes = [e.seq for e in system.cpu.trace if e.kind is Kind.MSR and e.register == "PMSCR_EL1" and e.actor == HYP]
    judgement = rule.judge(system.cpu.trace, NVHE)
    assert (True, True) == (judgement.exercised, bool(judgement.violations))
    assert {v.event for v in judgement.violations} < set(writes)


SUITES = Path(__file__).resolve().parent.parent / "suites"


def test_rule_modules_mirror_the_suite_files() -> None:
    """The rules package has one module per family, named as the suite file of that family, and each holds its family's rules."""
    suite_families = sorted(p.stem.removeprefix("test_") for p in SUITES.glob("test_*.py") if p.stem != "test_project_rules")
    holders = {f: importlib.import_module(f"pytest_spekvm.rules.{f}").RULES for f in rules.FAMILIES}
    assert (suite_families, {f: rules.rules_of_family(f) for f in rules.FAMILIES}) == (sorted(rules.FAMILIES), holders)


# ------------------------------------------------------------------ the rules' documentation

DOCS = Path(__file__).resolve().parent.parent / "docs" / "rules.md"


def test_every_rule_has_its_section_in_the_documentation() -> None:
    """docs/rules.md has a section headed by each rule id, and each rationale points at it."""
    headings = {line[3:].strip() for line in DOCS.read_text().splitlines() if line.startswith("## ")}
    missing = [r.id for r in rules.RULES if r.id not in headings]
    unpointed = [r.id for r in rules.RULES if f"docs/rules.md#{r.id.lower()}" not in r.rationale]
    assert ([], []) == (missing, unpointed)
