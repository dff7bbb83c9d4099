"""Mutant: the SPE restore runs before the host's system registers are back, and the exit relies
on the return to the host to synchronise.

What is wrong: only on some CPUs, where the exception return to the host is a context
synchronisation event (no FEAT_ExS, or SCTLR_EL2.EOS = 1) the order of the exit's writes does
not matter (PMSCR_EL1 does nothing at EL2, and the return puts everything in force together):
the suite passes that. On a FEAT_ExS CPU whose hypervisor leaves EOS = 0, the host resumes with
PMSCR_EL1 in force but its stage 1 (and its MDCR_EL2) possibly not: its records can be written
through the guest's tables, and its own buffer accesses can still trap to EL2.

Why plausible: exactly what the review warned about: "if you now depend on the debug restore
being run after the rest of the sysregs, please add a comment in switch.c::__kvm_vcpu_run so that
we remember about that dependency". Moving the debug restore up next to __deactivate_traps is a
natural clean-up for someone who never read that comment.

Caught by RESTORE-ORDER on the FEAT_ExS cells (the host's stage 1 written after the restore's
ISB, and no ISB before a return that does not synchronise); UNDEF and, under the split
adversary, ISOLATION show the outcome.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "RESTORE-ORDER"


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's restore order."""

    name = "mutant restore_before_host_sysregs"

    def exit_guest(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's exit half, with the SPE restore before the host's system registers, and no
        ISB before the return to the host."""
        self.save_guest_sysregs(cpu, vcpu)
        self.deactivate_traps(cpu, vcpu)
        self.deactivate_vm(cpu, vcpu)
        self.restore_spe(cpu, vcpu)  # MUTANT: before restore_host_sysregs instead of after it.
        self.restore_host_sysregs(cpu, vcpu)


spekvm_adapter = Switch
