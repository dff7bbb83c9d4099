"""Mutant: kvm_arm_setup_debug sets MDCR_EL2.TPMS whether or not the CPU has SPE.

What is wrong: TPMS is RES0 on CPUs without FEAT_SPE, and software must write RES0 bits as 0.

Why plausible: it is what the RFC posted ("This is RES0 on CPUs that do not implement SPE. Can
we make this conditional on SPE being available?"): trap bits look harmless to over-set.

Caught by RES0 (a 1 in a RES0 bit of MDCR_EL2) and TRAP-COND (TPMS set without FEAT_SPE).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("RES0", "TRAP-COND")


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's setup."""

    name = "mutant tpms_unconditional"

    def setup_debug(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """The reference's kvm_arm_setup_debug, with TPMS set on every CPU."""
        super().setup_debug(cpu, vcpu, host_mdcr_el2)
        vcpu.mdcr_el2 |= S.MDCR_TPMS  # MUTANT: not conditional on has_spe(cpu).


spekvm_adapter = Switch
