"""The plugin black-box, rule by rule: the reference passes every rule and exercises each; for every
rule a mutant of the catalogue that the shipped suite catches under that rule's id; and the hooks
that narrow the feature space and add a project's own rules."""

from __future__ import annotations

import importlib
import xml.etree.ElementTree as ET

import pytest
from mutant_catalogue import MUTANTS_DIR, caught_by
from plugin_harness import TWO_CELLS, assert_no_traceback

from pytest_spekvm.collection import RULE_MARKER, SUITES_DIR
from pytest_spekvm.options import TARGET_OPTION
from pytest_spekvm.rules import RULES

RULE_IDS = [rule.id for rule in RULES]


@pytest.mark.no_cover
def test_reference_passes_every_rule(spekvm_pytester: pytest.Pytester) -> None:
    """The whole default run against the reference passes, and every rule is passed and exercised, none left
    never exercised or not run."""
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(RULE_IDS) * 233)
    result.stdout.fnmatch_lines(["=* spekvm verdicts for reference =*"])
    result.stdout.fnmatch_lines([f"{rule} * passed (* checks, * exercised it) *" for rule in RULE_IDS])
    for word in ("NEVER EXERCISED", "FAILED", "not run", " 0 exercised"):
        result.stdout.no_fnmatch_line(f"*{word}*")


# ------------------------------------------------------------- one mutant per rule

# For each rule, a mutant of the catalogue (examples/mutants/) that names it in CAUGHT_BY.
MUTANT = {
    "RES0": "mdcr_res0_bit",
    "TRAP-COND": "guest_without_tpms",
    "UNDEF": "no_pmsver_check",
    "DRAIN-ORDER": "no_spe_save",
    "RESTORE-ORDER": "restore_before_host_sysregs",
    "HOST-STATE": "no_spe_restore",
    "ISOLATION": "guest_owns_buffer",
    "NO-LOSS": "disable_buffer_instead_of_drain",
    "LEAN": "drain_on_vhe",
}

SUITE_TEST = {
    "RES0": "test_res0.py::test_res0",
    "TRAP-COND": "test_traps.py::test_trap_cond",
    "UNDEF": "test_traps.py::test_undef",
    "DRAIN-ORDER": "test_ordering.py::test_drain_order",
    "RESTORE-ORDER": "test_ordering.py::test_restore_order",
    "HOST-STATE": "test_host_state.py::test_host_state",
    "ISOLATION": "test_records.py::test_isolation",
    "NO-LOSS": "test_records.py::test_no_loss",
    "LEAN": "test_lean.py::test_lean",
}


def test_every_rule_has_a_mutant_that_names_it() -> None:
    """The tables above cover the whole catalogue, and each rule's mutant names that rule in CAUGHT_BY."""
    assert sorted(RULE_IDS) == sorted(MUTANT) == sorted(SUITE_TEST)
    assert [] == [rule for rule, name in MUTANT.items() if rule not in caught_by(name)]


@pytest.mark.no_cover
@pytest.mark.parametrize("rule", RULE_IDS)
def test_mutant_is_caught(spekvm_pytester: pytest.Pytester, rule: str) -> None:
    """A mutant broken in the way the rule forbids fails that rule's suite test, with the rule id in the report."""
    suite_test = SUITE_TEST[rule]
    name = suite_test.partition("::")[2]
    # The 22 cells with PMUv3p1 (VHE or not, every SPE level, PMBIDR_EL1.P 0 or 1), or, for a
    # mistake that shows only where the return to the host does not synchronise, the FEAT_ExS cells.
    cells = "exs" if rule == "RESTORE-ORDER" else "pmuv3p1"
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}={MUTANTS_DIR / MUTANT[rule]}.py", "-k", f"{name} and not sequences and {cells}")
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] >= 1
    result.stdout.fnmatch_lines([
        f"RULE {rule} violated on features: *",
        f"{rule} * FAILED (* of * checks) *",
        f"FAILED {suite_test}[[]*{cells}[]] - RULE *",
    ])
    assert "Traceback" not in result.stdout.str()


# ------------------------------------------------------------------------ the hooks

