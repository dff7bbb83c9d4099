"""Mutant: the vcpu's MDCR_EL2 forgets TPMS.

What is wrong: MDCR_EL2.TPMS is what traps the guest's accesses to the sampling controls
(PMSCR_EL1, PMSICR_EL1, PMSIRR_EL1, ...). Without it the guest reads the host's PMSCR_EL1 and
sampling configuration, and writes them: the host's values become the guest's to see and change.

Why plausible: E2PB = 0b00 already "takes the buffer away from EL1", and it is easy to believe
that covers every SPE register.

Caught by TRAP-COND (the guest runs with TPMS = 0, and its accesses complete) and ISOLATION (the
guest reaches host SPE state).
"""

from __future__ import annotations

from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("TRAP-COND", "ISOLATION")


class Switch(S.ReferenceSwitch):
    """The reference switch without TPMS in the vcpu's MDCR_EL2."""

    name = "mutant guest_without_tpms"

    def setup_debug(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """kvm_arm_setup_debug, then TPMS cleared."""
        super().setup_debug(cpu, vcpu, host_mdcr_el2)
        vcpu.mdcr_el2 &= ~R.bits("MDCR_EL2", TPMS=1)  # MUTANT


spekvm_adapter = Switch
