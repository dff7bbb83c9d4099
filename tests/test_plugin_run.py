"""The plugin black-box: a run against a target: report header, verdict table, selection (-k, -m,
--lf, -x, node ids), xdist, the failure text (the README's example of a failure) and replaying it, and adapters
that raise, hang or return garbage on some CPUs only."""

from __future__ import annotations

import shlex
import shutil
from types import SimpleNamespace

import attrs
import pytest
from mutant_catalogue import source
from plugin_harness import assert_no_traceback

from pytest_spekvm.collection import SUITES_DIR, pytest_collection_finish
from pytest_spekvm.options import TARGET_OPTION
from pytest_spekvm.plugin import SESSION_KEY
from pytest_spekvm.session import SpekvmSession
from pytest_spekvm.target import load
from pytest_spekvm.verdict_table import pytest_sessionfinish, pytest_testnodedown

NODRAIN = source("no_spe_save")  # the mutant without the nVHE save: the host's buffer is never drained

VHE_ONLY = """
from pytest_spekvm import FeatureSpace
from pytest_spekvm.reference.switch import ReferenceSwitch


class VheOnly(ReferenceSwitch):
    name = "vhe-only"
    feature_space = FeatureSpace(vhe={True})


spekvm_adapter = VheOnly
"""

# DRAIN-ORDER on the 22 cells with PMUv3p1: VHE or not, each SPE level, PMBIDR_EL1.P 0 or 1. NoDrain
# breaks the five with a live host buffer (nVHE, SPE, P=0).
DRAIN_CELLS = ("-k", "test_drain_order and not sequences and pmuv3p1")
NODRAIN_TARGET = f"{TARGET_OPTION}=nodrain.py"


@pytest.fixture
def nodrain(spekvm_pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester with nodrain.py, a switch that never drains the host's buffer, in its folder."""
    spekvm_pytester.makepyfile(nodrain=NODRAIN)
    return spekvm_pytester


# ------------------------------------------------------------------ header and verdicts


@pytest.mark.parametrize(
    ("profile", "shown"),
    [
        ("default", "spekvm hypothesis profile: default (suites use their fast default; choose with --hypothesis-profile)"),
        ("spekvm-thorough", "spekvm hypothesis profile: spekvm-thorough"),
    ],
)
def test_report_header(spekvm_pytester: pytest.Pytester, profile: str, shown: str) -> None:
    """The header names the target and its origin, the feature space with its cell count, and the hypothesis profile."""
    result = spekvm_pytester.runpytest(
        f"{TARGET_OPTION}=reference", f"--hypothesis-profile={profile}", "-k", "test_res0 and nvhe-spe1-pmuv3p1"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "spekvm target: reference (reference) from pytest_spekvm.reference.switch (built in)",
        "spekvm feature space: {nVHE,VHE} x PMSVer {0,1,2,3,4,5} x PMBIDR.P {0,1} x PMU {NONE,V3,V3P1,V3P4,V3P5,V3P7,V3P8,V3P9}"
        " x EL3 {0,1} x flags {debugv8p9,ebep,ecv,exs,fgt,mtpmu,pmuv3_ss,spe_ernd,spe_fds,spmu,step2,trbe,trf} (232 cells)",
        "spekvm implementation choices: sctlr_el2_eis=False, sctlr_el2_eos=False, boot_writes_pmscr_el2=True",
        "spekvm adversaries: scripted cells under worst-case, holding, split; generated sequences draw every timing choice",
        shown,
    ])


def test_verdict_table_counts_failures(nodrain: pytest.Pytester) -> None:
    """A rule some cells break is FAILED with its count; rules no selected test checked are 'not run'."""
    result = nodrain.runpytest(NODRAIN_TARGET, *DRAIN_CELLS)
    result.assert_outcomes(failed=5, passed=17)
    result.stdout.fnmatch_lines([
        "=* spekvm verdicts for nodrain =*",
        "RES0 * correctness  not run *",
        "DRAIN-ORDER * correctness  FAILED (5 of 22 checks) * A CSE, PSB CSYNC and a full DSB*",
        "LEAN * lean  * not run *",
        "feature combinations exercised: 22; EL3 {True}; FEAT_ExS {False}; PMBIDR_EL1.P {0, 1}; PMSVer {0, 1, 2, 3, 4, 5};"
        " PMU {V3P1}; VHE {False, True}",
    ])


