"""Mutant: no ISB between turning sampling off and PSB CSYNC.

What is wrong: the nVHE save writes PMSCR_EL1 = 0 and goes straight to PSB CSYNC. Until a
context synchronisation event the write need not be in effect, so the PE may still be sampling
when PSB CSYNC flushes, and collect records after the drain that the guest's tables translate.

Why plausible: "write, then barrier" reads as enough, and the DSB that follows looks like the
barrier that matters; the ISB is the easiest line of the drain to drop when tidying up.

Caught by DRAIN-ORDER: before the first translation change of the entry, no ISB between the
PMSCR_EL1 write and the PSB CSYNC.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU, PMBIDR_P, PMBLIMITR_E
from pytest_spekvm.reference.vcpu import ExitReason, Vcpu

CAUGHT_BY = "DRAIN-ORDER"


def debug_save_spe_nvhe(cpu: CPU, vcpu: Vcpu) -> None:
    """The reference's __debug_save_spe_nvhe, without the ISB."""
    vcpu.host_debug_state["pmscr_el1"] = 0
    if not S.has_spe(cpu):
        return
    if cpu.mrs("PMBIDR_EL1") & PMBIDR_P:
        return
    if not cpu.mrs("PMBLIMITR_EL1") & PMBLIMITR_E:
        return
    vcpu.host_debug_state["pmscr_el1"] = cpu.mrs("PMSCR_EL1")
    cpu.msr("PMSCR_EL1", 0)
    # MUTANT: no cpu.isb() here.
    cpu.psb_csync()
    cpu.dsb("nsh")


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's save."""

    name = "mutant drop_isb_before_psb"

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