NARROW = """
from pytest_spekvm import FeatureSpace


def pytest_spekvm_narrow_features(config, space):
    return {result}
"""


@pytest.mark.parametrize(
    ("result", "shown", "prefix", "count"),
    [("FeatureSpace(vhe={False})", "{nVHE}", "nvhe-", 116), ("None", "{nVHE,VHE}", "", 232)],
    ids=["nvhe-only", "unchanged"],
)
def test_narrow_features(spekvm_pytester: pytest.Pytester, result: str, shown: str, prefix: str, count: int) -> None:
    """pytest_spekvm_narrow_features narrows the run (to nVHE: the header says so and every cell is nVHE);
    returning None leaves the space as it is."""
    spekvm_pytester.makeconftest(NARROW.replace("{result}", result))
    run = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", "--co", "-k", "test_res0 and not sequences")
    run.stdout.fnmatch_lines([f"spekvm feature space: {shown} x PMSVer {{0,1,2,3,4,5}} x * ({count} cells)"])
    cells = [line.strip() for line in run.stdout.lines if "<Function test_res0[" in line]
    assert count == len(cells)
    assert [] == [c for c in cells if not c.startswith(f"<Function test_res0[{prefix}")]


VHE_ONLY_TARGET = """
from pytest_spekvm import FeatureSpace
from pytest_spekvm.reference.switch import ReferenceSwitch


class VheOnly(ReferenceSwitch):
    feature_space = FeatureSpace(vhe={True})


spekvm_adapter = VheOnly
"""


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ("'nVHE only'", "ERROR: pytest_spekvm_narrow_features returned 'nVHE only', not a pytest_spekvm.FeatureSpace"),
        ("FeatureSpace(vhe={False})",
         "ERROR: pytest_spekvm_narrow_features left no CPU to test: Cannot use feature space {} x * because a dimension has no value left"),
    ],
    ids=["not-a-feature-space", "nothing-left"],
)
def test_narrow_features_misused(spekvm_pytester: pytest.Pytester, result: str, expected: str) -> None:
    """A narrowing hook that returns something else, or leaves no CPU of the target's space, is a usage error."""
    spekvm_pytester.makeconftest(NARROW.replace("{result}", result))
    spekvm_pytester.makepyfile(vhe_only=VHE_ONLY_TARGET)
    run = spekvm_pytester.runpytest(f"{TARGET_OPTION}=vhe_only.py")
    assert pytest.ExitCode.USAGE_ERROR == run.ret
    run.stderr.fnmatch_lines([expected])


ADD_RULES = """
from pytest_spekvm import Judgement, Rule, Severity, Violation


def _forbid_everything(trace, features):
    return Judgement("PROJ-NEVER", exercised=True, violations=(Violation("PROJ-NEVER", 0, "the project allows no run at all"),))


NEVER = Rule(
    id="PROJ-NEVER", title="Nothing is allowed", rationale="the project's own policy", severity=Severity.CORRECTNESS,
    family="project", check=_forbid_everything,
)


def pytest_spekvm_add_rules(config):
    return {result}
"""


def test_added_rule_is_collected_and_judged(spekvm_pytester: pytest.Pytester) -> None:
    """A rule from pytest_spekvm_add_rules gets the project-rules suite collected, fails under its own id and
    has its row in the verdict table; -k selects it by id."""
    spekvm_pytester.makeconftest(ADD_RULES.replace("{result}", "[NEVER]"))
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", "-k", "PROJ-NEVER and nvhe-spe1-pmuv3p1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "RULE PROJ-NEVER violated on features: nVHE, FEAT_SPE (PMSVer=1), PMUv3p1 (6 counters)",
        "  Nothing is allowed",
        "  at #0: the project allows no run at all",
        "  why: the project's own policy",
        "replay: pytest --spekvm-target=reference 'test_project_rules.py::test_project_rule[[]nvhe-spe1-pmuv3p1-PROJ-NEVER[]]' *",
        "LEAN * not run *",
        "PROJ-NEVER * correctness  FAILED (1 of 1 checks) * Nothing is allowed",
        "FAILED test_project_rules.py::test_project_rule[[]nvhe-spe1-pmuv3p1-PROJ-NEVER[]]*",
    ])


