"""The plugin black-box: choosing the target (--spekvm-target, its ini and environment twins, entry
points, the factory hook) and every way a target can be unusable, each a usage error naming the
contract clause, the bad value and what was expected, never a traceback."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest
from plugin_harness import assert_no_traceback

from pytest_spekvm.options import LIST_TARGETS_OPTION, TARGET_OPTION

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


def test_path_given_with_o_is_relative_to_where_pytest_starts(spekvm_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative .py path given with -o is found from the folder pytest starts in, as on the command line, not from the ini file's."""
    spekvm_pytester.makepyfile(project_switch=good("beside-ini"))
    spekvm_pytester.makeini("[pytest]\n")
    sub = spekvm_pytester.mkdir("sub")
    (sub / "project_switch.py").write_text(good("started-in"))
    monkeypatch.chdir(sub)
    result = spekvm_pytester.runpytest("-o", "spekvm_target=project_switch.py", *ONE_CELL)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["spekvm target: started-in 0.3 *"])


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
    # pytest 9.2 shows the TOML types a value may also have: (string | float)
    result.stdout.fnmatch_lines(["  spekvm_target (string):", "  spekvm_timeout (string*):", "  spekvm_no_shrink (string*):"])


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
        ('{"sctlr_el2_eis": "no"}',
         "*its choices {'sctlr_el2_eis': 'no'} have a value of the wrong type: Choices.sctlr_el2_eis is 'no'; expected a bool (True or False) [[]*"),
        ('{"boot_writes_pmscr_el2": 1}',
         "*its choices {'boot_writes_pmscr_el2': 1} have a value of the wrong type: Choices.boot_writes_pmscr_el2 is 1; expected a bool (True or False) [[]*"),
        ('"unmapped"', "*its choices are 'unmapped'*"),
    ],
    ids=["unknown", "wrong-type", "int-for-bool", "not-a-mapping"],
)
def test_bad_choices_are_a_usage_error(spekvm_pytester: pytest.Pytester, choices: str, expected: str) -> None:
    """Choices the model does not know, or of the wrong type, end the run with a usage error naming them (a wrong
    type: the choice, its value and the type expected, without attrs' own description of the field)."""
    spekvm_pytester.makepyfile(choosy=CHOOSING.replace("{CHOICES}", choices))
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=choosy.py")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines([expected])
    assert "Attribute(" not in result.stderr.str()
