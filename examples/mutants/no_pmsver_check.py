"""Mutant: the nVHE save does not check ID_AA64DFR0_EL1.PMSVer before touching SPE registers.

What is wrong: on a CPU without FEAT_SPE, PMBIDR_EL1 and the other SPE registers are UNDEFINED:
the first MRS takes an exception at EL2.

Why plausible: the code was written and tested on SPE hardware; the ownership check on
PMBIDR_EL1.P looks like it covers "SPE not usable".

Caught by UNDEF: an access to PMBIDR_EL1 on a CPU without FEAT_SPE.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.registers import PMBIDR_P, PMBLIMITR_E

CAUGHT_BY = "UNDEF"


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's liveness check."""

    name = "mutant no_pmsver_check"

    def buffer_live(self, cpu: CPU) -> bool:
        """The reference's host_buffer_live, without the PMSVer check."""
        # MUTANT: no ID_AA64DFR0_EL1.PMSVer check here.
        if cpu.mrs("PMBIDR_EL1") & PMBIDR_P:
            return False
        return bool(cpu.mrs("PMBLIMITR_EL1") & PMBLIMITR_E)


spekvm_adapter = Switch
