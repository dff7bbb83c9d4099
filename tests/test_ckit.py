"""Tests of the C adapter kit: building through the shim header, the build cache, errors, and the C example."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sysconfig
import traceback
from pathlib import Path
from typing import Any

import pytest

from pytest_spekvm import ckit
from pytest_spekvm.ckit import SHIM_HEADER, CBuildError, CTarget, c_adapter, find_compiler
from pytest_spekvm.reference import memory as M
from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference.chooser import WorstCaseChooser
from pytest_spekvm.reference.cpu import ModelError
from pytest_spekvm.reference.features import Features, SpeLevel
from pytest_spekvm.reference.kvm import host_mdcr_el2
from pytest_spekvm.reference.registers import UnknownRegisterError
from pytest_spekvm.reference.system import System
from pytest_spekvm.reference.vcpu import ContractError, ExitReason, GuestCode, GuestExit
from pytest_spekvm.space import FeatureSpace

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "c_switch"
RULE_IDS = ("RES0", "TRAP-COND", "UNDEF", "DRAIN-ORDER", "RESTORE-ORDER", "HOST-STATE", "ISOLATION", "NO-LOSS", "LEAN")

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

GOOD_C = """\
#include <spekvm_shim.h>

void setup(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2)
{
	vcpu->mdcr_el2 = host_mdcr_el2 & GENMASK(4, 0);
}

u64 run(struct spekvm_vcpu *vcpu)
{
	return spekvm_run_guest(vcpu);
}
"""


def write(path: Path, text: str) -> Path:
    """Write `text` to `path`, making its folder, and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def target_for(tmp_path: Path, code: str = GOOD_C, **kw: Any) -> CTarget:
    """A C target for `code` written to tmp_path/src/switch.c, built under tmp_path/build unless told otherwise."""
    source = write(tmp_path / "src" / "switch.c", code)
    kw.setdefault("setup", "setup")
    kw.setdefault("run", "run")
    kw.setdefault("build_dir", tmp_path / "build")
    return c_adapter(sources=[source], **kw)


def system_for(target: CTarget, features: Features | None = None) -> System:
    """A booted system running a fresh adapter of `target` with the worst-case chooser."""
    return System(features if features is not None else Features(), target(), WorstCaseChooser())


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


@pytest.fixture(scope="module")
def misbehave(tmp_path_factory: pytest.TempPathFactory) -> CTarget:
    """MISBEHAVE_C, built once for the module."""
    target = target_for(tmp_path_factory.mktemp("misbehave"), MISBEHAVE_C)
    target.build()
    return target


@pytest.fixture
def compiler_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every command the kit starts from now on (they still run)."""
    calls: list[list[str]] = []
    real = subprocess.Popen

    def spy(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        calls.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)
    return calls


def usage_error(result: pytest.RunResult) -> str:
    """The text of a run that ended in a usage error, checked to carry no traceback."""
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text
    return text


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


def test_no_compiler_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CC and with no compiler on PATH, the error says what was looked for and how to get one."""
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(CBuildError, match=r"no C compiler was found on PATH \(looked for \$CC, .* cc, gcc and clang; install gcc or clang"):
        find_compiler()


def test_compiler_from_cc_keeps_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """CC may carry arguments; the kit runs the compiler it names with them."""
    gcc = shutil.which("gcc")
    assert gcc is not None
    monkeypatch.setenv("CC", "gcc -Wextra")
    assert [gcc, "-Wextra"] == find_compiler()


def test_compiler_default_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CC the kit finds a compiler on PATH (the one Python was built with, cc, gcc or clang)."""
    monkeypatch.delenv("CC", raising=False)
    argv = find_compiler()
    assert os.access(argv[0], os.X_OK)


def test_compiler_that_cannot_be_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiler the system cannot start is a CBuildError naming it, and no half-started job is left behind."""
    monkeypatch.delenv("CC", raising=False)
    started: list[subprocess.Popen[str]] = []
    real = subprocess.Popen

    def flaky(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        if started:
            raise PermissionError(13, "Permission denied")
        started.append(real(argv, *args, **kwargs))
        return started[0]

    monkeypatch.setattr(subprocess, "Popen", flaky)
    with pytest.raises(CBuildError, match=r"because the C compiler .* cannot be run \(\[Errno 13\] Permission denied\); install gcc or clang"):
        target_for(tmp_path).build()
    assert started[0].returncode is not None


def test_compiler_that_prints_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiler that fails silently still gets a message that says so."""
    monkeypatch.setenv("CC", "false")
    with pytest.raises(CBuildError, match=r"reported errors in the glue code cffi generated .*:\n    \(the compiler printed nothing\)"):
        target_for(tmp_path).build()


def test_missing_python_headers_are_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Python.h the error says the Python development headers are missing."""
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path / "no-python-headers"))
    with pytest.raises(CBuildError, match=r"(Python|pyconfig).h: No such file.*\n(.*\n)*  \(the Python development headers are missing: install python3-dev"):
        target_for(tmp_path).build()


