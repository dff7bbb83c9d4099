"""The reference world switch: VHE and non-VHE, written the way the review asks.

Each function is one step of KVM's `__kvm_vcpu_run` of the RFC's era, so that an adapter can
reuse the steps it does not change and replace the ones it does.
"""

from __future__ import annotations

from . import registers as R
from .cpu import CPU, PMBIDR_P, PMBLIMITR_E
from .features import ID_AA64DFR0_PMSVER_SHIFT
from .system import HCR_GUEST, HCR_HOST_NVHE, HCR_HOST_VHE
from .vcpu import ExitReason, Vcpu

MDCR_HPMN_MASK = R.field_mask("MDCR_EL2", "HPMN")  # MDCR_EL2.HPMN [4:0]
MDCR_TPM = R.bits("MDCR_EL2", TPM=1)  # MDCR_EL2.TPM [6]
MDCR_TPMCR = R.bits("MDCR_EL2", TPMCR=1)  # MDCR_EL2.TPMCR [5]
MDCR_TPMS = R.bits("MDCR_EL2", TPMS=1)  # MDCR_EL2.TPMS [14]
MDCR_TDRA = R.bits("MDCR_EL2", TDRA=1)  # MDCR_EL2.TDRA [11]
MDCR_TDOSA = R.bits("MDCR_EL2", TDOSA=1)  # MDCR_EL2.TDOSA [10]
MDCR_E2PB_MASK = R.field_mask("MDCR_EL2", "E2PB")  # MDCR_EL2.E2PB [13:12]
PMSVER_MASK = 0xF  # ID_AA64DFR0_EL1.PMSVer is 4 bits wide
HOST_EL1_STAGE1 = ("TTBR0_EL1", "TTBR1_EL1", "TCR_EL1")
GUEST_EL12 = {"TTBR0_EL1": "TTBR0_EL12", "TTBR1_EL1": "TTBR1_EL12", "TCR_EL1": "TCR_EL12"}


def has_vhe(cpu: CPU) -> bool:
    """cpus_have_cap(ARM64_HAS_VIRT_HOST_EXTN): a boot-time capability, not a register access."""
    return cpu.features.vhe


def has_spe(cpu: CPU) -> bool:
    """ID_AA64DFR0_EL1.PMSVer != 0, read the way the hypervisor reads it."""
    return bool(cpu.mrs("ID_AA64DFR0_EL1") >> ID_AA64DFR0_PMSVER_SHIFT & PMSVER_MASK)


