"""Mutant: the drain forgets PSB CSYNC.

What is wrong: sampling is turned off and synchronised, and a DSB follows, but nothing makes the
PE write out the records it has already collected. They stay inside the PE and are translated
later, when the PE chooses: after the switch has installed the guest's stage 2 and handed the
buffer to EL2, so the host's profile lands in hypervisor or guest memory.

Why plausible: a DSB is the barrier everyone knows for "make my writes complete"; that the
profiling unit's writes are not started until a PSB CSYNC is SPE-specific knowledge.

Caught by DRAIN-ORDER (no PSB CSYNC before the translation change) and ISOLATION (the worst-case
chooser holds the records until the guest exits, and they land in hypervisor memory).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("DRAIN-ORDER", "ISOLATION")


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
