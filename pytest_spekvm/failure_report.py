"""How a check fails: the exceptions a failing check raises, and the report they carry (its text for a
person, its finding for the JSON report, JUnit and the ledger)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

from .findings import Finding, make_finding
from .guard import adapter_frame, safe_text

if TYPE_CHECKING:
    from .reference.features import Features
    from .rules import Judgement, Rule, RuleError, Violation
    from .scenario import AdapterFailure, Run

SHOWN_VIOLATIONS = 5
"""Violations listed in a failure report; the timeline shows the first."""


HUNG_NOTE = (
    "not shrunk: every attempt to shrink a sequence that hangs would wait out --spekvm-timeout again;"
    " the --spekvm-reproduce line below replays this very sequence."
)


class SpekvmFailure(AssertionError):
    """A rule violated or a contract clause broken: reported as its message, without a traceback.

    `finding` holds the same failure as structured facts (for the report, JUnit and the ledger)."""

    def __init__(self, message: str, finding: Finding | None = None) -> None:
        super().__init__(message)
        self.finding = finding


class ContractFailure(SpekvmFailure):
    """The adapter broke a contract clause: reported once per cell and clause; the cell's rules are not judged."""

    def __init__(self, message: str, clause: str, cell: Features, finding: Finding | None = None) -> None:
        super().__init__(message, finding)
        self.clause = clause
        self.cell = cell


class Hung(BaseException):
    """An adapter call hung during a generated sequence: a BaseException so that hypothesis stops at
    once instead of shrinking; it carries the report, and the blob that replays the sequence."""

    def __init__(self, message: str, clause: str, cell: Features, finding: Finding | None = None) -> None:
        super().__init__(message)
        self.clause = clause
        self.cell = cell
        self.finding = finding


NOT_JUDGED = "not judged (adapter failed)"
"""How the reason of a check that the adapter's broken contract left unjudged begins."""


def not_judged(reason: str) -> BaseException:
    """The skip of a check the adapter's broken contract left unjudged: known as such by its
    `spekvm_not_judged` attribute (see `is_not_judged`), never by its reason."""
    skip = pytest.skip.Exception(reason, _use_item_location=True)
    skip.spekvm_not_judged = True  # type: ignore[attr-defined]
    return skip


def is_not_judged(exc: BaseException) -> bool:
    """Whether `exc` is the skip of a check left unjudged (`not_judged`)."""
    return isinstance(exc, pytest.skip.Exception) and getattr(exc, "spekvm_not_judged", False) is True


def _first_bad(violations: Sequence[Violation]) -> Violation:
    return min(violations, key=lambda v: v.event)


def with_notes(exc: BaseException) -> str:
    """The exception's message and hypothesis' notes (the falsifying steps, the blob)."""
    return "\n".join([str(exc), *getattr(exc, "__notes__", [])])


def replay_value(rule_id: str, target: str, blob_text: str) -> str:
    """--spekvm-reproduce's value: the rule whose sequences test replays it, the target it was recorded
    against, and `blob_text` (hypothesis' version and @reproduce_failure blob, VERSION:BLOB)."""
    return f"{rule_id}@{target}:{blob_text}"


def reproduce_line(value: str) -> str:
    """The line that replays a generated failure anywhere (`value`: a `replay_value`)."""
    return f"replay anywhere: add {shlex.quote(f'--spekvm-reproduce={value}')} to the command above"


