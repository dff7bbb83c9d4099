"""Mutant: the buffer is "stopped" by pulling its limit down to the write pointer.

What is wrong: instead of draining, the save leaves the buffer enabled but with no room
(PMBLIMITR_EL1.LIMIT at the write pointer's page), expecting the PE to write nothing while the
guest runs. The PE does exactly what a full buffer makes it do: the next record it writes sets
PMBSR_EL1.S with a buffer-full event, and every later host record is turned away. The host's
records are lost, and the host comes back to a stopped buffer it did not fill.

Why plausible: it avoids the PSB CSYNC's cost ("hitting the brakes each time we enter the
guest") and keeps PMBLIMITR_EL1.E, which the host's driver checks, untouched.

Caught by DRAIN-ORDER (the buffer's limit changed before the drain), NO-LOSS (host records
turned away by a buffer the switch filled) and HOST-STATE (PMBSR_EL1 changed).
"""

from __future__ import annotations

from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = ("DRAIN-ORDER", "NO-LOSS", "HOST-STATE")
PAGE_MASK = ~0xFFF  # PMBLIMITR_EL1.LIMIT [63:12] is a page address


class Switch(S.ReferenceSwitch):
    """The reference switch, squeezing the buffer instead of draining it."""

    name = "mutant squeeze_limit"

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        """Sampling off, then the limit down to the pointer's page (E kept)."""
        cpu.msr("PMSCR_EL1", 0)
        cpu.isb()
        # MUTANT: no PSB CSYNC, no DSB; the limit is pulled down instead.
        vcpu.host_debug_state["pmblimitr_el1"] = cpu.mrs("PMBLIMITR_EL1")
        cpu.msr("PMBLIMITR_EL1", (cpu.mrs("PMBPTR_EL1") & PAGE_MASK) | R.bits("PMBLIMITR_EL1", E=1))

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's __debug_restore_spe, putting the limit back first."""
        limit = vcpu.host_debug_state.pop("pmblimitr_el1", 0)
        if limit:
            cpu.msr("PMBLIMITR_EL1", limit)
        super().restore_spe(cpu, vcpu)


spekvm_adapter = Switch
