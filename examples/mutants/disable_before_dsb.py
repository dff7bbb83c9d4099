"""Mutant: the buffer is disabled between the PSB CSYNC and the DSB.

What is wrong: the PSB CSYNC only starts the writes of the records it synchronised; the DSB
after it is what waits for them. Disabling the buffer before that DSB lets the PE discard the
writes still in flight (D17.9.1 R_SXWCP), so the host's last records are lost even though the
drain's every instruction is present.

Why plausible: the lines are all there, in a tidy block; only their order is wrong, and on most
runs the writes are quick enough that nothing seems lost.

Caught by DRAIN-ORDER (the buffer disabled before a DSB completed the drain) and NO-LOSS (the
worst-case adversary discards the writes in flight).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("DRAIN-ORDER", "NO-LOSS")


class Switch(S.ReferenceSwitch):
    """The reference switch, disabling the buffer before the drain's DSB."""

    name = "mutant disable_before_dsb"

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        """Sampling off, ISB, PSB CSYNC, buffer off, then the DSB."""
        cpu.msr("PMSCR_EL1", 0)
        cpu.isb()
        cpu.psb_csync()
        vcpu.host_debug_state["pmblimitr_el1"] = cpu.mrs("PMBLIMITR_EL1")
        cpu.msr("PMBLIMITR_EL1", 0)  # MUTANT: before the DSB that completes the drain's writes.
        cpu.dsb("nsh")
        cpu.isb()

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's __debug_restore_spe, switching the buffer back on first."""
        limit = vcpu.host_debug_state.pop("pmblimitr_el1", 0)
        if limit:
            cpu.msr("PMBLIMITR_EL1", limit)
            cpu.isb()
        super().restore_spe(cpu, vcpu)


spekvm_adapter = Switch
