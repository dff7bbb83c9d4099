"""Mutant: the guest's PMBIDR_EL1 reads are trapped with HDFGRTR_EL2, but after the entry's ISB.

What is wrong: where FEAT_FGT exists the switch sets HDFGRTR_EL2.PMBIDR_EL1 so that the guest's
reads of PMBIDR_EL1 trap, but it writes it after the ISB before the ERET into the guest. On a
FEAT_ExS CPU with SCTLR_EL2.EOS = 0 that ERET is not a context synchronisation event: the trap is
not yet in force and the guest's read completes. The exit clears the trap the same way, after
the last ISB.

Why plausible: the trap is added late in review, at the end of the entry half ("just before we
go"), past the ISB that was placed there for the other registers; without FEAT_ExS the ERET
synchronises and nothing shows.

Caught by TRAP-COND (the guest's PMBIDR_EL1 read completed although the switch had asked for it to
trap), on the FEAT_FGT cells with FEAT_ExS only.
"""

from __future__ import annotations

from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "TRAP-COND"


def trap_pmbidr(cpu: CPU, on: bool) -> None:
    """Set (`on`) or clear HDFGRTR_EL2.PMBIDR_EL1, where the CPU has FEAT_FGT and FEAT_SPE."""
    if cpu.features.fgt and S.has_spe(cpu):
        value = cpu.mrs("HDFGRTR_EL2")
        cpu.msr("HDFGRTR_EL2", value | R.HDFGRTR_PMBIDR if on else value & ~R.HDFGRTR_PMBIDR)


class Switch(S.ReferenceSwitch):
    """The reference switch, trapping the guest's PMBIDR_EL1 reads after the ISBs."""

    name = "mutant fgt_trap_after_isb"

    def synchronise_guest_context(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The ISB before the ERET into the guest, then the trap."""
        super().synchronise_guest_context(cpu, vcpu)
        trap_pmbidr(cpu, True)  # MUTANT: after the ISB instead of before it.

    def synchronise_host_context(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The ISB before the ERET to the host, then the trap cleared."""
        super().synchronise_host_context(cpu, vcpu)
        trap_pmbidr(cpu, False)  # MUTANT: after the ISB instead of before it.


spekvm_adapter = Switch
