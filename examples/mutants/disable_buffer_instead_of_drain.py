"""Mutant: the save disables the profiling buffer instead of draining it.

What is wrong: turning PMBLIMITR_EL1.E off discards every record collected but not yet written,
so the host loses the samples taken just before each entry (the exit turns the buffer back on).

Why plausible: "make sure nothing can write while the guest runs" is most directly said by
switching the buffer off; that disabling discards rather than flushes is easy to miss.

Caught by NO-LOSS (host records discarded because the hypervisor, not the host, disabled the
buffer) and DRAIN-ORDER (no PSB CSYNC and DSB before the translation changes).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("NO-LOSS", "DRAIN-ORDER")


class Switch(S.ReferenceSwitch):
    """The reference switch, switching the buffer off instead of draining it, and back on at the exit."""

    name = "mutant disable_buffer_instead_of_drain"

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        """Sampling off, then the buffer off: PMBLIMITR_EL1 kept in the save area for the exit."""
        cpu.msr("PMSCR_EL1", 0)
        cpu.isb()
        # MUTANT: the buffer is switched off instead of PSB CSYNC; DSB.
        vcpu.host_debug_state["pmblimitr_el1"] = cpu.mrs("PMBLIMITR_EL1")
        cpu.msr("PMBLIMITR_EL1", 0)
        cpu.isb()

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's __debug_restore_spe, switching the buffer back on first."""
        limit = vcpu.host_debug_state.pop("pmblimitr_el1", 0)
        if limit:
            cpu.msr("PMBLIMITR_EL1", limit)
        super().restore_spe(cpu, vcpu)


spekvm_adapter = Switch
