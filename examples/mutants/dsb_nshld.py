"""Mutant: the drain's DSB is load-only.

What is wrong: the profiling buffer's record writes are stores, and D17.9 asks for a DSB that
applies to both loads and stores after the PSB; a DSB NSHLD does not wait for the writes, so
they may still be in flight when the buffer is stopped or its translation changes.

Why plausible: "nsh" was right, and the *LD/*ST variants are picked by analogy with nearby code
(or by an optimiser of barriers) without thinking about which direction the buffer goes.

Caught by DRAIN-ORDER: no DSB over loads and stores (the message says the NSHLD one does not wait
for the buffer's writes). A store-only DSB (`dsb ishst`) is caught the same way.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "DRAIN-ORDER"


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's drain."""

    name = "mutant dsb_nshld"

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's drain, with a load-only DSB."""
        cpu.msr("PMSCR_EL1", 0)
        cpu.isb()
        cpu.psb_csync()
        cpu.dsb("nshld")  # MUTANT: waits for loads only.


spekvm_adapter = Switch
