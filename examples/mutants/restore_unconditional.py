"""Mutant: the restore writes PMSCR_EL1 on every exit, even when the entry saved nothing.

What is wrong: on a CPU without FEAT_SPE, PMSCR_EL1 is UNDEFINED, so the exit takes an exception
at EL2; where SPE exists but the buffer was not live, it is a needless synchronise-and-write.

Why plausible: "restore what we saved" without the `if (!pmscr_el1) return;` reads simpler, and
writing back 0 looks harmless.

Caught by UNDEF (PMSCR_EL1 written on a CPU without SPE) and LEAN (a PMSCR_EL1 write while the
buffer is not live).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("UNDEF", "LEAN")


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's restore."""

    name = "mutant restore_unconditional"

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's __debug_restore_spe, without the early return."""
        if S.has_vhe(cpu):
            return
        pmscr = vcpu.host_debug_state.get("pmscr_el1", 0)
        # MUTANT: no `if not pmscr: return` here.
        cpu.isb()
        cpu.msr("PMSCR_EL1", pmscr)


spekvm_adapter = Switch
