"""Mutant: the nVHE save does not check whether the host is using its buffer (PMBLIMITR_EL1.E).

What is wrong: with the buffer disabled there is nothing to drain, yet every entry writes
PMSCR_EL1, synchronises and issues PSB CSYNC and a DSB.

Why plausible: draining "just in case" is always safe for correctness; the cost only shows on
a profile of the world switch ("this feels like hitting the brakes each time we enter the
guest").

Caught by LEAN: a PMSCR_EL1 write and a PSB CSYNC inside an entry where the buffer is not live.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU, PMBIDR_P
from pytest_spekvm.reference.vcpu import ExitReason, Vcpu

CAUGHT_BY = "LEAN"


def debug_save_spe_nvhe(cpu: CPU, vcpu: Vcpu) -> None:
    """The reference's __debug_save_spe_nvhe, without the PMBLIMITR_EL1.E check."""
    vcpu.host_debug_state["pmscr_el1"] = 0
    if not S.has_spe(cpu):
        return
    if cpu.mrs("PMBIDR_EL1") & PMBIDR_P:
        return
    # MUTANT: no PMBLIMITR_EL1.E check here.
    vcpu.host_debug_state["pmscr_el1"] = cpu.mrs("PMSCR_EL1")
    cpu.msr("PMSCR_EL1", 0)
    cpu.isb()
    cpu.psb_csync()
    cpu.dsb("nsh")


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's save."""

    name = "mutant drain_idle_buffer"

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> ExitReason:
        """__kvm_vcpu_run in the reference's order."""
        vhe = S.has_vhe(cpu)
        S.save_host_sysregs(cpu, vcpu)
        if not vhe:
            debug_save_spe_nvhe(cpu, vcpu)
        S.activate_traps(cpu, vcpu)
        S.activate_vm(cpu, vcpu)
        S.restore_guest_sysregs(cpu, vcpu)
        exit_reason = cpu.run_guest(vcpu)
        S.save_guest_sysregs(cpu, vcpu)
        S.deactivate_traps(cpu, vcpu, self._host_mdcr_el2)
        S.deactivate_vm(cpu, vcpu)
        S.restore_host_sysregs(cpu, vcpu)
        if not vhe:
            S.debug_restore_spe(cpu, vcpu)
        return exit_reason


spekvm_adapter = Switch
