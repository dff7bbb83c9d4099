"""The rule catalogue (docs/rules.md): each rule a single-pass checker over a trace.

One module per suite family (`res0`, `traps`, `ordering`, `host_state`, `records`, `lean`, as the
files of `suites/`), `rule` for what a rule and a judgement are, and `walk` for the machinery the
checkers share (register replay, the window walk), which a project's own rules may use too.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..reference.features import Features
from ..reference.trace import Trace
from . import host_state, lean, ordering, records, res0, traps
from .rule import Breach, Checker, Found, Judgement, Rule, RuleError, Severity, Violation
from .walk import Phase, RegisterReplay, Walk, registers_after, replay

__all__ = [
    "BY_ID",
    "FAMILIES",
    "RULES",
    "Breach",
    "Checker",
    "Found",
    "Judgement",
    "Phase",
    "RegisterReplay",
    "Rule",
    "RuleError",
    "Severity",
    "Violation",
    "Walk",
    "judge_all",
    "registers_after",
    "replay",
    "rules_of_family",
]

RULES: tuple[Rule, ...] = (*res0.RULES, *traps.RULES, *ordering.RULES, *host_state.RULES, *records.RULES, *lean.RULES)

BY_ID: Mapping[str, Rule] = {rule.id: rule for rule in RULES}

FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(rule.family for rule in RULES))


def rules_of_family(family: str) -> tuple[Rule, ...]:
    """The rules a suite file of `family` checks, in catalogue order."""
    if family not in FAMILIES:
        known = ", ".join(FAMILIES)
        msg = f"Cannot list the rules of family {family!r} because there is no such family (one of {known})"
        raise ValueError(msg)
    return tuple(rule for rule in RULES if rule.family == family)


def judge_all(trace: Trace, features: Features, rules: tuple[Rule, ...] = RULES) -> dict[str, Judgement]:
    """Every rule's judgement of `trace`, by rule id."""
    return {rule.id: rule.judge(trace, features) for rule in rules}
