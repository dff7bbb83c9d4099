"""The plugin black-box beside other projects and plugins: an unrelated project keeps its own tests,
nothing leaks into a run without a target, and pytest's, hypothesis', pytest-rerunfailures' and
pytest-xdist's options work on the suites as they do on any test."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from test_plugin_run import DRAIN_CELLS, NODRAIN, NODRAIN_TARGET

from pytest_spekvm.failure_report import SpekvmFailure
from pytest_spekvm.failures import failure_text
from pytest_spekvm.options import TARGET_OPTION
from pytest_spekvm.space import FULL_SPACE, cell_id
from pytest_spekvm.xdist_cells import cell_scope, pytest_xdist_make_scheduler

PROJECT_TESTS = "def test_one():\n    pass\n\ndef test_two():\n    pass\n\ndef test_three():\n    pass\n"
ONE_CELL = ("-k", "test_res0 and not sequences and nvhe-spe1-pmuv3p1")
FAILING_CELL = ("-k", "test_drain_order and not sequences and nvhe-spe1-pmuv3p1")
# A plugin that rewrites the reason of every skip: what a skip means must not be read from its text.
SCRAMBLE_SKIPS = """
import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except pytest.skip.Exception as exc:
        exc.msg, exc.args = "scrambled", ("scrambled",)
        raise
"""
STEPS = re.compile(r"^scenario steps: ([\d,]+) in", re.MULTILINE)


def steps(result: pytest.RunResult) -> int:
    """The scenario steps the verdict summary reports."""
    found = STEPS.search(result.stdout.str())
    assert found is not None, result.stdout.str()
    return int(found[1].replace(",", ""))


def verdict(result: pytest.RunResult, rule: str) -> str:
    """The verdict column of `rule`'s row in the verdict table: 'FAILED (5 of 22 checks)'."""
    row = next(line for line in result.stdout.lines if line.startswith(f"{rule} "))
    return re.split(r"\s{2,}", row)[2]


def failure_section(result: pytest.RunResult) -> list[str]:
    """The lines between the FAILURES header and the next section's header."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"=+ FAILURES =+", line))
    end = next(i for i, line in enumerate(lines) if i > start and re.fullmatch(r"=+ .* =+", line))
    return lines[start + 1:end]


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    """The outcome counts of the summary line, without the deselected ones."""
    return {k: v for k, v in result.parseoutcomes().items() if k != "deselected"}


def collected(result: pytest.RunResult) -> list[str]:
    """The node ids a `--co -q` run listed."""
    return [line for line in result.stdout.lines if "::" in line]


@pytest.fixture
def undrained(spekvm_pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester with nodrain.py, a switch that never drains the host's buffer, in its folder."""
    spekvm_pytester.makepyfile(nodrain=NODRAIN)
    return spekvm_pytester


# ------------------------------------------------------------------ other projects


@pytest.mark.parametrize("ini", ["", "[pytest]\ntestpaths = tests\n"], ids=["rootdir", "testpaths"])
def test_exported_target_adds_the_suites_to_a_project(
    spekvm_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ini: str
) -> None:
    """With SPEKVM_TARGET exported, `pytest` in a project still collects the project's own tests (from
    its testpaths or the current folder), and the suites besides them."""
    if ini:
        spekvm_pytester.makeini(ini)
    spekvm_pytester.mkdir("tests")
    (spekvm_pytester.path / "tests" / "test_project.py").write_text(PROJECT_TESTS)
    monkeypatch.setenv("SPEKVM_TARGET", "reference")
    ids = collected(spekvm_pytester.runpytest("--co", "-q", "-k", "test_ or test_res0", "-p", "no:randomly"))
    own = [i for i in ids if "test_project.py::" in i]
    assert ["tests/test_project.py::test_one", "tests/test_project.py::test_two", "tests/test_project.py::test_three"] == own
    assert 233 == sum(1 for i in ids if i.startswith("test_res0.py::"))


