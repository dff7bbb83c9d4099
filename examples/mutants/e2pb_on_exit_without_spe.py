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
from pytest_spekvm.reference.kvm import HCR_HOST_NVHE
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("RES0", "TRAP-COND")


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's exit."""

    name = "mutant e2pb_on_exit_without_spe"

    def deactivate_traps(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's __deactivate_traps, with the RFC's non-VHE MDCR_EL2."""
        if S.has_vhe(cpu):
            super().deactivate_traps(cpu, vcpu)
            return
        cpu.msr("HCR_EL2", HCR_HOST_NVHE)
        # MUTANT: E2PB = 0b11 on every CPU, not the host's boot value.
        cpu.msr("MDCR_EL2", cpu.mrs("MDCR_EL2") & S.MDCR_HPMN_MASK | S.MDCR_E2PB_MASK)


spekvm_adapter = Switch
