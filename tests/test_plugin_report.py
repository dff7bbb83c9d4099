"""Machine-readable results and gates, black-box: the JSON report against its schema (serial and
xdist alike), JUnit properties, fingerprints, the never-exercised gate, --spekvm-fail-on and the
coverage matrix."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from plugin_harness import assert_no_traceback
from test_plugin_run import NODRAIN, VHE_ONLY

from pytest_spekvm.report import SCHEMA_PATH
from pytest_spekvm.rules import Severity

# A project rule exercised only by a switch that drains (PSB CSYNC): the reference reaches it on
# nVHE CPUs whose buffer the host owns; a switch that never drains never exercises it.
DRAINS_RULE = """
from pytest_spekvm import Judgement, Rule, Severity
from pytest_spekvm.reference.actors import HYP
from pytest_spekvm.reference.trace import Kind


def _check(trace, features):
    return Judgement("DRAINS", any(e.kind is Kind.PSB and e.actor == HYP for e in trace), ())


def pytest_spekvm_add_rules(config):
    return [Rule("DRAINS", "The switch drains", "a project's own check", Severity.CORRECTNESS, "project", _check)]
"""

# A switch that drains the host's buffer for vcpu 0 only: the simplest sequence (which enters vcpu 0)
# passes, so each seed finds the mistake in a sequence of its own.
SECOND_VCPU_UNDRAINED = """
from pytest_spekvm.reference.switch import ReferenceSwitch


class SecondVcpuUndrained(ReferenceSwitch):
    name = "second-vcpu-undrained"

    def save_spe(self, cpu, vcpu):
        if vcpu.index == 0:
            super().save_spe(cpu, vcpu)


spekvm_adapter = SecondVcpuUndrained
"""

DRAIN_CELLS = ("-k", "test_drain_order and not sequences and pmuv3p1")
DRAIN_CELLS_AND_SEQUENCES = ("-k", "test_drain_order and (pmuv3p1 or sequences)")
PROJECT_CELLS = ("-k", "test_project_rule and not sequences and pmuv3p1")
LEAN_CELLS = ("-k", "test_lean and not sequences and pmuv3p1")
RES0_CELLS = ("-k", "test_res0 and not sequences and pmuv3p1")
DRAIN_ON_VHE = Path(__file__).resolve().parent.parent / "examples" / "mutants" / "drain_on_vhe.py"


@pytest.fixture
def nodrain(spekvm_pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester with nodrain.py (a switch that never drains) and vhe_only.py in its folder."""
    spekvm_pytester.makepyfile(nodrain=NODRAIN, vhe_only=VHE_ONLY)
    return spekvm_pytester


def read_report(path: Path) -> dict[str, Any]:
    """The report at `path`, validated against the shipped schema."""
    report: dict[str, Any] = json.loads(path.read_text())
    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()))
    return report


def rule_entry(report: dict[str, Any], rule_id: str) -> dict[str, Any]:
    """The report's entry for one rule."""
    return next(r for r in report["rules"] if r["id"] == rule_id)


# ------------------------------------------------------------------------- the JSON report


