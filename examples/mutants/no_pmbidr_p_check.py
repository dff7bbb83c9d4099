"""Mutant: the nVHE save does not check PMBIDR_EL1.P before using the buffer registers.

What is wrong: with PMBIDR_EL1.P = 1 the profiling buffer belongs to a higher exception level
(EL3 firmware); only PMBIDR_EL1 may be accessed, and reading PMBLIMITR_EL1 is UNDEFINED.

Why plausible: on most boards the firmware leaves the buffer to the OS, so the check never
mattered in testing; "is the host using it" (PMBLIMITR_EL1.E) looks like the only question.

Caught by UNDEF: an access to PMBLIMITR_EL1 while PMBIDR_EL1.P is 1.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU, PMBLIMITR_E
from pytest_spekvm.reference.vcpu import ExitReason, Vcpu

CAUGHT_BY = "UNDEF"


def debug_save_spe_nvhe(cpu: CPU, vcpu: Vcpu) -> None:
    """The reference's __debug_save_spe_nvhe, without the PMBIDR_EL1.P check."""
    vcpu.host_debug_state["pmscr_el1"] = 0
    if not S.has_spe(cpu):
        return
    # MUTANT: no PMBIDR_EL1.P check here.
    if not cpu.mrs("PMBLIMITR_EL1") & PMBLIMITR_E:
        return
    vcpu.host_debug_state["pmscr_el1"] = cpu.mrs("PMSCR_EL1")
    cpu.msr("PMSCR_EL1", 0)
    cpu.isb()
    cpu.psb_csync()
    cpu.dsb("nsh")


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's save."""

    name = "mutant no_pmbidr_p_check"

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
