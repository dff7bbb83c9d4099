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
from pytest_spekvm.reference.vcpu import ExitReason, Vcpu

CAUGHT_BY = "RESTORE-ORDER"


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's restore order."""

    name = "mutant restore_before_host_sysregs"

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> ExitReason:
        """__kvm_vcpu_run, with the SPE restore before the host's system registers."""
        vhe = S.has_vhe(cpu)
        S.save_host_sysregs(cpu, vcpu)
        if not vhe:
            S.debug_save_spe_nvhe(cpu, vcpu)
        S.activate_traps(cpu, vcpu)
        S.activate_vm(cpu, vcpu)
        S.restore_guest_sysregs(cpu, vcpu)
        exit_reason = cpu.run_guest(vcpu)
        S.save_guest_sysregs(cpu, vcpu)
        S.deactivate_traps(cpu, vcpu, self._host_mdcr_el2)
        S.deactivate_vm(cpu, vcpu)
        if not vhe:
            S.debug_restore_spe(cpu, vcpu)
        S.restore_host_sysregs(cpu, vcpu)
        return exit_reason


spekvm_adapter = Switch
