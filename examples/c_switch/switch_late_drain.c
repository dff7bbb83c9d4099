// SPDX-License-Identifier: MIT
/*
 * switch.c with one classic mistake: the host's SPE buffer is drained after __activate_traps().
 *
 * By then HCR_EL2.VM is set and MDCR_EL2.E2PB has handed the buffer to EL2, so the records the
 * PE still holds may be translated through EL2's tables, or through the host's stage 1 followed
 * by the guest's stage 2, instead of the host's own stage 1: the host's profile lands in memory
 * it does not own, or is lost. KVM's non-VHE hyp had this ordering until "KVM: arm64: nvhe:
 * Save the SPE context early" (2021) moved the save ahead of the traps. adapter_broken.py runs
 * it; the suite reports DRAIN-ORDER, and NO-LOSS and HOST-STATE for the records lost on the way
 * (written through EL2's tables, which fault the host's buffer address and stop its buffer).
 *
 * Everything but the order of the entry is switch.c's, included here so the two differ only in
 * the function below.
 */
#include "switch.c"

u64 __kvm_vcpu_run_late_drain(struct spekvm_vcpu *vcpu)
{
	bool vhe = has_vhe();
	u64 exit_code;

	if (!vhe)
		__sysreg_save_host_state(vcpu);

	__activate_traps(vcpu, vhe);

	/* Wrong: the translation the host's buffer uses has already changed. */
	if (!vhe)
		__debug_save_spe_nvhe(&vcpu->host_debug_state.pmscr_el1);

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
		__debug_restore_spe_nvhe(vcpu->host_debug_state.pmscr_el1);
	}

	/* Likewise before the ERET to the host: its MDCR_EL2 and stage 1 in force when it resumes. */
	isb();
	return exit_code;
}