def test_paths_given_are_what_runs(spekvm_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a target and paths on the command line, pytest runs those paths, and the suites only if a path names them."""
    spekvm_pytester.makepyfile(test_project=PROJECT_TESTS)
    monkeypatch.setenv("SPEKVM_TARGET", "reference")
    result = spekvm_pytester.runpytest("test_project.py", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_no_thorough_profile_without_a_target(spekvm_pytester: pytest.Pytester) -> None:
    """Without a target the plugin registers no hypothesis profile: a project asking for it gets hypothesis' error."""
    spekvm_pytester.makepyfile(test_project=PROJECT_TESTS)
    # In a process of its own: hypothesis' profiles are process-wide, and this one has runs with a target.
    result = spekvm_pytester.runpytest_subprocess("--hypothesis-profile=spekvm-thorough")
    assert 0 != result.ret
    assert "spekvm-thorough" in result.stdout.str() + result.stderr.str()
    assert "not registered" in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("marker", ["lean", "spekvm_lean"])
def test_no_lean_marker_without_a_target(spekvm_pytester: pytest.Pytester, marker: str) -> None:
    """Without a target the plugin declares no `lean` or `spekvm_lean` marker: --strict-markers still rejects them."""
    spekvm_pytester.makepyfile(test_project=f"import pytest\n\n@pytest.mark.{marker}\ndef test_one():\n    pass\n")
    # In a process of its own: an in-process run's markers stay in pytest's default list for the next.
    result = spekvm_pytester.runpytest_subprocess("--strict-markers")
    assert pytest.ExitCode.INTERRUPTED == result.ret
    result.stdout.fnmatch_lines([f"*'{marker}' not found in `markers` configuration option*"])


def test_spekvm_markers_are_declared_without_a_target(spekvm_pytester: pytest.Pytester) -> None:
    """Without a target, --strict-markers accepts a project's test marked `spekvm_rule` and a `-m "not spekvm"` selection."""
    spekvm_pytester.makepyfile(
        test_project='import pytest\n\n@pytest.mark.spekvm_rule("DRAIN-ORDER")\ndef test_one(spekvm_rule):\n    assert "DRAIN-ORDER" == spekvm_rule\n'
    )
    # In a process of its own, as above.
    result = spekvm_pytester.runpytest_subprocess("--strict-markers", "-m", "not spekvm", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_readme_names_the_markers_declared_without_a_target(spekvm_pytester: pytest.Pytester) -> None:
    """The README's 'Without a target' paragraph names exactly the plugin's markers `pytest --markers` lists without a target."""
    result = spekvm_pytester.runpytest_subprocess("--markers", "-p", "no:cacheprovider")
    declared = set(re.findall(r"^@pytest\.mark\.(spekvm\w*)", result.stdout.str(), re.MULTILINE))
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    paragraph = readme[readme.index("**Without a target**"):].split("\n\n")[0]
    assert declared == set(re.findall(r"`(spekvm\w*)`", paragraph))


def test_no_model_or_hypothesis_import_without_a_target(spekvm_pytester: pytest.Pytester) -> None:
    """Without a target, a pytest run imports the plugin's light modules only (and the model's package with its
    lazy-import helper, which import nothing of the model): not the model, the rules, nor hypothesis."""
    spekvm_pytester.makepyfile(
        test_project="""
import sys

def test_imports():
    heavy = sorted(m for m in sys.modules if m.partition(".")[0] == "hypothesis")
    ours = sorted(m for m in sys.modules if m.startswith("pytest_spekvm"))
    print("HEAVY", heavy)
    print("OURS", ours)
"""
    )
    result = spekvm_pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    printed = {m[1]: m[2] for m in (re.search(r"(HEAVY|OURS) \[(.*)", line) for line in result.stdout.lines) if m}
    assert {
        "HEAVY": "]",
        "OURS": (
            "'pytest_spekvm', 'pytest_spekvm.budget', 'pytest_spekvm.collection', 'pytest_spekvm.failures', 'pytest_spekvm.header', "
            "'pytest_spekvm.hookspecs', 'pytest_spekvm.options', 'pytest_spekvm.plugin', 'pytest_spekvm.reference', 'pytest_spekvm.reference.lazy', "
            "'pytest_spekvm.timeouts', 'pytest_spekvm.verdict_table', "
            "'pytest_spekvm.xdist_cells']"
        ),
    } == printed


# ------------------------------------------------------------------ pytest's --tb


def test_tb_long_shows_the_whole_report(undrained: pytest.Pytester) -> None:
    """--tb=long (like the default) shows the rule, the steps, the timeline and the replay line."""
    result = undrained.runpytest(NODRAIN_TARGET, *FAILING_CELL, "--tb=long")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["RULE DRAIN-ORDER violated on features: nVHE*", "steps:", "timeline around event #*", "replay: *"])


def test_tb_short_leaves_out_steps_and_timeline(undrained: pytest.Pytester) -> None:
    """--tb=short shows the rule, the violations and the replay line, without the steps and the timeline."""
    result = undrained.runpytest(NODRAIN_TARGET, *FAILING_CELL, "--tb=short")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["RULE DRAIN-ORDER violated on features: nVHE*", "  at #*", "replay: *"])
    assert "timeline around event" not in result.stdout.str()
    assert "steps:" not in result.stdout.lines


