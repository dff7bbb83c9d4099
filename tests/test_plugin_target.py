"""The plugin black-box: choosing the target (--spekvm-target, its ini and environment twins, entry
points, the factory hook) and every way a target can be unusable, each a usage error naming the
contract clause, the bad value and what was expected, never a traceback."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest

from pytest_spekvm.options import LIST_TARGETS_OPTION, TARGET_OPTION, TIMEOUT_OPTION

# One cell of one rule: enough to show that the target loaded and ran.
ONE_CELL = ("-k", "test_res0 and nvhe-spe1-pmuv3p1")

GOOD = """
from pytest_spekvm.reference import switch as S


class MySwitch(S.ReferenceSwitch):
    name = "{name}"
    version = "0.3"


spekvm_adapter = MySwitch
"""


def good(name: str) -> str:
    """A module whose adapter is the reference switch under another name."""
    return GOOD.replace("{name}", name)


def assert_no_traceback(result: pytest.RunResult) -> None:
    """Neither stream shows a Python traceback."""
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    assert "pytest_spekvm/" not in output.replace("pytest_spekvm/reference", "")


# ----------------------------------------------------------------------------- the forms


def test_reference(spekvm_pytester: pytest.Pytester) -> None:
    """'reference' runs the built-in switch and says where it came from in the header."""
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", *ONE_CELL)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["spekvm target: reference (reference) from pytest_spekvm.reference.switch (built in)"])


def test_dotted_module(spekvm_pytester: pytest.Pytester) -> None:
    """A dotted module name on sys.path is imported, and its adapter's name and version are shown."""
    spekvm_pytester.makepyfile(my_switch=good("my-switch"))
    spekvm_pytester.syspathinsert()
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=my_switch", *ONE_CELL)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["spekvm target: my-switch 0.3 (my_switch) from */my_switch.py"])


def test_path_to_py_file(spekvm_pytester: pytest.Pytester) -> None:
    """A path to a .py file is loaded without being on sys.path."""
    spekvm_pytester.mkdir("adapters")
    (spekvm_pytester.path / "adapters" / "switch.py").write_text(good("path-switch"))
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=adapters/switch.py", *ONE_CELL)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["spekvm target: path-switch 0.3 (adapters/switch.py) from */adapters/switch.py"])


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, *entries: tuple[str, str]) -> None:
    """Installed packages offer `entries` (name, 'module:attr') in the spekvm_targets group."""
    real = importlib.metadata.entry_points

    def entry_points(**params: Any) -> Any:
        if params.get("group") == "spekvm_targets":
            return importlib.metadata.EntryPoints(
                importlib.metadata.EntryPoint(name=name, value=value, group="spekvm_targets") for name, value in entries
            )
        return real(**params)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_entry_point(spekvm_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name from the spekvm_targets entry-point group loads the object the entry point names."""
    spekvm_pytester.makepyfile(acme_switch=good("acme").replace("spekvm_adapter = MySwitch", ""))
    spekvm_pytester.syspathinsert()
    fake_entry_points(monkeypatch, ("acme", "acme_switch:MySwitch"))
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=acme", *ONE_CELL)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["spekvm target: acme 0.3 (acme) from entry point acme_switch:MySwitch (?)"])


def test_list_targets(spekvm_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """--spekvm-list-targets lists the built-in target and the installed ones, then exits without testing."""
    fake_entry_points(monkeypatch, ("acme", "acme_switch:MySwitch"), ("reference", "pytest_spekvm.reference.switch:ReferenceSwitch"))
    result = spekvm_pytester.runpytest(LIST_TARGETS_OPTION, f"{TARGET_OPTION}=no.such.module")
    assert 0 == result.ret
    result.stdout.fnmatch_lines([
        "spekvm targets:",
        "  reference * the built-in reference switch (pytest_spekvm.reference.switch)",
        "  acme * acme_switch:MySwitch (from ?)",
        "or a dotted module name, or a path to a .py file that defines spekvm_adapter",
    ])
    result.stdout.no_fnmatch_line("*collected*")


def test_entry_point_that_cannot_load(spekvm_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point whose module is missing is a usage error naming the entry point."""
    fake_entry_points(monkeypatch, ("acme", "acme_gone:Switch"))
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=acme")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines([
        "ERROR: --spekvm-target: Cannot load target 'acme' because its entry point 'acme_gone:Switch' raised "
        "ModuleNotFoundError: No module named 'acme_gone' [[]contract: target names an importable module[]]"
    ])
    assert_no_traceback(result)