def test_verdict_table_not_applicable(spekvm_pytester: pytest.Pytester) -> None:
    """A rule whose precondition the declared space excludes (DRAIN-ORDER on a VHE-only target) is not
    applicable in the table, as in the gates: neither passed nor NEVER EXERCISED."""
    spekvm_pytester.makepyfile(vhe_only=VHE_ONLY)
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=vhe_only.py", *DRAIN_CELLS)
    result.assert_outcomes(passed=11)
    result.stdout.fnmatch_lines([
        "spekvm feature space: {VHE} x *(116 cells)",
        "DRAIN-ORDER * correctness  not applicable (11 checks; unreachable in this space) *",
        "  DRAIN-ORDER: not applicable (the feature space checked excludes its precondition)",
    ])
    result.stdout.no_fnmatch_line("DRAIN-ORDER * passed *")
    result.stdout.no_fnmatch_line("*NEVER EXERCISED*")


# --------------------------------------------------------------------------- selection


def collected(result: pytest.RunResult) -> list[str]:
    """The node ids a --co -q run listed."""
    return [line for line in result.stdout.lines if "::" in line]


@pytest.mark.parametrize(
    ("keyword", "prefix"),
    [
        ("DRAIN-ORDER", "test_ordering.py::test_drain_order"),
        ("drain_order", "test_ordering.py::test_drain_order"),
        ("TRAP-COND", "test_traps.py::test_trap_cond"),
        ("LEAN", "test_lean.py::test_lean"),
    ],
)
def test_k_selects_one_rule(spekvm_pytester: pytest.Pytester, keyword: str, prefix: str) -> None:
    """-k with a rule id (or a test name) selects that rule's cells and its sequences, nothing else."""
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", "--co", "-q", "-k", keyword)
    ids = collected(result)
    assert 233 == len(ids)
    assert [] == [i for i in ids if not i.startswith(prefix)]
    assert f"{prefix}_sequences" in ids


@pytest.mark.parametrize(("expression", "count", "lean"), [("spekvm_lean", 233, True), ("not spekvm_lean", 1864, False)])
def test_m_lean(spekvm_pytester: pytest.Pytester, expression: str, count: int, lean: bool) -> None:
    """-m spekvm_lean selects exactly the LEAN checks, -m "not spekvm_lean" the correctness ones."""
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", "--co", "-q", "-m", expression)
    ids = collected(result)
    assert count == len(ids)
    assert {lean} == {i.startswith("test_lean.py::") for i in ids}


def test_lf_reruns_only_the_failed_cells(nodrain: pytest.Pytester) -> None:
    """--lf runs again exactly the cells that failed, by their node ids."""
    nodrain.runpytest(NODRAIN_TARGET, *DRAIN_CELLS).assert_outcomes(failed=5, passed=17)
    result = nodrain.runpytest(NODRAIN_TARGET, "--lf")
    result.assert_outcomes(failed=5, deselected=2092)
    result.stdout.fnmatch_lines(["run-last-failure: rerun previous 5 failures"])


def test_x_stops_at_the_first_failure(nodrain: pytest.Pytester) -> None:
    """-x stops the run at the first failing cell."""
    result = nodrain.runpytest(NODRAIN_TARGET, "-x", *DRAIN_CELLS)
    assert 1 == result.parseoutcomes()["failed"]
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])


@pytest.mark.no_cover
def test_xdist_merges_the_verdicts(nodrain: pytest.Pytester) -> None:
    """Under xdist (-n 2) the workers' verdicts reach the controller's table, merged."""
    result = nodrain.runpytest(NODRAIN_TARGET, "-n", "2", "-p", "no:benchmark", *DRAIN_CELLS)
    result.assert_outcomes(failed=5, passed=17)
    result.stdout.fnmatch_lines([
        "2 workers [[]22 items[]]",
        "DRAIN-ORDER * correctness  FAILED (5 of 22 checks) *",
        "feature combinations exercised: 22; *",
    ])


