"""Mutant: no ISB between turning sampling off and PSB CSYNC.

What is wrong: only on some CPUs, a PSB CSYNC synchronises the profiling operations of the
instructions before the last context synchronisation event (Arm ARM D17.9). Where the exception
entry into EL2 is one (no FEAT_ExS, or SCTLR_EL2.EIS = 1), it already is that event, and EL2 never
samples the host's EL1-owned buffer: this drain is then correct, and the suite passes it. On a
FEAT_ExS CPU whose hypervisor leaves EIS = 0 (non-VHE Linux between a v7.0-cycle change and its
7.1 fix), nothing synchronises before the PSB: the host's last records stay in the PE, are
written later through the guest's regime (E2PB = 0b00: the EL2 regime, which faults them), and
are lost.

Why plausible: "write, then barrier" reads as enough, and the DSB that follows looks like the
barrier that matters; on most CPUs nothing breaks.

Caught by DRAIN-ORDER on the FEAT_ExS cells (no context synchronisation event before the PSB),
with NO-LOSS and HOST-STATE showing the outcome.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "DRAIN-ORDER"


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's drain."""

    name = "mutant drop_isb_before_psb"

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's drain, without the ISB."""
        cpu.msr("PMSCR_EL1", 0)
        # MUTANT: no cpu.isb() here.
        cpu.psb_csync()
        cpu.dsb("nsh")


spekvm_adapter = Switch
