"""examples/linux_mainline.py with its ledger: the known deviations are expected failures and the run is green."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.no_cover  # whole runs of an example (see CONTRIBUTING: tests left unmeasured)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MAINLINE = EXAMPLES / "linux_mainline.py"
LEDGER = EXAMPLES / "linux_mainline.ledger.toml"
# Scripted cells without a PMU and with the newest (and every optional feature): where each deviation shows.
SCRIPTED = ("-p", "no:cacheprovider", "-q", "-k", "not sequences and (pmunone or pmuv3p9)")


def test_a_ledger_written_from_mainline_makes_it_green(spekvm_pytester: pytest.Pytester) -> None:
    """Adopting the suite on mainline: a ledger written from a failing run turns the failures into expected ones."""
    first = spekvm_pytester.runpytest(f"--spekvm-target={MAINLINE}", "--spekvm-ledger-write=adopt.toml", *SCRIPTED)
    second = spekvm_pytester.runpytest(f"--spekvm-target={MAINLINE}", "--spekvm-ledger=adopt.toml", *SCRIPTED)
    outcomes = second.parseoutcomes()
    assert (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.OK, 0) == (first.ret, second.ret, outcomes.get("failed", 0))
    assert outcomes["xfailed"] > 0


def test_shipped_ledger_keeps_mainline_green(spekvm_pytester: pytest.Pytester) -> None:
    """The shipped ledger covers every failure of mainline's scripted cells and none of its entries is stale
    (when a rule changes what mainline fails, this test says the ledger needs the same change)."""
    result = spekvm_pytester.runpytest(
        f"--spekvm-target={MAINLINE}", f"--spekvm-ledger={LEDGER}", "--spekvm-ledger-strict", "-rx", *SCRIPTED
    )
    assert pytest.ExitCode.OK == result.ret
    result.stdout.fnmatch_lines(["XFAIL *test_res0*known deviation (linux_mainline.ledger.toml entry 1 (RES0, cells [*])): kvm_arm_setup_mdcr_el2()*"])
