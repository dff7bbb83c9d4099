// SPDX-License-Identifier: MIT
/*
 * A world switch for arm64 hosts that profile themselves with the Statistical Profiling
 * Extension, VHE and non-VHE, in the shape of KVM's __kvm_vcpu_run of early 2017 with the
 * review of "arm64: KVM: Save/restore the host SPE state when entering/leaving a VM" (RFC v2
 * 03/10) taken into account. adapter.py runs it on pytest-spekvm's CPU model through
 * pytest_spekvm/spekvm_shim.h; it passes every rule.
 *
 * The rules it keeps, and where:
 * - MDCR_EL2.TPMS (and E2PB) only where FEAT_SPE exists: kvm_arm_setup_debug().
 * - non-VHE with a live host buffer: sampling off, isb, psb csync, dsb nsh, all before the
 *   first change to the translation the buffer uses: __debug_save_spe_nvhe() runs before
 *   __activate_traps() (HCR_EL2.VM, MDCR_EL2.E2PB), __activate_vm() and the guest's stage 1.
 * - the save area cleared on every entry, so a run never restores an earlier run's PMSCR.
 * - the exit gives back the host's MDCR_EL2 bit for bit and its stage 1, then an isb, and only
 *   then sampling: __debug_restore_spe_nvhe() runs last.
 * - VHE: nothing SPE at all; the host's buffer goes through EL2's tables, which the guest
 *   never changes ("The vcpu can run. but it can't hide.").
 */
#include <spekvm_shim.h>

#include "kvm_arm.h"

/*
 * kvm_arm_setup_debug: the MDCR_EL2 this vcpu's guest runs with. Debug ROM and OS registers
 * trap; PMU and SPE accesses trap where the CPU has the fields, since they are RES0 elsewhere.
 * E2PB stays 0b00: EL2 owns the profiling buffer while the guest runs, so its accesses trap.
 */
void kvm_arm_setup_debug(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2)
{
	u64 dfr0 = read_sysreg(id_aa64dfr0_el1);
	unsigned int pmuver = cpuid_feature_extract_unsigned_field(dfr0, ID_AA64DFR0_PMUVER_SHIFT);
	unsigned int pmsver = cpuid_feature_extract_unsigned_field(dfr0, ID_AA64DFR0_PMSVER_SHIFT);

	vcpu->mdcr_el2 = host_mdcr_el2 & MDCR_EL2_HPMN_MASK;
	vcpu->mdcr_el2 |= MDCR_EL2_TDRA | MDCR_EL2_TDOSA;
	if (pmuver && pmuver != ID_AA64DFR0_PMUVER_IMP_DEF)
		vcpu->mdcr_el2 |= MDCR_EL2_TPM | MDCR_EL2_TPMCR;
	if (pmsver)
		vcpu->mdcr_el2 |= MDCR_EL2_TPMS;
}

/* The host's EL1 stage 1 (non-VHE: under VHE the host runs in EL2's own regime). */
static void __sysreg_save_host_state(struct spekvm_vcpu *vcpu)
{
	vcpu->host_ctxt.ttbr0_el1 = read_sysreg(ttbr0_el1);
	vcpu->host_ctxt.ttbr1_el1 = read_sysreg(ttbr1_el1);
	vcpu->host_ctxt.tcr_el1 = read_sysreg(tcr_el1);
}

static void __sysreg_restore_host_state(struct spekvm_vcpu *vcpu)
{
	write_sysreg(vcpu->host_ctxt.ttbr0_el1, ttbr0_el1);
	write_sysreg(vcpu->host_ctxt.ttbr1_el1, ttbr1_el1);
	write_sysreg(vcpu->host_ctxt.tcr_el1, tcr_el1);
}

/* The guest's EL1 stage 1; from EL2 with E2H=1 the EL1 registers are reached as *_EL12. */
static void __sysreg_restore_guest_state(struct spekvm_vcpu *vcpu, bool vhe)
{
	if (vhe) {
		write_sysreg(vcpu->sysregs.ttbr0_el1, ttbr0_el12);
		write_sysreg(vcpu->sysregs.ttbr1_el1, ttbr1_el12);
		write_sysreg(vcpu->sysregs.tcr_el1, tcr_el12);
	} else {
		write_sysreg(vcpu->sysregs.ttbr0_el1, ttbr0_el1);
		write_sysreg(vcpu->sysregs.ttbr1_el1, ttbr1_el1);
		write_sysreg(vcpu->sysregs.tcr_el1, tcr_el1);
	}
}

static void __sysreg_save_guest_state(struct spekvm_vcpu *vcpu, bool vhe)
{
	if (vhe) {
		vcpu->sysregs.ttbr0_el1 = read_sysreg(ttbr0_el12);
		vcpu->sysregs.ttbr1_el1 = read_sysreg(ttbr1_el12);
		vcpu->sysregs.tcr_el1 = read_sysreg(tcr_el12);
	} else {
		vcpu->sysregs.ttbr0_el1 = read_sysreg(ttbr0_el1);
		vcpu->sysregs.ttbr1_el1 = read_sysreg(ttbr1_el1);
		vcpu->sysregs.tcr_el1 = read_sysreg(tcr_el1);
	}
}

