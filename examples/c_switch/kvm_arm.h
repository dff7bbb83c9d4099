/* SPDX-License-Identifier: MIT */
/*
 * The register bits the example switch uses, named as in arch/arm64/include/asm/kvm_arm.h.
 * Bit positions are from the Arm ARM's register descriptions (register.field [bits]).
 */
#ifndef EXAMPLE_KVM_ARM_H
#define EXAMPLE_KVM_ARM_H

#include <spekvm_shim.h>

/* Hyp Debug Configuration Register bits (MDCR_EL2) */
#define MDCR_EL2_TPMS		BIT(14)		/* MDCR_EL2.TPMS [14]: RES0 without FEAT_SPE */
#define MDCR_EL2_E2PB_SHIFT	12		/* MDCR_EL2.E2PB [13:12]: RES0 without FEAT_SPE */
#define MDCR_EL2_E2PB_MASK	UL(0x3)
#define MDCR_EL2_TDRA		BIT(11)		/* MDCR_EL2.TDRA [11] */
#define MDCR_EL2_TDOSA		BIT(10)		/* MDCR_EL2.TDOSA [10] */
#define MDCR_EL2_TPM		BIT(6)		/* MDCR_EL2.TPM [6]: RES0 without PMUv3 */
#define MDCR_EL2_TPMCR		BIT(5)		/* MDCR_EL2.TPMCR [5]: RES0 without PMUv3 */
#define MDCR_EL2_HPMN_MASK	UL(0x1f)	/* MDCR_EL2.HPMN [4:0]: RES0 without PMUv3 */

/* Hyp Configuration Register bits (HCR_EL2) */
#define HCR_E2H			BIT(34)		/* HCR_EL2.E2H [34]: FEAT_VHE */
#define HCR_RW			BIT(31)		/* HCR_EL2.RW [31]: EL1 is AArch64 */
#define HCR_TGE			BIT(27)		/* HCR_EL2.TGE [27] */
#define HCR_TSC			BIT(19)		/* HCR_EL2.TSC [19] */
#define HCR_AMO			BIT(5)		/* HCR_EL2.AMO [5] */
#define HCR_IMO			BIT(4)		/* HCR_EL2.IMO [4] */
#define HCR_FMO			BIT(3)		/* HCR_EL2.FMO [3] */
#define HCR_SWIO		BIT(1)		/* HCR_EL2.SWIO [1] */
#define HCR_VM			BIT(0)		/* HCR_EL2.VM [0]: stage 2 on for EL1&0 */

#define HCR_GUEST_FLAGS		(HCR_TSC | HCR_AMO | HCR_IMO | HCR_FMO | HCR_SWIO | HCR_VM | HCR_RW)
#define HCR_HOST_NVHE_FLAGS	(HCR_RW)
#define HCR_HOST_VHE_FLAGS	(HCR_RW | HCR_TGE | HCR_E2H)

/* ID_AA64DFR0_EL1.PMUVer 0b1111: an IMPLEMENTATION DEFINED PMU, not PMUv3 */
#define ID_AA64DFR0_PMUVER_IMP_DEF	0xf

#endif /* EXAMPLE_KVM_ARM_H */