def test_report_validates_and_carries_the_run(nodrain: pytest.Pytester) -> None:
    """The report validates against the shipped schema and names the target, the profile and seed, the
    rule's verdict and counts, each cell's verdict and each failure with its structured facts."""
    result = nodrain.runpytest("--spekvm-target=nodrain.py", "--spekvm-report=out/r.json", "--hypothesis-seed=3", *DRAIN_CELLS)
    result.assert_outcomes(failed=5, passed=17)
    report = read_report(nodrain.path / "out" / "r.json")
    drain = rule_entry(report, "DRAIN-ORDER")
    failure = report["failures"][0]
    cell = next(c for c in report["cells"] if c["id"] == "nvhe-spe1-pmuv3p1")
    assert (
        {"name": "nodrain", "version": "", "spec": "nodrain.py"},
        {"profile": "default", "seed": "3"},
        ("failed", {"checks": 22, "exercised": 5, "failed": 5, "not_judged": 0, "known": 0}, "correctness", "ordering"),
        ("failed", "never exercised", "not run"),
        ("DRAIN-ORDER", "nvhe-spe1-pmuv3p1", "msr", "HCR_EL2", "hyp"),
        "pytest --spekvm-target=nodrain.py 'test_ordering.py::test_drain_order[nvhe-spe1-pmuv3p1]'",
        1,
    ) == (
        {k: report["target"][k] for k in ("name", "version", "spec")},
        report["hypothesis"],
        (drain["verdict"], drain["counts"], drain["severity"], drain["family"]),
        (cell["verdicts"]["DRAIN-ORDER"], next(c for c in report["cells"] if c["id"] == "vhe-spe1-pmuv3p1")["verdicts"]["DRAIN-ORDER"], cell["verdicts"]["RES0"]),
        (failure["rule"], failure["where"], failure["first_bad_event"]["kind"], failure["first_bad_event"]["register"], failure["first_bad_event"]["actor"]),
        next(f["replay"] for f in report["failures"] if f["where"] == "nvhe-spe1-pmuv3p1"),
        report["exit_status"],
    )


def test_report_ini_twin_is_relative_to_the_ini_file(nodrain: pytest.Pytester) -> None:
    """spekvm_report in the ini file writes the report relative to that file, wherever pytest starts."""
    nodrain.makeini("[pytest]\nspekvm_report = reports/spekvm.json\n")
    sub = nodrain.mkdir("sub")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(sub)
        nodrain.runpytest("--spekvm-target=reference", "-k", "test_res0 and nvhe-spe1-pmuv3p1")
    assert "passed" == rule_entry(read_report(nodrain.path / "reports" / "spekvm.json"), "RES0")["verdict"]


def test_report_given_with_o_is_relative_to_where_pytest_starts(nodrain: pytest.Pytester) -> None:
    """spekvm_report given with -o writes the report relative to the folder pytest starts in, as --spekvm-report does, not to the ini file's."""
    nodrain.makeini("[pytest]\n")
    sub = nodrain.mkdir("sub")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(sub)
        nodrain.runpytest("--spekvm-target=reference", "-o", "spekvm_report=reports/spekvm.json", "-k", "test_res0 and nvhe-spe1-pmuv3p1")
    assert ("passed", False) == (
        rule_entry(read_report(sub / "reports" / "spekvm.json"), "RES0")["verdict"], (nodrain.path / "reports").exists()
    )