# --------------------------------------------------------------------- the twins


@pytest.mark.parametrize(
    ("cli", "env", "ini", "chosen"),
    [
        (None, None, "from_ini.py", "from-ini"),
        (None, "from_env.py", None, "from-env"),
        (None, "from_env.py", "from_ini.py", "from-env"),
        ("from_cli.py", "from_env.py", "from_ini.py", "from-cli"),
    ],
)
def test_twins_precedence(
    spekvm_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
    *, cli: str | None, env: str | None, ini: str | None, chosen: str,
) -> None:
    """The command line wins over SPEKVM_TARGET, which wins over the ini file's spekvm_target."""
    for stem in ("from_cli", "from_env", "from_ini"):
        spekvm_pytester.makepyfile(**{stem: good(stem.replace("_", "-"))})
    if env is not None:
        monkeypatch.setenv("SPEKVM_TARGET", env)
    if ini is not None:
        spekvm_pytester.makeini(f"[pytest]\nspekvm_target = {ini}\n")
    args = [f"{TARGET_OPTION}={cli}"] if cli is not None else []
    result = spekvm_pytester.runpytest(*args, *ONE_CELL)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"spekvm target: {chosen} 0.3 *"])


def test_ini_path_is_relative_to_the_ini_file(spekvm_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative .py path in the ini file is found from a subdirectory too, as pytest's own ini paths are."""
    spekvm_pytester.makepyfile(project_switch=good("project"))
    spekvm_pytester.makeini("[pytest]\nspekvm_target = project_switch.py\n")
    monkeypatch.chdir(spekvm_pytester.mkdir("sub"))
    result = spekvm_pytester.runpytest(*ONE_CELL)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["spekvm target: project 0.3 (*project_switch.py) from */project_switch.py"])


def test_no_target_leaves_pytest_alone(spekvm_pytester: pytest.Pytester) -> None:
    """Without a target the suites are not collected, and a test asking for `spekvm` is skipped with advice."""
    spekvm_pytester.makepyfile(test_mine="def test_uses_spekvm(spekvm):\n    pass\n")
    result = spekvm_pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * no target given: run with --spekvm-target=reference (or your own adapter)"])
    result.stdout.no_fnmatch_line("spekvm target:*")


def test_help(spekvm_pytester: pytest.Pytester) -> None:
    """--help shows the option group, each option's ini and environment twin and its default."""
    result = spekvm_pytester.runpytest("--help")
    # argparse wraps help to the terminal's width: compare with the white space folded.
    text = " ".join(result.stdout.str().split())
    group = text[text.index("pytest-spekvm: SPE world-switch conformance:"):]
    for expected in (
        "--spekvm-target=VALUE implementation to check: 'reference'",
        "Also ini 'spekvm_target' and environment SPEKVM_TARGET; default: none.",
        "--spekvm-timeout=VALUE seconds one call into the adapter",
        "Also ini 'spekvm_timeout' and environment SPEKVM_TIMEOUT; default: 10.",
        "--spekvm-reproduce=RULE@TARGET:VERSION:BLOB replay one failing generated sequence",
        "--spekvm-list-targets list the targets",
    ):
        assert expected in group
    result.stdout.fnmatch_lines(["  spekvm_target (string):", "  spekvm_timeout (string):"])


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


# ---------------------------------------------------------------- the factory hook

MAKE_TARGET_CONFTEST = """
from pytest_spekvm.reference.switch import ReferenceSwitch
from pytest_spekvm.target import from_factory


def pytest_spekvm_make_target(config, spec):
    if spec.startswith("board:"):
        return {result}
    return None
"""