def test_project_rules_suite_absent_without_added_rules(spekvm_pytester: pytest.Pytester) -> None:
    """With no added rule, the project-rules suite is not collected at all."""
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", "--co", "-q")
    result.stdout.fnmatch_lines([f"{len(RULE_IDS) * 233} tests collected in *"])
    result.stdout.no_fnmatch_line("*test_project_rules.py*")


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ("['PROJ-NEVER']",
         "ERROR: pytest_spekvm_add_rules returned 'PROJ-NEVER', not a pytest_spekvm.Rule (build one with Rule(id=..., *))"),
        ("[NEVER, NEVER]",
         "ERROR: pytest_spekvm_add_rules returned a rule with id 'PROJ-NEVER', which is already taken (ids: *PROJ-NEVER*)"),
    ],
    ids=["not-a-rule", "duplicate-id"],
)
def test_add_rules_misused(spekvm_pytester: pytest.Pytester, result: str, expected: str) -> None:
    """A rules hook that returns something other than rules, or an id already taken, is a usage error."""
    spekvm_pytester.makeconftest(ADD_RULES.replace("{result}", result))
    run = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference")
    assert pytest.ExitCode.USAGE_ERROR == run.ret
    run.stderr.fnmatch_lines([expected])


BROKEN_RULE = """
from pytest_spekvm import Found, Rule, Severity


def _check(trace, features):
{body}


def pytest_spekvm_add_rules(config):
    return [Rule(id="PROJ-BROKEN", title="The project's own rule", rationale="the project's own policy",
                 severity=Severity.CORRECTNESS, family="project", check=_check)]
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    raise ValueError('my rule is buggy')",
         "PROJ-BROKEN's check(trace, features) raised ValueError: my rule is buggy at */conftest.py:* in _check"),
        ("    return None", "PROJ-BROKEN's check(trace, features) returned None; expected a pytest_spekvm.Found"),
    ],
    ids=["raises", "returns-none"],
)
def test_added_rule_that_cannot_judge_the_reference_is_a_usage_error(
    spekvm_pytester: pytest.Pytester, body: str, expected: str
) -> None:
    """An added rule whose check raises, or returns no Found, on the reference switch's run is a usage error naming the rule and what its check did."""
    spekvm_pytester.makeconftest(BROKEN_RULE.replace("{body}", body))
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", "-k", "PROJ-BROKEN")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines([
        "ERROR: pytest_spekvm_add_rules returned the rule 'PROJ-BROKEN', whose check cannot judge the reference switch's "
        f"scripted run (nVHE, no SPE (PMSVer=0), no PMUv3): {expected}",
    ])
    assert_no_traceback(result)


def test_added_rule_that_raises_on_some_cpus(spekvm_pytester: pytest.Pytester) -> None:
    """An added rule whose check raises on VHE only fails the VHE cell and the sequences test naming the rule, the exception and its line, and the end of the run still prints the verdict table and a failed gate for it."""
    spekvm_pytester.makeconftest(TWO_CELLS + BROKEN_RULE.replace("{body}", (
        "    if features.vhe:\n        raise ValueError('VHE is not handled')\n    return Found(exercised=True)"
    )))
    result = spekvm_pytester.runpytest(
        f"{TARGET_OPTION}=reference", "-k", "PROJ-BROKEN", "--spekvm-no-shrink", "--hypothesis-seed=0", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, failed=2)
    raised = "  PROJ-BROKEN's check(trace, features) raised ValueError: VHE is not handled at */conftest.py:* in _check"
    result.stdout.fnmatch_lines([
        "RULE PROJ-BROKEN could not be judged on features: VHE, FEAT_SPE (PMSVer=1), no PMUv3",
        "  The project's own rule",
        raised,
        "  the rule's checker failed, not the switch under test: fix the check",
        "steps:",
        "replay: pytest --spekvm-target=reference 'test_project_rules.py::test_project_rule[[]vhe-spe1-pmunone-PROJ-BROKEN[]]' *",
        "RULE PROJ-BROKEN could not be judged on features: VHE, *",
        raised,
        "replay anywhere: add --spekvm-reproduce=PROJ-BROKEN@reference:* to the command above",
        "PROJ-BROKEN * correctness  FAILED (2 of 3 checks) * The project's own rule",
        "spekvm FAILED: PROJ-BROKEN could not be judged on the reference switch, so where it is reachable is unknown: "
        "PROJ-BROKEN's check(trace, features) raised ValueError: VHE is not handled at */conftest.py:* in _check "
        "(on the reference switch's trace, vhe-spe1-pmunone)",
        "*2 failed, 1 passed*",
    ])
    assert pytest.ExitCode.TESTS_FAILED == result.ret
    assert_no_traceback(result)


