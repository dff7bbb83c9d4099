"""Mutant: kvm_arm_setup_debug sets MDCR_EL2.TPMS whether or not the CPU has SPE.

What is wrong: TPMS is RES0 on CPUs without FEAT_SPE, and software must write RES0 bits as 0.

Why plausible: it is what the RFC posted ("This is RES0 on CPUs that do not implement SPE. Can
we make this conditional on SPE being available?"): trap bits look harmless to over-set.

Caught by RES0 (a 1 in a RES0 bit of MDCR_EL2) and TRAP-COND (TPMS set without FEAT_SPE).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import ExitReason, Vcpu

CAUGHT_BY = ("RES0", "TRAP-COND")


def setup_debug(cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
    """The reference's kvm_arm_setup_debug, with TPMS set on every CPU."""
    S.setup_debug(cpu, vcpu, host_mdcr_el2)
    vcpu.mdcr_el2 |= S.MDCR_TPMS  # MUTANT: not conditional on has_spe(cpu).


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's setup."""

    name = "mutant tpms_unconditional"

    def setup_vcpu(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """kvm_arm_setup_debug, this mutant's way."""
        self._host_mdcr_el2 = host_mdcr_el2
        setup_debug(cpu, vcpu, host_mdcr_el2)

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
            S.debug_restore_spe(cpu, vcpu)
        return exit_reason


spekvm_adapter = Switch
