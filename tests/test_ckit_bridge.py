"""Tests of calling into C: the vcpu copied both ways, errors raised from the C line, and contract breaches."""

from __future__ import annotations

import re
import traceback

import pytest
from ckit_harness import system_for, target_for

from pytest_spekvm.ckit import CTarget
from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference.cpu import ModelError
from pytest_spekvm.reference.features import Features
from pytest_spekvm.reference.registers import UnknownRegisterError
from pytest_spekvm.reference.vcpu import ContractError, ExitReason, GuestExit

# A C file whose run entry point misbehaves the way the test asks, through a field of the save area
# (vcpu->host_debug_state.pmbsr_el1), so that one build serves every misbehaviour.
MISBEHAVE_C = """\
#include <spekvm_shim.h>

enum { BEHAVE, UNKNOWN_NAME, UNKNOWN_ENCODING, BAD_DSB, BAD_EXIT_CODE, NO_GUEST, NULL_VCPU, SETUP_FAILS };

#define MODE(vcpu) ((vcpu)->host_debug_state.pmbsr_el1)

void setup(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2)
{
	if (MODE(vcpu) == SETUP_FAILS)
		read_sysreg(bogus_el2);  /* setup fails here */
	vcpu->mdcr_el2 = (host_mdcr_el2 & GENMASK(4, 0)) | BIT(10);
}

u64 run(struct spekvm_vcpu *vcpu)
{
	u64 exit_code;

	switch (MODE(vcpu)) {
	case UNKNOWN_NAME:
		write_sysreg(UL(1), bogus_el1);  /* unknown name here */
		break;
	case UNKNOWN_ENCODING:
		read_sysreg_s(sys_reg(3, 0, 9, 10, 2));  /* unknown encoding here */
		break;
	case BAD_DSB:
		dsb(bogus);  /* bad dsb here */
		break;
	case NO_GUEST:
		return 0;
	case NULL_VCPU:
		return spekvm_run_guest(0);
	case BAD_EXIT_CODE:
		spekvm_run_guest(vcpu);
		return 42;
	}
	exit_code = spekvm_run_guest(vcpu);
	vcpu->host_debug_state.pmscr_el1 = 0x5a;
	vcpu->sysregs.tcr_el1 = read_sysreg(tcr_el1);
	return exit_code;
}
"""

@pytest.fixture(scope="module")
def misbehave(tmp_path_factory: pytest.TempPathFactory) -> CTarget:
    """MISBEHAVE_C, built once for the module."""
    target = target_for(tmp_path_factory.mktemp("misbehave"), MISBEHAVE_C)
    target.build()
    return target


# ---------------------------------------------------------------------------- calling into C


def test_setup_and_run_round_trip(misbehave: CTarget) -> None:
    """Setup's MDCR_EL2, run's exit reason and what run stores in the struct reach the Python side."""
    s = system_for(misbehave)
    reason = s.run_vcpu(0, [GuestExit("mmio")])
    vcpu = s.vcpus[0]
    assert ExitReason("mmio") == reason
    assert R.bits("MDCR_EL2", HPMN=Features().pmu_counters, TDOSA=1) == vcpu.mdcr_el2
    assert 0x5A == vcpu.host_debug_state["pmscr_el1"]
    assert s.cpu.peek("TCR_EL1") == vcpu.sysregs["TCR_EL1"]


@pytest.mark.parametrize(("mode", "error", "text", "marker"), [
    (1, UnknownRegisterError, "Cannot access system register 'bogus_el1' because the model does not know it", "unknown name here"),
    (2, UnknownRegisterError, "Cannot access system register S3_0_C9_C10_2 because the model does not know that encoding", "unknown encoding here"),
    (3, ModelError, "Cannot issue dsb 'bogus' because that is not a DSB option", "bad dsb here"),
])
def test_model_errors_point_at_the_c_line(misbehave: CTarget, mode: int, error: type[Exception], text: str, marker: str) -> None:
    """An access the model rejects stops the C code and raises from a frame at the C file, line and function."""
    s = system_for(misbehave)
    s.vcpus[0].host_debug_state["pmbsr_el1"] = mode
    s.setup_vcpu(0)
    with pytest.raises(error, match=re.escape(text)) as info:
        s.run_vcpu(0)
    source = misbehave.spec.sources[0]
    line = next(i for i, text in enumerate(source.read_text().splitlines(), 1) if marker in text)
    innermost_outside_the_kit = next(
        f for f in reversed(traceback.extract_tb(info.value.__traceback__)) if f.filename == str(source)
    )
    assert (line, "run") == (innermost_outside_the_kit.lineno, innermost_outside_the_kit.name)


def test_setup_errors_point_at_the_c_line(misbehave: CTarget) -> None:
    """An error in the setup entry point is raised the same way, from its C line."""
    s = system_for(misbehave)
    s.vcpus[0].host_debug_state["pmbsr_el1"] = 7
    with pytest.raises(UnknownRegisterError, match="'bogus_el2'") as info:
        s.setup_vcpu(0)
    frames = [(f.name, f.line) for f in traceback.extract_tb(info.value.__traceback__) if f.filename == str(misbehave.spec.sources[0])]
    assert [("setup", "read_sysreg(bogus_el2);  /* setup fails here */")] == frames


@pytest.mark.parametrize(("mode", "clause", "text"), [
    (4, "vcpu_run returns the exit reason", "run() returned 0x2a, which is not an exit code spekvm_run_guest() gave in this run (return the value spekvm_run_guest(vcpu) returned)"),
    (5, "vcpu_run enters the guest once", "it entered 0 times"),
    (6, "run_guest is given the vcpu", "spekvm_run_guest() was given a NULL vcpu (pass the vcpu the run entry point was given)"),
])
def test_contract_breaches_are_contract_errors(misbehave: CTarget, mode: int, clause: str, text: str) -> None:
    """A run that returns a made-up exit code, never enters the guest, or enters it with no vcpu breaks a named clause."""
    s = system_for(misbehave)
    s.vcpus[0].host_debug_state["pmbsr_el1"] = mode
    s.setup_vcpu(0)
    with pytest.raises(ContractError) as info:
        s.run_vcpu(0)
    assert clause == info.value.clause
    assert text in str(info.value)
