"""The plugin black-box: every way a target or a target option can be unusable (no such module, no adapter,
an adapter that breaks the contract when made, a bad timeout or reproduce value), each a usage error naming
the contract clause, the bad value and what was expected, never a traceback."""

from __future__ import annotations

import pytest
from plugin_harness import assert_no_traceback

from pytest_spekvm.options import TARGET_OPTION, TIMEOUT_OPTION

# ------------------------------------------------------------------ bad targets

NO_VCPU_RUN = """
class Switch:
    def setup_vcpu(self, cpu, vcpu, host_mdcr_el2):
        pass

spekvm_adapter = Switch
"""

WRONG_SIGNATURE = """
class Switch:
    def setup_vcpu(self, cpu, vcpu, host_mdcr_el2):
        pass

    def vcpu_run(self, cpu):
        pass

spekvm_adapter = Switch
"""


def subclass(body: str) -> str:
    """A module whose adapter is the reference switch with `body` as its class body."""
    return f"from pytest_spekvm.reference import switch as S\n\nclass Switch(S.ReferenceSwitch):\n{body}\n\nspekvm_adapter = Switch\n"


BAD_TARGETS = [
    pytest.param(
        "no.such.module", {}, (),
        ["ERROR: --spekvm-target: Cannot load target 'no.such.module' because no module of that name can be imported "
         "(No module named 'no'); give 'reference', an installed target (*), a dotted module name on sys.path, "
         "or a path to a .py file [[]contract: target names an importable module[]]"],
        id="no-such-module",
    ),
    pytest.param(
        "adapters/missing.py", {}, (),
        ["ERROR: --spekvm-target: Cannot load target 'adapters/missing.py' because there is no file at */adapters/missing.py "
         "(give a path to a .py file, a dotted module name, or 'reference') [[]contract: target names an importable module[]]"],
        id="missing-file",
    ),
    pytest.param(
        "import_fails.py", {"import_fails": "raise ImportError('libkvmtool.so not found')"}, (),
        ["ERROR: --spekvm-target: Cannot load target 'import_fails.py' because importing */import_fails.py raised "
         "ImportError: libkvmtool.so not found [[]contract: target names an importable module[]]"],
        id="file-import-raises",
    ),
    pytest.param(
        "import_fails_too", {"import_fails_too": "1 / 0"}, (),
        ["ERROR: --spekvm-target: Cannot load target 'import_fails_too' because importing it raised "
         "ZeroDivisionError: division by zero [[]contract: target names an importable module[]]"],
        id="module-import-raises",
    ),
    pytest.param(
        "plain_module", {"plain_module": "x = 1"}, (),
        ["ERROR: --spekvm-target: Cannot use target 'plain_module' because */plain_module.py defines no spekvm_adapter "
         "(expected `spekvm_adapter = MySwitch`, a class or function returning a fresh adapter) "
         "[[]contract: module defines spekvm_adapter[]]"],
        id="no-spekvm-adapter",
    ),
    pytest.param(
        "three.py", {"three": "spekvm_adapter = 3"}, (),
        ["ERROR: --spekvm-target: Cannot use target 'three.py' because spekvm_adapter is 3, not a callable "
         "(expected a class or function returning a fresh adapter) [[]contract: spekvm_adapter is callable[]]"],
        id="not-callable",
    ),
    pytest.param(
        "raising.py", {"raising": "def spekvm_adapter():\n    raise RuntimeError('no /dev/kvm here')\n"}, (),
        ["ERROR: --spekvm-target: Cannot use target 'raising.py' because calling its spekvm_adapter() raised "
         "RuntimeError: no /dev/kvm here [[]contract: spekvm_adapter() returns an adapter[]]"],
        id="factory-raises",
    ),
    pytest.param(
        "stuck.py", {"stuck": "def spekvm_adapter():\n    while True:\n        pass\n"}, (f"{TIMEOUT_OPTION}=0.3",),
        ["ERROR: --spekvm-target: Cannot use target 'stuck.py' because calling its spekvm_adapter() did not return "
         "within 0.3s (--spekvm-timeout) [[]contract: spekvm_adapter() returns promptly[]]"],
        id="factory-hangs",
    ),
    pytest.param(
        "no_run.py", {"no_run": NO_VCPU_RUN}, (),
        ["ERROR: --spekvm-target: Cannot use target 'no_run.py' because its adapter <*Switch object at *> has no method "
         "vcpu_run() (expected the WorldSwitch protocol: setup_vcpu(cpu, vcpu, host_mdcr_el2) and vcpu_run(cpu, vcpu)) "
         "[[]contract: adapter has vcpu_run()[]]"],
        id="missing-vcpu-run",
    ),
    pytest.param(
        "one_arg.py", {"one_arg": WRONG_SIGNATURE}, (),
        ["ERROR: --spekvm-target: Cannot use target 'one_arg.py' because vcpu_run(cpu) cannot be called as "
         "vcpu_run(cpu, vcpu) (too many positional arguments) [[]contract: vcpu_run() takes (cpu, vcpu)[]]"],
        id="wrong-signature",
    ),
    pytest.param(
        "space.py", {"space": subclass("    feature_space = 'VHE only'")}, (),
        ["ERROR: --spekvm-target: Cannot use target 'space.py' because its feature_space is 'VHE only' "
         "(expected a pytest_spekvm.FeatureSpace, or a method returning one) [[]contract: feature_space is a FeatureSpace[]]"],
        id="feature-space-garbage",
    ),
    pytest.param(
        "space_raises.py",
        {"space_raises": subclass("    def feature_space(self):\n        raise LookupError('ask the firmware')")}, (),
        ["ERROR: --spekvm-target: Cannot use target 'space_raises.py' because its feature_space() raised "
         "LookupError: ask the firmware (expected it to return a pytest_spekvm.FeatureSpace) "
         "[[]contract: feature_space is a FeatureSpace[]]"],
        id="feature-space-raises",
    ),
    pytest.param(
        "name_raises.py",
        {"name_raises": subclass("    @property\n    def name(self):\n        raise RuntimeError('unnamed')")}, (),
        ["ERROR: --spekvm-target: Cannot use target 'name_raises.py' because reading its adapter's name raised "
         "RuntimeError: unnamed (expected a str, or no name attribute at all) [[]contract: name is a str[]]"],
        id="name-raises",
    ),
    pytest.param(
        "no_guest.py", {"no_guest": subclass("    def vcpu_run(self, cpu, vcpu):\n        return None")}, (),
        ["ERROR: --spekvm-target=no_guest.py: the adapter breaks the contract clause 'vcpu_run enters the guest once' "
         "on the first run (nVHE, no SPE (PMSVer=0), no PMUv3): vcpu_run must enter the guest exactly once "
         "(call cpu.run_guest(vcpu) once); it entered 0 times"],
        id="never-enters-guest",
    ),
    pytest.param(
        "garbage.py",
        {"garbage": subclass("    def vcpu_run(self, cpu, vcpu):\n        super().vcpu_run(cpu, vcpu)\n        return 42")}, (),
        ["ERROR: --spekvm-target=garbage.py: the adapter breaks the contract clause 'vcpu_run returns the exit reason' "
         "on the first run (*): vcpu_run must return an ExitReason (the value cpu.run_guest gave) or None; it returned 42"],
        id="returns-garbage",
    ),
    pytest.param(
        "run_raises.py",
        {"run_raises": subclass("    def vcpu_run(self, cpu, vcpu):\n        raise NotImplementedError('todo')")}, (),
        ["ERROR: --spekvm-target=run_raises.py: the adapter breaks the contract clause 'vcpu_run() returns normally' "
         "on the first run (*): vcpu_run() raised NotImplementedError: todo at */run_raises.py:5 in vcpu_run"],
        id="run-raises",
    ),
    pytest.param(
        "bad_flag.py", {"bad_flag": subclass("    from pytest_spekvm import FeatureSpace\n    feature_space = FeatureSpace(flags={'sve'})")}, (),
        ["ERROR: --spekvm-target: Cannot load target 'bad_flag.py' because importing */bad_flag.py raised ValueError: "
         "Cannot build a feature space with flags [[]'sve'[]] because the known flags are [[]*[]] "
         "[[]contract: target names an importable module[]]"],
        id="feature-space-unknown-flag",
    ),
    pytest.param(
        "   ", {}, (),
        ["ERROR: --spekvm-target (from --spekvm-target) is empty: give 'reference', *"],
        id="blank",
    ),
]


