"""Mutant: the SPE restore runs before the host's system registers are back.

What is wrong: sampling is turned back on while TTBR0_EL1/TTBR1_EL1/TCR_EL1 still hold the
guest's stage 1, so the host's next records (and any the PE still holds) can be translated
through the guest's tables.

Why plausible: exactly what the review warned about: "if you now depend on the debug restore
being run after the rest of the sysregs, please add a comment in switch.c::__kvm_vcpu_run so that
we remember about that dependency". Moving the debug restore up next to __deactivate_traps is a
natural clean-up for someone who never read that comment.

Caught by RESTORE-ORDER: PMSCR_EL1 sets E0SPE/E1SPE while the host's stage 1 is not back.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "RESTORE-ORDER"


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's restore order."""

    name = "mutant restore_before_host_sysregs"

    def exit_guest(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's exit half, with the SPE restore before the host's system registers."""
        self.save_guest_sysregs(cpu, vcpu)
        self.deactivate_traps(cpu, vcpu)
        self.deactivate_vm(cpu, vcpu)
        self.restore_spe(cpu, vcpu)  # MUTANT: before restore_host_sysregs instead of after it.
        self.restore_host_sysregs(cpu, vcpu)


spekvm_adapter = Switch
