"""The mutant catalogue (examples/mutants/): the shipped suite fails every mutant on the general rules it names."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from verdict_table import verdicts

from pytest_spekvm import rules
from pytest_spekvm.reference.features import PmuLevel
from pytest_spekvm.session import SpekvmSession
from pytest_spekvm.space import FULL_SPACE, cell_id
from pytest_spekvm.target import load

# Whole mutants judged on whole cells: the focused tests measure the same model and rule paths.
pytestmark = pytest.mark.no_cover

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
MUTANTS_DIR = EXAMPLES_DIR / "mutants"
MUTANTS = sorted(p for p in MUTANTS_DIR.glob("*.py") if not p.name.startswith("_"))


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"mutant_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def caught_by(path: Path) -> tuple[str, ...]:
    """The rule ids a mutant's CAUGHT_BY names (a string or a tuple of them)."""
    value = _module(path).CAUGHT_BY
    return (value,) if isinstance(value, str) else tuple(value)


CASES = [(path.stem, rule_id) for path in MUTANTS for rule_id in caught_by(path)]


def node_id(rule_id: str, sequences: bool) -> str:
    """The suite test that checks `rule_id`, as a run prints its node id."""
    rule = rules.BY_ID[rule_id]
    name = "test_" + rule.id.lower().replace("-", "_")
    return f"test_{rule.family}.py::{name}{'_sequences' if sequences else ''}"


@pytest.mark.parametrize(("mutant", "rule_id"), CASES, ids=[f"{m}-{r}" for m, r in CASES])
def test_suite_fails_the_mutant_on_the_rule_it_names(spekvm_pytester: pytest.Pytester, mutant: str, rule_id: str) -> None:
    """At the default profile the scripted cells of each rule in CAUGHT_BY fail the mutant, with that rule's report."""
    args = [f"--spekvm-target={MUTANTS_DIR / mutant}.py", node_id(rule_id, sequences=False), "-p", "no:cacheprovider", "-x"]
    result = spekvm_pytester.runpytest_inprocess(*args)
    result.stdout.fnmatch_lines([f"RULE {rule_id} violated on features: *"])
    assert (1, "FAILED") == (result.ret, verdicts(result.outlines).get(rule_id))


@pytest.mark.parametrize("path", MUTANTS, ids=[p.stem for p in MUTANTS])
def test_mutant_names_general_rules_in_its_docstring(path: Path) -> None:
    """Each mutant names only catalogue rules in CAUGHT_BY, and its docstring says what is wrong, why, and those rules."""
    module = _module(path)
    doc = module.__doc__ or ""
    named = caught_by(path)
    assert (True, True, True, True) == (
        set(named) <= set(rules.BY_ID),
        "What is wrong:" in doc and "Why plausible:" in doc,
        all(rule_id in doc.split("Caught by", 1)[-1] for rule_id in named),
        callable(getattr(module, "spekvm_adapter", None)),
    )


def test_catalogue_has_twelve_mutants_and_every_rule_catches_one() -> None:
    """There are at least 12 mutants, and each of the nine rules is named by at least one of them."""
    named = {rule_id for _, rule_id in CASES}
    assert (True, set(rules.BY_ID)) == (len(MUTANTS) >= 12, named)


# ------------------------------------------------------------------ shape rules rest on something

SHAPE_RULES = ("DRAIN-ORDER", "RESTORE-ORDER")
OUTCOME_RULES = ("HOST-STATE", "ISOLATION", "NO-LOSS", "UNDEF")


def _cites_a_software_must(rule_id: str) -> bool:
    return "software must" in rules.BY_ID[rule_id].rationale


@pytest.mark.parametrize("mutant", [p.stem for p in MUTANTS] + ["rfc_v2"])
def test_shape_failures_rest_on_an_outcome_or_a_software_must(mutant: str) -> None:
    """Wherever a shape rule fails a mutant on a cell, an outcome rule fails that cell under some adversary, or the rule cites the "software must" it enforces."""
    path = EXAMPLES_DIR / "rfc_v2.py" if mutant == "rfc_v2" else MUTANTS_DIR / f"{mutant}.py"
    target = load(str(path))
    session = SpekvmSession(target=target, space=FULL_SPACE, rules=dict(rules.BY_ID))
    unbacked = []
    for cell in FULL_SPACE.cells():
        if cell.vhe or cell.pmu not in (PmuLevel.V3, PmuLevel.V3P9):
            continue  # both shape rules are about non-VHE switches; the PMU level changes no ordering
        runs = [o.run for o in session.cell_outcomes(cell) if o.run is not None and o.failure is None]
        failing = {
            rule_id for run in runs for rule_id, j in rules.judge_all(run.system.cpu.trace, cell).items() if j.violations
        }
        for shape in SHAPE_RULES:
            if shape in failing and not _cites_a_software_must(shape) and not failing & set(OUTCOME_RULES):
                unbacked.append(f"{shape} on {cell_id(cell)}")
    assert [] == unbacked


def test_drain_order_cites_the_software_must_it_enforces() -> None:
    """DRAIN-ORDER's shape requirements rest on D17.9 R_TRDTK and the DSB over loads and stores, cited in its rationale."""
    rationale = rules.BY_ID["DRAIN-ORDER"].rationale
    assert ("R_TRDTK" in rationale, "must apply to both loads and stores" in rationale) == (True, True)
