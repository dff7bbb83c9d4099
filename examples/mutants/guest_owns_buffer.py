"""Mutant: the vcpu's MDCR_EL2 hands the profiling buffer to the guest (E2PB = 0b11).

What is wrong: with E2PB = 0b11, EL1 accesses to the buffer registers do not trap: the guest
reads and writes the host's PMBPTR_EL1/PMBLIMITR_EL1/PMBSR_EL1 directly.

Why plausible: the developer copies the host's nVHE boot value of E2PB into the vcpu's
MDCR_EL2 ("keep the host's bits, add the trap bits") instead of clearing it, which is what the
RFC's comment "This also clears MDCR_EL2_E2PB_MASK" is there to prevent.

Caught by TRAP-COND (the guest runs with an E2PB that does not trap, and its buffer accesses
complete) and ISOLATION (the guest reads host SPE state).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("TRAP-COND", "ISOLATION")


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's setup."""

    name = "mutant guest_owns_buffer"

    def setup_debug(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """The reference's kvm_arm_setup_debug, with the buffer left to EL1."""
        super().setup_debug(cpu, vcpu, host_mdcr_el2)
        if S.has_spe(cpu):
            vcpu.mdcr_el2 |= S.MDCR_E2PB_MASK  # MUTANT: E2PB = 0b11 instead of 0b00.


spekvm_adapter = Switch
