"""[RFC PATCH v2 03/10] "arm64: KVM: Save/restore the host SPE state", transcribed as posted.

The adapter runs the patch (Will Deacon, 13 Jan 2017, as reviewed by Marc Zyngier on the kernel
mailing list, 16 Jan 2017) on the model, exactly as posted: kvm_arm_setup_debug()
sets MDCR_EL2.TPMS (and, as the kernel of that era did, TPM and TPMCR) unconditionally;
__debug_save_spe_nvhe() checks PMSVer, PMBIDR_EL1.P and PMBLIMITR_EL1.E, then saves PMSCR_EL1 into
host_debug_state without clearing the save area on the early returns, writes 0, ISB, PSB CSYNC,
DSB NSH; __debug_save_spe_vhe() does nothing; __debug_restore_spe() returns if the saved value is
0, else ISB and writes it back, on VHE and nVHE alike, before the debug registers and after the
host's system registers; __deactivate_traps_vhe() keeps HPMN, E2PB and TPMS of the MDCR_EL2 in
force, __deactivate_traps_nvhe() keeps HPMN and ORs in E2PB = 0b11 whatever the CPU. The steps the
patch did not touch (system registers, __activate_traps, __activate_vm, ...) are the reference's,
in the order of v4.10's __kvm_vcpu_run(). Registers the model does not have (CPTR_EL2, CPACR_EL1,
VBAR_EL1, HSTR_EL2, PMUSERENR_EL0) and the debug registers are left out.

Run it: ``pytest --spekvm-target=examples/rfc_v2.py --pyargs pytest_spekvm.suites``. Verdicts
(tests/test_examples.py pins them): RES0, TRAP-COND, HOST-STATE and LEAN fail; UNDEF, DRAIN-ORDER,
RESTORE-ORDER, ISOLATION and NO-LOSS pass. The drain itself is right: sampling off, ISB, PSB CSYNC,
DSB NSH before __activate_traps, and sampling back on only after the host's stage 1 and E2PB are
back and an ISB.

On the model's corrected synchronisation rules the verdicts are the same. The adapter declares
what the kernel of that era did with SCTLR_EL2 (EIS and EOS set, so exception entry to and return
from EL2 synchronise on FEAT_ExS CPUs too); its ISB before PSB CSYNC is then the review's habit,
not a requirement, and passes either way. The counterexamples below were printed before the
model gained FEAT_ExS and the host's sampling configuration: their event numbers differ today,
their steps and messages do not.

RES0 and TRAP-COND: the review's two findings, and one older defect.

- "This is RES0 on CPUs that do not implement SPE": kvm_arm_setup_debug() sets TPMS on every CPU,
  and __activate_traps() writes it to MDCR_EL2. Every cell without SPE fails both rules.
- "Same remark as above" on __deactivate_traps_nvhe(): the exit ORs E2PB = 0b11 into MDCR_EL2 on
  CPUs without SPE too (the second violation of each rule in the run below, at the exit). Under VHE
  the exit's read-modify-write keeps TPMS, so on a CPU without SPE it writes back the RES0 TPMS
  the entry set: the first finding again, on the way out.
- Not the patch's own: TPM and TPMCR are RES0 without FEAT_PMUv3 and the kernel of that era set
  them unconditionally too, so RES0 (not TRAP-COND) also fails on every cell without PMUv3.

Shortest counterexample the suite printed (``-k "res0_sequences or trap_cond_sequences"``)::

    RULE RES0 violated on features: nVHE, no SPE (PMSVer=0), no PMUv3
      msr MDCR_EL2 <- 0x4c60 by hyp: bit 14 (TPMS) is RES0 without FEAT_SPE; bit 6 (TPM) is RES0
      without FEAT_PMUv3; bit 5 (TPMCR) is RES0 without FEAT_PMUv3 (expected 0xc00, got 0x4c60)
      (and 1 more violation of RES0 in this run)
    steps:
      1. host enables profiling (buffer, then PMSCR E0SPE|E1SPE)
      2. host runs kernel code (2 samples)
      3. run vcpu 0: guest exits at once

    RULE TRAP-COND violated on features: nVHE, no SPE (PMSVer=0), no PMUv3
      msr MDCR_EL2 <- 0x4c60 by hyp sets SPE trap controls on a CPU without FEAT_SPE (expected
      TPMS=0, E2PB=0b00, got TPMS=1, E2PB=0b00)
      (and 1 more violation of TRAP-COND in this run)
    steps: the same three.

The same steps on nVHE without SPE but with PMUv3 show the review's findings alone; the trace::

       18     hyp    EL2 msr MDCR_EL2 <- 0x4c60  = TPMS | TDRA | TDOSA | TPM | TPMCR   RES0 bits set: bit 14 (TPMS)
       ...
       30     hyp    EL2 mrs MDCR_EL2 -> 0x4c60
       31     hyp    EL2 msr MDCR_EL2 <- 0x3000  = E2PB(3)   RES0 bits set: bit 12 (E2PB), bit 13 (E2PB)

HOST-STATE: two causes.

- The E2PB (nVHE) or TPMS (VHE) that the exit writes on a CPU without SPE stays in the host's
  MDCR_EL2: the architecture lets a RES0 bit read back what was written, and the model takes that
  worst case, so the host is left with MDCR_EL2 = 0x3000 where it booted with 0. The review's
  findings again, seen from the host.
- A defect of its own, a stale save area: __debug_save_spe_nvhe() returns early without clearing
  host_debug_state.pmscr_el1, so after an entry that saved PMSCR_EL1 = 0x3, an entry with the host's
  buffer disabled restores that 0x3 on exit: the host's PMSCR_EL1 changes behind its driver's back.
  (Later kernels clear the save area first: "Clear pmscr in case of early return".) The scripted
  cells find it on every non-VHE CPU with a usable buffer (the script re-enters vcpu 1 after the
  host disables profiling); the generated sequences find it too, less often.

Shortest counterexamples the suite printed (``-k host_state_sequences``; the first with the
feature space narrowed to CPUs without SPE, the second as printed by a default run)::

    RULE HOST-STATE violated on features: nVHE, no SPE (PMSVer=0), PMUv3 (0 counters)
      at #38: on the return to the host, MDCR_EL2 expected 0x0 (the host's boot value), got 0x3000;
      last software write: msr MDCR_EL2 <- 0x3000 by hyp at #31
    steps:
      1. host enables profiling (buffer, then PMSCR E0SPE|E1SPE)
      2. host runs kernel code (2 samples)
      3. run vcpu 0: guest exits at once

    RULE HOST-STATE violated on features: nVHE, FEAT_SPE (PMSVer=1), no PMUv3
      at #96: on the return to the host, PMSCR_EL1 expected 0x0 (its value at entry #65), got 0x3;
      last software write: msr PMSCR_EL1 <- 0x3 by hyp at #94
    steps:
      1. host enables profiling (buffer, then PMSCR E0SPE|E1SPE)
      2. host runs kernel code (2 samples)
      3. run vcpu 0: guest exits at once
      4. host disables profiling (drain, buffer off)
      5. run vcpu 0: guest exits at once

LEAN: the stale save area again. The exit of step 5 issues an ISB and writes PMSCR_EL1 although
the host's buffer was not live at that entry, so there was nothing to restore. Shortest
counterexample the suite printed (``-k lean_sequences``)::

    RULE LEAN violated on features: nVHE, FEAT_SPE (PMSVer=1), no PMUv3
      msr PMSCR_EL1 <- 0x3 at #94 in the exit window although the host's buffer is not live (the
      host left PMBLIMITR_EL1.E=0 at entry #65); expected no PMSCR_EL1 write and no PSB CSYNC
    steps: the five above.

The review's cost remarks on VHE ("I believe you can avoid that on VHE") are about code that never
runs: __debug_save_spe_vhe() never writes the save area, so on VHE __debug_restore_spe() always
returns before its ISB. Its remark on non-VHE drains ("hitting the brakes each time we enter the
guest") is about a drain the rules require while the buffer is live.
"""

