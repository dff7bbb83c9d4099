"""The reference world switch: VHE and non-VHE, written the way the review asks.

Each function is one step of KVM's `__kvm_vcpu_run` of the RFC's era (or, for host_buffer_live and
drain_host_buffer, one half of the SPE save), so that an adapter can reuse the steps it does not
change and replace the ones it does. `ReferenceSwitch` calls each step through a method (named
after its function; save_spe, buffer_live, drain and restore_spe for the SPE steps), so an adapter
that subclasses it overrides only the steps it changes.
"""

from __future__ import annotations

from . import registers as R
from .cpu import CPU
from .kvm import (
    HCR_GUEST,
    HCR_HOST_NVHE,
    HCR_HOST_VHE,
    MDCR_E2PB_MASK,
    MDCR_HPMN_MASK,
    MDCR_TDOSA,
    MDCR_TDRA,
    MDCR_TPM,
    MDCR_TPMCR,
)
from .registers import EL1_STAGE1, EL12_NAME, ID_AA64DFR0_PMSVER, MDCR_TPMS, PMBIDR_P, PMBLIMITR_E, PMBSR_S
from .vcpu import ExitReason, Vcpu

__all__ = [
    # KVM's constants the steps use, defined in kvm.py and registers.py: an adapter finds them beside the steps.
    "HCR_GUEST",
    "HCR_HOST_NVHE",
    "HCR_HOST_VHE",
    "MDCR_E2PB_MASK",
    "MDCR_HPMN_MASK",
    "MDCR_TDOSA",
    "MDCR_TDRA",
    "MDCR_TPM",
    "MDCR_TPMCR",
    "MDCR_TPMS",
    "ReferenceSwitch",
    "activate_traps",
    "activate_vm",
    "deactivate_traps",
    "deactivate_vm",
    "debug_restore_spe",
    "debug_save_spe_nvhe",
    "drain_host_buffer",
    "has_spe",
    "has_vhe",
    "host_buffer_live",
    "restore_guest_sysregs",
    "restore_host_sysregs",
    "save_guest_sysregs",
    "save_host_sysregs",
    "setup_debug",
    "synchronise_guest_context",
    "synchronise_host_context",
]


def has_vhe(cpu: CPU) -> bool:
    """cpus_have_cap(ARM64_HAS_VIRT_HOST_EXTN): a boot-time capability, not a register access."""
    return cpu.features.vhe


def has_spe(cpu: CPU) -> bool:
    """ID_AA64DFR0_EL1.PMSVer != 0, read the way the hypervisor reads it."""
    return bool(ID_AA64DFR0_PMSVER.get(cpu.mrs("ID_AA64DFR0_EL1")))


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
        vcpu.host_ctxt = {name: cpu.mrs(name) for name in EL1_STAGE1}


def host_buffer_live(cpu: CPU) -> bool:
    """Whether the host is profiling into a buffer EL2 may touch: FEAT_SPE, PMBIDR_EL1.P clear,
    PMBLIMITR_EL1.E set and PMBSR_EL1.S clear.

    The checks run in this order because each makes the next access defined.
    """
    if not has_spe(cpu):
        return False  # without FEAT_SPE every SPE register is UNDEFINED
    if cpu.mrs("PMBIDR_EL1") & PMBIDR_P:
        return False  # another Security state owns the buffer: only PMBIDR_EL1 may be touched
    if not cpu.mrs("PMBLIMITR_EL1") & PMBLIMITR_E:
        return False  # E clear: the host is not using the buffer
    # S set: the buffer stopped itself (full, or a fault) and collects nothing until the host's
    # interrupt handler restarts it; nothing the guest does can restart it.
    return not cpu.mrs("PMBSR_EL1") & PMBSR_S


def drain_host_buffer(cpu: CPU) -> None:
    """Stop sampling and write out every record collected, through the host's translation."""
    cpu.msr("PMSCR_EL1", 0)
    cpu.isb()  # sampling is off before the drain
    cpu.psb_csync()  # every collected record translated through the host's tables...
    cpu.dsb("nsh")  # ...and written


