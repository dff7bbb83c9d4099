"""Coverage of the code under test: a path target is imported under its file's name, so that
pytest-cov's --cov=<module> measures the adapter."""

from __future__ import annotations

import sys

import pytest

from pytest_spekvm.target import load

MY_SWITCH = """
from pytest_spekvm.reference import switch as S


class MySwitch(S.ReferenceSwitch):
    name = "my-switch"

    def save_spe(self, cpu, vcpu):
        if S.has_vhe(cpu):
            return
        super().save_spe(cpu, vcpu)

    def never_called(self):
        return 1


spekvm_adapter = MySwitch
"""


def test_cov_measures_the_adapter(spekvm_pytester: pytest.Pytester) -> None:
    """pytest --spekvm-target=my_switch.py --cov=my_switch --cov-branch reports the adapter's lines, the uncalled one missing."""
    spekvm_pytester.makepyfile(my_switch=MY_SWITCH)
    result = spekvm_pytester.runpytest_subprocess(
        "--spekvm-target=my_switch.py", "--cov=my_switch", "--cov-branch", "--cov-report=term-missing",
        "-p", "no:cacheprovider", "-k", "test_res0 and nvhe-spe1-pmuv3p1",
    )
    result.assert_outcomes(passed=1)
    # line 9: the VHE return (the selected cell is nVHE); line 13: never_called's body
    result.stdout.fnmatch_lines(["my_switch.py * 75% * 9, 13"])
    result.stdout.no_fnmatch_line("*module-not-imported*")
    result.stdout.no_fnmatch_line("*No data was collected*")


def test_path_target_takes_its_file_name(pytester: pytest.Pytester) -> None:
    """A .py target whose name is free is imported under that name, once."""
    path = pytester.makepyfile(free_switch_name="from pytest_spekvm.reference.switch import ReferenceSwitch as spekvm_adapter\n")
    target = load(str(path))
    again = load(str(path))
    assert (str(path), str(path)) == (sys.modules["free_switch_name"].__file__, target.origin)
    assert again.factory is target.factory


def test_path_target_with_a_taken_name_gets_its_own(pytester: pytest.Pytester) -> None:
    """A .py target named like a module that is already loaded (json.py) is imported under a name of its own."""
    path = pytester.makepyfile(json="from pytest_spekvm.reference.switch import ReferenceSwitch as spekvm_adapter\n")
    load(str(path))
    assert [] == [name for name, mod in sys.modules.items() if name == "json" and getattr(mod, "__file__", "") == str(path)]
    assert any(name.startswith("spekvm_target_json_") for name in sys.modules)


def test_path_target_named_like_an_installed_module(pytester: pytest.Pytester) -> None:
    """A .py target named like an importable module not yet loaded does not shadow it."""
    path = pytester.makepyfile(xmlrpc_shadow="x = 1\n")
    path = path.rename(path.with_name("antigravity.py"))
    path.write_text("from pytest_spekvm.reference.switch import ReferenceSwitch as spekvm_adapter\n")
    sys.modules.pop("antigravity", None)
    load(str(path))
    assert "antigravity" not in sys.modules