from __future__ import annotations

from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.kvm import HCR_HOST_NVHE, HCR_HOST_VHE
from pytest_spekvm.reference.system import Choices
from pytest_spekvm.reference.vcpu import ExitReason, Vcpu


def sys_reg(op0: int, op1: int, crn: int, crm: int, op2: int) -> int:
    """Linux's sys_reg(): the encoding read_sysreg_s()/write_sysreg_s() take."""
    return R.Encoding(op0, op1, crn, crm, op2).sys_reg


def BIT(n: int) -> int:
    """Linux's BIT(n)."""
    return 1 << n


# arch/arm64/include/asm/kvm_arm.h, as the patch leaves it.
MDCR_EL2_TPMS = 1 << 14  # added by the patch
MDCR_EL2_E2PB_MASK = 0x3  # added by the patch
MDCR_EL2_E2PB_SHIFT = 12  # added by the patch
MDCR_EL2_TDRA = 1 << 11
MDCR_EL2_TDOSA = 1 << 10
MDCR_EL2_TPM = 1 << 6
MDCR_EL2_TPMCR = 1 << 5
MDCR_EL2_HPMN_MASK = 0x1F
HCR_RW = HCR_HOST_NVHE  # __deactivate_traps_nvhe writes HCR_RW
HCR_HOST_VHE_FLAGS = HCR_HOST_VHE

