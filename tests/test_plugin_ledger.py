"""The known-deviation ledger, black-box: expected failures with their reasons, fingerprints, stale
and expired entries, --spekvm-ledger-strict, writing a ledger, and generated sequences not shrunk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase
from plugin_harness import assert_no_traceback
from test_plugin_run import NODRAIN

from pytest_spekvm.plugin import SESSION_KEY
from pytest_spekvm.session import SpekvmSession
from pytest_spekvm.space import FULL_SPACE
from pytest_spekvm.target import load

DRAIN_CELLS = ("-k", "test_drain_order and not sequences and pmuv3p1")
RES0_CELLS = ("-k", "test_res0 and not sequences and pmuv3p1")
KNOWN_DRAIN = """
[[deviation]]
rule = "DRAIN-ORDER"
cells = ["nvhe-spe*-pmu*"]
reason = "the drain lands in the next release"
"""


@pytest.fixture
def nodrain(spekvm_pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester with nodrain.py, a switch that never drains the host's buffer, in its folder."""
    spekvm_pytester.makepyfile(nodrain=NODRAIN)
    return spekvm_pytester


def ledger_statuses(path: Path) -> list[str]:
    """The status of each ledger entry, from the report at `path`."""
    report: dict[str, Any] = json.loads(path.read_text())
    return [e["status"] for e in report["ledger"]["entries"]]


def test_listed_failures_are_expected_failures(nodrain: pytest.Pytester) -> None:
    """A failure the ledger lists is an xfail with the entry's reason; the run passes; the report marks it known."""
    nodrain.path.joinpath("known.toml").write_text(KNOWN_DRAIN)
    result = nodrain.runpytest("--spekvm-target=nodrain.py", "--spekvm-ledger=known.toml", "--spekvm-report=r.json", "-rx", *DRAIN_CELLS)
    result.assert_outcomes(xfailed=5, passed=17)
    result.stdout.fnmatch_lines([
        "DRAIN-ORDER * correctness  known deviation (5 of 22 checks, in the ledger) *",
        "known deviations (ledger): 5 expected failures of DRAIN-ORDER",
        "XFAIL test_ordering.py::test_drain_order[[]nvhe-spe1-pmuv3p1[]] - known deviation (known.toml entry 1"
        " (DRAIN-ORDER, cells nvhe-spe*-pmu*)): the drain lands in the next release",
    ])
    report = json.loads(nodrain.path.joinpath("r.json").read_text())
    drain = next(r for r in report["rules"] if r["id"] == "DRAIN-ORDER")
    assert (pytest.ExitCode.OK, "known deviation", 5, ["matched"], {"index": 1, "reason": "the drain lands in the next release"}) == (
        result.ret, drain["verdict"], drain["counts"]["known"], ledger_statuses(nodrain.path / "r.json"), report["failures"][0]["known"],
    )


def test_fingerprint_entry(nodrain: pytest.Pytester) -> None:
    """An entry naming a failure's fingerprint (from the report) covers that failure and no other."""
    nodrain.runpytest("--spekvm-target=nodrain.py", "--spekvm-report=r.json", *DRAIN_CELLS)
    failures = json.loads(nodrain.path.joinpath("r.json").read_text())["failures"]
    first = next(f for f in failures if f["where"] == "nvhe-spe1-pmuv3p1")
    nodrain.path.joinpath("known.toml").write_text(
        f'[[deviation]]\nrule = "DRAIN-ORDER"\nfingerprint = "{first["fingerprint"]}"\nreason = "known on PMSVer 1"\n'
    )
    result = nodrain.runpytest("--spekvm-target=nodrain.py", "--spekvm-ledger=known.toml", *DRAIN_CELLS)
    result.assert_outcomes(xfailed=1, failed=4, passed=17)


