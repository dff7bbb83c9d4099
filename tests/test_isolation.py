"""C crash isolation: a C target that crashes, aborts, exits or spins on some cells fails those cells, naming
the signal and the C line of the last accessor call, and the run goes on to judge the rest and print its table."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from plugin_harness import TWO_CELLS

from pytest_spekvm.options import TARGET_OPTION, TIMEOUT_OPTION

pytest.importorskip("cffi")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "c_switch"
ENTRY = "u64 __kvm_vcpu_run(struct spekvm_vcpu *vcpu)"



def c_target(pytester: pytest.Pytester, misbehave: str) -> str:
    """A copy of the example C switch whose run entry point does `misbehave` first on VHE cells; its target path."""
    source = (EXAMPLE / "switch.c").read_text()
    body = source.index("{", source.index(ENTRY)) + 1
    patched = source[:body] + f"\n\tif (has_vhe()) {{\n\t\t{misbehave}\n\t}}\n" + source[body:]
    (pytester.path / "bad.c").write_text(patched)
    shutil.copy(EXAMPLE / "kvm_arm.h", pytester.path)
    pytester.makepyfile(
        bad_target='from pytest_spekvm.ckit import c_adapter\n\nspekvm_adapter = c_adapter(sources=["bad.c"], setup="kvm_arm_setup_debug", run="__kvm_vcpu_run")\n'
    )
    pytester.makeconftest(TWO_CELLS)
    line = patched[:body].count("\n") + 2  # the has_vhe() accessor
    return f"bad.c:{line} in __kvm_vcpu_run"


@pytest.mark.parametrize(
    ("misbehave", "ending"),
    [
        ("*(volatile int *)0 = 1;", "killed by SIGSEGV*"),
        ("abort();", "killed by SIGABRT*"),
        ("exit(3);", "ended the process with exit status 3*"),
    ],
    ids=["null-dereference", "abort", "exit"],
)
def test_crash_fails_its_cell_and_the_run_goes_on(spekvm_pytester: pytest.Pytester, misbehave: str, ending: str) -> None:
    """A crash on the VHE cell fails that cell once, at the C line of the last accessor; the nVHE cell is judged."""
    site = c_target(spekvm_pytester, misbehave)
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=bad_target.py", "-k", "not sequences")
    result.assert_outcomes(failed=1, passed=9, skipped=8)
    result.stdout.fnmatch_lines([
        "CONTRACT \"the adapter's native code does not crash or end the process\" broken on features: VHE, *",
        f"  *{ending}the last accessor call was at */{site}",
        "steps:",
        "  1. run vcpu 0: guest runs code (1 samples)",
        "replay: pytest --spekvm-target=bad_target.py *",
        "*spekvm verdicts for bad.c*",
        "RES0 * not judged (adapter failed on 1 of 2 checks) *",
        "ADAPTER CONTRACT broken: 1 failed test *",
        "scenario steps: *",
    ])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_crash_in_a_generated_sequence(spekvm_pytester: pytest.Pytester) -> None:
    """A crash while hypothesis generates sequences fails that sequences test with the signal and the steps so far."""
    c_target(spekvm_pytester, "*(volatile int *)0 = 1;")
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=bad_target.py", "--hypothesis-profile=default", "-k", "test_res0_sequences")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "CONTRACT \"the adapter's native code does not crash or end the process\" broken on features: VHE, *",
        "  the process running the adapter was killed by SIGSEGV*",
        "steps:",
        "  1. *",
        "replay: *",
        "RES0 * not judged (adapter failed on 1 of 1 checks) *",
    ])


def test_c_loop_without_accessors_is_killed(spekvm_pytester: pytest.Pytester) -> None:
    """A C loop that calls no accessor cannot be interrupted in process: its child is killed and the cell fails as hung."""
    site = c_target(spekvm_pytester, "for (;;) ;")
    spekvm_pytester.runpytest(f"{TARGET_OPTION}=bad_target.py", "--co")  # builds, with the default time limit
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=bad_target.py", f"{TIMEOUT_OPTION}=0.2", "-k", "test_res0 and not sequences")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "CONTRACT 'vcpu_run() returns' broken on features: VHE, *",
        f"  the adapter's native code neither returned nor started another step for *; the last accessor call was at */{site}",
    ])


def test_isolated_sequences_pass_and_keep_their_verdicts(spekvm_pytester: pytest.Pytester) -> None:
    """The example C switch passes its generated sequences in a child, and the verdict table counts them."""
    spekvm_pytester.makeconftest(TWO_CELLS)
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}={EXAMPLE / 'adapter.py'}", "--hypothesis-profile=default", "-k", "sequences and (res0 or drain)")
    result.assert_outcomes(passed=2)
    steps = re.search(r"scenario steps: ([\d,]+)", result.stdout.str())
    assert steps is not None
    assert int(steps[1].replace(",", "")) > 0
    result.stdout.fnmatch_lines(["RES0 * passed (1 checks, * exercised it) *"])


def test_isolated_sequence_failure_is_reported_with_its_replay(spekvm_pytester: pytest.Pytester) -> None:
    """A rule violation found by a sequences test in a child comes back with its report and replay line."""
    spekvm_pytester.makeconftest(TWO_CELLS)
    result = spekvm_pytester.runpytest(
        f"{TARGET_OPTION}={EXAMPLE / 'adapter_broken.py'}", "--hypothesis-profile=default", "-k", "drain_order_sequences",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "RULE DRAIN-ORDER violated on features: nVHE, *",
        "replay anywhere: add --spekvm-reproduce=DRAIN-ORDER@*:* to the command above",
        "DRAIN-ORDER * FAILED (1 of 1 checks) *",
    ])
