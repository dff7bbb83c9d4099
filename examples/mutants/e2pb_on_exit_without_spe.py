"""Mutant: the nVHE exit gives the host E2PB = 0b11 whether or not the CPU has SPE.

What is wrong: MDCR_EL2.E2PB is RES0 without FEAT_SPE. The exit rebuilds the host's MDCR_EL2 as
"HPMN, plus the host owns the buffer" instead of restoring the value the host booted with.

Why plausible: it is what the RFC posted for __deactivate_traps_nvhe ("Same remark as above. I'm
not completely confident writing new bits to registers that do not necessarily implement the
feature.").

Caught by RES0 and TRAP-COND (E2PB written without FEAT_SPE); HOST-STATE also fails where the
RES0 bits read back what was written.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.system import HCR_HOST_NVHE
from pytest_spekvm.reference.vcpu import ExitReason, Vcpu

CAUGHT_BY = ("RES0", "TRAP-COND")


def deactivate_traps(cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
    """The reference's __deactivate_traps, with the RFC's non-VHE MDCR_EL2."""
    if S.has_vhe(cpu):
        S.deactivate_traps(cpu, vcpu, host_mdcr_el2)
        return
    cpu.msr("HCR_EL2", HCR_HOST_NVHE)
    # MUTANT: E2PB = 0b11 on every CPU, not the host's boot value.
    cpu.msr("MDCR_EL2", cpu.mrs("MDCR_EL2") & S.MDCR_HPMN_MASK | S.MDCR_E2PB_MASK)


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's exit."""

    name = "mutant e2pb_on_exit_without_spe"

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
        deactivate_traps(cpu, vcpu, self._host_mdcr_el2)
        S.deactivate_vm(cpu, vcpu)
        S.restore_host_sysregs(cpu, vcpu)
        if not vhe:
            S.debug_restore_spe(cpu, vcpu)
        return exit_reason


spekvm_adapter = Switch