def test_stale_entry_reported_and_strict(spekvm_pytester: pytest.Pytester) -> None:
    """An entry whose checks all passed is stale: reported, and failing the run only under --spekvm-ledger-strict;
    an entry whose checks did not run is 'not checked', never stale."""
    spekvm_pytester.path.joinpath("old.toml").write_text(
        '[[deviation]]\nrule = "RES0"\ncells = ["nvhe-*"]\nreason = "fixed long ago"\n\n'
        '[[deviation]]\nrule = "LEAN"\ncells = ["*"]\nreason = "not checked here"\n'
    )
    lenient = spekvm_pytester.runpytest("--spekvm-target=reference", "--spekvm-ledger=old.toml", "--spekvm-report=r.json", *RES0_CELLS)
    strict = spekvm_pytester.runpytest("--spekvm-target=reference", "--spekvm-ledger=old.toml", "--spekvm-ledger-strict", *RES0_CELLS)
    lenient.stdout.fnmatch_lines(["spekvm warning: ledger entry 1 (RES0) is stale: its checks ran and none failed as it says (remove it)"])
    strict.stdout.fnmatch_lines(["spekvm FAILED: ledger entry 1 (RES0) is stale: *"])
    assert (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, ["stale", "not checked"]) == (
        lenient.ret, strict.ret, ledger_statuses(spekvm_pytester.path / "r.json"),
    )


def test_entry_missed_by_generated_sequences_is_not_found_not_stale(spekvm_pytester: pytest.Pytester) -> None:
    """An entry whose failure the generated sequences did not meet, with no scripted check of it run, is
    'not found' (a note, never a warning, green under --spekvm-ledger-strict); with its scripted checks run
    and passing, the same entry is stale."""
    spekvm_pytester.path.joinpath("known.toml").write_text(
        '[[deviation]]\nrule = "RES0"\ncells = ["*"]\nreason = "seen once under a large budget"\n'
    )
    searched = spekvm_pytester.runpytest(
        "--spekvm-target=reference", "--spekvm-ledger=known.toml", "--spekvm-ledger-strict", "--spekvm-report=r.json",
        "-k", "test_res0_sequences",
    )
    searched.stdout.fnmatch_lines([
        "ledger entry 1 (RES0): not found by this run's generated sequences, which are a search, not a proof: the entry stays*",
    ])
    searched.stdout.no_fnmatch_line("spekvm warning*")
    not_found = ledger_statuses(spekvm_pytester.path / "r.json")
    scripted = spekvm_pytester.runpytest(
        "--spekvm-target=reference", "--spekvm-ledger=known.toml", "--spekvm-report=r.json", "-k", "test_res0",
    )
    scripted.stdout.no_fnmatch_line("*not found by this run*")
    assert (pytest.ExitCode.OK, ["not found"], ["stale"]) == (
        searched.ret, not_found, ledger_statuses(spekvm_pytester.path / "r.json"),
    )


def test_expired_entry_fails_the_run(nodrain: pytest.Pytester) -> None:
    """An entry past its expiry date covers nothing and fails the run, saying so."""
    nodrain.path.joinpath("known.toml").write_text(KNOWN_DRAIN + "expires = 2000-01-31\n")
    result = nodrain.runpytest("--spekvm-target=nodrain.py", "--spekvm-ledger=known.toml", *DRAIN_CELLS)
    result.assert_outcomes(failed=5, passed=17)
    result.stdout.fnmatch_lines(["spekvm FAILED: ledger entry 1 (DRAIN-ORDER) expired on 2000-01-31: fix the deviation or renew the entry"])


def test_expired_entry_fails_even_without_failures(spekvm_pytester: pytest.Pytester) -> None:
    """An expired entry fails a run that is otherwise green (the date is given as a string here)."""
    spekvm_pytester.path.joinpath("known.toml").write_text(
        '[[deviation]]\nrule = "RES0"\ncells = ["*"]\nreason = "r"\nexpires = "2001-02-03"\n'
    )
    result = spekvm_pytester.runpytest("--spekvm-target=reference", "--spekvm-ledger=known.toml", *RES0_CELLS)
    assert pytest.ExitCode.TESTS_FAILED == result.ret


