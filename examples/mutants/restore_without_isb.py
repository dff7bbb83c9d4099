"""Mutant: the SPE restore re-enables sampling without an ISB first.

What is wrong: the host's stage 1 and MDCR_EL2.E2PB have just been written back but not
synchronised; PMSCR_EL1 = host value may take effect before them, so the PE can sample (and
translate) with the guest's regime still in force.

Why plausible: the review itself questioned this ISB ("I believe you can avoid that on VHE"); on
nVHE, dropping it everywhere is a small step from there.

Caught by RESTORE-ORDER: no ISB between the last write that gives the host back its translation
and the write that turns sampling on.
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


spekvm_adapter = Switch
