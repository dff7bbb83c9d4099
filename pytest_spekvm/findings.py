"""What one failure found, as structured facts: for the JSON report, JUnit properties and the ledger.

A failure's **fingerprint** is the first 16 hex digits of the SHA-256 of these facts, joined by
newlines, and nothing else:

1. the rule id (``RES0``);
2. where it failed: the cell id of a scripted check, as the test id shows it
   (``nvhe-spe0-pmunone``), or ``generated`` for a generated sequence (whatever CPU the shrunk
   example happens to use, so that another seed finding the same mistake on another CPU gives
   the same fingerprint);
3. the first bad event's kind (``msr``), register (``MDCR_EL2``, or empty) and actor (``hyp``);
   for an adapter that breaks the contract, ``contract`` and the clause instead.

Message wording, event sequence numbers, register values, the steps and the seed are left out:
they change with the rule's phrasing, the scenario's length and the shrinker's luck, while the
mistake stays the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import attrs

from .reference.features import Features
from .reference.trace import Event
from .space import cell_id

GENERATED = "generated"
"""The `where` of a failure found by a generated sequence, and its ledger cell pattern."""


def event_facts(event: Event) -> dict[str, Any]:
    """The first bad event as plain data: sequence number, kind, register, actor, EL and its timeline text."""
    return {
        "seq": event.seq,
        "kind": event.kind.value,
        "register": event.register,
        "actor": str(event.actor),
        "el": event.el,
        "text": event.describe(),
    }


@attrs.frozen
class Finding:
    """One failure: the rule, where it failed, the steps, the first bad event, and what it looked like."""

    rule: str
    where: str  # a cell id, or GENERATED
    cell: str  # the cell id of the CPU the failing run used
    features: str  # that CPU, described
    steps: tuple[str, ...]
    event: dict[str, Any] | None = attrs.field(default=None, eq=False)
    clause: str = ""  # the contract clause an adapter broke ("" for a rule violation)
    message: str = ""

    @property
    def fingerprint(self) -> str:
        """Stable across runs, seeds and machines for the same mistake (see the module docstring)."""
        if self.clause:
            what = ["contract", self.clause]
        else:
            event = self.event or {}
            what = [str(event.get("kind", "")), str(event.get("register", "")), str(event.get("actor", ""))]
        text = "\n".join([self.rule, self.where, *what])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """Plain data, with the fingerprint."""
        return {
            "rule": self.rule,
            "where": self.where,
            "cell": self.cell,
            "features": self.features,
            "steps": list(self.steps),
            "first_bad_event": self.event,
            "clause": self.clause or None,
            "message": self.message,
            "fingerprint": self.fingerprint,
        }


def make_finding(
    rule: str, cell: Features, steps: Sequence[Any], *, generated: bool, event: Event | None = None,
    clause: str = "", message: str = "",
) -> Finding:
    """A Finding for a failure of `rule` on `cell` after `steps` (Step objects, described)."""
    return Finding(
        rule=rule,
        where=GENERATED if generated else cell_id(cell),
        cell=cell_id(cell),
        features=cell.describe(),
        steps=tuple(step.describe() for step in steps),
        event=event_facts(event) if event is not None else None,
        clause=clause,
        message=message,
    )


def findings_of(exc: BaseException) -> list[Finding]:
    """The findings an exception carries: its own, or its group members' (hypothesis reports several distinct failures as a group)."""
    found = getattr(exc, "finding", None)
    if isinstance(found, Finding):
        return [found]
    if isinstance(exc, BaseExceptionGroup):
        return [f for member in exc.exceptions for f in findings_of(member)]
    return []