def test_write_a_ledger_then_pass_with_it(nodrain: pytest.Pytester) -> None:
    """--spekvm-ledger-write writes one entry per failing rule, cells folded into patterns, that makes the next run pass."""
    first = nodrain.runpytest("--spekvm-target=nodrain.py", "--spekvm-ledger-write=adopt/ledger.toml", *DRAIN_CELLS)
    written = nodrain.path.joinpath("adopt", "ledger.toml").read_text()
    second = nodrain.runpytest("--spekvm-target=nodrain.py", "--spekvm-ledger=adopt/ledger.toml", *DRAIN_CELLS)
    second.assert_outcomes(xfailed=5, passed=17)
    assert (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.OK) == (first.ret, second.ret)
    assert 'cells = ["nvhe-spe1-pmuv3p1", "nvhe-spe2-pmuv3p1", "nvhe-spe3-pmuv3p1", "nvhe-spe4-pmuv3p1", "nvhe-spe5-pmuv3p1"]' in written.splitlines()


def test_written_ledger_folds_whole_classes(nodrain: pytest.Pytester) -> None:
    """When every cell of a class fails, the written ledger names the class's pattern, and 'generated' for sequences."""
    nodrain.runpytest(
        "--spekvm-target=nodrain.py", "--spekvm-ledger-write=l.toml", "--hypothesis-seed=0",
        "-k", "test_drain_order and (nvhe-spe1- or sequences)",
    )
    lines = nodrain.path.joinpath("l.toml").read_text().splitlines()
    assert ['rule = "DRAIN-ORDER"', 'cells = ["nvhe-spe1-pmu*", "generated"]'] == lines[lines.index("[[deviation]]") + 1 :][:2]


def test_generated_failures_listed_are_expected(nodrain: pytest.Pytester) -> None:
    """A ledger entry covering 'generated' turns a generated sequence's failure into an expected failure."""
    nodrain.path.joinpath("known.toml").write_text(
        '[[deviation]]\nrule = "DRAIN-ORDER"\ncells = ["generated"]\nreason = "known"\n'
    )
    result = nodrain.runpytest("--spekvm-target=nodrain.py", "--spekvm-ledger=known.toml", "-k", "drain_order_sequences")
    result.assert_outcomes(xfailed=1)


def test_ledger_rules_are_not_shrunk() -> None:
    """A rule whose generated failures are known runs without the shrink and explain phases; the others keep them."""
    session = SpekvmSession(target=load("reference"), space=FULL_SPACE, rules={}, unshrunk=frozenset({"RES0"}))
    known, other = session.hypothesis_settings("RES0").phases, session.hypothesis_settings("LEAN").phases
    assert (False, True) == (Phase.shrink in known, Phase.shrink in other)


def test_ledger_sets_unshrunk_rules(nodrain: pytest.Pytester) -> None:
    """Loading a ledger marks the rules whose entries cover 'generated' (a pattern like '*' does) as not to shrink."""
    nodrain.path.joinpath("known.toml").write_text(
        KNOWN_DRAIN + '\n[[deviation]]\nrule = "RES0"\ncells = ["*"]\nreason = "r"\n'
    )
    config = nodrain.parseconfigure("--spekvm-target=nodrain.py", "--spekvm-ledger=known.toml")
    assert frozenset({"RES0"}) == config.stash[SESSION_KEY].unshrunk


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('[[deviation]]\nrule = "NOPE"\ncells = ["*"]\nreason = "r"\n', "entry 1 names rule 'NOPE', which is not a rule of this run (rules: RES0, *"),
        ('[[deviation]]\nrule = "RES0"\ncells = ["*"]\n', "entry 1 (RES0) has no reason (give reason = *"),
        ('[[deviation]]\nrule = "RES0"\nreason = "r"\n', "entry 1 (RES0) needs exactly one of cells = [[]...[]] and fingerprint = *"),
        ('[[deviation]]\nrule = "RES0"\ncells = "*"\nreason = "r"\n', "entry 1 (RES0) has cells = '*', not a list of cell ids or glob patterns *"),
        ('[[deviation]]\nrule = "RES0"\nfingerprint = 3\nreason = "r"\n', "entry 1 (RES0) has fingerprint = 3, not a string"),
        ('[[deviation]]\nrule = "RES0"\ncells = ["*"]\nreason = "r"\nexpires = "soon"\n', "entry 1 (RES0) has expires = 'soon', not a date *"),
        ('[[deviation]]\nrule = "RES0"\ncells = ["*"]\nreason = "r"\nowner = "me"\n', "entry 1 has unknown keys [[]'owner'[]] *"),
        ("deviation = 3\n", "'deviation' is not an array of tables *"),
        ("deviation = [3]\n", "entry 1 is 3, not a table *"),
        ("[other]\n", "it has top-level keys [[]'other'[]]; a ledger holds only [[][[]deviation[]][]] tables"),
        ("[[deviation]\n", "it is not valid TOML *"),
    ],
)
def test_ledger_misuse(spekvm_pytester: pytest.Pytester, text: str, shown: str) -> None:
    """A malformed ledger stops the run with a usage error naming the file, the entry and the fix."""
    spekvm_pytester.path.joinpath("bad.toml").write_text(text)
    result = spekvm_pytester.runpytest("--spekvm-target=reference", "--spekvm-ledger=bad.toml")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines([f"*--spekvm-ledger: Cannot use ledger bad.toml because {shown}"])


