/* SPDX-License-Identifier: MIT */
/*
 * spekvm_shim.h: kernel-style system register accessors for a C world switch run by pytest-spekvm.
 *
 * A world switch written against this header runs unchanged on the suite's executable CPU model:
 * every accessor below is a call into the model (through cffi), so each MRS, MSR, barrier and
 * guest entry lands in the trace that the rules judge. pytest_spekvm.ckit builds the C sources
 * with this header on the include path and calls the two entry points an adapter names:
 *
 *	void setup(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2);	(kvm_arm_setup_debug)
 *	u64  run(struct spekvm_vcpu *vcpu);				(__kvm_vcpu_run)
 *
 * `run` must enter the guest exactly once, with spekvm_run_guest(vcpu), and return the exit code
 * that call gave. Before each call the kit copies the Python Vcpu into a struct spekvm_vcpu and
 * copies it back afterwards, so what the C code leaves in the struct is what the suite sees.
 *
 * Accessors (the kernel's names and shapes, arch/arm64/include/asm/sysreg.h and barrier.h):
 *	read_sysreg(mdcr_el2), write_sysreg(val, hcr_el2)	a register by name (any case)
 *	read_sysreg_s(SYS_PMSCR_EL1), write_sysreg_s(val, enc)	a register by sys_reg() encoding
 *	isb(), dsb(nsh), psb_csync()				barriers; psb_csync() is hint #17
 *	has_vhe()						the CPU runs the host at EL2 (FEAT_VHE)
 *
 * If the model rejects an access (a register it does not know, a value that is not a register
 * value) or the scenario's time limit expires, the call does not return: the kit unwinds out of
 * the C code (longjmp) and reports the error with the file, line and function of the access.
 */
#ifndef SPEKVM_SHIM_H
#define SPEKVM_SHIM_H

#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/*
 * SPEKVM-CDEF-BEGIN
 * The kit hands the declarations between these markers to cffi's cdef as they are: keep them
 * plain C (no macros, no attributes), one declaration per name.
 */
typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t s64;

/* Where in the C sources an accessor was called: for error messages. */
struct spekvm_site {
	const char *file;
	int line;
	const char *func;
};

/* An EL1 stage 1 context; the kit maps each field to the Vcpu dict key of its name in capitals. */
struct spekvm_ctxt {
	u64 ttbr0_el1;
	u64 ttbr1_el1;
	u64 tcr_el1;
};

/* The switch's own save area (vcpu->arch.host_debug_state); Vcpu.host_debug_state, same keys. */
struct spekvm_host_debug_state {
	u64 pmscr_el1;
	u64 pmblimitr_el1;
	u64 pmbptr_el1;
	u64 pmbsr_el1;
	u64 mdcr_el2;
};

/* The Python Vcpu, field for field (pytest_spekvm.reference.vcpu.Vcpu). */
struct spekvm_vcpu {
	int index;
	int vm;
	u64 mdcr_el2;		/* the MDCR_EL2 the guest runs with: setup computes it */
	u64 vttbr_el2;		/* the guest's stage 2 */
	struct spekvm_ctxt sysregs;	/* the guest's EL1 stage 1 */
	struct spekvm_ctxt host_ctxt;	/* the host's EL1 stage 1, saved on entry (non-VHE) */
	struct spekvm_host_debug_state host_debug_state;
};
/* SPEKVM-CDEF-END */

/*
 * SPEKVM-CALLBACKS-BEGIN
 * Calls into the model, defined by the kit (cffi extern "Python+C"). Each returns 0, or 1 when
 * Python raised; the inline wrappers below then unwind out of the C code. Not for direct use.
 */
int spekvm_cb_mrs(const struct spekvm_site *site, const char *name, u64 *value);
int spekvm_cb_mrs_s(const struct spekvm_site *site, u32 encoding, u64 *value);
int spekvm_cb_msr(const struct spekvm_site *site, const char *name, u64 value);
int spekvm_cb_msr_s(const struct spekvm_site *site, u32 encoding, u64 value);
int spekvm_cb_isb(const struct spekvm_site *site);
int spekvm_cb_dsb(const struct spekvm_site *site, const char *domain);
int spekvm_cb_hint(const struct spekvm_site *site, int imm);
int spekvm_cb_has_vhe(const struct spekvm_site *site, int *vhe);
int spekvm_cb_run_guest(const struct spekvm_site *site, struct spekvm_vcpu *vcpu, u64 *exit_code);
/* SPEKVM-CALLBACKS-END */

