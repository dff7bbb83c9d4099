"""What today's Linux mainline nVHE world switch does with SPE, expressed on the model.

The logic of arch/arm64/kvm (debug.c's MDCR_EL2 set-up, nvhe/debug-sr.c's SPE save and restore,
nvhe/switch.c's run loop), in this project's own code, as a subclass of the reference switch that
overrides only the steps where mainline differs:

- kvm_arm_setup_debug sets MDCR_EL2.TPM, TPMCR, TPMS and TTRF in the vcpu's MDCR_EL2 on every
  CPU. TPMS [14] is RES0 without FEAT_SPE, TTRF [19] without FEAT_TRF, TPM [6] and TPMCR [5]
  without FEAT_PMUv3: on CPUs without those features the entry writes RES0 bits as 1.
- The SPE save (host_data HAS_SPE: PMSVer != 0 and PMBIDR_EL1.P = 0, decided once per CPU) clears
  the save area first, returns if the host's buffer is off (PMBLIMITR_EL1.E = 0; a buffer stopped
  with PMBSR_EL1.S = 1 and E still 1 is drained all the same, a LEAN deviation), else saves
  PMSCR_EL1 and writes 0, ISB, PSB CSYNC, DSB NSH (the buffer's writes complete before it goes
  off); then saves PMBLIMITR_EL1 and clears it, ISB, so the buffer is off while the guest runs.
- The run loop issues one more `dsb nsh` after all the drains (SPE's, and TRBE's/BRBE's, which the
  model does not have), before it installs the guest's MMU state.
- Since "KVM: arm64: Make EL2 exception entry and exit context-synchronization events" the
  hypervisor sets SCTLR_EL2.EIS and EOS: declared through `choices`.
- The restore, once the host's stage 1 is back: ISB, PMBLIMITR_EL1 back, then PMSCR_EL1 back.

Run it with its ledger of known deviations, which is green and lists them as expected failures::

    pytest --spekvm-target=examples/linux_mainline.py --spekvm-ledger=examples/linux_mainline.ledger.toml \
        --pyargs pytest_spekvm.suites
"""

from __future__ import annotations

from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.registers import PMBIDR_P, PMBLIMITR_E
from pytest_spekvm.reference.system import Choices
from pytest_spekvm.reference.vcpu import Vcpu

MDCR_TTRF = R.bits("MDCR_EL2", TTRF=1)  # MDCR_EL2.TTRF [19]: RES0 without FEAT_TRF
MDCR_UNCONDITIONAL = S.MDCR_TPM | S.MDCR_TPMCR | S.MDCR_TPMS | MDCR_TTRF


class LinuxMainline(S.ReferenceSwitch):
    """Mainline's nVHE SPE handling on the reference's other steps."""

    name = "linux-mainline"
    version = "nVHE, 7.1 logic"
    choices = Choices(sctlr_el2_eis=True, sctlr_el2_eos=True)

    def setup_debug(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """kvm_arm_setup_mdcr_el2: HPMN from the host, then the trap bits, whatever the CPU has."""
        vcpu.mdcr_el2 = host_mdcr_el2 & S.MDCR_HPMN_MASK
        vcpu.mdcr_el2 |= MDCR_UNCONDITIONAL | S.MDCR_TDRA | S.MDCR_TDOSA

    def enter_guest(self, cpu: CPU, vcpu: Vcpu) -> None:
        """__kvm_vcpu_run's entry: the host buffers saved, one DSB for all the drains, then the guest's regime."""
        self.save_host_sysregs(cpu, vcpu)
        self.save_spe(cpu, vcpu)
        if not S.has_vhe(cpu):
            cpu.dsb("nsh")  # completes the drains before any new MMU state
        self.activate_traps(cpu, vcpu)
        self.activate_vm(cpu, vcpu)
        self.restore_guest_sysregs(cpu, vcpu)

    def buffer_live(self, cpu: CPU) -> bool:
        """HAS_SPE (PMSVer != 0, PMBIDR_EL1.P = 0), then whether the host's buffer is on."""
        if not S.has_spe(cpu) or cpu.mrs("PMBIDR_EL1") & PMBIDR_P:
            return False
        return bool(cpu.mrs("PMBLIMITR_EL1") & PMBLIMITR_E)

    def save_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """__debug_save_spe: the save area cleared first, then the drain and the buffer turned off."""
        if S.has_vhe(cpu):
            return
        vcpu.host_debug_state["pmscr_el1"] = 0
        vcpu.host_debug_state["pmblimitr_el1"] = 0
        if not self.buffer_live(cpu):
            return
        vcpu.host_debug_state["pmscr_el1"] = cpu.mrs("PMSCR_EL1")
        self.drain(cpu, vcpu)
        vcpu.host_debug_state["pmblimitr_el1"] = cpu.mrs("PMBLIMITR_EL1")
        cpu.msr("PMBLIMITR_EL1", 0)
        cpu.isb()

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        """Sampling off, ISB, PSB CSYNC, DSB NSH."""
        cpu.msr("PMSCR_EL1", 0)
        cpu.isb()
        cpu.psb_csync()
        cpu.dsb("nsh")

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """__debug_restore_spe: the buffer back, then sampling, once the host's stage 1 is synchronised."""
        if S.has_vhe(cpu):
            return
        pmblimitr = vcpu.host_debug_state.get("pmblimitr_el1", 0)
        if not pmblimitr:
            return
        cpu.isb()  # the host page table is installed, but not yet synchronised
        cpu.msr("PMBLIMITR_EL1", pmblimitr)
        pmscr = vcpu.host_debug_state.get("pmscr_el1", 0)
        if pmscr:
            cpu.msr("PMSCR_EL1", pmscr)


spekvm_adapter = LinuxMainline
