"""Mutant: the switch runs the non-VHE save and restore on VHE too.

What is wrong: under VHE the host's buffer is translated by EL2's tables, which no guest ever
changes; the save, the drain and the restore are pure cost on every entry and exit.

Why plausible: one code path for both is simpler, and it is correct, only slow: the review's
"The vcpu can run. but it can't hide." and "I believe you can avoid that on VHE".

Caught by LEAN: SPE register accesses and a PSB CSYNC inside the windows of a VHE switch.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "LEAN"


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's save and restore on VHE."""

    name = "mutant drain_on_vhe"

    def save_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """__debug_save_spe_nvhe, on VHE too."""
        S.debug_save_spe_nvhe(cpu, vcpu)  # MUTANT: on VHE too.

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """__debug_restore_spe, on VHE too."""
        S.debug_restore_spe(cpu, vcpu)  # MUTANT: on VHE too.


spekvm_adapter = Switch