def test_tb_line_gives_one_line_per_failure(undrained: pytest.Pytester) -> None:
    """--tb=line gives one line per failure: the suite file, the test's line and the rule's headline."""
    result = undrained.runpytest(NODRAIN_TARGET, *DRAIN_CELLS, "--tb=line", "-rN")
    result.assert_outcomes(failed=5, passed=17)
    section = failure_section(result)
    assert 5 == len(section)
    assert all(re.fullmatch(r".*test_ordering\.py:\d+: RULE DRAIN-ORDER violated on features: nVHE, .*", line) for line in section)


def test_tb_line_under_xdist(undrained: pytest.Pytester) -> None:
    """The shaped report travels from xdist workers: --tb=line still gives one line per failure."""
    result = undrained.runpytest(NODRAIN_TARGET, *DRAIN_CELLS, "--tb=line", "-rN", "-n", "2")
    result.assert_outcomes(failed=5, passed=17)
    section = failure_section(result)
    assert 5 == len([line for line in section if "RULE DRAIN-ORDER violated on features: nVHE, " in line])
    assert "timeline around event" not in result.stdout.str()


def test_tb_no_shows_no_report(undrained: pytest.Pytester) -> None:
    """--tb=no prints no failure section; the short summary still names the rule."""
    result = undrained.runpytest(NODRAIN_TARGET, *FAILING_CELL, "--tb=no", "-rf")
    result.assert_outcomes(failed=1)
    assert "= FAILURES =" not in result.stdout.str()
    assert "timeline around event" not in result.stdout.str()
    result.stdout.fnmatch_lines(["FAILED test_ordering.py::test_drain_order[[]nvhe-spe1-pmuv3p1[]] - RULE DRAIN-ORD*"])


# ------------------------------------------------------------------ hypothesis' options

BUDGET_PROBE = """
from hypothesis import Phase

def test_budget(spekvm):
    chosen = spekvm.hypothesis_settings()
    print(f"BUDGET {chosen.max_examples} {chosen.stateful_step_count} {chosen.verbosity.name} {Phase.explain in chosen.phases} shrink={Phase.shrink in chosen.phases}")
"""


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ((), "BUDGET 40 12 normal False shrink=True"),
        (("--hypothesis-verbosity=verbose",), "BUDGET 40 12 verbose False shrink=True"),
        (("--hypothesis-verbosity=quiet",), "BUDGET 40 12 quiet False shrink=True"),
        (("--hypothesis-explain",), "BUDGET 40 12 normal True shrink=True"),
        (("--hypothesis-profile=spekvm-thorough",), "BUDGET 400 40 normal False shrink=True"),
        (("--hypothesis-profile=spekvm-thorough", "--hypothesis-verbosity=verbose"), "BUDGET 400 40 verbose False shrink=True"),
        (("--hypothesis-profile=ci",), "BUDGET 100 50 normal False shrink=True"),
        (("--hypothesis-profile=ci", "--hypothesis-explain"), "BUDGET 100 50 normal True shrink=True"),
        (("--spekvm-no-shrink",), "BUDGET 40 12 normal False shrink=False"),
        (("--hypothesis-profile=spekvm-thorough", "-o", "spekvm_no_shrink=yes"), "BUDGET 400 40 normal False shrink=False"),
    ],
    ids=["default", "verbose", "quiet", "explain", "thorough", "thorough-verbose", "ci", "ci-explain", "no-shrink", "no-shrink-ini"],
)
def test_budget_follows_profiles_not_verbosity(spekvm_pytester: pytest.Pytester, options: tuple[str, ...], expected: str) -> None:
    """The fast default holds until the user chooses a profile; --hypothesis-verbosity changes only the
    verbosity, only --hypothesis-explain adds the explain phase, and --spekvm-no-shrink (or its ini twin) takes
    the shrink phase out, whatever the profile."""
    spekvm_pytester.makepyfile(test_budget=BUDGET_PROBE)
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", "test_budget.py", "-s", *options)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*{expected}"])


