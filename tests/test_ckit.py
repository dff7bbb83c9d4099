"""Tests of the C adapter kit end to end: the C example through the plugin, build errors as usage errors,
the adapter the plugin inspects, the kit where a build cannot work, and the shim header."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from ckit_harness import EXAMPLE, GOOD_C, system_for, target_for, usage_error, write

from pytest_spekvm import ckit
from pytest_spekvm.ckit import SHIM_HEADER, CBuildError, c_adapter
from pytest_spekvm.reference import memory as M
from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference.features import Features, SpeLevel
from pytest_spekvm.reference.kvm import host_mdcr_el2
from pytest_spekvm.reference.vcpu import ExitReason, GuestCode, GuestExit
from pytest_spekvm.space import FeatureSpace

RULE_IDS = ("RES0", "TRAP-COND", "UNDEF", "DRAIN-ORDER", "RESTORE-ORDER", "HOST-STATE", "ISOLATION", "NO-LOSS", "LEAN")


@pytest.fixture(scope="session")
def example_build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build directory for the C example, for the whole session: it is built once and then cached."""
    return tmp_path_factory.mktemp("spekvm-build")


@pytest.fixture
def c_pytester(spekvm_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, example_build_dir: Path) -> pytest.Pytester:
    """The isolated pytester of conftest.py, with the default compiler and the session's build directory."""
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv(ckit.BUILD_DIR_ENV, str(example_build_dir))
    return spekvm_pytester


# ------------------------------------------------------------------------------ the C example


@pytest.mark.no_cover
def test_example_passes_every_rule(c_pytester: pytest.Pytester) -> None:
    """examples/c_switch/adapter.py passes every rule on every cell, and every rule is exercised."""
    result = c_pytester.runpytest(f"--spekvm-target={EXAMPLE / 'adapter.py'}", "-k", "not sequences", "-p", "no:cacheprovider")
    assert pytest.ExitCode.OK == result.ret
    result.stdout.fnmatch_lines(["spekvm target: switch.c *", "*= spekvm verdicts for switch.c =*"])
    result.stdout.fnmatch_lines([f"{rule_id} * passed (* checks, * exercised it)*" for rule_id in RULE_IDS])
    assert "never exercised" not in result.stdout.str().lower()


def test_broken_example_fails_on_drain_order(c_pytester: pytest.Pytester) -> None:
    """examples/c_switch/adapter_broken.py (the drain after __activate_traps) fails DRAIN-ORDER on non-VHE with SPE."""
    result = c_pytester.runpytest(
        f"--spekvm-target={EXAMPLE / 'adapter_broken.py'}", "-k", "test_drain_order and not sequences and spe1 and not el3",
        "-p", "no:cacheprovider",
    )
    assert pytest.ExitCode.TESTS_FAILED == result.ret
    result.stdout.fnmatch_lines([
        "RULE DRAIN-ORDER violated on features: nVHE, FEAT_SPE*",
        "*msr HCR_EL2 <- * = * VM*",
        "DRAIN-ORDER * FAILED (* of * checks)*",
    ])
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] > 0  # VHE cells and cells without a live buffer pass
    assert outcomes["failed"] > 0


def test_example_marshals_the_vcpu_both_ways(example_build_dir: Path) -> None:
    """What the C switch stores in its vcpu struct (host stage 1, host MDCR_EL2, the guest's MDCR_EL2) reaches the Python Vcpu."""
    target = c_adapter(sources=[EXAMPLE / "switch.c"], setup="kvm_arm_setup_debug", run="__kvm_vcpu_run",
                       build_dir=example_build_dir)
    features = Features(spe=SpeLevel.SPE)
    s = system_for(target, features)
    s.enable_profiling()
    s.host_run(3)
    reason = s.run_vcpu(0, [GuestCode(1), GuestExit("hvc")])
    vcpu = s.vcpus[0]
    assert ExitReason("hvc") == reason
    assert R.bits("MDCR_EL2", HPMN=features.pmu_counters, TPMS=1, TDRA=1, TDOSA=1, TPM=1, TPMCR=1) == vcpu.mdcr_el2
    assert {"TTBR0_EL1": M.HOST_TTBR0, "TTBR1_EL1": M.HOST_TTBR1} == {k: vcpu.host_ctxt[k] for k in ("TTBR0_EL1", "TTBR1_EL1")}
    assert host_mdcr_el2(features) == vcpu.host_debug_state["mdcr_el2"]
    assert 0b11 == vcpu.host_debug_state["pmscr_el1"]  # E0SPE | E1SPE, saved by the drain
    assert 0b11 == s.cpu.peek("PMSCR_EL1")  # and given back