# arch/arm64/kvm/hyp/debug-sr.c, added by the patch.
PMSCR_EL1 = sys_reg(3, 0, 9, 9, 0)
PMBLIMITR_EL1 = sys_reg(3, 0, 9, 10, 0)
PMBLIMITR_EL1_E = BIT(0)
PMBIDR_EL1 = sys_reg(3, 0, 9, 10, 7)
PMBIDR_EL1_P = BIT(4)

ID_AA64DFR0_PMSVER_SHIFT = 32  # arch/arm64/include/asm/sysreg.h


def cpuid_feature_extract_unsigned_field(features: int, field: int) -> int:
    """arch/arm64/include/asm/cpufeature.h: the 4-bit ID field at `field`."""
    return (features >> field) & 0xF


# ---------------------------------------------------------------- arch/arm64/kvm/debug.c


def kvm_arm_setup_debug(cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
    """kvm_arm_setup_debug(): the vcpu's MDCR_EL2, with MDCR_EL2_TPMS added unconditionally.

    `host_mdcr_el2` is __this_cpu_read(mdcr_el2). The era's code also ORs in MDCR_EL2_TDA
    while the guest is not using the debug registers, and TDE for guest debugging; the model
    has no debug-register state, so those are left out (they change no verdict).
    """
    # This also clears MDCR_EL2_E2PB_MASK to disable guest access to the profiling buffer.
    vcpu.mdcr_el2 = host_mdcr_el2 & MDCR_EL2_HPMN_MASK
    vcpu.mdcr_el2 |= MDCR_EL2_TPM | MDCR_EL2_TPMS | MDCR_EL2_TPMCR | MDCR_EL2_TDRA | MDCR_EL2_TDOSA


# ------------------------------------------------------- arch/arm64/kvm/hyp/debug-sr.c


def psb_csync(cpu: CPU) -> None:
    """#define psb_csync() asm volatile("hint #17")."""
    cpu.hint(17)


def debug_save_spe_vhe(cpu: CPU, host_debug_state: dict[str, int]) -> None:
    """__debug_save_spe_vhe()."""
    # The vcpu can run. but it can't hide.


def debug_save_spe_nvhe(cpu: CPU, host_debug_state: dict[str, int]) -> None:
    """__debug_save_spe_nvhe(&vcpu->arch.host_debug_state.pmscr_el1), as posted.

    The early returns leave the save area as an earlier entry left it.
    """
    # SPE present on this CPU?
    if not cpuid_feature_extract_unsigned_field(cpu.mrs("ID_AA64DFR0_EL1"), ID_AA64DFR0_PMSVER_SHIFT):
        return

    # Yes; is it owned by EL3?
    reg = cpu.mrs(PMBIDR_EL1)
    if reg & PMBIDR_EL1_P:
        return

    # No; is the host actually using the thing?
    reg = cpu.mrs(PMBLIMITR_EL1)
    if not reg & PMBLIMITR_EL1_E:
        return

    # Yes; save the control register and disable data generation
    host_debug_state["pmscr_el1"] = cpu.mrs(PMSCR_EL1)
    cpu.msr(PMSCR_EL1, 0)
    cpu.isb()

    # Now drain all buffered data to memory
    psb_csync(cpu)
    cpu.dsb("nsh")


def debug_save_spe(cpu: CPU, host_debug_state: dict[str, int]) -> None:
    """hyp_alternate_select(__debug_save_spe, _nvhe, _vhe, ARM64_HAS_VIRT_HOST_EXTN)."""
    if S.has_vhe(cpu):
        debug_save_spe_vhe(cpu, host_debug_state)
    else:
        debug_save_spe_nvhe(cpu, host_debug_state)


def debug_restore_spe(cpu: CPU, pmscr_el1: int) -> None:
    """__debug_restore_spe(vcpu->arch.host_debug_state.pmscr_el1): on VHE and nVHE alike."""
    if not pmscr_el1:
        return

    # The host page table is installed, but not yet synchronised
    cpu.isb()

    # Re-enable data generation
    cpu.msr(PMSCR_EL1, pmscr_el1)


def debug_cond_save_host_state(cpu: CPU, vcpu: Vcpu) -> None:
    """__debug_cond_save_host_state(): the debug registers (not modelled), then the SPE save."""
    debug_save_spe(cpu, vcpu.host_debug_state)


def debug_cond_restore_host_state(cpu: CPU, vcpu: Vcpu) -> None:
    """__debug_cond_restore_host_state(): the SPE restore first, then the debug registers (not modelled)."""
    # vcpu is kzalloc'ed: a save area never written reads as 0.
    debug_restore_spe(cpu, vcpu.host_debug_state.get("pmscr_el1", 0))


# ----------------------------------------------------------- arch/arm64/kvm/hyp/switch.c


def deactivate_traps_vhe(cpu: CPU) -> None:
    """__deactivate_traps_vhe(): keep HPMN, E2PB and TPMS of the MDCR_EL2 in force.

    CPACR_EL1 and VBAR_EL1 are written too; the model has neither.
    """
    mdcr_el2 = cpu.mrs("MDCR_EL2")

    mdcr_el2 &= MDCR_EL2_HPMN_MASK | MDCR_EL2_E2PB_MASK << MDCR_EL2_E2PB_SHIFT | MDCR_EL2_TPMS

    cpu.msr("MDCR_EL2", mdcr_el2)
    cpu.msr("HCR_EL2", HCR_HOST_VHE_FLAGS)


def deactivate_traps_nvhe(cpu: CPU) -> None:
    """__deactivate_traps_nvhe(): keep HPMN, set E2PB to 0b11 (whether or not SPE exists).

    CPTR_EL2 is written too; the model does not have it.
    """
    mdcr_el2 = cpu.mrs("MDCR_EL2")

    mdcr_el2 &= MDCR_EL2_HPMN_MASK
    mdcr_el2 |= MDCR_EL2_E2PB_MASK << MDCR_EL2_E2PB_SHIFT

    cpu.msr("MDCR_EL2", mdcr_el2)
    cpu.msr("HCR_EL2", HCR_RW)


def deactivate_traps(cpu: CPU, vcpu: Vcpu) -> None:
    """__deactivate_traps(): the per-arch half; the MDCR_EL2 write that was here is removed.

    HSTR_EL2 and PMUSERENR_EL0 are written too; the model has neither.
    """
    if S.has_vhe(cpu):
        deactivate_traps_vhe(cpu)
    else:
        deactivate_traps_nvhe(cpu)


def kvm_vcpu_run(cpu: CPU, vcpu: Vcpu) -> ExitReason:
    """__kvm_vcpu_run() of v4.10, with the steps the patch did not touch taken from the reference.

    The vgic, the timer, the 32-bit state, FP/SIMD and the debug registers are not modelled.
    """
    S.save_host_sysregs(cpu, vcpu)  # __sysreg_save_host_state
    debug_cond_save_host_state(cpu, vcpu)

    S.activate_traps(cpu, vcpu)  # __activate_traps: HCR_EL2, then the vcpu's MDCR_EL2
    S.activate_vm(cpu, vcpu)  # __activate_vm

    S.restore_guest_sysregs(cpu, vcpu)  # __sysreg_restore_guest_state

    # Jump in the fire!
    exit_code = cpu.run_guest(vcpu)  # __guest_enter
    # And we're baaack!

    S.save_guest_sysregs(cpu, vcpu)  # __sysreg_save_guest_state

    deactivate_traps(cpu, vcpu)
    S.deactivate_vm(cpu, vcpu)  # __deactivate_vm

    S.restore_host_sysregs(cpu, vcpu)  # __sysreg_restore_host_state

    debug_cond_restore_host_state(cpu, vcpu)

    return exit_code


class RfcV2Switch:
    """The adapter: kvm_arm_setup_debug() as setup_vcpu, __kvm_vcpu_run() as vcpu_run."""

    name = "rfc-v2"
    version = "RFC v2 03/10 (2017-01-13)"
    # The kernel of that era set SCTLR_EL2.EIS [22] and EOS [11] through SCTLR_EL2_RES1 (they were
    # RES1 before FEAT_ExS): its exception entry to and return from EL2 synchronise on every CPU.
    choices = Choices(sctlr_el2_eis=True, sctlr_el2_eos=True)

    def setup_vcpu(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """kvm_arm_setup_debug()."""
        kvm_arm_setup_debug(cpu, vcpu, host_mdcr_el2)

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> ExitReason:
        """__kvm_vcpu_run()."""
        return kvm_vcpu_run(cpu, vcpu)


spekvm_adapter = RfcV2Switch