@pytest.mark.no_cover
def test_xdist_report_is_the_serial_one(nodrain: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under xdist (-n 2) the controller writes one report, with the same content as a serial run's (failures as found:
    the report is the subject here, not the shrinking)."""
    # The suites' fast default with a fixed seed: under CI=true hypothesis' own ci profile would be
    # loaded, whose derandomised runs differ between one process and two workers.
    monkeypatch.delenv("CI", raising=False)
    args = ("--spekvm-target=nodrain.py", "--hypothesis-seed=0", "--spekvm-no-shrink", "-p", "no:benchmark", *DRAIN_CELLS_AND_SEQUENCES)
    nodrain.runpytest(*args, "--spekvm-report=serial.json").assert_outcomes(failed=6, passed=17)
    shutil.rmtree(nodrain.path / ".hypothesis", ignore_errors=True)  # the second run must find, not replay
    nodrain.runpytest(*args, "-n", "2", "--spekvm-report=xdist.json").assert_outcomes(failed=6, passed=17)
    serial, xdist = read_report(nodrain.path / "serial.json"), read_report(nodrain.path / "xdist.json")
    assert without_generated_example(serial) == without_generated_example(xdist)


EXAMPLE_FIELDS = ("features", "steps", "first_bad_event", "message", "reproduce", "replay_anywhere", "fingerprint", "cell")


def without_generated_example(report: dict[str, Any]) -> dict[str, Any]:
    """The report with the generated failures' example left out: the seed fixes it, yet once in a loaded full
    run the two runs' searches ended on different examples; the scripted cells' failures are compared whole."""
    failures = [
        {k: v for k, v in f.items() if k not in EXAMPLE_FIELDS} if f["where"] == "generated" else f for f in report["failures"]
    ]
    return {**report, "failures": failures}


@pytest.mark.no_cover
def test_fingerprint_is_stable_across_seeds(spekvm_pytester: pytest.Pytester) -> None:
    """The same mistake found by generated sequences under two seeds, in two different sequences, gets the same
    fingerprint, as found (--spekvm-no-shrink: the fingerprint does not wait for shrinking)."""
    spekvm_pytester.makepyfile(second_vcpu_undrained=SECOND_VCPU_UNDRAINED)
    found = []
    for seed in ("1", "2"):
        shutil.rmtree(spekvm_pytester.path / ".hypothesis", ignore_errors=True)
        spekvm_pytester.runpytest(
            "--spekvm-target=second_vcpu_undrained.py", f"--hypothesis-seed={seed}", "--spekvm-no-shrink",
            "--spekvm-report=r.json", "-k", "drain_order_sequences",
        )
        found.append([(f["fingerprint"], f["steps"]) for f in read_report(spekvm_pytester.path / "r.json")["failures"]])
    assert [1, 1] == [len(failures) for failures in found]  # each seed finds the mistake, once
    (first, first_steps), (second, second_steps) = found[0] + found[1]
    assert (first, True) == (second, first_steps != second_steps)


# ------------------------------------------------------------------------------------ JUnit


def test_junit_properties(nodrain: pytest.Pytester) -> None:
    """Each suite test carries its rule, severity, cell and target in the JUnit XML, a failure its
    fingerprint, and the test suite carries every rule's verdict."""
    nodrain.runpytest("--spekvm-target=nodrain.py", "--junitxml=j.xml", "--spekvm-report=r.json", *DRAIN_CELLS)
    tree = ET.parse(nodrain.path / "j.xml")
    cases = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")} for c in tree.iter("testcase")}
    suite = {p.get("name"): p.get("value") for p in tree.find("testsuite/properties") or ()}
    fingerprint = next(f["fingerprint"] for f in read_report(nodrain.path / "r.json")["failures"] if f["where"] == "nvhe-spe1-pmuv3p1")
    assert (
        {"spekvm_rule": "DRAIN-ORDER", "spekvm_severity": "correctness", "spekvm_cell": "nvhe-spe1-pmuv3p1",
         "spekvm_target": "nodrain", "spekvm_fingerprint": fingerprint},
        {"spekvm_rule": "DRAIN-ORDER", "spekvm_severity": "correctness", "spekvm_cell": "vhe-spe1-pmuv3p1", "spekvm_target": "nodrain"},
        ("failed", "not run"),
    ) == (
        cases["test_drain_order[nvhe-spe1-pmuv3p1]"],
        cases["test_drain_order[vhe-spe1-pmuv3p1]"],
        (suite["spekvm_verdict_DRAIN-ORDER"], suite["spekvm_verdict_RES0"]),
    )


# ------------------------------------------------------------------------------------ gates


def test_never_exercised_fails_when_reachable(nodrain: pytest.Pytester) -> None:
    """A rule no check exercised, on CPUs where the reference switch reaches it, fails the run and says where."""
    nodrain.makeconftest(DRAINS_RULE)
    result = nodrain.runpytest("--spekvm-target=nodrain.py", "--junitxml=j.xml", *PROJECT_CELLS)
    result.assert_outcomes(passed=22)
    assert pytest.ExitCode.TESTS_FAILED == result.ret
    result.stdout.fnmatch_lines([
        "spekvm FAILED: DRAINS was checked but never exercised, although the feature space lets the reference switch"
        " reach it on nvhe-spe1, nvhe-spe2, nvhe-spe3, nvhe-spe4, nvhe-spe5",
    ])
    suite = {p.get("name"): p.get("value") for p in ET.parse(nodrain.path / "j.xml").find("testsuite/properties") or ()}
    assert "never exercised" == suite["spekvm_verdict_DRAINS"]


