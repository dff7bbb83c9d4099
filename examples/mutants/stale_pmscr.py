"""Mutant: the nVHE save does not clear its save area when it returns early.

What is wrong: after an entry that saved the host's PMSCR_EL1, an entry with the host's buffer
disabled returns before saving, and the exit "restores" the value left from the earlier entry:
the host's PMSCR_EL1 changes behind its driver's back, and the exit does SPE work it did not
need.

Why plausible: it is what the RFC posted (later kernels add "Clear pmscr in case of early
return"); the save area looks like a local variable, but it lives in the vcpu across runs.

Caught by HOST-STATE (PMSCR_EL1 differs at the return) and LEAN (a PMSCR_EL1 write while the
buffer is not live). The scripted cells miss it: their one run after the host disables its
buffer uses a vcpu whose previous entry saved 0. The generated sequences find it.
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU, PMBIDR_P, PMBLIMITR_E
from pytest_spekvm.reference.vcpu import ExitReason, Vcpu

CAUGHT_BY = ("HOST-STATE", "LEAN")


def debug_save_spe_nvhe(cpu: CPU, vcpu: Vcpu) -> None:
    """The reference's __debug_save_spe_nvhe, with the area cleared only when it saves."""
    # MUTANT: the save area is not cleared here.
    if not S.has_spe(cpu):
        return
    if cpu.mrs("PMBIDR_EL1") & PMBIDR_P:
        return
    if not cpu.mrs("PMBLIMITR_EL1") & PMBLIMITR_E:
        return
    vcpu.host_debug_state["pmscr_el1"] = cpu.mrs("PMSCR_EL1")
    cpu.msr("PMSCR_EL1", 0)
    cpu.isb()
    cpu.psb_csync()
    cpu.dsb("nsh")


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's save."""

    name = "mutant stale_pmscr"

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