@pytest.mark.parametrize(("spec", "files", "extra", "expected"), BAD_TARGETS)
def test_bad_target(
    spekvm_pytester: pytest.Pytester, spec: str, files: dict[str, str], extra: tuple[str, ...], expected: list[str]
) -> None:
    """An unusable target ends the run with a usage error (exit code 4) naming the clause and the bad value."""
    if files:
        spekvm_pytester.makepyfile(**files)
        spekvm_pytester.syspathinsert()
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}={spec}", *extra)
    assert pytest.ExitCode.USAGE_ERROR == result.ret == 4
    result.stderr.fnmatch_lines(expected)
    assert_no_traceback(result)


def test_no_such_module_from_the_environment(spekvm_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEKVM_TARGET=no.such.module fails the same way as the option: exit code 4, no traceback."""
    monkeypatch.setenv("SPEKVM_TARGET", "no.such.module")
    result = spekvm_pytester.runpytest()
    assert 4 == result.ret
    result.stderr.fnmatch_lines(["ERROR: --spekvm-target: Cannot load target 'no.such.module' because *"])
    assert_no_traceback(result)


@pytest.mark.parametrize("value", ["-1", "soon", "inf", "nan", "1e10"])
def test_bad_timeout(spekvm_pytester: pytest.Pytester, value: str) -> None:
    """A --spekvm-timeout that is not 0..86400 seconds is a usage error that shows the value."""
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", f"{TIMEOUT_OPTION}={value}")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines([
        f"ERROR: --spekvm-timeout (from --spekvm-timeout) is '{value}', not a number of seconds from 0 to 86400 "
        "(give e.g. --spekvm-timeout=10, or 0 for no limit)"
    ])
    assert_no_traceback(result)


@pytest.mark.parametrize("value", ["6.155.2", "6.155.2:not base64!", ":AXicY2BgYAAAAAQAAQ=="])
def test_bad_reproduce(spekvm_pytester: pytest.Pytester, value: str) -> None:
    """A --spekvm-reproduce that is not RULE@TARGET:VERSION:BLOB is a usage error that shows the value and an example."""
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", f"--spekvm-reproduce={value}")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines([f"ERROR: --spekvm-reproduce='{value}' is not RULE@TARGET:VERSION:BLOB (copy it from the failure report, e.g. *)"])


def test_bad_timeout_in_ini(spekvm_pytester: pytest.Pytester) -> None:
    """A bad spekvm_timeout in the ini file is reported as coming from there."""
    spekvm_pytester.makeini("[pytest]\nspekvm_target = reference\nspekvm_timeout = a while\n")
    result = spekvm_pytester.runpytest()
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines(["ERROR: --spekvm-timeout (from spekvm_timeout in tox.ini) is 'a while', not a number *"])


def test_bad_timeout_given_with_o_beside_an_ini_file(spekvm_pytester: pytest.Pytester) -> None:
    """A bad spekvm_timeout given with -o is reported as given with -o, not as coming from the ini file beside it."""
    spekvm_pytester.makeini("[pytest]\nspekvm_target = reference\n")
    result = spekvm_pytester.runpytest("-o", "spekvm_timeout=zz")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines(["ERROR: --spekvm-timeout (from spekvm_timeout, given with -o) is 'zz', not a number *"])
