"""Mutant: the drain forgets the DSB after PSB CSYNC.

What is wrong: PSB CSYNC only starts the writes of the collected records; without a DSB nothing
waits for them to complete before the switch changes the translation they use.

Why plausible: PSB CSYNC has "sync" in its name and looks like the whole drain.

Caught by DRAIN-ORDER: no DSB (NSH or wider) after the PSB CSYNC, before the translation change.
The model completes a started write at once, so no record goes astray: only the ordering rule
sees this one, which is what it is for.
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
