"""The harness's run of a scenario: an exception the chooser raises while the adapter runs (hypothesis
ending a test case) reaches hypothesis, even through an adapter that catches every exception."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_spekvm.reference.chooser import Moment, WorstCaseChooser
from pytest_spekvm.reference.features import Features
from pytest_spekvm.scenario import Run, Step
from pytest_spekvm.target import load

# Catches whatever its run raises and reports an exit. After the reference's run it writes the
# reserved MDCR_EL2.E2PB 0b01 and reads it back, which asks the chooser what the read sees (K1.2.19).
SWALLOWING = '''
from pytest_spekvm.reference.registers import E2PB_RESERVED, MDCR_E2PB
from pytest_spekvm.reference.switch import ReferenceSwitch
from pytest_spekvm.reference.vcpu import ExitReason


class Swallowing(ReferenceSwitch):
    def vcpu_run(self, cpu, vcpu):
        try:
            exit_reason = super().vcpu_run(cpu, vcpu)
            mdcr = cpu.mrs("MDCR_EL2")
            cpu.msr("MDCR_EL2", mdcr & ~MDCR_E2PB.mask | MDCR_E2PB.put(E2PB_RESERVED))
            cpu.mrs("MDCR_EL2")
            cpu.msr("MDCR_EL2", mdcr)
            return exit_reason
        except BaseException:
            return ExitReason("irq")


def spekvm_adapter():
    return Swallowing()
'''


class EndOfTestCase(BaseException):
    """Stands for hypothesis' own exception ending a test case (an overrun) from inside a chooser call."""


class RaisingChooser(WorstCaseChooser):
    """The worst case, except that `method` raises `EndOfTestCase` the first time the model calls it."""

    def __init__(self, method: str) -> None:
        self.method = method

    def _maybe_raise(self, method: str) -> None:
        if method == self.method:
            raise EndOfTestCase(method)

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """Raise, or the worst case's answer."""
        self._maybe_raise("write_visible")
        return super().write_visible(register, old, new)

    def records_to_write(self, pending: int, moment: Moment, detail: str) -> int:
        """Raise, or the worst case's answer."""
        self._maybe_raise("records_to_write")
        return super().records_to_write(pending, moment, detail)

    def reserved_as(self, register: str, field: str, allowed: tuple[int, ...]) -> int:
        """Raise, or the worst case's answer."""
        self._maybe_raise("reserved_as")
        return super().reserved_as(register, field, allowed)


@pytest.mark.parametrize("method", ["write_visible", "records_to_write", "reserved_as"])
def test_chooser_exception_is_raised_again_after_an_adapter_swallowed_it(tmp_path: Path, method: str) -> None:
    """The chooser's exception, caught by the adapter, is raised again after its call, and forgotten once raised."""
    adapter = tmp_path / "swallowing.py"
    adapter.write_text(SWALLOWING)
    run = Run.start(load(str(adapter)), Features(), WorstCaseChooser())
    run.do(Step("enable_profiling"))
    run.do(Step("host_run", samples=2))
    run.set_chooser(RaisingChooser(method))
    with pytest.raises(EndOfTestCase, match=method):
        run.do(Step("run_vcpu", vcpu=0))
    assert run.chooser.raised is None