def violation_body(rule: Rule, judgement: Judgement, cell: Features, run: Run, *, adversary: str = "") -> str:
    """The failure a person reads in ten seconds: rule, features, steps, timeline."""
    first = _first_bad(judgement.violations)
    ordered = sorted(judgement.violations, key=lambda v: v.event)
    shown = ordered[:SHOWN_VIOLATIONS]
    cited = {seq for v in shown for seq in (v.event, *v.cites)}  # the timeline shows every event the lines name
    lines = [
        f"RULE {rule.id} violated on features: {cell.describe()}",
        *([f"  under the {adversary} adversary (the PE's timing choices: see docs/model.md)"] if adversary else []),
        f"  {rule.title}",
        *(f"  at #{v.event}: {v.message}" for v in shown),
    ]
    more = len(ordered) - SHOWN_VIOLATIONS
    if more > 0:
        lines.append(f"  (and {more} more violation{'s' if more > 1 else ''} of {rule.id} in this run)")
    lines += [
        f"  why: {rule.rationale}",
        "steps:",
        run.describe_steps(),
        f"timeline around event #{first.event} (>>):",
        run.trace.timeline(around=first.event, also=cited),
    ]
    return "\n".join(lines)


def format_violation(
    rule: Rule, judgement: Judgement, cell: Features, run: Run, replay: str, *, adversary: str = ""
) -> str:
    """The violation's report, ending with the command that replays it."""
    return f"{violation_body(rule, judgement, cell, run, adversary=adversary)}\nreplay: {replay}"


def violation_finding(rule: Rule, judgement: Judgement, cell: Features, run: Run, *, generated: bool) -> Finding:
    """The structured facts of a rule violation (its first bad event)."""
    first = _first_bad(judgement.violations)
    trace = run.trace
    event = trace[first.event] if 0 <= first.event < len(trace) else None
    return make_finding(rule.id, cell, run.steps, generated=generated, event=event, message=first.message)


def rule_error_text(error: RuleError) -> str:
    """What a rule's checker did instead of judging: the exception it raised and where, or what it returned."""
    if error.error is None:
        return f"{error.rule}'s check(trace, features) returned {safe_text(error.returned)}; expected a pytest_spekvm.Found"
    raised = error.error
    return f"{error.rule}'s check(trace, features) raised {type(raised).__name__}: {safe_text(raised, str)} at {adapter_frame(raised)}"


def rule_error_body(rule: Rule, error: RuleError, cell: Features, run: Run) -> str:
    """A rule whose checker failed on this run's trace: the rule, the features, what the checker did and the steps."""
    return "\n".join([
        f"RULE {rule.id} could not be judged on features: {cell.describe()}",
        f"  {rule.title}",
        f"  {rule_error_text(error)}",
        "  the rule's checker failed, not the switch under test: fix the check",
        "steps:",
        run.describe_steps(),
    ])


def rule_error_finding(rule: Rule, error: RuleError, cell: Features, run: Run, *, generated: bool) -> Finding:
    """The structured facts of a rule whose checker failed (no bad event: the trace was not judged)."""
    return make_finding(rule.id, cell, run.steps, generated=generated, message=rule_error_text(error))


def contract_finding(rule_id: str, failure: AdapterFailure, cell: Features, run: Run | None, *, generated: bool) -> Finding:
    """The structured facts of a broken contract clause, met while checking `rule_id`."""
    steps = run.steps if run is not None else []
    return make_finding(rule_id, cell, steps, generated=generated, clause=failure.clause, message=str(failure))


def contract_body(failure: AdapterFailure, cell: Features, run: Run | None, steps: str = "") -> str:
    """An adapter that raised, hung, crashed or returned garbage: the contract clause and what happened."""
    lines = [
        f"CONTRACT {failure.clause!r} broken on features: {cell.describe()}",
        f"  {failure}",
    ]
    if run is not None:
        trace = run.trace
        lines += ["steps:", run.describe_steps()]
        if len(trace):
            lines += ["timeline up to the failure:", trace.timeline(around=len(trace) - 1)]
    elif steps:
        lines += ["steps:", steps]
    return "\n".join(lines)


def format_adapter_failure(failure: AdapterFailure, cell: Features, run: Run | None, replay: str) -> str:
    """The contract failure's report, ending with the command that replays it."""
    return f"{contract_body(failure, cell, run)}\nreplay: {replay}"