def test_never_exercised_warns_on_request(nodrain: pytest.Pytester) -> None:
    """--spekvm-never-exercised=warn reports the rule and leaves the exit status alone."""
    nodrain.makeconftest(DRAINS_RULE)
    result = nodrain.runpytest("--spekvm-target=nodrain.py", "--spekvm-never-exercised=warn", *PROJECT_CELLS)
    assert pytest.ExitCode.OK == result.ret
    result.stdout.fnmatch_lines(["spekvm warning: DRAINS was checked but never exercised, *"])


def test_never_exercised_is_not_applicable_outside_the_declared_space(nodrain: pytest.Pytester) -> None:
    """On a VHE-only target DRAIN-ORDER (nVHE only) is not applicable: reported, not failing."""
    result = nodrain.runpytest("--spekvm-target=vhe_only.py", "--spekvm-report=r.json", *DRAIN_CELLS)
    assert pytest.ExitCode.OK == result.ret
    result.stdout.fnmatch_lines(["  DRAIN-ORDER: not applicable (the feature space checked excludes its precondition)"])
    assert "not applicable" == rule_entry(read_report(nodrain.path / "r.json"), "DRAIN-ORDER")["verdict"]


def test_fail_on_leaves_other_severities_reported(spekvm_pytester: pytest.Pytester) -> None:
    """--spekvm-fail-on=correctness: LEAN failures are reported (failed tests, the report) with exit status 0;
    by default they fail the run."""
    by_default = spekvm_pytester.runpytest(f"--spekvm-target={DRAIN_ON_VHE}", *LEAN_CELLS)
    result = spekvm_pytester.runpytest(f"--spekvm-target={DRAIN_ON_VHE}", "--spekvm-fail-on=correctness", "--spekvm-report=r.json", *LEAN_CELLS)
    result.assert_outcomes(failed=10, passed=12)
    result.stdout.fnmatch_lines(["reported, not failing the run (--spekvm-fail-on): failures of LEAN"])
    assert (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.OK, "failed") == (
        by_default.ret, result.ret, rule_entry(read_report(spekvm_pytester.path / "r.json"), "LEAN")["verdict"],
    )


def test_fail_on_keeps_failing_on_the_chosen_severity(nodrain: pytest.Pytester) -> None:
    """--spekvm-fail-on=lean,correctness (any case, any spacing) still fails on a correctness failure."""
    result = nodrain.runpytest("--spekvm-target=nodrain.py", "--spekvm-fail-on=LEAN, correctness", *DRAIN_CELLS)
    assert pytest.ExitCode.TESTS_FAILED == result.ret


def test_coverage_gate(nodrain: pytest.Pytester) -> None:
    """The summary gives the share of reachable (rule, precondition) pairs exercised and the ones missed;
    below --spekvm-min-coverage the run fails."""
    nodrain.makeconftest(DRAINS_RULE)
    args = ("--spekvm-target=nodrain.py", "--spekvm-never-exercised=warn", "-k", "test_project_rule and not sequences and pmuv3p1 or test_res0 and pmuv3p1")
    lenient = nodrain.runpytest(*args, "--spekvm-report=r.json")
    strict = nodrain.runpytest(*args, "--spekvm-min-coverage=90")
    lenient.stdout.fnmatch_lines([
        "(rule, precondition) pairs exercised: 22 of 27 reachable (81.5%)",
        "  DRAINS: not exercised on nvhe-spe1, nvhe-spe2, nvhe-spe3, nvhe-spe4, nvhe-spe5",
    ])
    strict.stdout.fnmatch_lines(["spekvm FAILED: 81.5% of reachable (rule, precondition) pairs exercised; minimum 90%"])
    pairs = read_report(nodrain.path / "r.json")["coverage"]["pairs"]
    assert (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, 27, 22) == (
        lenient.ret, strict.ret, len(pairs), sum(p["exercised"] for p in pairs),
    )