@pytest.mark.parametrize(("role", "entry", "signature"), [
    ("setup", "setup_missing", "void setup_missing(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2)"),
    ("run", "run_missing", "u64 run_missing(struct spekvm_vcpu *vcpu)"),
])
def test_missing_entry_point_is_named(tmp_path: Path, role: str, entry: str, signature: str) -> None:
    """An entry point the sources do not define is named, with the signature to define, and nothing is cached."""
    target = target_for(tmp_path, **{role: entry})
    message = (
        f"Cannot use the C target (switch.c) because its entry point {role}='{entry}' is defined in none of its sources "
        f"(define `{signature}` in one of them, not static, or pass {role}= the name of the function that is)"
    )
    with pytest.raises(CBuildError) as info:
        target.build()
    assert message == str(info.value)
    assert [] == list((tmp_path / "build").glob("*/manifest.json"))
    assert [] == list((tmp_path / "build").glob("*/*.so"))


def test_entry_point_with_the_wrong_signature_is_a_compile_error(tmp_path: Path) -> None:
    """An entry point defined with another signature fails to compile, and the message gives the expected one."""
    target = target_for(tmp_path, GOOD_C.replace("u64 run(", "int run("))
    with pytest.raises(CBuildError, match=r"(?s)error: conflicting types for .run.*spekvm_entry.h is the kit's declaration of the entry points: "
                       r"setup is `void setup\(struct spekvm_vcpu \*vcpu, u64 host_mdcr_el2\)`, run is `u64 run\(struct spekvm_vcpu \*vcpu\)`"):
        target.build()


def test_undefined_symbol_is_named(tmp_path: Path) -> None:
    """A function the sources call but nobody defines is named when the build is loaded."""
    code = "void helper_nobody_defines(void);\n" + GOOD_C.replace("return spekvm_run_guest", "helper_nobody_defines();\n\treturn spekvm_run_guest")
    with pytest.raises(CBuildError, match=r"because the symbol 'helper_nobody_defines' is used but defined in none of its sources \(add the file"):
        target_for(tmp_path, code).build()


def test_link_error_shows_the_linker_output(tmp_path: Path) -> None:
    """A link that fails is reported with the linker's message."""
    with pytest.raises(CBuildError, match=r"reported errors in the link of switch.c:\n.*spekvm_no_such_library"):
        target_for(tmp_path, ldflags=["-lspekvm_no_such_library"]).build()


@pytest.mark.parametrize(("kw", "message"), [
    ({"sources": []}, "Cannot build the C target because sources= is empty (give the C files of the world switch)"),
    ({"sources": ["nowhere.c"]}, "Cannot build the C target because the source {tmp}/nowhere.c does not exist (relative paths are relative to the adapter module's folder, or to base_dir= when given)"),
    ({"setup": "setup vcpu"}, "Cannot build the C target (switch.c) because setup='setup vcpu' is not the name of a C function"),
    ({"run": "1run"}, "Cannot build the C target (switch.c) because run='1run' is not the name of a C function"),
    ({"run": "setup"}, "Cannot build the C target (switch.c) because setup= and run= both name 'setup' (they are two functions with different signatures)"),
])
def test_bad_arguments_are_reported(tmp_path: Path, kw: dict[str, Any], message: str) -> None:
    """Arguments that cannot describe a build are reported before anything is compiled."""
    write(tmp_path / "switch.c", GOOD_C)
    arguments: dict[str, Any] = {"sources": ["switch.c"], "setup": "setup", "run": "run", "base_dir": tmp_path, **kw}
    with pytest.raises(CBuildError) as info:
        c_adapter(**arguments).build()
    assert message.format(tmp=tmp_path) == str(info.value)


def test_unusable_build_directory_is_reported(tmp_path: Path) -> None:
    """A build directory that cannot be created is named, with how to choose another."""
    write(tmp_path / "file", "")
    with pytest.raises(CBuildError, match=r"because the build directory .*/file/sub/switch-\w+ cannot be created \(.*\); point SPEKVM_BUILD_DIR or build_dir= at a writable folder"):
        target_for(tmp_path, build_dir=tmp_path / "file" / "sub").build()