def setup_debug(cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
    """kvm_arm_setup_debug: trap PMU and debug accesses; SPE trap bits only where SPE exists."""
    mdcr = host_mdcr_el2 & MDCR_HPMN_MASK
    mdcr |= MDCR_TDRA | MDCR_TDOSA
    if cpu.features.has_pmuv3:
        mdcr |= MDCR_TPM | MDCR_TPMCR  # PMUv3 fields: RES0 without it
    if has_spe(cpu):
        mdcr |= MDCR_TPMS  # E2PB stays 0b00: EL2 owns the buffer, EL1 buffer accesses trap
    vcpu.mdcr_el2 = mdcr


def save_host_sysregs(cpu: CPU, vcpu: Vcpu) -> None:
    """__sysreg_save_host_state: the host's EL1 stage 1 (nVHE only; VHE's host lives in EL2)."""
    if not has_vhe(cpu):
        vcpu.host_ctxt = {name: cpu.mrs(name) for name in HOST_EL1_STAGE1}


def debug_save_spe_nvhe(cpu: CPU, vcpu: Vcpu) -> None:
    """__debug_save_spe_nvhe: if the host's buffer is live, stop sampling and drain it.

    The save area is cleared first, so it always describes this entry, never an earlier one.
    """
    vcpu.host_debug_state["pmscr_el1"] = 0
    if not has_spe(cpu):
        return
    if cpu.mrs("PMBIDR_EL1") & PMBIDR_P:
        return  # owned by a higher EL: only PMBIDR_EL1 may be touched
    if not cpu.mrs("PMBLIMITR_EL1") & PMBLIMITR_E:
        return  # the host is not using the buffer
    vcpu.host_debug_state["pmscr_el1"] = cpu.mrs("PMSCR_EL1")
    cpu.msr("PMSCR_EL1", 0)
    cpu.isb()  # sampling is off before the drain
    cpu.psb_csync()  # every collected record translated through the host's tables...
    cpu.dsb("nsh")  # ...and written


def activate_traps(cpu: CPU, vcpu: Vcpu) -> None:
    """__activate_traps: the guest's HCR_EL2 and the vcpu's MDCR_EL2."""
    cpu.msr("HCR_EL2", HCR_GUEST | (HCR_HOST_VHE & R.bits("HCR_EL2", E2H=1) if has_vhe(cpu) else 0))
    cpu.msr("MDCR_EL2", vcpu.mdcr_el2)


def activate_vm(cpu: CPU, vcpu: Vcpu) -> None:
    """__activate_vm: the guest's stage 2."""
    cpu.msr("VTTBR_EL2", vcpu.vttbr_el2)


def restore_guest_sysregs(cpu: CPU, vcpu: Vcpu) -> None:
    """__sysreg_restore_guest_state: the guest's stage 1 (through *_EL12 under VHE)."""
    for name in HOST_EL1_STAGE1:
        cpu.msr(GUEST_EL12[name] if has_vhe(cpu) else name, vcpu.sysregs[name])


def save_guest_sysregs(cpu: CPU, vcpu: Vcpu) -> None:
    """__sysreg_save_guest_state."""
    for name in HOST_EL1_STAGE1:
        vcpu.sysregs[name] = cpu.mrs(GUEST_EL12[name] if has_vhe(cpu) else name)


def deactivate_traps(cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
    """__deactivate_traps: the host's HCR_EL2 and its boot-time MDCR_EL2, bit for bit."""
    cpu.msr("HCR_EL2", HCR_HOST_VHE if has_vhe(cpu) else HCR_HOST_NVHE)
    cpu.msr("MDCR_EL2", host_mdcr_el2)


def deactivate_vm(cpu: CPU, vcpu: Vcpu) -> None:
    """__deactivate_vm."""
    cpu.msr("VTTBR_EL2", 0)


def restore_host_sysregs(cpu: CPU, vcpu: Vcpu) -> None:
    """__sysreg_restore_host_state: the host's EL1 stage 1 (nVHE only)."""
    if not has_vhe(cpu):
        for name in HOST_EL1_STAGE1:
            cpu.msr(name, vcpu.host_ctxt[name])


def debug_restore_spe(cpu: CPU, vcpu: Vcpu) -> None:
    """__debug_restore_spe: sampling back on, once the host's translation is synchronised."""
    pmscr = vcpu.host_debug_state.get("pmscr_el1", 0)
    if not pmscr:
        return  # the entry did not change PMSCR_EL1
    cpu.isb()  # the host's stage 1 and buffer ownership are in effect first
    cpu.msr("PMSCR_EL1", pmscr)


class ReferenceSwitch:
    """The reference world switch: passes every rule, on every CPU the model knows."""

    name = "reference"

    def __init__(self) -> None:
        self._host_mdcr_el2 = 0

    def setup_vcpu(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """kvm_arm_setup_debug."""
        self._host_mdcr_el2 = host_mdcr_el2
        setup_debug(cpu, vcpu, host_mdcr_el2)

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> ExitReason:
        """__kvm_vcpu_run, with the SPE save before any translation change and restore last."""
        vhe = has_vhe(cpu)
        save_host_sysregs(cpu, vcpu)
        if not vhe:
            debug_save_spe_nvhe(cpu, vcpu)  # VHE: "The vcpu can run. but it can't hide."
        activate_traps(cpu, vcpu)
        activate_vm(cpu, vcpu)
        restore_guest_sysregs(cpu, vcpu)
        exit_reason = cpu.run_guest(vcpu)
        save_guest_sysregs(cpu, vcpu)
        deactivate_traps(cpu, vcpu, self._host_mdcr_el2)
        deactivate_vm(cpu, vcpu)
        restore_host_sysregs(cpu, vcpu)
        if not vhe:
            # Depends on running after restore_host_sysregs: the host's stage 1 must be back.
            debug_restore_spe(cpu, vcpu)
        return exit_reason
