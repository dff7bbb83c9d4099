"""Mutant: the drain ends with a store-only DSB, then the buffer is disabled while the guest runs.

What is wrong: D17.9 asks for a DSB that applies to both loads and stores after the PSB CSYNC; a
DSB ISHST does not wait for the profiling buffer's writes. This switch also disables the buffer
while the guest runs (PMBLIMITR_EL1 = 0, as Linux does since 2026), so writes the PSB started may
still be in flight when the buffer goes off: the architecture lets them be discarded (D17.9.1
R_SXWCP), and the host's last records are lost.

Why plausible: "only stores need ordering before the next MSR" is a common barrier economy, and
ISHST is what nearby page-table code uses.

Caught by DRAIN-ORDER (no DSB over loads and stores before the buffer is disabled) and NO-LOSS
(the in-flight records discarded by the hypervisor's disable).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("DRAIN-ORDER", "NO-LOSS")


class Switch(S.ReferenceSwitch):
    """The reference switch, disabling the buffer after a drain whose DSB is store-only."""

    name = "mutant dsb_ishst_then_disable"

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        """Sampling off, ISB, PSB CSYNC, a store-only DSB, then the buffer off."""
        cpu.msr("PMSCR_EL1", 0)
        cpu.isb()
        cpu.psb_csync()
        cpu.dsb("ishst")  # MUTANT: D17.9 asks for a DSB over loads and stores.
        vcpu.host_debug_state["pmblimitr_el1"] = cpu.mrs("PMBLIMITR_EL1")
        cpu.msr("PMBLIMITR_EL1", 0)
        cpu.isb()

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's __debug_restore_spe, switching the buffer back on first."""
        limit = vcpu.host_debug_state.pop("pmblimitr_el1", 0)
        if limit:
            cpu.msr("PMBLIMITR_EL1", limit)
            cpu.isb()
        super().restore_spe(cpu, vcpu)


spekvm_adapter = Switch
