"""Mutant: the exit restores PMSCR_EL1 from the guest's context instead of the host's save area.

What is wrong: the restore reads the guest's PMSCR_EL1 (vcpu context, 0: the guest may not
profile) where it should read host_debug_state; the host's sampling stays off after every run.

Why plausible: a one-word slip between two save areas with the same register name, `ctxt` for
`host_debug_state`; nothing crashes, profiles just get thinner.

Caught by HOST-STATE: PMSCR_EL1 is 0 at the return, where the host had E0SPE|E1SPE.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "HOST-STATE"


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's restore."""

    name = "mutant restore_guest_pmscr"

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's __debug_restore_spe, reading the wrong save area."""
        if S.has_vhe(cpu):
            return
        pmscr = vcpu.sysregs.get("PMSCR_EL1", 0)  # MUTANT: the guest's context, not host_debug_state.
        if not pmscr:
            return
        cpu.isb()
        cpu.msr("PMSCR_EL1", pmscr)


spekvm_adapter = Switch
