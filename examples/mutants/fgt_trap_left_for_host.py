"""Mutant: the guest's PMBIDR_EL1 reads are trapped with HDFGRTR_EL2, and the trap is left set.

What is wrong: where FEAT_FGT exists the entry sets HDFGRTR_EL2.PMBIDR_EL1 (before its ISB, as it
should), but the exit never clears it: the host comes back with an HDFGRTR_EL2 it did not write,
and the host's own PMBIDR_EL1 reads would trap to EL2.

Why plausible: PMBIDR_EL1 is read-only and the host's driver reads it once, at probe time, so the
developer sees no reason to undo the trap; other fine-grained traps are set once per vcpu load.

Caught by HOST-STATE (HDFGRTR_EL2 differs at the return to the host), on the non-VHE FEAT_FGT
cells: a VHE host runs at EL2 and at EL0 under TGE, where HDFGRTR_EL2 traps nothing, so there the
trap left set is harmless.
"""

from __future__ import annotations

from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "HOST-STATE"


class Switch(S.ReferenceSwitch):
    """The reference switch, trapping the guest's PMBIDR_EL1 reads and never untrapping them."""

    name = "mutant fgt_trap_left_for_host"

    def synchronise_guest_context(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The trap, then the ISB before the ERET into the guest."""
        if cpu.features.fgt and S.has_spe(cpu):
            cpu.msr("HDFGRTR_EL2", cpu.mrs("HDFGRTR_EL2") | R.HDFGRTR_PMBIDR)
        # MUTANT: no exit step clears HDFGRTR_EL2.PMBIDR_EL1 again.
        super().synchronise_guest_context(cpu, vcpu)


spekvm_adapter = Switch
