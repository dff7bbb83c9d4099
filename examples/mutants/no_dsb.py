"""Mutant: the drain has no DSB.

What is wrong: PSB CSYNC translates the collected records and starts their writes; without a DSB
nothing waits for the writes to complete (D17.9: the PSB is to be followed by a DSB that applies
to loads and stores). If the buffer is then disabled or its memory reused, records still in
flight may be discarded (D17.9.1 R_SXWCP).

Why plausible: PSB CSYNC has "sync" in its name and looks like the whole drain.

Caught by DRAIN-ORDER: no DSB after the PSB CSYNC, before the translation change. On this switch
(the buffer stays enabled while the guest runs) the started writes still land where the PSB
translated them, so no outcome follows in the model: the verdict rests on D17.9's obligation,
which the rule cites. A switch that also disables the buffer before the DSB loses records (the
mutant disable_before_dsb).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "DRAIN-ORDER"


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's drain."""

    name = "mutant no_dsb"

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's drain, without the DSB."""
        cpu.msr("PMSCR_EL1", 0)
        cpu.isb()
        cpu.psb_csync()
        # MUTANT: no cpu.dsb("nsh") here.


spekvm_adapter = Switch
