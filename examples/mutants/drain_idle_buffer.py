"""Mutant: the nVHE save does not check whether the host is using its buffer (PMBLIMITR_EL1.E).

What is wrong: with the buffer disabled there is nothing to drain, yet every entry writes
PMSCR_EL1, synchronises and issues PSB CSYNC and a DSB.

Why plausible: draining "just in case" is always safe for correctness; the cost only shows on
a profile of the world switch ("this feels like hitting the brakes each time we enter the
guest").

Caught by LEAN: a PMSCR_EL1 write and a PSB CSYNC inside an entry where the buffer is not live.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.registers import PMBIDR_P

CAUGHT_BY = "LEAN"


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's liveness check."""

    name = "mutant drain_idle_buffer"

    def buffer_live(self, cpu: CPU) -> bool:
        """The reference's host_buffer_live, without the PMBLIMITR_EL1.E check."""
        if not S.has_spe(cpu):
            return False
        # MUTANT: no PMBLIMITR_EL1.E check: any buffer EL2 may touch counts as live.
        return not cpu.mrs("PMBIDR_EL1") & PMBIDR_P


spekvm_adapter = Switch
