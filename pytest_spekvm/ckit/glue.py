"""The C text cffi compiles around the user's sources: the declarations it binds, and the calls that catch an unwind."""

from __future__ import annotations

from .spec import SHIM_HEADER, BuildSpec


def header_block(text: str, name: str) -> str:
    """The declarations between the header's SPEKVM-`name`-BEGIN comment and its END marker."""
    begin = text.index("*/", text.index(f"SPEKVM-{name}-BEGIN")) + 2
    return text[begin : text.index(f"/* SPEKVM-{name}-END */", begin)]


def cdef(coverage: bool = False) -> str:
    header = SHIM_HEADER.read_text()
    return (
        header_block(header, "CDEF")
        + 'extern "Python+C" {\n' + header_block(header, "CALLBACKS") + "}\n"
        + "int spekvm__call_setup(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2);\n"
        + "int spekvm__call_run(struct spekvm_vcpu *vcpu, u64 *exit_code);\n"
        + "int spekvm__entry_missing(void);\n"
        + ("void spekvm__gcov_dump(void);\n" if coverage else "")
    )


def prototypes(spec: BuildSpec, attribute: str = "") -> str:
    return (
        f"void {spec.setup}(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2){attribute};\n"
        f"u64 {spec.run}(struct spekvm_vcpu *vcpu){attribute};\n"
    )


def preamble(spec: BuildSpec) -> str:
    """The C half of the glue: the unwind target, and calls into the entry points that catch an unwind."""
    return f"""#include "spekvm_shim.h"

jmp_buf *spekvm__abort_to;

/* Weak: a missing entry point reads as NULL, which the kit reports, instead of failing to load. */
{prototypes(spec, " __attribute__((weak))")}
static int spekvm__entry_missing(void)
{{
	return ({spec.setup} ? 0 : 1) | ({spec.run} ? 0 : 2);
}}

static int spekvm__call_setup(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2)
{{
	jmp_buf env;
	jmp_buf *outer = spekvm__abort_to;

	if (setjmp(env)) {{
		spekvm__abort_to = outer;
		return 1;
	}}
	spekvm__abort_to = &env;
	{spec.setup}(vcpu, host_mdcr_el2);
	spekvm__abort_to = outer;
	return 0;
}}

static int spekvm__call_run(struct spekvm_vcpu *vcpu, u64 *exit_code)
{{
	jmp_buf env;
	jmp_buf *outer = spekvm__abort_to;

	if (setjmp(env)) {{
		spekvm__abort_to = outer;
		return 1;
	}}
	spekvm__abort_to = &env;
	*exit_code = {spec.run}(vcpu);
	spekvm__abort_to = outer;
	return 0;
}}
""" + (GCOV_DUMP if spec.coverage else "")


GCOV_DUMP = """
/* The instrumented build: write gcov's counts now (libgcov, linked by --coverage). */
extern void __gcov_dump(void);

static void spekvm__gcov_dump(void)
{
	__gcov_dump();
}
"""
