"""No decision depends on the text of a message: verdicts come from the trace's typed facts, never its wording.

Every run here is made twice, once as the model writes it and once with every text the trace carries
(each event's `where`: landings, trap reasons, notes, exception causes) and every description the
choosers are given rewritten. The mutant catalogue and the reference must get the same verdicts,
on the same events, and the same finding fingerprints, either way.
"""

from __future__ import annotations

import codecs
import functools
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from pytest_spekvm import rules
from pytest_spekvm.findings import make_finding
from pytest_spekvm.reference import cpu as cpu_module
from pytest_spekvm.reference.actors import Actor
from pytest_spekvm.reference.chooser import ADVERSARIES, Chooser, Moment
from pytest_spekvm.reference.features import Features
from pytest_spekvm.reference.system import System
from pytest_spekvm.reference.trace import Event, Kind, Trace
from pytest_spekvm.scenario import SCRIPT, Run, Step
from pytest_spekvm.space import FULL_SPACE, cell_id
from pytest_spekvm.steps import Op
from pytest_spekvm.target import load

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MUTANTS = sorted(p for p in (EXAMPLES / "mutants").glob("*.py") if not p.name.startswith("_"))
TARGETS = {"reference": "reference", **{p.stem: str(p) for p in MUTANTS}}

# Cells that between them meet every mutant's mistake: nVHE and VHE, with and without SPE, the
# buffer given to EL3, FEAT_ExS, and every flag with and without EL3.
CELL_IDS = (
    "nvhe-spe1-pmuv3", "nvhe-spe0-pmuv3", "nvhe-spe1-el3-pmuv3", "nvhe-spe1-pmuv3-exs",
    "vhe-spe1-pmuv3", "vhe-spe0-pmuv3", "nvhe-spe5-pmuv3p9-flags", "nvhe-spe5-pmuv3p9-flags-noel3",
)
CELLS = [cell for cell in FULL_SPACE.cells() if cell_id(cell) in CELL_IDS]


def scramble(text: str) -> str:
    """The same text, unreadable: ROT13 and reversed (empty stays empty)."""
    return codecs.encode(text, "rot13")[::-1]


class ScrambledTrace(Trace):
    """A trace whose events' text is scrambled as they are added."""

    def add(self, actor: Actor, el: int, kind: Kind, **kw: object) -> Event:
        """Add the event, then scramble its `where` (a WRITE's or FAULT's rendered landing with it)."""
        event = super().add(actor, el, kind, **kw)
        event._where, event.landing = scramble(event.where), None
        return event


class ScrambledChooser:
    """A chooser that is told every moment's description scrambled."""

    def __init__(self, chooser: Chooser) -> None:
        self.chooser = chooser

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """The wrapped chooser's answer."""
        return self.chooser.write_visible(register, old, new)

    def records_to_write(self, pending: int, moment: Moment, detail: str) -> int:
        """The wrapped chooser's answer to the scrambled description."""
        return self.chooser.records_to_write(pending, moment, scramble(detail))

    def reserved_as(self, register: str, field: str, allowed: tuple[int, ...]) -> int:
        """The wrapped chooser's answer."""
        return self.chooser.reserved_as(register, field, allowed)


Verdicts = dict[str, tuple[bool, tuple[int, ...]]]


@functools.cache
def _runs(spec: str, scrambled: bool) -> dict[tuple[str, str], tuple[Trace, Verdicts, dict[str, str]]]:
    """Each (cell, adversary) of the chosen cells: the trace, every rule's verdict and each failing rule's fingerprint."""
    target = load(spec)
    found: dict[tuple[str, str], tuple[Trace, Verdicts, dict[str, str]]] = {}
    with mock.patch.object(cpu_module, "Trace", ScrambledTrace if scrambled else Trace):
        for cell in CELLS:
            for adversary in ADVERSARIES:
                chooser: Any = ScrambledChooser(adversary()) if scrambled else adversary()
                run = Run.start(target, cell, chooser)
                run.do_all(SCRIPT)
                trace = run.system.cpu.trace
                judgements = rules.judge_all(trace, cell)
                verdicts = {rid: (j.exercised, tuple(v.event for v in j.violations)) for rid, j in judgements.items()}
                prints = {rid: _fingerprint(rid, cell, trace, j) for rid, j in judgements.items() if j.violations}
                found[cell_id(cell), adversary.name] = (trace, verdicts, prints)
    return found


def _fingerprint(rule_id: str, cell: Features, trace: Trace, judgement: rules.Judgement) -> str:
    first = min(judgement.violations, key=lambda v: v.event)
    return make_finding(rule_id, cell, [], generated=False, event=trace[first.event]).fingerprint


@pytest.mark.parametrize("name", list(TARGETS))
def test_scrambled_messages_change_no_verdict(name: str) -> None:
    """With every text of the trace and every chooser description scrambled, each rule's verdict, its bad events and the findings' fingerprints are unchanged."""
    plain, scrambled = _runs(TARGETS[name], scrambled=False), _runs(TARGETS[name], scrambled=True)
    assert {k: v[1:] for k, v in plain.items()} == {k: v[1:] for k, v in scrambled.items()}


@pytest.mark.parametrize("name", list(TARGETS))
def test_scrambling_rewrites_every_text_and_the_mutant_still_fails(name: str) -> None:
    """The scrambled runs really carry other text in every event that had some, and each mutant fails the rules it names on these cells."""
    plain, scrambled = _runs(TARGETS[name], scrambled=False), _runs(TARGETS[name], scrambled=True)
    unchanged = [
        (key, e.seq) for key, (trace, _, _) in plain.items()
        for e in trace if e.where and scrambled[key][0][e.seq].where == e.where
    ]
    failed = {rid for _, verdicts, _ in plain.values() for rid, (_, bad) in verdicts.items() if bad}
    named = set() if name == "reference" else set(_caught_by(Path(TARGETS[name])))
    assert ([], named) == (unchanged, named & failed)
    if name == "reference":
        assert set() == failed


def _caught_by(path: Path) -> tuple[str, ...]:
    namespace: dict[str, Any] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    value = namespace["CAUGHT_BY"]
    return (value,) if isinstance(value, str) else tuple(value)


def test_step_operations_are_values_naming_system_methods() -> None:
    """A step's operation is an Op (a string naming one converts to it), each Op names a method of System, and an unknown name is refused."""
    with pytest.raises(ValueError, match="'host_walk' is not a valid Op"):
        Step("host_walk")
    assert (Op.HOST_RUN, []) == (Step("host_run").op, [op for op in Op if not callable(getattr(System, op.value, None))])