# --------------------------------------------------------------------------------- the cache


def test_second_build_is_a_cache_hit(tmp_path: Path, compiler_calls: list[list[str]]) -> None:
    """A second target for the same unchanged sources loads the cached build without running the compiler."""
    first = target_for(tmp_path).build()
    assert not first.from_cache
    assert 3 == len(compiler_calls)  # the glue, switch.c, the link
    compiler_calls.clear()
    second = target_for(tmp_path).build()
    assert second.from_cache
    assert [] == compiler_calls
    assert first.path == second.path
    assert "$ " in second.log  # the log of the build it came from


@pytest.mark.parametrize("change", ["source", "included header"])
def test_changed_input_rebuilds(tmp_path: Path, change: str, compiler_calls: list[list[str]]) -> None:
    """Changing a source, or a header it includes, rebuilds; the old extension is removed."""
    header = write(tmp_path / "src" / "mask.h", "#define MASK GENMASK(4, 0)\n")
    code = '#include "mask.h"\n' + GOOD_C.replace("GENMASK(4, 0)", "MASK")
    first = target_for(tmp_path, code).build()
    assert not first.from_cache
    if change == "source":
        write(tmp_path / "src" / "switch.c", code + "/* changed */\n")
    else:
        header.write_text("#define MASK GENMASK(3, 0)\n")
    compiler_calls.clear()
    rebuilt = target_for(tmp_path, (tmp_path / "src" / "switch.c").read_text()).build()
    assert not rebuilt.from_cache
    assert compiler_calls
    assert rebuilt.path != first.path
    assert not first.path.exists()


def test_touching_without_change_is_still_a_hit(tmp_path: Path) -> None:
    """The cache is keyed by content: a new modification time alone does not rebuild."""
    first = target_for(tmp_path).build()
    source = tmp_path / "src" / "switch.c"
    os.utime(source, (source.stat().st_atime + 60, source.stat().st_mtime + 60))
    again = c_adapter(sources=[source], setup="setup", run="run", build_dir=tmp_path / "build").build()
    assert again.from_cache
    assert first.path == again.path


@pytest.mark.parametrize("damage", ["extension truncated", "extension deleted", "dependency gone", "manifest garbled"])
def test_damaged_cache_rebuilds(tmp_path: Path, damage: str) -> None:
    """A cache entry that cannot be used is rebuilt, not reported."""
    first = target_for(tmp_path).build()
    manifest = first.path.parent / "manifest.json"
    if damage == "extension truncated":
        # A file of that name that was never loaded: this process has the real one loaded already.
        data = json.loads(manifest.read_text())
        data["module"], data["extension"] = "_spekvm_truncated", "_spekvm_truncated.so"
        manifest.write_text(json.dumps(data))
        (first.path.parent / "_spekvm_truncated.so").write_bytes(first.path.read_bytes()[:100])
    elif damage == "extension deleted":
        first.path.unlink()
    elif damage == "dependency gone":
        data = json.loads(manifest.read_text())
        data["deps"][str(tmp_path / "src" / "gone.h")] = "0" * 64
        manifest.write_text(json.dumps(data))
    else:
        manifest.write_text("{not json")
    rebuilt = target_for(tmp_path).build()
    assert not rebuilt.from_cache
    s = system_for(target_for(tmp_path))
    assert ExitReason("hvc") == s.run_vcpu(0, [GuestExit("hvc")])


def test_build_directory_defaults_beside_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without build_dir= or SPEKVM_BUILD_DIR, the build goes to .spekvm-build/ beside the first source."""
    monkeypatch.delenv(ckit.BUILD_DIR_ENV, raising=False)
    build = target_for(tmp_path, build_dir=None).build()
    assert tmp_path / "src" / ".spekvm-build" == build.path.parent.parent


def test_build_directory_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEKVM_BUILD_DIR chooses the build directory when build_dir= does not."""
    monkeypatch.setenv(ckit.BUILD_DIR_ENV, str(tmp_path / "elsewhere"))
    build = target_for(tmp_path, build_dir=None).build()
    assert tmp_path / "elsewhere" == build.path.parent.parent


def test_build_directory_falls_back_to_the_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where .spekvm-build/ cannot be made beside the sources, the build goes to the user cache folder."""
    monkeypatch.delenv(ckit.BUILD_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write(tmp_path / "src" / ".spekvm-build", "a file where the folder would go")
    build = target_for(tmp_path, build_dir=None).build()
    assert tmp_path / "cache" / "pytest-spekvm" == build.path.parent.parent


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