# ------------------------------------------------------------------- failure text, replay


def replay_args(result: pytest.RunResult) -> list[str]:
    """The arguments of the failure's 'replay: pytest ...' line, without 'pytest' and the comment."""
    line = next(line for line in result.stdout.lines if line.startswith("replay: pytest "))
    command = shlex.split(line.removeprefix("replay: ").split("   (")[0])
    assert "pytest" == command[0]
    return command[1:]


def test_failure_text_and_replay(nodrain: pytest.Pytester) -> None:
    """A cell's failure names the rule and features, lists the steps, shows the timeline around the first bad
    event and a replay command that, run as printed, fails the same way."""
    result = nodrain.runpytest(NODRAIN_TARGET, "-k", "test_drain_order and nvhe-spe1-pmunone")
    result.assert_outcomes(failed=1)
    expected = [
        "RULE DRAIN-ORDER violated on features: nVHE, FEAT_SPE (PMSVer=1), no PMUv3",
        "  under the worst-case adversary *",
        "  A CSE, PSB CSYNC and a full DSB before the live buffer's translation changes; guest profiling off",
        "  at #*: no PSB CSYNC after the exception entry at #*, before the msr HCR_EL2 <- * while the host's buffer was live*",
        "  why: *",
        "steps:",
        "  1. run vcpu 0: guest runs code (1 samples)",
        "  2. host enables profiling (buffer, then PMSCR E0SPE|E1SPE)",
        "timeline around event #* (>>):",
        ">> * hyp    EL2 msr HCR_EL2 <- *",
        "replay: pytest --spekvm-target=nodrain.py 'test_ordering.py::test_drain_order[[]nvhe-spe1-pmunone[]]'   (scripted, deterministic)",
    ]
    result.stdout.fnmatch_lines(expected)
    assert_no_traceback(result)
    again = nodrain.runpytest(*replay_args(result))
    again.assert_outcomes(failed=1, deselected=2096)
    again.stdout.fnmatch_lines(expected)


def test_node_ids_select_within_the_suites(nodrain: pytest.Pytester) -> None:
    """Node ids of suite tests given as arguments select those tests, alongside a test file of the project's own."""
    nodrain.makepyfile(test_mine="def test_own():\n    pass\n")
    result = nodrain.runpytest(
        NODRAIN_TARGET, "test_mine.py", "test_res0.py::test_res0[nvhe-spe1-pmunone]",
        "test_ordering.py::test_drain_order[nvhe-spe2-pmuv3]", "test_lean.py::test_lean",
    )
    result.assert_outcomes(passed=1 + 1 + 232, failed=1, deselected=2097 - 1 - 1 - 232)


REPLAY_ONLY = """
from hypothesis import Phase, settings

settings.register_profile("replay-only", phases=[Phase.explicit, Phase.reuse])
"""


def test_sequence_failure_replays_from_the_database(nodrain: pytest.Pytester) -> None:
    """A generated sequence's failure is saved in the example database: a run that only replays saved examples
    fails the same way; without the database, --spekvm-reproduce replays it (found and not shrunk: --spekvm-no-shrink)."""
    first = nodrain.runpytest(NODRAIN_TARGET, "--hypothesis-profile=default", "--spekvm-no-shrink", "-k", "test_drain_order_sequences")
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines([
        "RULE DRAIN-ORDER violated on features: nVHE, *",
        "steps:",
        "timeline around event #* (>>):",
        "replay: pytest --spekvm-target=nodrain.py test_ordering.py::test_drain_order_sequences   (hypothesis keeps *",
        "replay anywhere: add --spekvm-reproduce=* to the command above",
    ])
    features = next(line for line in first.stdout.lines if line.startswith("RULE DRAIN-ORDER violated"))
    reproduce = next(line for line in first.stdout.lines if line.startswith("replay anywhere: "))
    reproduce = reproduce.removeprefix("replay anywhere: add ").removesuffix(" to the command above")

    nodrain.makeconftest(REPLAY_ONLY)
    replayed = nodrain.runpytest(*replay_args(first), "--hypothesis-profile=replay-only")
    replayed.assert_outcomes(failed=1, deselected=2096)
    replayed.stdout.fnmatch_lines([features])

    shutil.rmtree(nodrain.path / ".hypothesis")
    anywhere = nodrain.runpytest(*replay_args(first), "--hypothesis-profile=replay-only", reproduce)
    anywhere.assert_outcomes(failed=1, deselected=2096)
    anywhere.stdout.fnmatch_lines([features])


