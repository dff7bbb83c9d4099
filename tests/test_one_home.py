"""Each concept has one home: register fields, KVM's values, the CPU's reset, feature dependencies and dimensions, the default timeout."""

from __future__ import annotations

import ast
import inspect
import itertools
import re
from pathlib import Path

import attrs
import pytest

from pytest_spekvm import options, rules, scenario, session, target
from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference.chooser import WorstCaseChooser
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.features import (
    DEPENDENCIES,
    DIMENSIONS,
    FEATURE_NAMES,
    ORDER,
    FeatureError,
    Features,
    PmuLevel,
    SpeLevel,
    possible,
)
from pytest_spekvm.space import FULL_SPACE, FeatureSpace
from pytest_spekvm.timeouts import DEFAULT_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "pytest_spekvm").rglob("*.py"), *(ROOT / "reference").glob("*.py")])
# Names of register fields and their values: PMBLIMITR_E, MDCR_E2PB, HCR_VM, E2PB_EL1, ...
REGISTER_CONSTANT = re.compile(r"(PMB|PMS|MDCR_|HCR_|HDFGRTR_|E2PB_|ID_AA64DFR0_|DEBUGVER_|SCR_EL3_)\w*")
# Where such names may be assigned: the register table, and the values Linux and KVM write.
REGISTER_HOMES = {"reference/registers.py", "reference/kvm.py"}
# A model assumption named after the register field it stands for.
ALLOWED = {("reference/cpu.py", "SCR_EL3_FGTEN")}


def _constants(path: Path) -> list[str]:
    """The ALL_CAPS names a module assigns at its top level."""
    names = []
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()]
    return names


def test_register_fields_and_values_are_named_in_one_module() -> None:
    """Every public constant is assigned in one module only, and one named after a register field in registers.py (or kvm.py, for the values KVM writes)."""
    homes: dict[str, list[str]] = {}
    for path in SOURCES:
        where = path.relative_to(ROOT).as_posix()
        for name in _constants(path):
            if name != "RULES" and not name.startswith("_"):  # each family's RULES, and module-private names
                homes.setdefault(name, []).append(where)
    twice = {name: places for name, places in homes.items() if len(places) > 1}
    astray = sorted(
        (place, name) for name, places in homes.items() for place in places
        if REGISTER_CONSTANT.fullmatch(name) and place not in REGISTER_HOMES and (place, name) not in ALLOWED
    )
    assert ({}, []) == (twice, astray)


@pytest.mark.parametrize("features", [Features(), Features(vhe=True, spe=SpeLevel.NONE), Features(spe=SpeLevel.V1P4, spe_fds=True, fgt=True)], ids=str)
def test_the_cpu_and_the_rules_start_from_the_same_reset_values(features: Features) -> None:
    """The CPU comes out of reset with registers.reset_values, and the rules' register replay starts from the same values."""
    cpu = CPU(features, WorstCaseChooser())
    at_reset = {r.name: cpu.peek(r.name) for r in R.REGISTERS}
    assert (R.reset_values(features), R.reset_values(features)) == (at_reset, rules.RegisterReplay(features).values)


def test_feature_dimensions_are_the_spaces_and_the_cpus() -> None:
    """DIMENSIONS names the feature space's fields (besides its flags) and Features' attributes, ORDER every attribute once, and the full space allows every value."""
    fields = [f.name for f in attrs.fields(FeatureSpace) if f.name != "flags"]
    cpu = [f.name for f in attrs.fields(Features)]
    assert (sorted(fields), sorted(cpu), [True] * len(DIMENSIONS)) == (
        sorted(DIMENSIONS), sorted(ORDER),
        [set(getattr(FULL_SPACE, d)) == set(values) for d, values in DIMENSIONS.items()],
    )
    assert set(FEATURE_NAMES) == set(FULL_SPACE.flags)


def _on(attribute: str) -> object:
    return 4 if attribute == "pmu_counters" else True


@pytest.mark.parametrize("dependency", DEPENDENCIES, ids=lambda d: f"{d.attribute}-{d.needed.split()[0]}")
def test_each_dependency_decides_which_cpus_exist(dependency: object) -> None:
    """A CPU with a feature on exists exactly where `possible` says, over every value of what the feature reads: Features, the space and the strategy ask the same rule."""
    attribute = dependency.attribute  # type: ignore[attr-defined]
    disagreements = []
    for spe, pmu, el3, trf in itertools.product(SpeLevel, (PmuLevel.NONE, PmuLevel.V3), (False, True), (False, True)):
        decided: dict[str, object] = {"spe": spe, "pmu": pmu, "el3": el3, "trf": trf}
        try:
            Features(**{**decided, "pmu_counters": 0, attribute: _on(attribute)})  # type: ignore[arg-type]
            built = True
        except FeatureError:
            built = False
        if built != possible(attribute, decided):
            disagreements.append(decided)
    assert [] == disagreements


def test_the_default_timeout_is_one_constant() -> None:
    """--spekvm-timeout's default, the target loaders, a run and a session all take DEFAULT_TIMEOUT."""
    option = next(o for o in options.OPTIONS if o.flag == options.TIMEOUT_OPTION)
    defaults = [
        inspect.signature(target.load).parameters["timeout"].default,
        inspect.signature(target.from_factory).parameters["timeout"].default,
        inspect.signature(scenario.Run.start).parameters["timeout"].default,
        attrs.fields_dict(scenario.Run)["timeout"].default,
        attrs.fields_dict(session.SpekvmSession)["timeout"].default,
    ]
    assert (f"{DEFAULT_TIMEOUT:g}", [DEFAULT_TIMEOUT] * 5) == (option.default, defaults)