NATIVE_TOML = """
[tool.pytest]
spekvm_target = "reference"
spekvm_no_shrink = true
spekvm_timeout = 7
spekvm_min_coverage = 0.0
"""


@pytest.mark.skipif(pytest.version_tuple < (9, 2), reason="pytest's native TOML table takes typed plugin options from 9.2")
def test_native_toml_table_takes_toml_bools_and_numbers(spekvm_pytester: pytest.Pytester) -> None:
    """In pytest's native [tool.pytest] table a switch may be a TOML bool and a number a TOML number, as the table's users write them."""
    spekvm_pytester.makefile(".toml", pyproject=NATIVE_TOML)
    spekvm_pytester.makepyfile(test_budget=BUDGET_PROBE + "    print(f'TIMEOUT {spekvm.timeout:g}')\n")
    result = spekvm_pytester.runpytest("test_budget.py", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*BUDGET 40 12 normal False shrink=False", "TIMEOUT 7"])


def test_statistics_of_the_sequences(spekvm_pytester: pytest.Pytester) -> None:
    """--hypothesis-show-statistics lists each sequences test with hypothesis' statistics of its run."""
    result = spekvm_pytester.runpytest(
        f"{TARGET_OPTION}=reference", "-k", "test_res0_sequences", "--hypothesis-show-statistics", "--hypothesis-seed=0"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*= Hypothesis Statistics =*",
        "test_res0.py::test_res0_sequences:",
        "  - during generate phase*",
        "    - 40 passing*",  # "40 passing, 0 failing, and 3 invalid test cases" (older: "40 passing examples, ...")
        "  - Stopped because settings.max_examples=40",
    ])
    after = result.stdout.str().split("Hypothesis Statistics", 1)[1].splitlines()[1:]
    # The statistics section ends where the next section of the terminal summary begins.
    section = list(itertools.takewhile(lambda line: not line.startswith(("=", "---")), after))
    assert max(len(line) for line in section) < 200


# ------------------------------------------------------------------ pytest-rerunfailures

FLAKY = """
from pytest_spekvm.reference.switch import ReferenceSwitch

failed = []


class Flaky(ReferenceSwitch):
    '''The reference switch, but its first run on a CPU with PMUv3p1 raises.'''

    name = "flaky"

    def vcpu_run(self, cpu, vcpu):
        if cpu.features.pmu.name == "V3P1" and not failed:
            failed.append(cpu.features)
            raise RuntimeError("transient")
        return super().vcpu_run(cpu, vcpu)


spekvm_adapter = Flaky
"""


def test_reruns_do_not_count_twice(undrained: pytest.Pytester) -> None:
    """Under pytest-rerunfailures the verdict table counts each check once, with its last outcome."""
    result = undrained.runpytest(NODRAIN_TARGET, *DRAIN_CELLS, "--reruns=1", "-p", "no:cacheprovider")
    assert {"failed": 5, "passed": 17, "rerun": 5} == outcomes(result)
    assert "FAILED (5 of 22 checks)" == verdict(result, "DRAIN-ORDER")


def test_transient_adapter_failure_passes_on_rerun(spekvm_pytester: pytest.Pytester) -> None:
    """A cell whose adapter failed once is run again when its test is rerun, and can pass."""
    spekvm_pytester.makepyfile(flaky=FLAKY)
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=flaky.py", *ONE_CELL, "--reruns=1", "-p", "no:cacheprovider")
    assert {"passed": 1, "rerun": 1} == outcomes(result)
    assert "passed (1 checks, 1 exercised it)" == verdict(result, "RES0")


def test_adapter_failure_is_shared_by_a_cells_checks(spekvm_pytester: pytest.Pytester) -> None:
    """Without a rerun, the checks of a cell whose scenario failed share that failure instead of running it
    again: the first reports it, the others are skipped as not judged."""
    spekvm_pytester.makepyfile(flaky=FLAKY)
    result = spekvm_pytester.runpytest(
        f"{TARGET_OPTION}=flaky.py", "-k", "(test_res0 or test_undef) and not sequences and nvhe-spe1-pmuv3p1",
        "-p", "no:cacheprovider", "-rs",
    )
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*not judged (adapter failed): CONTRACT 'vcpu_run() returns normally' broken on *"])
    assert 0 == steps(result)


