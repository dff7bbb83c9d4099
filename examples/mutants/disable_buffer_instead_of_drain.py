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
from pytest_spekvm.reference.cpu import CPU, PMBIDR_P, PMBLIMITR_E
from pytest_spekvm.reference.vcpu import ExitReason, Vcpu

CAUGHT_BY = ("NO-LOSS", "DRAIN-ORDER")


def debug_save_spe_nvhe(cpu: CPU, vcpu: Vcpu) -> None:
    """The reference's __debug_save_spe_nvhe, switching the buffer off instead of draining."""
    vcpu.host_debug_state["pmscr_el1"] = 0
    if not S.has_spe(cpu):
        return
    if cpu.mrs("PMBIDR_EL1") & PMBIDR_P:
        return
    if not cpu.mrs("PMBLIMITR_EL1") & PMBLIMITR_E:
        return
    vcpu.host_debug_state["pmscr_el1"] = cpu.mrs("PMSCR_EL1")
    cpu.msr("PMSCR_EL1", 0)
    cpu.isb()
    # MUTANT: the buffer is switched off instead of PSB CSYNC; DSB.
    vcpu.host_debug_state["pmblimitr_el1"] = cpu.mrs("PMBLIMITR_EL1")
    cpu.msr("PMBLIMITR_EL1", 0)
    cpu.isb()


def debug_restore_spe(cpu: CPU, vcpu: Vcpu) -> None:
    """The reference's __debug_restore_spe, switching the buffer back on first."""
    limit = vcpu.host_debug_state.pop("pmblimitr_el1", 0)
    if limit:
        cpu.msr("PMBLIMITR_EL1", limit)
    S.debug_restore_spe(cpu, vcpu)


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's save and restore."""

    name = "mutant disable_buffer_instead_of_drain"

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
            debug_restore_spe(cpu, vcpu)
        return exit_reason


spekvm_adapter = Switch
