"""Mutant: the DSB comes before the PSB CSYNC.

What is wrong: the DSB waits for writes already started, but the records' writes are only
started by the PSB CSYNC that follows, so nothing waits for them (D17.9 asks for the DSB after
the PSB).

Why plausible: "barrier, then sync" is a common idiom elsewhere (dsb; isb), and swapping two
adjacent barrier lines looks harmless in review.

Caught by DRAIN-ORDER: no DSB after the PSB CSYNC (the message names the one that came too
early). As with no_dsb, the verdict rests on D17.9's obligation.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "DRAIN-ORDER"


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's drain."""

    name = "mutant dsb_before_psb"

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's drain, with the DSB and PSB CSYNC swapped."""
        cpu.msr("PMSCR_EL1", 0)
        cpu.isb()
        cpu.dsb("nsh")  # MUTANT: before the PSB CSYNC instead of after it.
        cpu.psb_csync()


spekvm_adapter = Switch