/* Set by the kit around each call into the C code: where a failed callback unwinds to. */
extern jmp_buf *spekvm__abort_to;

static inline void spekvm__check(int failed)
{
	if (!failed)
		return;
	if (!spekvm__abort_to)
		abort();	/* an accessor called outside a call from the kit: cannot happen through ckit */
	longjmp(*spekvm__abort_to, 1);
}

static inline u64 spekvm__mrs(const struct spekvm_site *site, const char *name)
{
	u64 value = 0;

	spekvm__check(spekvm_cb_mrs(site, name, &value));
	return value;
}

static inline u64 spekvm__mrs_s(const struct spekvm_site *site, u32 encoding)
{
	u64 value = 0;

	spekvm__check(spekvm_cb_mrs_s(site, encoding, &value));
	return value;
}

static inline void spekvm__msr(const struct spekvm_site *site, const char *name, u64 value)
{
	spekvm__check(spekvm_cb_msr(site, name, value));
}

static inline void spekvm__msr_s(const struct spekvm_site *site, u32 encoding, u64 value)
{
	spekvm__check(spekvm_cb_msr_s(site, encoding, value));
}

static inline void spekvm__isb(const struct spekvm_site *site)
{
	spekvm__check(spekvm_cb_isb(site));
}

static inline void spekvm__dsb(const struct spekvm_site *site, const char *domain)
{
	spekvm__check(spekvm_cb_dsb(site, domain));
}

static inline void spekvm__hint(const struct spekvm_site *site, int imm)
{
	spekvm__check(spekvm_cb_hint(site, imm));
}

static inline bool spekvm__has_vhe(const struct spekvm_site *site)
{
	int vhe = 0;

	spekvm__check(spekvm_cb_has_vhe(site, &vhe));
	return vhe;
}

static inline u64 spekvm__run_guest(const struct spekvm_site *site, struct spekvm_vcpu *vcpu)
{
	u64 exit_code = 0;

	spekvm__check(spekvm_cb_run_guest(site, vcpu, &exit_code));
	return exit_code;
}

#define SPEKVM_SITE	(&(const struct spekvm_site){ __FILE__, __LINE__, __func__ })

/* include/linux/stringify.h */
#ifndef __stringify
#define __stringify_1(x...)	#x
#define __stringify(x...)	__stringify_1(x)
#endif

/* include/vdso/const.h, include/vdso/bits.h, include/linux/bits.h */
#define UL(x)			(x##UL)
#define ULL(x)			(x##ULL)
#define BIT(nr)			(UL(1) << (nr))
#define BIT_ULL(nr)		(ULL(1) << (nr))
#define GENMASK(h, l)		(((~UL(0)) - (UL(1) << (l)) + 1) & (~UL(0) >> (63 - (h))))
#define GENMASK_ULL(h, l)	(((~ULL(0)) - (ULL(1) << (l)) + 1) & (~ULL(0) >> (63 - (h))))

#ifndef likely
#define likely(x)		__builtin_expect(!!(x), 1)
#define unlikely(x)		__builtin_expect(!!(x), 0)
#endif

/* Code of that era marks hyp functions __hyp_text; on the model every function is hyp text. */
#ifndef __hyp_text
#define __hyp_text
#endif

/* arch/arm64/include/asm/sysreg.h: a register by name, and by encoding. */
#define read_sysreg(r)		spekvm__mrs(SPEKVM_SITE, __stringify(r))
#define write_sysreg(v, r)	spekvm__msr(SPEKVM_SITE, __stringify(r), (u64)(v))
#define read_sysreg_s(r)	spekvm__mrs_s(SPEKVM_SITE, (u32)(r))
#define write_sysreg_s(v, r)	spekvm__msr_s(SPEKVM_SITE, (u32)(r), (u64)(v))

/* arch/arm64/include/asm/barrier.h; PSB CSYNC is HINT #17 (Arm ARM, PSB CSYNC). */
#define isb()			spekvm__isb(SPEKVM_SITE)
#define dsb(opt)		spekvm__dsb(SPEKVM_SITE, #opt)
#define psb_csync()		spekvm__hint(SPEKVM_SITE, 17)

/* arch/arm64/include/asm/virt.h: a boot-time capability, not a register access. */
#define has_vhe()		spekvm__has_vhe(SPEKVM_SITE)

/* Exception return into the guest, and the exception entry back at EL2 (__guest_enter). */
#define spekvm_run_guest(vcpu)	spekvm__run_guest(SPEKVM_SITE, (vcpu))

