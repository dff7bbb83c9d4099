"""Mutant: the drain forgets PSB CSYNC.

What is wrong: sampling is turned off and synchronised, and a DSB follows, but nothing makes the
PE write out the records it has already collected. They stay inside the PE and are translated
later, when the PE chooses: after the switch has installed the guest's stage 2 and handed the
buffer to EL2, so the host's profile lands in hypervisor or guest memory.

Why plausible: a DSB is the barrier everyone knows for "make my writes complete"; that the
profiling unit's writes are not started until a PSB CSYNC is SPE-specific knowledge.

Caught by DRAIN-ORDER (no PSB CSYNC before the translation change) and ISOLATION (the worst-case
chooser holds the records until the guest exits, and they land in hypervisor memory).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU, PMBIDR_P, PMBLIMITR_E
from pytest_spekvm.reference.vcpu import ExitReason, Vcpu

CAUGHT_BY = ("DRAIN-ORDER", "ISOLATION")


def debug_save_spe_nvhe(cpu: CPU, vcpu: Vcpu) -> None:
    """The reference's __debug_save_spe_nvhe, without PSB CSYNC."""
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
    # MUTANT: no cpu.psb_csync() here.
    cpu.dsb("nsh")


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's save."""

    name = "mutant no_psb_csync"

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