# ------------------------------------------------------------------- the rule a suite test checks


def _marked_rules(module: object) -> dict[str, list[str]]:
    """Each test function of a suite module, with the rules its `spekvm_rule` markers name."""
    tests = {name: obj for name, obj in vars(module).items() if name.startswith("test_") and callable(obj)}
    return {
        name: [str(mark.args[0]) for mark in getattr(test, "pytestmark", []) if mark.name == RULE_MARKER]
        for name, test in tests.items()
    }


def test_each_suite_test_names_its_rule() -> None:
    """Each test of the shipped suites carries one spekvm_rule marker, and each rule of the catalogue is named by one cell test and one sequences test."""
    named: dict[str, list[str]] = {}
    unmarked = []
    for path in sorted(SUITES_DIR.glob("test_*.py")):
        if path.stem == "test_project_rules":  # its tests take the marker from the rule they are given
            continue
        for test, marked in _marked_rules(importlib.import_module(f"pytest_spekvm.suites.{path.stem}")).items():
            if len(marked) != 1:
                unmarked.append(f"{path.name}::{test}")
                continue
            named.setdefault(marked[0], []).append("sequences" if test.endswith("_sequences") else "cell")
    assert ([], {rule: ["cell", "sequences"] for rule in RULE_IDS}) == (unmarked, {rule: sorted(kinds) for rule, kinds in named.items()})


def test_a_renamed_suite_test_keeps_its_rule(spekvm_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A suite test whose name reads as no rule checks, is selected by -k as and is reported under the rule its marker names."""
    suite = importlib.import_module("pytest_spekvm.suites.test_traps")
    monkeypatch.setattr(suite, "test_checks_accesses", suite.test_trap_cond, raising=False)
    monkeypatch.delattr(suite, "test_trap_cond")
    result = spekvm_pytester.runpytest(
        f"{TARGET_OPTION}=reference", "-k", "TRAP-COND and nvhe-spe1-pmuv3p1", "-v", "-p", "no:cacheprovider", "--junitxml=j.xml"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*test_traps.py::test_checks_accesses[[]nvhe-spe1-pmuv3p1[]] PASSED*",
        "TRAP-COND * correctness  passed (1 checks, 1 exercised it) *",
    ])
    case = ET.parse(spekvm_pytester.path / "j.xml").getroot().find(".//testcase")
    assert case is not None
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert ("test_checks_accesses[nvhe-spe1-pmuv3p1]", "TRAP-COND") == (case.get("name"), properties["spekvm_rule"])


OWN_MARKED = """
import pytest


@pytest.mark.spekvm_rule("RES0")
def test_mine(spekvm, spekvm_rule, spekvm_cell, request):
    spekvm.check_cell(spekvm_rule, spekvm_cell, request.node.nodeid)


def test_unmarked(spekvm_rule):
    pass
"""


def test_spekvm_rule_fixture_reads_the_marker(spekvm_pytester: pytest.Pytester) -> None:
    """A project's own test gets the rule its spekvm_rule marker names from the spekvm_rule fixture; without the marker its setup fails saying so."""
    spekvm_pytester.makepyfile(test_own=OWN_MARKED)
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", "test_own.py", "-k", "nvhe-spe1-pmuv3p1 or unmarked", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*test_own.py::test_unmarked asks for spekvm_rule but names no rule: mark it @pytest.mark.spekvm_rule(RULE_ID)",
        "RES0 * correctness  passed (1 checks, 1 exercised it) *",
    ])
