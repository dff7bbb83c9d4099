"""Coverage of a C world switch: --spekvm-c-coverage builds it with gcov instrumentation and gcovr
summarises its lines and branches at the end of the run, with a threshold (checked, and refused
without --spekvm-c-coverage, in every run with a target)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from plugin_harness import TWO_CELLS

from pytest_spekvm import ckit

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "c_switch" / "adapter.py"


@pytest.fixture
def c_pytester(spekvm_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose C builds go to its own folder, compiled with gcc (gcovr runs gcc's gcov); the
    test is skipped without the tools (the checks of the options, which build nothing, run anyway)."""
    if not (shutil.which("gcc") and shutil.which("gcov") and importlib.util.find_spec("gcovr") and importlib.util.find_spec("cffi")):
        pytest.skip("C coverage needs gcc, gcov, gcovr and cffi (pip install -e '.[test]' and a gcc toolchain)")
    monkeypatch.setenv(ckit.BUILD_DIR_ENV, str(spekvm_pytester.path / "build"))
    monkeypatch.setenv("CC", "gcc")
    return spekvm_pytester


def test_c_coverage_of_the_example(c_pytester: pytest.Pytester) -> None:
    """The example's lines and branches are summarised per file and in total; every line runs on the cells with PMUv3p1."""
    result = c_pytester.runpytest(f"--spekvm-target={EXAMPLE}", "--spekvm-c-coverage", "-k", "test_res0 and pmuv3p1")
    assert pytest.ExitCode.OK == result.ret
    result.stdout.fnmatch_lines([
        "*spekvm C coverage (gcov, gcovr)*",
        "switch.c * lines 95/95 (100.0%)  branches */* (*%)",
        "TOTAL lines 95/95 (100.0%)  branches */* (*%)",
    ])


def test_c_coverage_threshold(c_pytester: pytest.Pytester) -> None:
    """Below --spekvm-c-coverage-fail-under (one VHE cell leaves the nVHE paths unrun) the run fails, saying why;
    counts from an earlier run of the same build do not carry over."""
    c_pytester.runpytest(f"--spekvm-target={EXAMPLE}", "--spekvm-c-coverage", "-k", "test_res0 and pmuv3p1")
    result = c_pytester.runpytest(
        f"--spekvm-target={EXAMPLE}", "--spekvm-c-coverage", "--spekvm-c-coverage-fail-under=95",
        "-k", "test_res0 and vhe-spe1-pmuv3p1 and not nvhe",
    )
    result.assert_outcomes(passed=1)
    assert pytest.ExitCode.TESTS_FAILED == result.ret
    result.stdout.fnmatch_lines(["spekvm FAILED: C line coverage *% is below --spekvm-c-coverage-fail-under=95"])


def test_c_coverage_threshold_misuse(c_pytester: pytest.Pytester) -> None:
    """A threshold that is not a percentage is a usage error."""
    result = c_pytester.runpytest(f"--spekvm-target={EXAMPLE}", "--spekvm-c-coverage", "--spekvm-c-coverage-fail-under=all")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines(["*--spekvm-c-coverage-fail-under (from --spekvm-c-coverage-fail-under) is 'all', not a percentage from 0 to 100*"])


def test_gcovr_failure_is_reported(c_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """When gcovr cannot run, the run fails and says what to install."""
    monkeypatch.setattr("pytest_spekvm.ccoverage.sys.executable", str(c_pytester.path / "no-python"))
    result = c_pytester.runpytest(f"--spekvm-target={EXAMPLE}", "--spekvm-c-coverage", "-k", "test_res0 and vhe-spe1-pmuv3p1")
    assert pytest.ExitCode.TESTS_FAILED == result.ret
    result.stdout.fnmatch_lines(["spekvm FAILED: Cannot summarise the C coverage because gcovr failed (exit -1): *no-python* (install gcovr, *"])


@pytest.mark.parametrize(
    ("option", "shown"),
    [
        ("--spekvm-c-coverage-fail-under=90", "*--spekvm-c-coverage-fail-under (from --spekvm-c-coverage-fail-under) is '90', and the gate needs --spekvm-c-coverage:"
         " without it no C coverage is measured (add --spekvm-c-coverage, or drop the threshold)"),
        ("--spekvm-c-coverage-fail-under=abc", "*--spekvm-c-coverage-fail-under (from --spekvm-c-coverage-fail-under) is 'abc', not a percentage from 0 to 100*"),
    ],
)
def test_c_coverage_threshold_without_c_coverage(spekvm_pytester: pytest.Pytester, option: str, shown: str) -> None:
    """A C coverage threshold without --spekvm-c-coverage is a usage error, and a bad one is, whatever else is given."""
    result = spekvm_pytester.runpytest("--spekvm-target=reference", option)
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines([shown])


def test_c_coverage_threshold_ini_twin_without_c_coverage(spekvm_pytester: pytest.Pytester) -> None:
    """spekvm_c_coverage_fail_under in the ini file without C coverage is a usage error naming where it came from."""
    spekvm_pytester.makeini("[pytest]\nspekvm_c_coverage_fail_under = 90\n")
    result = spekvm_pytester.runpytest("--spekvm-target=reference")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines(["*--spekvm-c-coverage-fail-under (from spekvm_c_coverage_fail_under in tox.ini) is '90', and the gate needs --spekvm-c-coverage:*"])


@pytest.mark.parametrize(
    ("options", "code", "shown"),
    [
        ((), pytest.ExitCode.OK, "spekvm: nothing measured: --spekvm-c-coverage: the target built no C code to measure *"),
        (("--spekvm-c-coverage-fail-under=50",), pytest.ExitCode.TESTS_FAILED,
         "spekvm FAILED: --spekvm-c-coverage: the target built no C code to measure *, so --spekvm-c-coverage-fail-under=50 cannot be met"),
    ],
    ids=["no-threshold", "threshold"],
)
def test_c_coverage_of_a_python_target(spekvm_pytester: pytest.Pytester, options: tuple[str, ...], code: int, shown: str) -> None:
    """--spekvm-c-coverage with a Python target says it measured nothing, and a threshold it then cannot meet fails the run."""
    spekvm_pytester.makeconftest(TWO_CELLS)
    result = spekvm_pytester.runpytest("--spekvm-target=reference", "--spekvm-c-coverage", *options, "-k", "test_res0 and not sequences")
    assert code == result.ret
    result.stdout.fnmatch_lines([shown])