/*
 * Stop the host's sampling and push every record the PE still holds out to the host's buffer,
 * while the host's stage 1 and buffer ownership are still the ones in force. Non-VHE only.
 */
static void __debug_save_spe_nvhe(u64 *pmscr_el1)
{
	u64 reg;

	/* Nothing saved yet: whatever return below, restore must not replay an earlier entry. */
	*pmscr_el1 = 0;

	/* No SPE on this CPU: every SPE register is UNDEFINED. */
	if (!cpuid_feature_extract_unsigned_field(read_sysreg(id_aa64dfr0_el1),
						  ID_AA64DFR0_PMSVER_SHIFT))
		return;

	/* The buffer belongs to a higher exception level: only PMBIDR_EL1 may be touched. */
	reg = read_sysreg_s(SYS_PMBIDR_EL1);
	if (reg & BIT(SYS_PMBIDR_EL1_P_SHIFT))
		return;

	/* The host is not using the buffer: nothing can be in flight. */
	reg = read_sysreg_s(SYS_PMBLIMITR_EL1);
	if (!(reg & BIT(SYS_PMBLIMITR_EL1_E_SHIFT)))
		return;

	/* The buffer stopped itself (full, or a fault): it collects nothing until the host restarts it. */
	reg = read_sysreg_s(SYS_PMBSR_EL1);
	if (reg & BIT(SYS_PMBSR_EL1_S_SHIFT))
		return;

	/* Sampling off, and synchronised, so no new record is collected... */
	*pmscr_el1 = read_sysreg_s(SYS_PMSCR_EL1);
	write_sysreg_s(0, SYS_PMSCR_EL1);
	isb();

	/* ...then every collected record translated (psb csync) and written (dsb). */
	psb_csync();
	dsb(nsh);
}

/* Sampling back on, once the host's stage 1 and buffer ownership are back and synchronised. */
static void __debug_restore_spe_nvhe(u64 pmscr_el1)
{
	if (!pmscr_el1)
		return;

	/* The host's tables and MDCR_EL2 are written, but not yet in effect. */
	isb();
	write_sysreg_s(pmscr_el1, SYS_PMSCR_EL1);
}

static void __activate_traps(struct spekvm_vcpu *vcpu, bool vhe)
{
	write_sysreg(HCR_GUEST_FLAGS | (vhe ? HCR_E2H : 0), hcr_el2);

	/* The host's MDCR_EL2 (HPMN, and E2PB on non-VHE), to give back bit for bit on exit. */
	vcpu->host_debug_state.mdcr_el2 = read_sysreg(mdcr_el2);
	write_sysreg(vcpu->mdcr_el2, mdcr_el2);
}

static void __deactivate_traps(struct spekvm_vcpu *vcpu, bool vhe)
{
	write_sysreg(vhe ? HCR_HOST_VHE_FLAGS : HCR_HOST_NVHE_FLAGS, hcr_el2);
	write_sysreg(vcpu->host_debug_state.mdcr_el2, mdcr_el2);
}

static void __activate_vm(struct spekvm_vcpu *vcpu)
{
	write_sysreg(vcpu->vttbr_el2, vttbr_el2);
}

static void __deactivate_vm(struct spekvm_vcpu *vcpu)
{
	write_sysreg(0, vttbr_el2);
}

u64 __kvm_vcpu_run(struct spekvm_vcpu *vcpu)
{
	bool vhe = has_vhe();
	u64 exit_code;

	if (!vhe) {
		__sysreg_save_host_state(vcpu);
		/* Before anything below changes the translation the host's buffer uses. */
		__debug_save_spe_nvhe(&vcpu->host_debug_state.pmscr_el1);
	}

	__activate_traps(vcpu, vhe);
	__activate_vm(vcpu);
	__sysreg_restore_guest_state(vcpu, vhe);

	/*
	 * With FEAT_ExS and SCTLR_EL2.EOS = 0 the ERET is not context synchronising: without this
	 * isb the guest could start under the host's MDCR_EL2 (its SPE accesses not trapped).
	 */
	isb();
	exit_code = spekvm_run_guest(vcpu);

	__sysreg_save_guest_state(vcpu, vhe);
	__deactivate_traps(vcpu, vhe);
	__deactivate_vm(vcpu);

	if (!vhe) {
		__sysreg_restore_host_state(vcpu);
		/*
		 * Depends on running after __deactivate_traps() and
		 * __sysreg_restore_host_state(): the host's buffer ownership and
		 * stage 1 must be back before sampling resumes.
		 */
		__debug_restore_spe_nvhe(vcpu->host_debug_state.pmscr_el1);
	}

	/* Likewise before the ERET to the host: its MDCR_EL2 and stage 1 in force when it resumes. */
	isb();
	return exit_code;
}