# ---------------------------------------------------------------------------- build errors


def test_compile_error_is_a_usage_error_showing_the_compiler_output(c_pytester: pytest.Pytester) -> None:
    """A source that does not compile stops the run with the file's name and the compiler's own message."""
    bad = GOOD_C.replace("host_mdcr_el2 & GENMASK(4, 0)", "host_mdcr_el2 | undeclared_thing")
    write(c_pytester.path / "bad.c", bad)
    c_pytester.makepyfile(adapter_bad="""
        from pytest_spekvm.ckit import c_adapter

        spekvm_adapter = c_adapter(sources=["bad.c"], setup="setup", run="run")
    """)
    text = usage_error(c_pytester.runpytest("--spekvm-target=adapter_bad.py"))
    source = c_pytester.path / "bad.c"
    assert re.search(
        rf"ERROR: --spekvm-target: Cannot use target 'adapter_bad.py' because calling its spekvm_adapter\(\) raised CBuildError: "
        rf"Cannot build the C target \(bad.c\) because the C compiler \(.+\) reported errors in {re.escape(str(source))}:\n",
        text,
    )
    assert re.search(rf"\n    {re.escape(str(source))}:5:\d+: error: .*undeclared_thing", text)
    assert "(fix it and run again; a failed build is not cached) [contract: spekvm_adapter() returns an adapter]" in text


def test_missing_compiler_is_a_usage_error(c_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """CC naming a compiler that does not exist stops the run with that name and what to do."""
    write(c_pytester.path / "switch.c", GOOD_C)
    c_pytester.makepyfile(adapter="""
        from pytest_spekvm.ckit import c_adapter

        spekvm_adapter = c_adapter(sources=["switch.c"], setup="setup", run="run")
    """)
    monkeypatch.setenv("CC", "/nonexistent/cc -O2")
    text = usage_error(c_pytester.runpytest("--spekvm-target=adapter.py"))
    assert (
        "raised CBuildError: Cannot build the C target because the C compiler CC='/nonexistent/cc -O2' (from the environment) "
        "was not found (install it, point CC at a compiler that exists, or unset CC to use gcc, cc or clang from PATH)"
    ) in text


def test_adapter_carries_name_version_and_feature_space(tmp_path: Path) -> None:
    """name=, version= and feature_space= reach the adapter the plugin inspects; the target's repr names its entry points."""
    space = FeatureSpace(vhe=(True,))
    target = target_for(tmp_path, name="my switch", version="1.2", feature_space=space)
    adapter = target()
    assert ("my switch", "1.2", space) == (adapter.name, adapter.version, adapter.feature_space)
    assert "<C target my switch: setup=setup, run=run>" == repr(target)


# ---------------------------------------------------------------------------- the shim header


def test_shim_encodings_match_the_model() -> None:
    """Every SYS_* encoding in the shim header is the model's encoding of the register of that name."""
    found = re.findall(r"#define SYS_(\w+)\s+sys_reg\((\d+), (\d+), (\d+), (\d+), (\d+)\)", SHIM_HEADER.read_text())
    assert len(found) >= 25
    for name, *fields in found:
        assert name == R.lookup(R.Encoding(*map(int, fields)).sys_reg), name


def test_kit_without_fcntl_says_it_needs_posix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the fcntl module does not exist (not a POSIX system), the kit still imports and a build says what it needs."""
    monkeypatch.setitem(sys.modules, "fcntl", None)
    target = target_for(tmp_path)
    with pytest.raises(CBuildError, match=re.escape("Cannot build the C target (switch.c) because pytest_spekvm.ckit needs a POSIX system (for the fcntl module) with a cc-compatible compiler (gcc or clang)")):
        target()