def test_not_judged_is_known_by_its_type(spekvm_pytester: pytest.Pytester) -> None:
    """A check skipped because the adapter broke its cell counts as not judged in the report whatever its reason says."""
    spekvm_pytester.makepyfile(flaky=FLAKY, scramble_skips=SCRAMBLE_SKIPS)
    spekvm_pytester.syspathinsert()
    result = spekvm_pytester.runpytest(
        f"{TARGET_OPTION}=flaky.py", "-k", "(test_res0 or test_undef) and not sequences and nvhe-spe1-pmuv3p1",
        "-p", "no:cacheprovider", "-p", "scramble_skips", "--spekvm-report=r.json", "-rs",
    )
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*scrambled"])
    report = json.loads((spekvm_pytester.path / "r.json").read_text())
    cell = next(c for c in report["cells"] if c["id"] == "nvhe-spe1-pmuv3p1")
    assert ("not judged", "not judged") == (cell["verdicts"]["RES0"], cell["verdicts"]["UNDEF"])


# ------------------------------------------------------------------ pytest-xdist


@pytest.mark.parametrize(
    ("nodeid", "scope"),
    [
        ("test_res0.py::test_res0[nvhe-spe1-pmuv3p1]", "spekvm cell nvhe-spe1-pmuv3p1"),
        ("../x/suites/test_lean.py::test_lean[vhe-spe2-el3-pmunone-flags3]", "spekvm cell vhe-spe2-el3-pmunone-flags3"),
        ("test_project_rules.py::test_project_rule[MY-RULE-nvhe-spe0-pmuv3]", "spekvm cell nvhe-spe0-pmuv3"),
        ("test_res0.py::test_res0_sequences", "test_res0.py::test_res0_sequences"),
        ("tests/test_mine.py::test_x[1-2]", "tests/test_mine.py::test_x[1-2]"),
    ],
)
def test_cell_scope(nodeid: str, scope: str) -> None:
    """A test parametrised over a cell is scheduled with that cell's other tests; any other test alone."""
    assert scope == cell_scope(nodeid)


def test_cell_scope_knows_every_cell_of_the_space() -> None:
    """Every cell id of the full feature space (ExS, all-flags and no-EL3 cells included) is read back by the scheduler."""
    ids = [cell_id(cell) for cell in FULL_SPACE.cells()]
    assert [f"spekvm cell {i}" for i in ids] == [cell_scope(f"test_res0.py::test_res0[{i}]") for i in ids]


@pytest.mark.no_cover
def test_xdist_runs_each_cell_once(spekvm_pytester: pytest.Pytester) -> None:
    """Under -n 2 the scripted cells run no more scenario steps than in a serial run."""
    selection = ("-k", "pmuv3p1 and not sequences", "-p", "no:cacheprovider")
    serial = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", *selection, "-n", "0")
    parallel = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", *selection, "-n", "2")
    serial.assert_outcomes(passed=198)
    parallel.assert_outcomes(passed=198)
    assert steps(serial) == steps(parallel)


def test_other_distributions_are_left_to_xdist(spekvm_pytester: pytest.Pytester) -> None:
    """Without a target, or with a distribution other than xdist's default, the plugin makes no scheduler."""
    without_target = spekvm_pytester.parseconfigure("-p", "no:cacheprovider")
    assert None is pytest_xdist_make_scheduler(without_target, None)
    loadfile = spekvm_pytester.parseconfigure(f"{TARGET_OPTION}=reference", "-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider")
    assert None is pytest_xdist_make_scheduler(loadfile, None)


def test_a_group_of_failures_reads_as_their_reports() -> None:
    """When hypothesis finds several distinct failures, the report lists each, in the chosen --tb style."""
    first, second = SpekvmFailure("RULE A violated\nsteps:\n  1. x\nreplay: a"), SpekvmFailure("RULE B violated\nreplay: b")
    second.add_note("Falsifying example: y")
    group = ExceptionGroup("two", [first, second])
    assert "RULE A violated\nreplay: a\n\nRULE B violated\nreplay: b" == failure_text(group, "short", "t")
    assert "RULE A violated\nsteps:\n  1. x\nreplay: a\n\nRULE B violated\nreplay: b\nFalsifying example: y" == failure_text(group, "long", "t")
    assert None is failure_text(ExceptionGroup("mixed", [first, ValueError("no")]), "long", "t")