/*
 * sys_reg(op0, op1, crn, crm, op2): the encoding as Linux packs it, fields at bits [20:5]
 * (arch/arm64/include/asm/sysreg.h: Op0_shift 19, Op1_shift 16, CRn_shift 12, CRm_shift 8,
 * Op2_shift 5).
 */
#define sys_reg(op0, op1, crn, crm, op2) \
	(((op0) << 19) | ((op1) << 16) | ((crn) << 12) | ((crm) << 8) | ((op2) << 5))

/* Encodings (op0, op1, CRn, CRm, op2) of the registers the model knows, from the Arm ARM. */
#define SYS_ID_AA64DFR0_EL1	sys_reg(3, 0, 0, 5, 0)
#define SYS_HCR_EL2		sys_reg(3, 4, 1, 1, 0)
#define SYS_MDCR_EL2		sys_reg(3, 4, 1, 1, 1)
#define SYS_TTBR0_EL1		sys_reg(3, 0, 2, 0, 0)
#define SYS_TTBR1_EL1		sys_reg(3, 0, 2, 0, 1)
#define SYS_TCR_EL1		sys_reg(3, 0, 2, 0, 2)
#define SYS_TTBR0_EL2		sys_reg(3, 4, 2, 0, 0)
#define SYS_TTBR1_EL2		sys_reg(3, 4, 2, 0, 1)	/* FEAT_VHE */
#define SYS_TCR_EL2		sys_reg(3, 4, 2, 0, 2)
#define SYS_VTTBR_EL2		sys_reg(3, 4, 2, 1, 0)
#define SYS_TTBR0_EL12		sys_reg(3, 5, 2, 0, 0)	/* EL2 with HCR_EL2.E2H=1 only */
#define SYS_TTBR1_EL12		sys_reg(3, 5, 2, 0, 1)
#define SYS_TCR_EL12		sys_reg(3, 5, 2, 0, 2)

/* Statistical Profiling Extension: sampling control (MDCR_EL2.TPMS traps EL1 accesses). */
#define SYS_PMSCR_EL1		sys_reg(3, 0, 9, 9, 0)
#define SYS_PMSCR_EL2		sys_reg(3, 4, 9, 9, 0)
#define SYS_PMSCR_EL12		sys_reg(3, 5, 9, 9, 0)
#define SYS_PMSICR_EL1		sys_reg(3, 0, 9, 9, 2)
#define SYS_PMSIRR_EL1		sys_reg(3, 0, 9, 9, 3)
#define SYS_PMSFCR_EL1		sys_reg(3, 0, 9, 9, 4)
#define SYS_PMSEVFR_EL1		sys_reg(3, 0, 9, 9, 5)
#define SYS_PMSLATFR_EL1	sys_reg(3, 0, 9, 9, 6)
#define SYS_PMSIDR_EL1		sys_reg(3, 0, 9, 9, 7)

/* Statistical Profiling Extension: profiling buffer (MDCR_EL2.E2PB traps EL1 accesses). */
#define SYS_PMBLIMITR_EL1	sys_reg(3, 0, 9, 10, 0)
#define SYS_PMBPTR_EL1		sys_reg(3, 0, 9, 10, 1)
#define SYS_PMBSR_EL1		sys_reg(3, 0, 9, 10, 3)
#define SYS_PMBIDR_EL1		sys_reg(3, 0, 9, 10, 7)

/* Fields the kernel's sysreg.h names too (register.field [bits]). */
#define SYS_PMSCR_EL1_E0SPE_SHIFT	0	/* PMSCR_EL1.E0SPE [0] */
#define SYS_PMSCR_EL1_E1SPE_SHIFT	1	/* PMSCR_EL1.E1SPE [1] */
#define SYS_PMBLIMITR_EL1_E_SHIFT	0	/* PMBLIMITR_EL1.E [0] */
#define SYS_PMBIDR_EL1_P_SHIFT		4	/* PMBIDR_EL1.P [4] */
#define SYS_PMBSR_EL1_S_SHIFT		17	/* PMBSR_EL1.S [17] */
#define ID_AA64DFR0_PMUVER_SHIFT	8	/* ID_AA64DFR0_EL1.PMUVer [11:8] */
#define ID_AA64DFR0_PMSVER_SHIFT	32	/* ID_AA64DFR0_EL1.PMSVer [35:32] */

/* arch/arm64/include/asm/cpufeature.h: a 4-bit ID register field, unsigned. */
#define cpuid_feature_extract_unsigned_field(features, field) \
	((unsigned int)(((u64)(features) >> (field)) & 0xf))

#endif /* SPEKVM_SHIM_H */