def debug_save_spe_nvhe(cpu: CPU, vcpu: Vcpu) -> None:
    """__debug_save_spe_nvhe: if the host's buffer is live, stop sampling and drain it.

    The save area is cleared first, so it always describes this entry, never an earlier one.
    """
    vcpu.host_debug_state["pmscr_el1"] = 0
    if host_buffer_live(cpu):
        vcpu.host_debug_state["pmscr_el1"] = cpu.mrs("PMSCR_EL1")
        drain_host_buffer(cpu)


def synchronise_guest_context(cpu: CPU, vcpu: Vcpu) -> None:
    """An ISB before the ERET into the guest, where that ERET may not synchronise.

    With FEAT_ExS and SCTLR_EL2.EOS = 0 an exception return is not a context synchronisation
    event: without the ISB the guest could start under the host's MDCR_EL2 (its SPE accesses not
    trapped) and the host's sampling controls. Without FEAT_ExS the ERET synchronises by itself.
    """
    if cpu.features.exs:
        cpu.isb()


def synchronise_host_context(cpu: CPU, vcpu: Vcpu) -> None:
    """An ISB before the ERET to the host, where that ERET may not synchronise.

    With FEAT_ExS and SCTLR_EL2.EOS = 0 the host would otherwise resume under the guest's
    MDCR_EL2 (its own SPE accesses trapped) and, on nVHE, sample through the guest's regime.
    """
    if cpu.features.exs:
        cpu.isb()


def activate_traps(cpu: CPU, vcpu: Vcpu) -> None:
    """__activate_traps: the guest's HCR_EL2 and the vcpu's MDCR_EL2."""
    cpu.msr("HCR_EL2", HCR_GUEST | (HCR_HOST_VHE & R.HCR_E2H if has_vhe(cpu) else 0))
    cpu.msr("MDCR_EL2", vcpu.mdcr_el2)


def activate_vm(cpu: CPU, vcpu: Vcpu) -> None:
    """__activate_vm: the guest's stage 2."""
    cpu.msr("VTTBR_EL2", vcpu.vttbr_el2)


def restore_guest_sysregs(cpu: CPU, vcpu: Vcpu) -> None:
    """__sysreg_restore_guest_state: the guest's stage 1 (through *_EL12 under VHE)."""
    vhe = has_vhe(cpu)
    for name in EL1_STAGE1:
        cpu.msr(EL12_NAME[name] if vhe else name, vcpu.sysregs[name])


def save_guest_sysregs(cpu: CPU, vcpu: Vcpu) -> None:
    """__sysreg_save_guest_state."""
    vhe = has_vhe(cpu)
    for name in EL1_STAGE1:
        vcpu.sysregs[name] = cpu.mrs(EL12_NAME[name] if vhe else name)


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
        for name in EL1_STAGE1:
            cpu.msr(name, vcpu.host_ctxt[name])


def debug_restore_spe(cpu: CPU, vcpu: Vcpu) -> None:
    """__debug_restore_spe: sampling back on, once the host's translation is synchronised."""
    pmscr = vcpu.host_debug_state.get("pmscr_el1", 0)
    if not pmscr:
        return  # the entry did not change PMSCR_EL1
    cpu.isb()  # the host's stage 1 and buffer ownership are in effect first
    cpu.msr("PMSCR_EL1", pmscr)