def test_missing_ledger(spekvm_pytester: pytest.Pytester) -> None:
    """A ledger that cannot be read is a usage error naming it."""
    result = spekvm_pytester.runpytest("--spekvm-target=reference", "--spekvm-ledger=none.toml")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines(["*Cannot use ledger none.toml because it cannot be read (No such file or directory)"])


def test_ledger_not_utf8(spekvm_pytester: pytest.Pytester) -> None:
    """A ledger that is not UTF-8 text is a usage error naming it and the first bad byte, not an internal error."""
    spekvm_pytester.path.joinpath("l8.toml").write_bytes(b"\xff\xfe")
    result = spekvm_pytester.runpytest("--spekvm-target=reference", "--spekvm-ledger=l8.toml")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines(["*--spekvm-ledger: Cannot use ledger l8.toml because it is not UTF-8 text (byte 0xff at offset 0; *"])


def test_ledger_from_ini_is_relative_to_it(nodrain: pytest.Pytester) -> None:
    """spekvm_ledger in the ini file is read relative to that file."""
    nodrain.mkdir("ci").joinpath("known.toml").write_text(KNOWN_DRAIN)
    nodrain.makeini("[pytest]\nspekvm_ledger = ci/known.toml\n")
    result = nodrain.runpytest("--spekvm-target=nodrain.py", *DRAIN_CELLS)
    result.assert_outcomes(xfailed=5, passed=17)


def test_ledger_write_path_misuse(spekvm_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ledger path (here from the environment twin) whose folder is a file is a usage error before any test, naming the path and what is expected."""
    spekvm_pytester.path.joinpath("taken").write_text("a file\n")
    monkeypatch.setenv("SPEKVM_LEDGER_WRITE", "taken/l.toml")
    result = spekvm_pytester.runpytest("--spekvm-target=reference")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines([
        "*--spekvm-ledger-write (from SPEKVM_LEDGER_WRITE) is 'taken/l.toml', whose folder cannot be made because taken is not a folder"
        " (give a file path whose folder exists or can be made, e.g. --spekvm-ledger-write=spekvm-ledger.toml)",
    ])


def test_unwritable_ledger_fails_the_run_and_keeps_the_report(spekvm_pytester: pytest.Pytester) -> None:
    """A ledger that cannot be written at the end of the run fails it with a line saying why, and the report
    is still written, with that failing gate and the run's exit status."""
    # The ledger's folder is made a file after the options were checked.
    spekvm_pytester.makeconftest('def pytest_sessionstart(session):\n    open("adopt", "w").close()\n')
    result = spekvm_pytester.runpytest("--spekvm-target=reference", "--spekvm-ledger-write=adopt/l.toml", "--spekvm-report=r.json", *RES0_CELLS)
    result.assert_outcomes(passed=22)
    result.stdout.fnmatch_lines(["spekvm FAILED: --spekvm-ledger-write: Cannot write the ledger to adopt/l.toml because File exists: adopt"])
    assert_no_traceback(result)
    report = json.loads(spekvm_pytester.path.joinpath("r.json").read_text())
    gate = next(g for g in report["gates"] if g["gate"] == "write --spekvm-ledger-write")
    assert (pytest.ExitCode.TESTS_FAILED, 1, (False, True)) == (result.ret, report["exit_status"], (gate["passed"], gate["failing"]))
