"""Mutant: the save turns the host's sampling back on right after the drain, before the guest runs.

What is wrong: PMSCR_EL1 is back at the host's value when the ERET enters the guest, so the
guest's EL1 (and EL0) code is sampled into the buffer under the guest's E2PB = 0b00: the nVHE EL2
regime translates those records and the first faults, stopping the host's buffer.

Why plausible: the drain is read as a critical section that needs sampling off only while it
runs ("stop, flush, resume"), and PMSCR_EL1 looks like the host's own EL1 register to put back.

Caught by DRAIN-ORDER (sampling possibly on for the guest's EL1/EL0 at the ERET) and HOST-STATE
(PMBSR_EL1 changed by the fault).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("DRAIN-ORDER", "HOST-STATE")


class Switch(S.ReferenceSwitch):
    """The reference switch, resuming the host's sampling at the end of its drain."""

    name = "mutant resample_before_eret"

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's drain, then PMSCR_EL1 back to the host's value."""
        super().drain(cpu, vcpu)
        cpu.msr("PMSCR_EL1", vcpu.host_debug_state["pmscr_el1"])  # MUTANT: sampling back on for the guest.


spekvm_adapter = Switch
