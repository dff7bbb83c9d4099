"""Mutant: the drain ends with DSB NSHLD, which waits for loads only.

What is wrong: the profiling buffer's record writes are stores; a load-only DSB does not wait
for them, so they may still be in flight when the translation changes.

Why plausible: "nsh" was right, and the *LD/*ST variants are picked by analogy with nearby code
(or by an optimiser of barriers) without thinking about which direction the buffer goes.

Caught by DRAIN-ORDER: no DSB that waits for stores (the message says the NSHLD one waits for
loads only).
"""

from __future__ import annotations

from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU, PMBIDR_P, PMBLIMITR_E
from pytest_spekvm.reference.vcpu import ExitReason, Vcpu

CAUGHT_BY = "DRAIN-ORDER"


def debug_save_spe_nvhe(cpu: CPU, vcpu: Vcpu) -> None:
    """The reference's __debug_save_spe_nvhe, with a load-only DSB."""
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
    cpu.psb_csync()
    cpu.dsb("nshld")  # MUTANT: waits for loads only.


class Switch(S.ReferenceSwitch):
    """The reference switch with this mutant's save."""

    name = "mutant dsb_nshld"

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
