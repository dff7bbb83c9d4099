"""Mutant: the nVHE save does not check PMBIDR_EL1.P before using the buffer registers.

What is wrong: with PMBIDR_EL1.P = 1 the profiling buffer belongs to a higher exception level
(EL3 firmware); only PMBIDR_EL1 may be accessed, and reading PMBLIMITR_EL1 is UNDEFINED.

Why plausible: on most boards the firmware leaves the buffer to the OS, so the check never
mattered in testing; "is the host using it" (PMBLIMITR_EL1.E) looks like the only question.

Caught by UNDEF: an access to PMBLIMITR_EL1 while PMBIDR_EL1.P is 1.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.registers import PMBLIMITR_E

CAUGHT_BY = "UNDEF"


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's liveness check."""

    name = "mutant no_pmbidr_p_check"

    def buffer_live(self, cpu: CPU) -> bool:
        """The reference's host_buffer_live, without the PMBIDR_EL1.P check."""
        if not S.has_spe(cpu):
            return False
        # MUTANT: no PMBIDR_EL1.P check here.
        return bool(cpu.mrs("PMBLIMITR_EL1") & PMBLIMITR_E)


spekvm_adapter = Switch
