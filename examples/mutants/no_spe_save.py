"""Mutant: the nVHE entry has no SPE save at all: the host's buffer is neither stopped nor drained.

What is wrong: sampling stays on and the records the PE holds are written after the guest's
regime is installed. Under the guest's E2PB = 0b00 the nVHE EL2 regime translates them, and it has
no upper VA range: the first faults and stops the buffer (PMBSR_EL1 changed, records lost).

Why plausible: it is KVM before SPE was handled at all; a switch written from the VHE path, where
the host's buffer is translated by EL2 tables the guest never changes, needs nothing here.

Caught by DRAIN-ORDER (no drain before the translation changes), HOST-STATE (PMBSR_EL1 and the
buffer pointer changed behind the host's back) and NO-LOSS (host records faulted).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("DRAIN-ORDER", "HOST-STATE", "NO-LOSS")


class Switch(S.ReferenceSwitch):
    """The reference switch without its SPE save."""

    name = "mutant no_spe_save"

    def save_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """Nothing."""
        # MUTANT: no __debug_save_spe_nvhe here.


spekvm_adapter = Switch
