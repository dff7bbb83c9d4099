"""Mutant: the host's PMSCR_EL1 is saved in the vcpu's guest context instead of its own save area.

What is wrong: the save keeps the host's PMSCR_EL1 in vcpu.sysregs, the guest's saved system
registers. The restore works, but KVM shows that context to the guest (as the value of its own
PMSCR_EL1) and to userspace (KVM_GET_ONE_REG, migration): the host's sampling controls leak.

Why plausible: the vcpu's sysregs array is where every other saved EL1 register lives, and
PMSCR_EL1 is an EL1 register; a separate host_debug_state is easy to overlook.

Caught by ISOLATION (the saved guest context holds a value the host had, while the guest runs).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "ISOLATION"


class Switch(S.ReferenceSwitch):
    """The reference switch, keeping the host's PMSCR_EL1 in the guest's context."""

    name = "mutant host_pmscr_in_guest_context"

    def save_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's save, into vcpu.sysregs."""
        if S.has_vhe(cpu):
            return
        vcpu.sysregs["PMSCR_EL1"] = 0  # MUTANT: the guest's context, not host_debug_state.
        if self.buffer_live(cpu):
            vcpu.sysregs["PMSCR_EL1"] = cpu.mrs("PMSCR_EL1")
            self.drain(cpu, vcpu)

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's restore, from vcpu.sysregs."""
        pmscr = vcpu.sysregs.get("PMSCR_EL1", 0)
        if not S.has_vhe(cpu) and pmscr:
            cpu.isb()
            cpu.msr("PMSCR_EL1", pmscr)


spekvm_adapter = Switch
