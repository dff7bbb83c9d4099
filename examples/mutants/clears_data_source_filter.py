"""Mutant: the save clears the host's data source filter (FEAT_SPE_FDS) and never puts it back.

What is wrong: with FEAT_SPE_FDS the host programs PMSDSFR_EL1 to keep only the data sources it
wants; the switch writes 0 to it on every entry with a live buffer, and the host comes back to a
filter it did not set.

Why plausible: "quiesce every SPE filter before the guest runs" as a belt-and-braces stop, with
no save slot for a register that came with a later extension.

Caught by HOST-STATE (PMSDSFR_EL1 differs at the return to the host), on the FEAT_SPE_FDS cells.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "HOST-STATE"


class Switch(S.ReferenceSwitch):
    """The reference switch, clearing PMSDSFR_EL1 after its drain."""

    name = "mutant clears_data_source_filter"

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's drain, then the data source filter cleared."""
        super().drain(cpu, vcpu)
        if cpu.features.spe_fds:  # a boot-time capability, as has_vhe
            cpu.msr("PMSDSFR_EL1", 0)  # MUTANT: never restored.


spekvm_adapter = Switch
