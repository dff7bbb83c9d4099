"""Mutant: no ISB between turning sampling off and PSB CSYNC.

What is wrong: the nVHE save writes PMSCR_EL1 = 0 and goes straight to PSB CSYNC. Until a
context synchronisation event the write need not be in effect, so the PE may still be sampling
when PSB CSYNC flushes, and collect records after the drain that the guest's tables translate.

Why plausible: "write, then barrier" reads as enough, and the DSB that follows looks like the
barrier that matters; the ISB is the easiest line of the drain to drop when tidying up.

Caught by DRAIN-ORDER: before the first translation change of the entry, no ISB between the
PMSCR_EL1 write and the PSB CSYNC.
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
