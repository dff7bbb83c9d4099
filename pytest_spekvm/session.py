"""One pytest session's view of the target: judging cells and generated sequences against the rules."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from hypothesis import Phase, reporting, reproduce_failure, settings
from hypothesis.errors import DidNotReproduce, Flaky
from hypothesis.stateful import run_state_machine_as_test

from .failure_report import (
    NOT_JUDGED,
    ContractFailure,
    Hung,
    SpekvmFailure,
    contract_body,
    contract_finding,
    not_judged,
    rule_error_body,
    rule_error_finding,
    violation_body,
    violation_finding,
    with_notes,
)
from .findings import Finding
from .reference.chooser import ADVERSARIES, WorstCaseChooser
from .reference.features import Features
from .rules import Judgement, Rule, RuleError
from .scenario import SCRIPT, AdapterFailure, Run
from .sequences import machine_for
from .space import FeatureSpace, cell_id
from .target import Target
from .timeouts import DEFAULT_TIMEOUT
from .verdicts import Verdicts

FAST_EXAMPLES = 40
"""Examples per rule when no hypothesis profile is chosen: the fast default."""

STEPS_PER_EXAMPLE = 12

REPLAY_STEPS = 1_000_000
"""The step budget while --spekvm-reproduce replays a recording: in effect none of the plugin's own, so
the recording's choices alone decide where its sequence stops."""


Judged = tuple[bool, str, "Finding | None"]
"""A rule judged on a cell: whether a check exercised it, the violation's report ('' if none) and its finding."""


@attrs.frozen
class CellOutcome:
    """The scripted scenario run once on one cell under one adversary: the run, or how the adapter failed.

    A cell run in a process of its own (`isolation`) comes back judged: `judged` maps each rule to what
    `SpekvmSession.judge` found over every adversary's run, and a contract failure comes with its report
    (`failure_body`) and the steps it got through (`steps`), since the run itself stayed in that process.
    """

    run: Run | None
    failure: AdapterFailure | None
    adversary: str = WorstCaseChooser.name
    judged: Mapping[str, Judged] | None = None
    failure_body: str = ""
    steps: tuple[str, ...] = ()


def _without_seed_hint(report: Callable[[Any], object]) -> Callable[[Any], None]:
    """hypothesis' reporter `report`, less the hint it prints when a test stopped on an exception it did
    not treat as a failure of its own (a hang here): "You can reproduce this failure by adding @seed(N)
    to this test" ("You can add @seed(N) to this test" before hypothesis 6.14x). The suites' tests are
    not the user's to decorate, and the failure's own replay lines say how to run it again."""

    def reporter(text: Any) -> None:  # what hypothesis reports: text, or an object it prints
        if not (isinstance(text, str) and text.startswith("You can ") and "@seed(" in text):
            report(text)

    return reporter


