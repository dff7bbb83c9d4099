"""Mutant: the save reads PMSCR_EL1 before asking whether the buffer is the host's.

What is wrong: when EL3 gives the profiling buffer to another Security state (MDCR_EL3.NSPB),
every SPE register but PMBIDR_EL1 traps to EL3 from EL1 and EL2, the sampling controls included,
not only the buffer registers. Reading PMSCR_EL1 first takes an exception to the firmware.

Why plausible: PMBIDR_EL1.P reads as "the *buffer* is owned elsewhere", and PMSCR_EL1 is a
sampling register, so reading it early looks safe.

Caught by UNDEF: an access to PMSCR_EL1 that traps to EL3.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "UNDEF"


class Switch(S.ReferenceSwitch):
    """The reference switch, reading PMSCR_EL1 before its liveness checks."""

    name = "mutant sampling_before_ownership_check"

    def save_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """debug_save_spe_nvhe, with PMSCR_EL1 read up front."""
        if S.has_vhe(cpu):
            return
        vcpu.host_debug_state["pmscr_el1"] = 0
        if not S.has_spe(cpu):
            return
        pmscr = cpu.mrs("PMSCR_EL1")  # MUTANT: before the PMBIDR_EL1.P check.
        if self.buffer_live(cpu):
            vcpu.host_debug_state["pmscr_el1"] = pmscr
            self.drain(cpu, vcpu)


spekvm_adapter = Switch
