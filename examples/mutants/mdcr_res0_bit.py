"""Mutant: the vcpu's MDCR_EL2 sets bit 16, which is RES0 on every CPU.

What is wrong: MDCR_EL2 bit 16 is RES0 (the Arm ARM's MDCR_EL2 field list); software must write
it as 0, and a later architecture may give it a meaning the hypervisor did not ask for.

Why plausible: an off-by-one in a hand-written shift: HPMD, the bit that stops the PMU counting
at EL2, is bit 17, and `1 << 16` is one keystroke away.

Caught by RES0 (bit 16 of MDCR_EL2 set, on every CPU).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "RES0"


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's setup."""

    name = "mutant mdcr_res0_bit"

    def setup_debug(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """The reference's kvm_arm_setup_debug, with bit 16 set."""
        super().setup_debug(cpu, vcpu, host_mdcr_el2)
        vcpu.mdcr_el2 |= 1 << 16  # MUTANT: meant HPMD, MDCR_EL2 [17].


spekvm_adapter = Switch
