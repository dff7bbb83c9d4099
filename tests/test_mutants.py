"""The mutant catalogue (examples/mutants/): the suite's cell checks fail every mutant on the general rules it names."""

from __future__ import annotations

import functools

import pytest
from mutant_catalogue import EXAMPLES_DIR, MUTANTS, MUTANTS_DIR, NAMES, caught_by, module

from pytest_spekvm import rules
from pytest_spekvm.failure_report import SpekvmFailure
from pytest_spekvm.reference.features import PmuLevel
from pytest_spekvm.session import SpekvmSession
from pytest_spekvm.space import FULL_SPACE, cell_id
from pytest_spekvm.target import load

# Whole mutants judged on whole cells: the focused tests measure the same model and rule paths.
pytestmark = pytest.mark.no_cover

CASES = [(name, rule_id) for name in NAMES for rule_id in caught_by(name)]


@functools.lru_cache(maxsize=2)
def _session(mutant: str) -> SpekvmSession:
    """One session per mutant, as a run has: each cell's scripted runs are made once and judged for every rule
    (the tests of a mutant run one after the other: see conftest.py; older sessions are let go, for memory)."""
    target = load(str(MUTANTS_DIR / f"{mutant}.py"))
    return SpekvmSession(target=target, space=target.space, rules=dict(rules.BY_ID))


def _first_failure(mutant: str, rule_id: str) -> str:
    """The failure text of the first cell on which the rule's cell check fails the mutant ('' if none does)."""
    session = _session(mutant)
    for cell in session.space.cells():
        try:
            session.check_cell(rule_id, cell)
        except SpekvmFailure as failure:
            return str(failure)
    return ""


@pytest.mark.parametrize(("mutant", "rule_id"), CASES, ids=[f"{m}-{r}" for m, r in CASES])
def test_suite_fails_the_mutant_on_the_rule_it_names(mutant: str, rule_id: str) -> None:
    """The scripted cells of each rule in CAUGHT_BY fail the mutant, with that rule's report (the suite's cell test, in process)."""
    assert f"RULE {rule_id} violated on features: " in _first_failure(mutant, rule_id).split("\n", 1)[0]


@pytest.mark.parametrize("name", NAMES)
def test_mutant_names_general_rules_in_its_docstring(name: str) -> None:
    """Each mutant names only catalogue rules in CAUGHT_BY, and its docstring says what is wrong, why, and those rules."""
    mutant = module(name)
    doc = mutant.__doc__ or ""
    named = caught_by(name)
    assert (True, True, True, True) == (
        set(named) <= set(rules.BY_ID),
        "What is wrong:" in doc and "Why plausible:" in doc,
        all(rule_id in doc.split("Caught by", 1)[-1] for rule_id in named),
        callable(getattr(mutant, "spekvm_adapter", None)),
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


@pytest.mark.parametrize("mutant", [*NAMES, "rfc_v2"])
def test_shape_failures_rest_on_an_outcome_or_a_software_must(mutant: str) -> None:
    """Wherever a shape rule fails a mutant on a cell, an outcome rule fails that cell under some adversary, or the rule cites the "software must" it enforces."""
    if mutant == "rfc_v2":
        session = SpekvmSession(target=load(str(EXAMPLES_DIR / "rfc_v2.py")), space=FULL_SPACE, rules=dict(rules.BY_ID))
    else:
        session = _session(mutant)
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