@pytest.mark.parametrize(
    ("option", "shown"),
    [
        ("--spekvm-fail-on=fatal", "*--spekvm-fail-on (from --spekvm-fail-on) is 'fatal': fatal is not a rule severity (give 'all' or a comma-separated list of "
         + ", ".join(s.value for s in Severity) + ")*"),
        ("--spekvm-never-exercised=maybe", "*--spekvm-never-exercised (from --spekvm-never-exercised) is 'maybe', not 'fail' or 'warn'*"),
        ("--spekvm-min-coverage=101", "*--spekvm-min-coverage (from --spekvm-min-coverage) is '101', not a percentage from 0 to 100*"),
    ],
)
def test_gate_option_misuse(spekvm_pytester: pytest.Pytester, option: str, shown: str) -> None:
    """A bad gate option is a usage error naming the value and the accepted forms."""
    result = spekvm_pytester.runpytest("--spekvm-target=reference", option)
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines([shown])


def test_env_twin_of_ledger_strict_is_checked(spekvm_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEKVM_LEDGER_STRICT must be yes or no."""
    monkeypatch.setenv("SPEKVM_LEDGER_STRICT", "perhaps")
    result = spekvm_pytester.runpytest("--spekvm-target=reference")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines(["*--spekvm-ledger-strict (from SPEKVM_LEDGER_STRICT) is 'perhaps', not yes or no*"])


@pytest.mark.parametrize(
    ("option", "shown"),
    [
        ("--spekvm-report=.", "*--spekvm-report (from --spekvm-report) is '.', a folder, not a file path (give a file path, e.g. --spekvm-report=spekvm-report.json)"),
        ("--spekvm-report=taken/r.json", "*--spekvm-report (from --spekvm-report) is 'taken/r.json', whose folder cannot be made because taken is not a folder"
         " (give a file path whose folder exists or can be made, e.g. --spekvm-report=spekvm-report.json)"),
    ],
)
def test_report_path_misuse(spekvm_pytester: pytest.Pytester, option: str, shown: str) -> None:
    """A report path that is a folder, or whose folder is a file, is a usage error before any test, naming the path and what is expected."""
    spekvm_pytester.path.joinpath("taken").write_text("a file\n")
    result = spekvm_pytester.runpytest("--spekvm-target=reference", option)
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines([shown])


# A conftest that makes a folder where the run will write a file, after the options were checked.
FOLDER_AT = """
import os


def pytest_sessionstart(session):
    os.mkdir({path!r})
"""


def test_unwritable_report_fails_the_run_and_keeps_the_rest(spekvm_pytester: pytest.Pytester) -> None:
    """A report that cannot be written at the end of the run fails it with a line saying why, and the verdict
    table, the summary and the ledger are still written."""
    spekvm_pytester.makeconftest(FOLDER_AT.format(path="r.json"))
    result = spekvm_pytester.runpytest("--spekvm-target=reference", "--spekvm-report=r.json", "--spekvm-ledger-write=l.toml", *RES0_CELLS)
    result.assert_outcomes(passed=22)
    result.stdout.fnmatch_lines([
        "*spekvm verdicts for reference*",
        "RES0 * passed (22 checks, 22 exercised it)*",
        "spekvm FAILED: --spekvm-report: Cannot write the JSON report to r.json because Is a directory",
        "*= 22 passed*",
    ])
    assert_no_traceback(result)
    assert (pytest.ExitCode.TESTS_FAILED, True) == (result.ret, spekvm_pytester.path.joinpath("l.toml").is_file())
