"""Mutant: the restore writes PMSCR_EL1 on every exit, even when the entry saved nothing.

What is wrong: on a CPU without FEAT_SPE, PMSCR_EL1 is UNDEFINED, so the exit takes an exception
at EL2; where SPE exists but the buffer was not live, it is a needless synchronise-and-write.

Why plausible: "restore what we saved" without the `if (!pmscr_el1) return;` reads simpler, and
writing back 0 looks harmless.

Caught by UNDEF (PMSCR_EL1 written on a CPU without SPE) and LEAN (a PMSCR_EL1 write while the
buffer is not live).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.vcpu import ExitReason, Vcpu

CAUGHT_BY = ("UNDEF", "LEAN")


def debug_restore_spe(cpu: CPU, vcpu: Vcpu) -> None:
    """The reference's __debug_restore_spe, without the early return."""
    pmscr = vcpu.host_debug_state.get("pmscr_el1", 0)
    # MUTANT: no `if not pmscr: return` here.
    cpu.isb()
    cpu.msr("PMSCR_EL1", pmscr)


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's restore."""

    name = "mutant restore_unconditional"

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> ExitReason:
        """__kvm_vcpu_run in the reference's order."""
        vhe = S.has_vhe(cpu)
        S.save_host_sysregs(cpu, vcpu)
        if not vhe:
            S.debug_save_spe_nvhe(cpu, vcpu)
        S.activate_traps(cpu, vcpu)
        S.activate_vm(cpu, vcpu)
        S.restore_guest_sysregs(cpu, vcpu)
        exit_reason = cpu.run_guest(vcpu)
        S.save_guest_sysregs(cpu, vcpu)
        S.deactivate_traps(cpu, vcpu, self._host_mdcr_el2)
        S.deactivate_vm(cpu, vcpu)
        S.restore_host_sysregs(cpu, vcpu)
        if not vhe:
            debug_restore_spe(cpu, vcpu)
        return exit_reason


spekvm_adapter = Switch
