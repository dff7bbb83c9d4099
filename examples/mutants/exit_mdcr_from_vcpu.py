"""Mutant: the exit rebuilds the host's MDCR_EL2 from the vcpu's.

What is wrong: the vcpu's MDCR_EL2 has E2PB = 0b00 (the guest must trap), so clearing the trap
bits gives back HPMN alone: on nVHE the host loses E2PB = 0b11 and with it the ownership of its
buffer. The host's own accesses to PMBLIMITR_EL1, PMBPTR_EL1 and PMBSR_EL1 then trap to EL2, and
its sampling goes through the EL2 regime, which faults the kernel's buffer address.

Why plausible: "undo what kvm_arm_setup_debug added" sounds exactly right, and it is what the
code did before the patch (`read_sysreg(mdcr_el2) & MDCR_EL2_HPMN_MASK`), when MDCR_EL2 had no
host bits but HPMN.

Caught by HOST-STATE (MDCR_EL2 is not the host's boot value at the return) and UNDEF (the host's
own buffer accesses trap to EL2).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.kvm import HCR_HOST_NVHE, HCR_HOST_VHE
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("HOST-STATE", "UNDEF")


TRAP_BITS = S.MDCR_TPM | S.MDCR_TPMCR | S.MDCR_TPMS | S.MDCR_TDRA | S.MDCR_TDOSA


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's exit."""

    name = "mutant exit_mdcr_from_vcpu"

    def deactivate_traps(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's __deactivate_traps, with the host's MDCR_EL2 derived from the vcpu's."""
        cpu.msr("HCR_EL2", HCR_HOST_VHE if S.has_vhe(cpu) else HCR_HOST_NVHE)
        cpu.msr("MDCR_EL2", vcpu.mdcr_el2 & ~TRAP_BITS)  # MUTANT: not the host's boot value.


spekvm_adapter = Switch