OWN_TESTS = """
def test_own_check(spekvm, spekvm_cell, request):
    spekvm.check_cell("RES0", spekvm_cell, request.node.nodeid)


def test_plain_failure():
    assert 1 == 2
"""


def test_own_tests_use_the_fixtures(spekvm_pytester: pytest.Pytester) -> None:
    """Given a path, pytest runs only that: a project's own tests use the spekvm and spekvm_cell fixtures,
    and an ordinary failure keeps pytest's usual report."""
    spekvm_pytester.makepyfile(test_own=OWN_TESTS)
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", "test_own.py", "-k", "nvhe-spe1-pmuv3p1 or plain")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["E       assert 1 == 2", "RES0 * passed (1 checks, 1 exercised it) *"])


def test_suites_without_a_target_skip(spekvm_pytester: pytest.Pytester) -> None:
    """A suite file run without a target skips, saying how to give one, instead of failing."""
    result = spekvm_pytester.runpytest(str(SUITES_DIR / "test_lean.py"), "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED * no target given: run with --spekvm-target=reference (or your own adapter)"])


# ------------------------------------------------------------- xdist plumbing, directly


def test_worker_sends_and_controller_merges_verdicts() -> None:
    """A worker puts its verdicts in workeroutput; the controller adds them, and ignores a worker that sent none."""
    target = load("reference")
    worker = SpekvmSession(target=target, space=target.space, rules={})
    worker.verdicts.record("RES0", exercised=True, failed=False)
    worker_config = SimpleNamespace(stash={SESSION_KEY: worker}, workeroutput={})
    pytest_sessionfinish(SimpleNamespace(config=worker_config))  # type: ignore[arg-type]

    controller = SpekvmSession(target=target, space=target.space, rules={})
    controller_config = SimpleNamespace(stash={SESSION_KEY: controller})
    pytest_testnodedown(SimpleNamespace(workeroutput=worker_config.workeroutput, config=controller_config), None)
    pytest_testnodedown(SimpleNamespace(workeroutput={}, config=controller_config), "worker crashed")
    assert (1, 1, 0, 0, 0) == attrs.astuple(controller.verdicts.tallies["RES0"])


def test_worker_without_the_reproduced_test_sends_no_collection() -> None:
    """Under --spekvm-reproduce, a worker whose selection has no test of the value's rule empties its collection (the
    controller's cue for the usage error), and a worker whose selection has one keeps it whole."""
    target = load("reference")
    spekvm = SpekvmSession(target=target, space=target.space, rules={}, reproduce_rule="DRAIN-ORDER")
    config = SimpleNamespace(stash={SESSION_KEY: spekvm}, workerinput={}, pluginmanager=SimpleNamespace(has_plugin=lambda name: False))

    def checking(rule_id: str) -> SimpleNamespace:
        return SimpleNamespace(get_closest_marker=lambda name: SimpleNamespace(args=(rule_id,)))

    without = SimpleNamespace(config=config, items=[checking("RES0")])
    with_it = SimpleNamespace(config=config, items=[checking("RES0"), checking("DRAIN-ORDER")])
    pytest_collection_finish(without)  # type: ignore[arg-type]
    pytest_collection_finish(with_it)  # type: ignore[arg-type]
    assert (0, 2) == (len(without.items), len(with_it.items))
