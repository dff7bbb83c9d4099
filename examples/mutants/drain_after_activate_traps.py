"""Mutant: the SPE drain runs after __activate_traps.

What is wrong: __activate_traps writes the guest's HCR_EL2 (VM = 1: stage 2 on) and the vcpu's
MDCR_EL2 (E2PB = 0b00: the buffer now belongs to EL2). The drain's own ISB puts both in force, so
its PSB CSYNC translates the host's records through the hypervisor's EL2 regime. On hardware that
regime (TTBR0_EL2 alone, without E2H) has no upper VA range: the kernel's buffer address takes a
translation fault, the buffer stops with PMBSR_EL1.S set, and the host's records are lost; the
host comes back to a stopped buffer it did not stop.

Why plausible: "save host state, then set up traps" and "set up traps, then save debug state"
both read naturally; the debug save sat next to the debug-register code, which does not care.

Caught by DRAIN-ORDER (the translation changed before the drain) and NO-LOSS (the host's records
fault); HOST-STATE sees PMBSR_EL1 changed.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("DRAIN-ORDER", "NO-LOSS")


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's save order."""

    name = "mutant drain_after_activate_traps"

    def enter_guest(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's entry half, with the SPE save after __activate_traps."""
        self.save_host_sysregs(cpu, vcpu)
        self.activate_traps(cpu, vcpu)
        self.save_spe(cpu, vcpu)  # MUTANT: after __activate_traps instead of before it.
        self.activate_vm(cpu, vcpu)
        self.restore_guest_sysregs(cpu, vcpu)
        self.synchronise_guest_context(cpu, vcpu)


spekvm_adapter = Switch
