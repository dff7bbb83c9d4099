"""What a rule is and what judging one gives: `Rule`, `Judgement`, `Violation`, what a checker returns, and
`RuleError` when it cannot judge."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Protocol

import attrs

from ..reference.features import Features
from ..reference.trace import Trace


class Severity(enum.Enum):
    """How bad a violation is: wrong behaviour, or needless cost on the world switch's path."""

    CORRECTNESS = "correctness"
    LEAN = "lean"


def _as_seqs(cites: Iterable[int]) -> tuple[int, ...]:
    return tuple(cites)


@attrs.frozen
class Violation:
    """One breach of a rule: the first bad event and a message a reader needs nothing else for; `cites`
    are the other events the message names ("the PSB CSYNC at #12"), which its timeline shows too."""

    rule: str
    event: int  # seq of the first bad event in the trace
    message: str
    cites: tuple[int, ...] = attrs.field(default=(), converter=_as_seqs)


@attrs.frozen
class Judgement:
    """A rule's verdict on one trace; `exercised` says whether the rule's precondition occurred."""

    rule: str
    exercised: bool
    violations: tuple[Violation, ...] = ()

    @property
    def passed(self) -> bool:
        """No violation (a rule never exercised passes vacuously: read `exercised` too)."""
        return not self.violations


@attrs.frozen
class Breach:
    """One bad event a checker found: its `seq`, the message, and the seq of each other event the message
    names (`cites`, shown in the failure's timeline); `Rule.judge` makes it a `Violation` of the rule."""

    event: int
    message: str
    cites: tuple[int, ...] = attrs.field(default=(), converter=_as_seqs)


def _as_breaches(found: Iterable[Breach]) -> tuple[Breach, ...]:
    return tuple(found)


@attrs.frozen
class Found:
    """What a checker found in one trace: whether the rule's precondition occurred, and each breach.

    A checker returns this and never names its rule: `Rule.judge` stamps the rule's id on the
    judgement and on each violation.
    """

    exercised: bool
    breaches: tuple[Breach, ...] = attrs.field(default=(), converter=_as_breaches)


class RuleError(Exception):
    """A rule's checker raised, or returned something else than a `Found`: the rule is at fault, not the
    trace it judged. `error` is what it raised (None when it returned `returned`)."""

    def __init__(self, rule: str, error: Exception | None = None, returned: object = None) -> None:
        super().__init__(rule)
        self.rule = rule
        self.error = error
        self.returned = returned


class Checker(Protocol):
    """A rule's checker: one pass over the trace of a run on a CPU with `features`.

    It returns a `Found` (a `Judgement` is accepted too, as project rules wrote them before `Found`
    existed: `Rule.judge` takes its verdict and stamps the rule's id on it).
    """

    def __call__(self, trace: Trace, features: Features, /) -> Found | Judgement: ...


@attrs.frozen
class Rule:
    """One rule of the catalogue: a stable id, where it comes from, and its checker."""

    id: str
    title: str
    rationale: str
    severity: Severity
    family: str
    check: Checker = attrs.field(eq=False, repr=False)

    def judge(self, trace: Trace, features: Features) -> Judgement:
        """Judge `trace`, run on a CPU with `features`, against this rule: its checker's verdict, with this rule's id.

        A checker that raises, or returns something else than a `Found` (or a `Judgement`), raises `RuleError`."""
        try:
            found: object = self.check(trace, features)
        except Exception as exc:
            raise RuleError(self.id, error=exc) from exc
        if isinstance(found, Judgement):
            return Judgement(self.id, found.exercised, _stamped(self.id, found.violations))
        if not isinstance(found, Found):
            raise RuleError(self.id, returned=found)
        return Judgement(self.id, found.exercised, _stamped(self.id, found.breaches))


def _stamped(rule: str, breaches: Iterable[Breach | Violation]) -> tuple[Violation, ...]:
    return tuple(Violation(rule, b.event, b.message, b.cites) for b in breaches)
