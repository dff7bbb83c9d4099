"""Mutant: the drain has no PSB CSYNC.

What is wrong: sampling is turned off and synchronised, and a DSB follows, but nothing makes the
PE write out the records it has already collected (D17.9 R_TRDTK: software must execute a PSB to
synchronise them). They stay inside the PE and are written later, when the PE chooses: after the
switch has handed the buffer to EL2, whose regime faults the kernel's buffer address, so the
host's profile is lost and its buffer stopped.

Why plausible: a DSB is the barrier everyone knows for "make my writes complete"; that the
profiling unit's writes are not started until a PSB CSYNC is SPE-specific knowledge.

Caught by DRAIN-ORDER (no PSB CSYNC before the translation change) and NO-LOSS (the worst-case
adversary holds the records until the guest exits, and they fault).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("DRAIN-ORDER", "NO-LOSS")


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's drain."""

    name = "mutant no_psb_csync"

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's drain, without PSB CSYNC."""
        cpu.msr("PMSCR_EL1", 0)
        cpu.isb()
        # MUTANT: no cpu.psb_csync() here.
        cpu.dsb("nsh")


spekvm_adapter = Switch
