"""Mutant: the switch programs its own sampling interval and never gives the host's back.

What is wrong: the entry writes PMSIRR_EL1 (say, to profile the guest at another rate later) and
the exit does not restore it. PMSIRR_EL1 is one register shared by the host and EL2: the host's
SPE driver, which programmed its interval when it started the session, now samples at the
switch's rate without knowing it.

Why plausible: PMSCR_EL1 is the only SPE register the RFC saves, so the others look like the
switch's to use.

Caught by HOST-STATE: PMSIRR_EL1 is not the host's value at the return.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "HOST-STATE"


class Switch(S.ReferenceSwitch):
    """The reference switch, leaving its own PMSIRR_EL1 behind."""

    name = "mutant leaks_sampling_interval"

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's drain, then a sampling interval of its own."""
        super().drain(cpu, vcpu)
        cpu.msr("PMSIRR_EL1", 0x100 << 8)  # MUTANT: PMSIRR_EL1.INTERVAL [31:8], never restored.


spekvm_adapter = Switch
