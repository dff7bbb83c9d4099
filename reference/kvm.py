"""What Linux and KVM write to the registers the model has: the one home of these values.

The reference switch (`switch.py`) and the harness's host (`system.py`) both import them, as KVM's
world switch and Linux's EL2 set-up share the kernel's headers.
"""

from __future__ import annotations

from . import registers as R
from .features import Features

# HCR_EL2 (arch/arm64/include/asm/kvm_arm.h of the RFC's era).
HCR_HOST_NVHE = R.bits("HCR_EL2", RW=1)  # HCR_RW [31]: the nVHE host's EL1 is AArch64
HCR_HOST_VHE = R.bits("HCR_EL2", RW=1, TGE=1, E2H=1)  # HCR_HOST_VHE_FLAGS: RW [31], TGE [27], E2H [34]
# HCR_GUEST_FLAGS: VM [0], SWIO [1], FMO [3], IMO [4], AMO [5], TSC [19], RW [31].
HCR_GUEST = R.bits("HCR_EL2", VM=1, SWIO=1, FMO=1, IMO=1, AMO=1, TSC=1, RW=1)

# MDCR_EL2 bits KVM sets (kvm_arm.h's MDCR_EL2_*), each from the register table.
MDCR_HPMN_MASK = R.MDCR_HPMN  # MDCR_EL2.HPMN [4:0]
MDCR_TPMCR = R.bits("MDCR_EL2", TPMCR=1)  # MDCR_EL2.TPMCR [5]
MDCR_TPM = R.bits("MDCR_EL2", TPM=1)  # MDCR_EL2.TPM [6]
MDCR_TDOSA = R.bits("MDCR_EL2", TDOSA=1)  # MDCR_EL2.TDOSA [10]
MDCR_TDRA = R.bits("MDCR_EL2", TDRA=1)  # MDCR_EL2.TDRA [11]
MDCR_E2PB_MASK = R.MDCR_E2PB.mask  # MDCR_EL2.E2PB [13:12]; MDCR_EL2.TPMS [14] is registers.MDCR_TPMS

# PMSCR_EL2 as Linux's EL2 set-up writes it when PMBIDR_EL1.P reads 0 at EL2: PCT [6] | PA [4],
# with E2SPE and E0HSPE 0 (so EL2 is never sampled unless the VHE host asks for it).
PMSCR_EL2_BOOT = R.bits("PMSCR_EL2", PCT=1, PA=1)


def hdfgrtr_el2_boot(features: Features) -> int:
    """HDFGRTR_EL2 as Linux's EL2 set-up (__init_el2_fgt) writes it on a FEAT_FGT CPU: no read
    trapped, so nPMSNEVFR_EL1 [62], whose 0 traps, is 1 where FEAT_SPE_FnE (SPEv1p2) makes it exist."""
    if R.BY_NAME["PMSNEVFR_EL1"].implemented(features):
        return R.bits("HDFGRTR_EL2", nPMSNEVFR_EL1=1)
    return 0


def host_mdcr_el2(features: Features) -> int:
    """MDCR_EL2 as the host configures it at boot: HPMN = counters; SPE: E2PB=0b11 (nVHE) or TPMS (VHE)."""
    value = R.bits("MDCR_EL2", HPMN=features.pmu_counters) if features.has_pmuv3 else 0
    if features.has_spe:
        if features.vhe:
            value |= R.bits("MDCR_EL2", TPMS=1)  # VHE: EL2 translation, no access from EL1
        else:
            value |= R.bits("MDCR_EL2", E2PB=R.E2PB_EL1)  # nVHE: host at EL1 owns the buffer
    return value
