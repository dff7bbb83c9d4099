"""Mutant: the exit has no ISB before host sampling resumes, on any CPU.

What is wrong: only on some CPUs, where the exception return to the host is a context
synchronisation event (no FEAT_ExS, or SCTLR_EL2.EOS = 1), it synchronises the restored stage 1,
MDCR_EL2 and PMSCR_EL1 together, and the restore's ISB is the review's habit, not a requirement:
the suite passes that. On a FEAT_ExS CPU whose hypervisor leaves EOS = 0 (non-VHE Linux between a
v7.0-cycle change and its 7.1 fix), nothing synchronises them before the host runs: PMSCR_EL1 may
be in force before the host's translation and buffer ownership are.

Why plausible: the review itself questioned this ISB ("I believe you can avoid that on VHE"); on
nVHE, where the ERET synchronises, dropping it everywhere is a small step from there.

Caught by RESTORE-ORDER on the FEAT_ExS cells (no ISB between the writes restoring the host's
translation and a return that does not synchronise); UNDEF shows the host's own accesses trapping.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "RESTORE-ORDER"


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's restore."""

    name = "mutant restore_without_isb"

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's __debug_restore_spe, without the ISB."""
        if S.has_vhe(cpu):
            return
        pmscr = vcpu.host_debug_state.get("pmscr_el1", 0)
        if not pmscr:
            return
        # MUTANT: no cpu.isb() here.
        cpu.msr("PMSCR_EL1", pmscr)

    def synchronise_host_context(self, cpu: CPU, vcpu: Vcpu) -> None:
        """Nothing: the exit relies on the return to the host to synchronise."""
        # MUTANT: no cpu.isb() before the ERET on FEAT_ExS CPUs either.


spekvm_adapter = Switch
