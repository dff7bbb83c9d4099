"""Mutant: the nVHE exit does not restore the host's EL1 stage 1 registers.

What is wrong: the host returns to EL1 with the guest's TTBR0_EL1, TTBR1_EL1, TCR_EL1 and MAIR_EL1
still installed, and the restored PMSCR_EL1 turns sampling back on under that translation: the
host's records go through the guest's tables.

Why plausible: VHE KVM switches the EL1 registers lazily, in vcpu_load and vcpu_put, not on every
exit; carrying that habit over to the nVHE exit path drops __sysreg_restore_host_state.

Caught by RESTORE-ORDER (sampling back on under a translation that is not the host's) and
HOST-STATE (the host's stage 1 registers differ at the return).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("RESTORE-ORDER", "HOST-STATE")


class Switch(S.ReferenceSwitch):
    """The reference switch without the host's EL1 stage 1 restore."""

    name = "mutant no_host_sysregs_restore"

    def restore_host_sysregs(self, cpu: CPU, vcpu: Vcpu) -> None:
        """Nothing."""
        # MUTANT: no __sysreg_restore_host_state here.


spekvm_adapter = Switch
