"""The per-rule verdict table: passed, failed (with counts), never exercised, or not judged because the adapter failed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from .reference.features import Features


@attrs.define
class Tally:
    """What the checks of one rule found."""

    checks: int = 0
    exercised: int = 0
    failed: int = 0
    not_judged: int = 0  # checks whose scenario the adapter broke before the rule could be judged
    contract: int = 0  # of those, the checks that reported the broken clause (once per cell and clause)

    def verdict(self) -> str:
        """'failed', 'passed', 'never exercised', 'not judged' or 'not run'."""
        if self.failed:
            return "failed"
        if not self.checks:
            return "not run"
        if self.not_judged:
            return "not judged"
        if not self.exercised:
            return "never exercised"
        return "passed"


@attrs.define
class Verdicts:
    """Tallies per rule id, and the feature combinations the run exercised."""

    tallies: dict[str, Tally] = attrs.field(factory=dict)
    combinations: set[str] = attrs.field(factory=set)
    dimensions: dict[str, set[str]] = attrs.field(factory=dict)
    pairs: set[tuple[str, str]] = attrs.field(factory=set)  # (rule id, cell id) where a check exercised the rule
    steps: int = 0  # scenario steps run (host actions and vcpu runs), cells and sequences
    seconds: float = 0.0  # time spent in the checks that ran them
    # The last result of each named check (a test's node id): a check that runs again (a rerun)
    # replaces its earlier result instead of counting twice.
    _last: dict[str, tuple[str, bool, bool, bool, bool]] = attrs.field(factory=dict)

    def record(
        self, rule: str, exercised: bool, failed: bool, check: str = "", *, judged: bool = True, contract: bool = False
    ) -> None:
        """One check of `rule` ran; `check` names it (a node id), so that running it again replaces it.

        `judged` False: the adapter broke the contract before the rule could be judged; `contract`: this
        check is the one that reports the broken clause (the cell's other checks are not judged, silently).
        """
        if check:
            self._forget(check)
            self._last[check] = (rule, exercised, failed, judged, contract)
        tally = self.tallies.setdefault(rule, Tally())
        tally.checks += 1
        tally.exercised += exercised
        tally.failed += failed
        tally.not_judged += not judged
        tally.contract += contract

    def _forget(self, check: str) -> None:
        """Take the earlier result of `check` out of its tally (it runs again)."""
        previous = self._last.pop(check, None)
        if previous is not None:
            rule, exercised, failed, judged, contract = previous
            old = self.tallies[rule]
            old.checks -= 1
            old.exercised -= exercised
            old.failed -= failed
            old.not_judged -= not judged
            old.contract -= contract

    @property
    def contract_failures(self) -> int:
        """Tests failed because the adapter broke the contract (one per cell and clause)."""
        return sum(t.contract for t in self.tallies.values())

    def exercise(self, rule: str, cell: str) -> None:
        """A check of `rule` reached its precondition on the cell with id `cell`."""
        self.pairs.add((rule, cell))

    def saw(self, features: Features) -> None:
        """A run used `features`."""
        self.combinations.add(features.describe())
        for name, value in dimension_values(features):
            self.dimensions.setdefault(name, set()).add(value)

    def to_dict(self) -> dict[str, object]:
        """A plain-data form, for sending from an xdist worker."""
        return {
            "tallies": {k: attrs.asdict(v) for k, v in self.tallies.items()},
            "combinations": sorted(self.combinations),
            "dimensions": {k: sorted(v) for k, v in self.dimensions.items()},
            "pairs": sorted(self.pairs),
            "steps": self.steps,
            "seconds": self.seconds,
            "last": {k: list(v) for k, v in self._last.items()},
        }

    def merge(self, data: Mapping[str, object]) -> None:
        """Add what `to_dict` of another process gave; a check it ran that this one had run before
        (a rerun in a forked child) replaces the earlier result."""
        last = data.get("last", {})
        assert isinstance(last, dict)
        for check, (rule, exercised, failed, judged, contract) in last.items():
            self._forget(check)
            self._last[check] = (rule, exercised, failed, judged, contract)
        tallies = data.get("tallies", {})
        assert isinstance(tallies, dict)
        for rule, t in tallies.items():
            mine = self.tallies.setdefault(rule, Tally())
            mine.checks += t["checks"]
            mine.exercised += t["exercised"]
            mine.failed += t["failed"]
            mine.not_judged += t.get("not_judged", 0)
            mine.contract += t.get("contract", 0)
        combinations = data.get("combinations", [])
        assert isinstance(combinations, list)
        self.combinations.update(combinations)
        steps, seconds = data.get("steps", 0), data.get("seconds", 0.0)
        assert isinstance(steps, int)
        assert isinstance(seconds, (int, float))
        self.steps += steps
        self.seconds += seconds
        pairs = data.get("pairs", [])
        assert isinstance(pairs, list)
        self.pairs.update((str(rule), str(cell)) for rule, cell in pairs)
        dimensions = data.get("dimensions", {})
        assert isinstance(dimensions, dict)
        for name, values in dimensions.items():
            self.dimensions.setdefault(name, set()).update(values)

    def table(self, rules: Iterable[tuple[str, str, str]], final: Mapping[str, str] | None = None) -> list[str]:
        """Lines of the verdict table for `rules` given as (id, severity, title); `final` holds the
        verdicts the gates gave (a ledger's known deviations, rules not applicable to the space),
        which the report and the JUnit XML carry too."""
        lines = []
        for rule_id, severity, title in rules:
            tally = self.tallies.get(rule_id, Tally())
            verdict = tally.verdict()
            unjudged = f"; {tally.not_judged} not judged: adapter failed" if tally.not_judged else ""
            settled = (final or {}).get(rule_id)
            if settled == "known deviation" and verdict == "failed":
                verdict = f"known deviation ({tally.failed} of {tally.checks} checks, in the ledger{unjudged})"
            elif settled == "not applicable" and verdict == "never exercised":
                verdict = f"not applicable ({tally.checks} checks; unreachable in this space)"
            elif verdict == "failed":
                verdict = f"FAILED ({tally.failed} of {tally.checks} checks{unjudged})"
            elif verdict == "not judged":
                verdict = f"not judged (adapter failed on {tally.not_judged} of {tally.checks} checks)"
            elif verdict == "passed":
                verdict = f"passed ({tally.checks} checks, {tally.exercised} exercised it)"
            elif verdict == "never exercised":
                verdict = f"NEVER EXERCISED ({tally.checks} checks)"
            lines.append(f"{rule_id:<14} {severity:<12} {verdict:<44} {title}")
        if self.contract_failures:
            cells = sum(t.not_judged for t in self.tallies.values())
            lines.append(
                f"ADAPTER CONTRACT broken: {self.contract_failures} failed test{'s' if self.contract_failures > 1 else ''}"
                f" (once per cell and clause); {cells - self.contract_failures} more checks of those cells not judged (skipped)"
            )
        return lines


def dimension_values(features: Features) -> list[tuple[str, str]]:
    """The value of each discrete dimension of `features`, as (dimension, value) text."""
    values = [
        ("VHE", str(features.vhe)),
        ("PMSVer", str(int(features.spe))),
        ("PMU", features.pmu.name),
        ("FEAT_ExS", str(features.exs)),
        ("EL3", str(features.el3)),
    ]
    if features.has_spe:
        values.append(("PMBIDR_EL1.P", str(int(features.spe_owned_by_higher_el))))
    return values
