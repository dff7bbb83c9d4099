"""Mutant: the nVHE exit never turns the host's sampling back on.

What is wrong: the entry saves the host's PMSCR_EL1 and clears it, but the exit has no
__debug_restore_spe: the host comes back with sampling off, and its profile silently stops at the
first guest entry.

Why plausible: the restore is one call at the end of the exit path, easy to lose when the exit is
restructured; nothing fails, the host just collects fewer samples.

Caught by HOST-STATE (PMSCR_EL1 differs at the return to the host).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import Vcpu

CAUGHT_BY = "HOST-STATE"


class Switch(S.ReferenceSwitch):
    """The reference switch without its SPE restore."""

    name = "mutant no_spe_restore"

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """Nothing."""
        # MUTANT: no __debug_restore_spe here.


spekvm_adapter = Switch
