"""Mutant: the vcpu's MDCR_EL2 gives E2PB the reserved value 0b01.

What is wrong: MDCR_EL2.E2PB = 0b01 is reserved, and a reserved value may behave as any allocated
one (Arm ARM K1.2.19): as 0b11 the guest owns the host's buffer and its buffer accesses do not
trap, so it reads and writes the host's PMBPTR_EL1/PMBLIMITR_EL1/PMBSR_EL1.

Why plausible: E2PB reads as "EL2 profiling buffer"; a developer who takes it for a one-bit flag
("set it: EL2 owns the buffer") writes `1 << 12` instead of leaving the field at 0b00.

Caught by TRAP-COND (the guest runs with an E2PB that need not trap, and its buffer accesses
complete), ISOLATION (the guest reads host SPE state) and HOST-STATE (the guest's write to
PMBLIMITR_EL1 lands in the host's register).
"""

from __future__ import annotations

from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("TRAP-COND", "ISOLATION", "HOST-STATE")


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's setup."""

    name = "mutant reserved_e2pb"

    def setup_debug(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """The reference's kvm_arm_setup_debug, with E2PB = 0b01."""
        super().setup_debug(cpu, vcpu, host_mdcr_el2)
        if S.has_spe(cpu):
            vcpu.mdcr_el2 |= R.bits("MDCR_EL2", E2PB=R.E2PB_RESERVED)  # MUTANT: 0b01 instead of 0b00.


spekvm_adapter = Switch