@attrs.define
class SpekvmSession:
    """The target, the feature space and the rules of this run, and what the checks found."""

    target: Target
    space: FeatureSpace
    rules: dict[str, Rule]
    timeout: float = DEFAULT_TIMEOUT
    reproduce: tuple[str, bytes] | None = None  # --spekvm-reproduce: (hypothesis version, blob)
    reproduce_rule: str = ""  # the rule whose sequences test the blob replays ('': every one selected)
    # False when the user chose the budget (--hypothesis-profile, a profile their conftest loaded,
    # or the CI profile); hypothesis' verbosity and explain options do not choose a budget.
    fast_default: bool = True
    explain: bool = False  # --hypothesis-explain
    shrink: bool = True  # False under --spekvm-no-shrink: a failing sequence is reported as found
    # Rules whose generated failures are known deviations: found, not shrunk again.
    unshrunk: frozenset[str] = frozenset()
    verdicts: Verdicts = attrs.field(factory=Verdicts)
    replayed: list[str] = attrs.field(factory=list)  # what --spekvm-reproduce found now passes
    _cells: dict[Features, tuple[CellOutcome, ...]] = attrs.field(factory=dict)
    # (clause, cell) -> the check that reported that broken clause: the cell's other checks are not judged.
    _reported: dict[tuple[str, Features], str] = attrs.field(factory=dict)

    def __repr__(self) -> str:
        # pytest shows the arguments of a failing frame; every cell's runs and steps would take
        # seconds to render for each failure.
        return f"<SpekvmSession {self.target.name}: {len(self._cells)} cells run, rules {', '.join(self.rules)}>"
    # The checks (node ids) that were given a cell's failed outcome: when one of them runs again
    # (a rerun), the cell is run again rather than failing from the cache.
    _failure_seen_by: dict[Features, set[str]] = attrs.field(factory=dict)

    # ------------------------------------------------------------------------ scripted cells

    def cell_outcomes(self, cell: Features, check: str = "") -> tuple[CellOutcome, ...]:
        """Run the scripted scenario on `cell` under each fixed adversary, once per session; a failed
        run is run again when a check that already saw it runs again (pytest-rerunfailures).

        An adapter failure under one adversary ends the cell there: the same code would fail again.
        """
        outcomes = self._cells.get(cell)
        if outcomes is not None and any(o.failure is not None for o in outcomes):
            seen = self._failure_seen_by.setdefault(cell, set())
            if check and check in seen:
                outcomes = None
                seen.clear()
            seen.add(check)
        if outcomes is None:
            if self.target.isolated:
                from .isolation import run_cell_isolated  # noqa: PLC0415 - only native targets fork

                outcomes = run_cell_isolated(self, cell)
            else:
                outcomes = self.run_cell(cell)
            if any(o.failure is not None for o in outcomes):
                self._failure_seen_by[cell] = {check}
            self._cells[cell] = outcomes
            self.verdicts.saw(cell)
        return outcomes

    def run_cell(self, cell: Features) -> tuple[CellOutcome, ...]:
        """The scripted scenario on `cell` under each fixed adversary, in this process."""
        found: list[CellOutcome] = []
        # Without a usable buffer and without FEAT_ExS no timing choice is ever asked that
        # could change an outcome: one adversary says all.
        usable = cell.has_spe and not cell.spe_owned_by_higher_el
        for adversary in ADVERSARIES if usable or cell.exs else ADVERSARIES[:1]:
            run: Run | None = None
            try:
                run = Run.start(self.target, cell, adversary(), self.timeout)
                run.do_all(SCRIPT)
                self.verdicts.steps += len(run.steps)
                found.append(CellOutcome(run, None, adversary.name))
            except AdapterFailure as failure:
                found.append(CellOutcome(run, failure, adversary.name))
                break
        return tuple(found)

    def cell_outcome(self, cell: Features, check: str = "") -> CellOutcome:
        """The scripted scenario on `cell` under the worst-case adversary."""
        return self.cell_outcomes(cell, check)[0]

    def check_cell(self, rule_id: str, cell: Features, nodeid: str = "") -> None:
        """Judge `rule_id` on the scripted scenario for `cell`; fail the test with a timeline if broken."""
        started = time.perf_counter()
        try:
            self._check_cell(rule_id, cell, nodeid)
        finally:
            self.verdicts.seconds += time.perf_counter() - started

    def _check_cell(self, rule_id: str, cell: Features, nodeid: str) -> None:
        replay = self.replay_hint(nodeid, scripted=True)
        outcomes = self.cell_outcomes(cell, nodeid)
        for outcome in outcomes:
            if outcome.failure is not None:
                body = outcome.failure_body or contract_body(outcome.failure, cell, outcome.run)
                finding = contract_finding(rule_id, outcome.failure, cell, outcome.run, generated=False)
                if outcome.run is None and outcome.steps:
                    finding = attrs.evolve(finding, steps=outcome.steps)
                self.contract_failed(
                    rule_id, False, outcome.failure.clause, cell, nodeid=nodeid, text=f"{body}\nreplay: {replay}", finding=finding
                )
        judged = outcomes[0].judged
        found: Finding | None
        exercised, text, found = judged[rule_id] if judged is not None else self.judge(self.rules[rule_id], cell, outcomes)
        self.verdicts.record(rule_id, exercised, bool(text), check=nodeid)
        if exercised:
            self.verdicts.exercise(rule_id, cell_id(cell))
        if text:
            raise SpekvmFailure(f"{text}\nreplay: {replay}", found)

    @staticmethod
    def judge(rule: Rule, cell: Features, outcomes: Sequence[CellOutcome]) -> Judged:
        """`rule` over every adversary's run of the cell, as one check: exercised if any run reached its
        precondition, failed if any run violates it (the first such run is reported), or if the rule's
        checker fails on one (`RuleError`: reported as the rule's fault)."""
        exercised = False
        failed: tuple[Judgement, CellOutcome] | None = None
        for outcome in outcomes:
            assert outcome.run is not None
            try:
                judgement = rule.judge(outcome.run.trace, cell)
            except RuleError as error:
                text = rule_error_body(rule, error, cell, outcome.run)
                return exercised, text, rule_error_finding(rule, error, cell, outcome.run, generated=False)
            exercised = exercised or judgement.exercised
            if judgement.violations and failed is None:
                failed = (judgement, outcome)
        if failed is None:
            return exercised, "", None
        judgement, outcome = failed
        assert outcome.run is not None
        text = violation_body(rule, judgement, cell, outcome.run, adversary=outcome.adversary)
        return exercised, text, violation_finding(rule, judgement, cell, outcome.run, generated=False)

    def contract_failed(
        self, rule_id: str, exercised: bool, clause: str, cell: Features, *, nodeid: str, text: str, finding: Finding | None
    ) -> None:
        """The adapter broke `clause` on `cell` before `rule_id` could be judged: the first check to meet it
        (or that check again, rerun) fails with the report; every other is skipped as not judged, naming it."""
        key, me = (clause, cell), nodeid or rule_id
        reported = self._reported.get(key)
        first = reported is None or reported == me
        self.verdicts.record(rule_id, exercised, failed=False, check=nodeid, judged=False, contract=first)
        if first:
            self._reported[key] = me
            error = ContractFailure(text, clause, cell, finding)
            error.spekvm_rule = rule_id  # type: ignore[attr-defined]
            raise error
        reason = f"{NOT_JUDGED}: CONTRACT {clause!r} broken on {cell.describe()}, reported by {reported}"
        raise not_judged(reason)

    # ------------------------------------------------------------------ generated sequences

    def hypothesis_settings(self, rule_id: str = "") -> settings:
        """The loaded hypothesis profile, or the fast default when the user chose no budget; without
        the shrink and explain phases for a rule in `unshrunk` (its failure is known: found is enough),
        or for every rule under --spekvm-no-shrink."""
        chosen = self._settings()
        if rule_id in self.unshrunk or not self.shrink:
            return settings(chosen, phases=[p for p in chosen.phases if p not in (Phase.shrink, Phase.explain)])
        return chosen

    def _settings(self) -> settings:
        # The explain phase replays the shrunk example many times over to annotate it; for a
        # stateful run that costs far more than the shrink itself (about 70% of a failing rule's
        # sequences under the `ci` profile), and the report shows the steps and the timeline
        # anyway: whatever the profile, it runs only when asked (--hypothesis-explain).
        if not self.fast_default:
            loaded = settings()  # the loaded profile's settings
            phases = [p for p in loaded.phases if p is not Phase.explain]
            # deadline=None: a slow machine must never fail a conformance check (speed is measured
            # by the benchmarks, not asserted by tests).
            return settings(loaded, deadline=None, print_blob=True,
                            phases=[*phases, Phase.explain] if self.explain else phases)
        phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
        return settings(
            settings.default,
            max_examples=FAST_EXAMPLES,
            stateful_step_count=STEPS_PER_EXAMPLE,
            deadline=None,
            print_blob=True,  # the failure report carries a @reproduce_failure line: replayable anywhere
            phases=[*phases, Phase.explain] if self.explain else phases,
        )

    def explore(self, rule_id: str, nodeid: str = "") -> None:
        """Judge `rule_id` over hypothesis-generated features, event sequences and chooser answers."""
        if self.target.isolated:
            from .isolation import explore_isolated  # noqa: PLC0415 - only native targets fork

            explore_isolated(self, rule_id, nodeid)
        else:
            self.explore_here(rule_id, nodeid)

    def explore_here(self, rule_id: str, nodeid: str = "", replay: bool = True) -> None:
        """`explore`, in this process (`replay` False: leave --spekvm-reproduce out)."""
        rule = self.rules[rule_id]
        seen: dict[str, Any] = {"exercised": False}  # and "contract": the first contract the adapter broke
        machine = machine_for(self, rule, seen, self.replay_hint(nodeid, scripted=False))
        replaying = replay and self.reproduce is not None and self.reproduce_rule in ("", rule_id)
        fresh = False
        if replaying:
            assert self.reproduce is not None
            machine = reproduce_failure(*self.reproduce)(machine)
        chosen = self.hypothesis_settings(rule_id)
        if replaying:
            # The recording says where its sequence stops: a budget of fewer steps than it was recorded
            # under (the fast default replaying a `ci` failure) would cut it short, and it would pass.
            chosen = settings(chosen, stateful_step_count=REPLAY_STEPS)
        started = time.perf_counter()
        try:
            with reporting.with_reporter(_without_seed_hint(reporting.current_reporter())):
                run_state_machine_as_test(machine, settings=chosen)  # type: ignore[no-untyped-call, unused-ignore]  # typed in newer hypothesis
        except Hung as hung:
            self.contract_failed(
                rule_id, seen["exercised"], hung.clause, hung.cell, nodeid=nodeid, text=str(hung), finding=hung.finding
            )
        except DidNotReproduce as exc:
            if not replaying:  # pragma: no cover - hypothesis raises it only when replaying a blob
                raise
            # No step of the recorded case failed: it either completed or, as a fixed switch usually
            # does, went on past the recorded steps. Hypothesis raises DidNotReproduce from the
            # StopTest (the recorded choices ran out) or failed assumption it caught, and from
            # nothing when the case completed. Past the recorded steps, the rule's sequences are
            # generated afresh to confirm the fix.
            fresh = exc.__context__ is not None
            self.replayed.append(
                f"the recorded case of {rule_id} ({nodeid or rule_id}) now passes against {self.target.name} ({self.target.spec})"
                + (": its recorded steps ran without a violation, and fresh sequences passed" if fresh else "")
            )
        except ContractFailure as exc:
            self.contract_failed(
                rule_id, seen["exercised"], exc.clause, exc.cell, nodeid=nodeid, text=with_notes(exc), finding=exc.finding
            )
        except BaseException as exc:
            broken = seen.get("contract")
            if isinstance(exc, Flaky) and isinstance(broken, ContractFailure):
                # hypothesis ran a case again and it did not end the same way, and the adapter broke its contract
                # on the way: that is the failure. What the adapter does depends on more than the case (a thread's
                # timing, a clock, state kept between cases), which is also why hypothesis could not replay it.
                text = (
                    f"{with_notes(broken)}\n(hypothesis ran the case again and the adapter did not do the same: what it"
                    " does depends on more than the case, such as a thread's timing, so the replay lines may not reproduce it)"
                )
                self.contract_failed(rule_id, seen["exercised"], broken.clause, broken.cell, nodeid=nodeid, text=text, finding=broken.finding)
            exc.spekvm_rule = rule_id  # type: ignore[attr-defined]
            self.verdicts.record(rule_id, exercised=seen["exercised"], failed=True, check=nodeid)
            raise
        finally:
            self.verdicts.seconds += time.perf_counter() - started
        if fresh:
            try:
                self.explore_here(rule_id, nodeid, replay=False)
            except BaseException:
                self.replayed.pop()  # the fresh sequences found a failure: the run reports that instead
                raise
            return
        self.verdicts.record(rule_id, exercised=seen["exercised"], failed=False, check=nodeid)

    def replay_command(self, nodeid: str, profile: str = "") -> str:
        """The shell command that runs this check again (under hypothesis profile `profile`, if given)."""
        command = f"pytest {shlex.quote(f'--spekvm-target={self.target.spec}')}"
        if profile:
            command += f" {shlex.quote(f'--hypothesis-profile={profile}')}"
        return f"{command} {shlex.quote(nodeid)}" if nodeid else command

    def replay_hint(self, nodeid: str, scripted: bool) -> str:
        """How to run this check again: the shell command, and what it replays. A generated check's
        command names the profile the user chose (the `ci` one that CI loads by itself, say), since the
        budget decides which sequences are generated; where that profile keeps no example database, the
        --spekvm-reproduce line alone replays the failure."""
        if scripted:
            return f"{self.replay_command(nodeid)}   (scripted, deterministic)"
        command = self.replay_command(nodeid, "" if self.fast_default else settings.get_current_profile_name())
        if self._settings().database is None:
            return f"{command}   (no example database under this profile: the --spekvm-reproduce line at the end replays it)"
        return (
            f"{command}   (hypothesis keeps the failing example in its database and replays it first;"
            " the --spekvm-reproduce line at the end replays it anywhere)"
        )
