"""Mutant: the SPE restore re-enables sampling without an ISB first.

What is wrong: the host's stage 1 and MDCR_EL2.E2PB have just been written back but not
synchronised; PMSCR_EL1 = host value may take effect before them, so the PE can sample (and
translate) with the guest's regime still in force.

Why plausible: the review itself questioned this ISB ("I believe you can avoid that on VHE"); on
nVHE, dropping it everywhere is a small step from there.

Caught by RESTORE-ORDER: no ISB between the last write that gives the host back its translation
and the write that turns sampling on.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import ExitReason, Vcpu

CAUGHT_BY = "RESTORE-ORDER"


def debug_restore_spe(cpu: CPU, vcpu: Vcpu) -> None:
    """The reference's __debug_restore_spe, without the ISB."""
    pmscr = vcpu.host_debug_state.get("pmscr_el1", 0)
    if not pmscr:
        return
    # MUTANT: no cpu.isb() here.
    cpu.msr("PMSCR_EL1", pmscr)


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's restore."""

    name = "mutant restore_without_isb"

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> ExitReason:
        """__kvm_vcpu_run in the reference's order."""
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
        S.restore_host_sysregs(cpu, vcpu)
        if not vhe:
            debug_restore_spe(cpu, vcpu)
        return exit_reason


spekvm_adapter = Switch