class ReferenceSwitch:
    """The reference world switch: passes every rule, on every CPU the model knows.

    `vcpu_run` is the entry half, the guest, the exit half; each half is a short sequence of step
    methods, one per step of __kvm_vcpu_run. A broken or different switch subclasses this one and
    overrides only the steps it changes (or a half, to change the order of its steps).
    """

    name = "reference"

    def __init__(self) -> None:
        self._host_mdcr_el2 = 0

    def setup_vcpu(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """kvm_arm_setup_debug."""
        self._host_mdcr_el2 = host_mdcr_el2
        self.setup_debug(cpu, vcpu, host_mdcr_el2)

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> ExitReason:
        """__kvm_vcpu_run, with the SPE save before any translation change and restore last."""
        self.enter_guest(cpu, vcpu)
        exit_reason = cpu.run_guest(vcpu)
        self.exit_guest(cpu, vcpu)
        return exit_reason

    def enter_guest(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The entry half: the host's state saved, its buffer drained, then the guest's regime."""
        self.save_host_sysregs(cpu, vcpu)
        # Before __activate_traps: its HCR_EL2 and MDCR_EL2.E2PB change the drain's translation.
        self.save_spe(cpu, vcpu)
        self.activate_traps(cpu, vcpu)
        self.activate_vm(cpu, vcpu)
        self.restore_guest_sysregs(cpu, vcpu)
        self.synchronise_guest_context(cpu, vcpu)

    def exit_guest(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The exit half: the guest's state saved, the host's regime back, then its sampling."""
        self.save_guest_sysregs(cpu, vcpu)
        self.deactivate_traps(cpu, vcpu)
        self.deactivate_vm(cpu, vcpu)
        self.restore_host_sysregs(cpu, vcpu)
        # Depends on running after restore_host_sysregs: the host's stage 1 must be back.
        self.restore_spe(cpu, vcpu)
        self.synchronise_host_context(cpu, vcpu)

    # The steps: setup_vcpu's, then vcpu_run's in the order it calls them. Each calls the module
    # function of its step, so an override replaces one step and leaves the others the reference's.

    def setup_debug(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """kvm_arm_setup_debug's MDCR_EL2 for the vcpu."""
        setup_debug(cpu, vcpu, host_mdcr_el2)

    def save_host_sysregs(self, cpu: CPU, vcpu: Vcpu) -> None:
        """__sysreg_save_host_state."""
        save_host_sysregs(cpu, vcpu)

    def save_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """debug_save_spe_nvhe, built from this switch's `buffer_live` and `drain`; nothing on VHE."""
        if has_vhe(cpu):
            return  # "The vcpu can run. but it can't hide.": EL2's tables translate the buffer
        vcpu.host_debug_state["pmscr_el1"] = 0
        if self.buffer_live(cpu):
            vcpu.host_debug_state["pmscr_el1"] = cpu.mrs("PMSCR_EL1")
            self.drain(cpu, vcpu)

    def buffer_live(self, cpu: CPU) -> bool:
        """host_buffer_live: whether the entry must drain the host's buffer."""
        return host_buffer_live(cpu)

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        """drain_host_buffer; `vcpu` is where a switch keeps what its restore needs."""
        drain_host_buffer(cpu)

    def activate_traps(self, cpu: CPU, vcpu: Vcpu) -> None:
        """__activate_traps."""
        activate_traps(cpu, vcpu)

    def activate_vm(self, cpu: CPU, vcpu: Vcpu) -> None:
        """__activate_vm."""
        activate_vm(cpu, vcpu)

    def restore_guest_sysregs(self, cpu: CPU, vcpu: Vcpu) -> None:
        """__sysreg_restore_guest_state."""
        restore_guest_sysregs(cpu, vcpu)

    def synchronise_guest_context(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The ISB before the ERET into the guest, where the ERET may not synchronise."""
        synchronise_guest_context(cpu, vcpu)

    def synchronise_host_context(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The ISB before the ERET to the host, where the ERET may not synchronise."""
        synchronise_host_context(cpu, vcpu)

    def save_guest_sysregs(self, cpu: CPU, vcpu: Vcpu) -> None:
        """__sysreg_save_guest_state."""
        save_guest_sysregs(cpu, vcpu)

    def deactivate_traps(self, cpu: CPU, vcpu: Vcpu) -> None:
        """__deactivate_traps, back to the MDCR_EL2 the host booted with (given to setup_vcpu)."""
        deactivate_traps(cpu, vcpu, self._host_mdcr_el2)

    def deactivate_vm(self, cpu: CPU, vcpu: Vcpu) -> None:
        """__deactivate_vm."""
        deactivate_vm(cpu, vcpu)

    def restore_host_sysregs(self, cpu: CPU, vcpu: Vcpu) -> None:
        """__sysreg_restore_host_state."""
        restore_host_sysregs(cpu, vcpu)

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """__debug_restore_spe; nothing on VHE, whose entry saved nothing."""
        if not has_vhe(cpu):
            debug_restore_spe(cpu, vcpu)