def test_make_target_hook_claims_a_spec(spekvm_pytester: pytest.Pytester) -> None:
    """A conftest's pytest_spekvm_make_target can claim its own spec form; other forms still reach the default."""
    spekvm_pytester.makeconftest(
        MAKE_TARGET_CONFTEST.replace("{result}", 'from_factory(spec, "lab board", "the lab rack", ReferenceSwitch)')
    )
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=board:rack3", *ONE_CELL)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["spekvm target: reference (board:rack3) from the lab rack"])
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", *ONE_CELL)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["spekvm target: reference (reference) from *(built in)"])


def test_make_target_hook_returning_garbage(spekvm_pytester: pytest.Pytester) -> None:
    """A factory hook that returns something other than a target is a usage error showing what it returned."""
    spekvm_pytester.makeconftest(MAKE_TARGET_CONFTEST.replace("{result}", "'ready'"))
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=board:rack3")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines([
        "ERROR: --spekvm-target=board:rack3: pytest_spekvm_make_target returned 'ready', not a pytest_spekvm target *"
    ])
    assert_no_traceback(result)


# ------------------------------------------------------------------ the README's example


def readme_adapter() -> str:
    """The Python example of the README's 'Writing an adapter' section."""
    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text.split("## Writing an adapter", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_adapter_example(spekvm_pytester: pytest.Pytester) -> None:
    """The README's adapter passes, and without its PSB CSYNC fails DRAIN-ORDER, as the README says."""
    source = readme_adapter()
    spekvm_pytester.makepyfile(my_switch=source, my_switch_broken=source.replace("cpu.psb_csync()", "pass"))
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=my_switch.py", "-k", "nvhe-spe1-pmunone")
    result.assert_outcomes(passed=9)
    result.stdout.fnmatch_lines(["spekvm target: my-switch 1.0 (my_switch.py) from *"])
    broken = spekvm_pytester.runpytest(f"{TARGET_OPTION}=my_switch_broken.py", "-k", "DRAIN-ORDER and nvhe-spe1-pmunone")
    broken.assert_outcomes(failed=1)
    broken.stdout.fnmatch_lines([
        "RULE DRAIN-ORDER violated on features: nVHE, FEAT_SPE (PMSVer=1), no PMUv3",
        "  at #*: no PSB CSYNC after the exception entry at #*, before the msr HCR_EL2 <- 0x8008003b *",
        "replay: pytest --spekvm-target=my_switch_broken.py 'test_ordering.py::test_drain_order[[]nvhe-spe1-pmunone[]]' *",
    ])


CHOOSING = """
from pytest_spekvm.reference.switch import ReferenceSwitch


class Switch(ReferenceSwitch):
    name = "choosy"
    choices = {CHOICES}


spekvm_adapter = Switch
"""


def test_declared_choices_are_shown_and_used(spekvm_pytester: pytest.Pytester) -> None:
    """An adapter's implementation-defined choices appear in the header, and the reference still passes under them."""
    spekvm_pytester.makepyfile(choosy=CHOOSING.replace("{CHOICES}", '{"sctlr_el2_eis": True, "sctlr_el2_eos": True}'))
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=choosy.py", "test_records.py::test_isolation[nvhe-spe1-pmuv3]")
    result.stdout.fnmatch_lines(["spekvm implementation choices: sctlr_el2_eis=True, sctlr_el2_eos=True, boot_writes_pmscr_el2=True"])
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("choices", "expected"),
    [
        ('{"hyp_maps_everything": True}', "*its choices are {'hyp_maps_everything': True} (expected a pytest_spekvm.Choices, or a mapping with keys from *'sctlr_el2_eis'*"),
        ('{"sctlr_el2_eis": "no"}', "*its choices {'sctlr_el2_eis': 'no'} have a value of the wrong type*"),
        ('"unmapped"', "*its choices are 'unmapped'*"),
    ],
    ids=["unknown", "wrong-type", "not-a-mapping"],
)
def test_bad_choices_are_a_usage_error(spekvm_pytester: pytest.Pytester, choices: str, expected: str) -> None:
    """Choices the model does not know, or of the wrong type, end the run with a usage error naming them."""
    spekvm_pytester.makepyfile(choosy=CHOOSING.replace("{CHOICES}", choices))
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=choosy.py")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines([expected])
