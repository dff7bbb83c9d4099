"""Mutant: the nVHE save does not clear its save area when it returns early.

What is wrong: after an entry that saved the host's PMSCR_EL1, an entry with the host's buffer
disabled returns before saving, and the exit "restores" the value left from the earlier entry:
the host's PMSCR_EL1 changes behind its driver's back, and the exit does SPE work it did not
need.

Why plausible: it is what the RFC posted (later kernels add "Clear pmscr in case of early
return"); the save area looks like a local variable, but it lives in the vcpu across runs.

Caught by HOST-STATE (PMSCR_EL1 differs at the return) and LEAN (a PMSCR_EL1 write while the
buffer is not live). The scripted cells find it (they re-enter vcpu 1 after the host disables its
buffer), and so do the generated sequences.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("HOST-STATE", "LEAN")


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's save."""

    name = "mutant stale_pmscr"

    def save_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's save, with the area written only when it saves."""
        if S.has_vhe(cpu):
            return
        # MUTANT: the save area is not cleared here.
        if self.buffer_live(cpu):
            vcpu.host_debug_state["pmscr_el1"] = cpu.mrs("PMSCR_EL1")
            self.drain(cpu, vcpu)


spekvm_adapter = Switch
