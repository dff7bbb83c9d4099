"""One pytest session's view of the target: judging cells and generated sequences against the rules."""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import hypothesis
import pytest
from hypothesis import Phase, reproduce_failure, settings
from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.core import encode_failure
from hypothesis.errors import DidNotReproduce
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from .findings import Finding, make_finding
from .reference.chooser import ADVERSARIES, WorstCaseChooser
from .reference.features import Features
from .rules import Judgement, Rule, Violation
from .scenario import SCRIPT, AdapterFailure, Run, Step
from .space import FeatureSpace, cell_id
from .strategies import HypothesisChooser, features, guest_programs
from .target import Target
from .verdicts import Verdicts

FAST_EXAMPLES = 40
"""Examples per rule when no hypothesis profile is chosen: the fast default."""

STEPS_PER_EXAMPLE = 12

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


class _Hung(BaseException):
    """An adapter call hung during a generated sequence: a BaseException so that hypothesis stops at
    once instead of shrinking; it carries the report, and the blob that replays the sequence."""

    def __init__(self, message: str, clause: str, cell: Features, finding: Finding | None = None) -> None:
        super().__init__(message)
        self.clause = clause
        self.cell = cell
        self.finding = finding


NOT_JUDGED = "not judged (adapter failed)"
"""How a check that the adapter's broken contract left unjudged is skipped (its reason begins so)."""

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


@attrs.define
class SpekvmSession:
    """The target, the feature space and the rules of this run, and what the checks found."""

    target: Target
    space: FeatureSpace
    rules: dict[str, Rule]
    timeout: float = 10.0
    reproduce: tuple[str, bytes] | None = None  # --spekvm-reproduce: (hypothesis version, blob)
    reproduce_rule: str = ""  # the rule whose sequences test the blob replays ('': every one selected)
    # False when the user chose the budget (--hypothesis-profile, a profile their conftest loaded,
    # or the CI profile); hypothesis' verbosity and explain options do not choose a budget.
    fast_default: bool = True
    explain: bool = False  # --hypothesis-explain
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
        precondition, failed if any run violates it (the first such run is reported)."""
        exercised = False
        failed: tuple[Judgement, CellOutcome] | None = None
        for outcome in outcomes:
            assert outcome.run is not None
            judgement = rule.judge(outcome.run.trace, cell)
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
        raise pytest.skip.Exception(reason, _use_item_location=True)

    # ------------------------------------------------------------------ generated sequences

    def hypothesis_settings(self, rule_id: str = "") -> settings:
        """The loaded hypothesis profile, or the fast default when the user chose no budget; without
        the shrink and explain phases for a rule in `unshrunk` (its failure is known: found is enough)."""
        chosen = self._settings()
        if rule_id in self.unshrunk:
            return settings(chosen, phases=[p for p in chosen.phases if p not in (Phase.shrink, Phase.explain)])
        return chosen

    def _settings(self) -> settings:
        if not self.fast_default:
            return settings(settings.default, deadline=None, print_blob=True)
        phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
        # deadline=None: a slow machine must never fail a conformance check (speed is measured
        # by the benchmarks, not asserted by tests).
        return settings(
            settings.default,
            max_examples=FAST_EXAMPLES,
            stateful_step_count=STEPS_PER_EXAMPLE,
            deadline=None,
            print_blob=True,  # the failure report carries a @reproduce_failure line: replayable anywhere
            # The explain phase replays the shrunk example many times over to annotate it; for
            # a stateful run that costs far more than the shrink itself, so the fast default
            # runs it only when asked (--hypothesis-explain).
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
        seen = {"exercised": False}
        machine = machine_for(self, rule, seen, self.replay_hint(nodeid, scripted=False))
        replaying = replay and self.reproduce is not None and self.reproduce_rule in ("", rule_id)
        fresh = False
        if replaying:
            assert self.reproduce is not None
            machine = reproduce_failure(*self.reproduce)(machine)
        started = time.perf_counter()
        try:
            run_state_machine_as_test(machine, settings=self.hypothesis_settings(rule_id))  # type: ignore[no-untyped-call, unused-ignore]  # typed in newer hypothesis
        except _Hung as hung:
            self.contract_failed(
                rule_id, seen["exercised"], hung.clause, hung.cell, nodeid=nodeid, text=str(hung), finding=hung.finding
            )
        except DidNotReproduce as exc:
            if not replaying:  # pragma: no cover - hypothesis raises it only when replaying a blob
                raise
            # No step of the recorded case failed: it either completed or, as a fixed switch usually
            # does, went on past the recorded steps (hypothesis: "the shape ... has changed"). The
            # rule's sequences are then generated afresh to confirm the fix.
            fresh = "completed successfully" not in str(exc)
            self.replayed.append(
                f"the recorded case of {rule_id} ({nodeid or rule_id}) now passes against {self.target.name} ({self.target.spec})"
                + (": its recorded steps ran without a violation, and fresh sequences passed" if fresh else "")
            )
        except ContractFailure as exc:
            self.contract_failed(
                rule_id, seen["exercised"], exc.clause, exc.cell, nodeid=nodeid, text=_with_notes(exc), finding=exc.finding
            )
        except BaseException as exc:
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

    def replay_hint(self, nodeid: str, scripted: bool) -> str:
        """How to run this check again, as a shell command."""
        command = f"pytest {shlex.quote(f'--spekvm-target={self.target.spec}')}"
        if nodeid:
            command += f" {shlex.quote(nodeid)}"
        if scripted:
            return f"{command}   (scripted, deterministic)"
        return (
            f"{command}   (hypothesis keeps the failing example in its database and replays it first;"
            " the --spekvm-reproduce line at the end replays it anywhere)"
        )


def machine_for(session: SpekvmSession, checked: Rule, seen: dict[str, bool], replay: str) -> type[RuleBasedStateMachine]:
    """A state machine that drives the host, the vcpus and the chooser, judging `checked` after each step."""

    class SpekvmMachine(RuleBasedStateMachine):
        """Host and guests acting at random on a CPU drawn from the feature space."""

        def __init__(self) -> None:
            super().__init__()
            self.chooser = HypothesisChooser()
            self.run: Run | None = None
            self.cell: Features | None = None
            self.exercised = False
            self.failed = False

        # Hypothesis takes rules in name order and the first is the simplest choice: the names
        # put "host code, then a guest" first, since most bugs need nothing else.

        @initialize(cpu=features(session.space), idle=st.integers(0, 3).map(lambda n: n == 3), data=st.data())
        def boot(self, cpu: Features, idle: bool, data: Any) -> None:
            """Boot; unless `idle` (one run in four), the host is already profiling: the riskiest start."""
            self.chooser.data = data
            self.cell = cpu
            session.verdicts.saw(cpu)
            self.run = self._guard(lambda: Run.start(session.target, cpu, self.chooser, session.timeout))
            if not idle:
                self._step(data, Step("enable_profiling"))
                self._step(data, Step("host_run", samples=2))

        def _guard(self, action: Any) -> Any:
            try:
                return action()
            except AdapterFailure as failure:
                assert self.cell is not None
                self.failed = True
                report = format_adapter_failure(failure, self.cell, self.run, replay)
                finding = contract_finding(checked.id, failure, self.cell, self.run, generated=True)
                if failure.hung:
                    choices = current_build_context().data.choices
                    blob = f"{hypothesis.__version__}:{encode_failure(choices).decode()}"
                    report += f"\n{HUNG_NOTE}\n{reproduce_line(checked.id, blob)}"
                    raise _Hung(report, failure.clause, self.cell, finding) from None
                raise ContractFailure(report, failure.clause, self.cell, finding) from None

        def _step(self, data: Any, step: Step) -> None:
            assert self.run is not None
            self.chooser.data = data
            run = self.run
            self._guard(lambda: run.do(step))
            session.verdicts.steps += 1

        @rule(
            data=st.data(),
            action=st.sampled_from(["enable_profiling", "disable_profiling", "pause_sampling"]),
            pmscr=st.sampled_from([0b11, 0b01, 0b10]),
        )
        def host_changes_profiling(self, data: Any, action: str, pmscr: int) -> None:
            """One rule for the SPE driver's three moves, so repeating the rule still varies the move."""
            self._step(data, Step(action, pmscr=pmscr))

        @rule(data=st.data(), samples=st.one_of(st.integers(0, 6), st.just(300)), el0=st.booleans())
        def host_runs_code(self, data: Any, samples: int, el0: bool) -> None:
            self._step(data, Step("host_run", samples=samples, el0=el0))

        @precondition(lambda self: self.run is not None and self.run.system.cpu.buffer_irq)
        @rule(data=st.data())
        def handle_buffer_irq(self, data: Any) -> None:
            self._step(data, Step("handle_buffer_irq"))

        @rule(data=st.data(), vcpu=st.integers(0, 1), program=guest_programs())
        def enter_vcpu(self, data: Any, vcpu: int, program: Sequence[Any]) -> None:
            self._step(data, Step("run_vcpu", vcpu=vcpu, program=tuple(program)))

        @rule(data=st.data(), samples=st.integers(1, 4), vcpu=st.integers(0, 1), program=guest_programs())
        def after_host_code_enter_vcpu(self, data: Any, samples: int, vcpu: int, program: Sequence[Any]) -> None:
            """The common case, worth a rule of its own: the host runs, then enters a guest."""
            self._step(data, Step("host_run", samples=samples))
            self._step(data, Step("run_vcpu", vcpu=vcpu, program=tuple(program)))

        def judged(self) -> None:
            """Judge the whole trace. Once, at the end: every checker is causal (a violation at an
            event depends only on the events before it), so judging after each step would find
            the same violations at a cost quadratic in the sequence's length; shrinking then drops
            the steps after the first bad one."""
            if self.run is None or self.cell is None:
                return
            judgement = checked.judge(self.run.trace, self.cell)
            self.exercised = self.exercised or judgement.exercised
            seen["exercised"] = seen["exercised"] or judgement.exercised
            if judgement.exercised:
                session.verdicts.exercise(checked.id, cell_id(self.cell))
            if judgement.violations:
                self.failed = True
                text = format_violation(checked, judgement, self.cell, self.run, replay)
                raise SpekvmFailure(text, violation_finding(checked, judgement, self.cell, self.run, generated=True))

        def teardown(self) -> None:
            if self.run is None or self.cell is None or self.failed:
                return  # a failed step has been reported; the end of the scenario adds nothing
            self.chooser.data = None
            # The end of the scenario: the chooser is no longer asked, the host drains as it would.
            self.run.set_chooser(WorstCaseChooser())
            self._guard(self.run.finish)
            self.judged()
            # No hypothesis.target() here: the Pareto front it keeps cost more CPU than the
            # targeting saved (the scripted cells already reach every precondition).

    SpekvmMachine.__name__ = SpekvmMachine.__qualname__ = f"Spekvm_{checked.id.replace('-', '_')}"
    return SpekvmMachine


# ----------------------------------------------------------------------------- failure text


def _first_bad(violations: Sequence[Violation]) -> Violation:
    return min(violations, key=lambda v: v.event)


def _with_notes(exc: BaseException) -> str:
    """The exception's message and hypothesis' notes (the falsifying steps, the blob)."""
    return "\n".join([str(exc), *getattr(exc, "__notes__", [])])


def reproduce_line(rule_id: str, blob_text: str) -> str:
    """The line that replays a generated failure anywhere (`blob_text`: hypothesis' @reproduce_failure arguments)."""
    return f"replay anywhere: add {shlex.quote(f'--spekvm-reproduce={rule_id}:{blob_text}')} to the command above"


def violation_body(rule: Rule, judgement: Judgement, cell: Features, run: Run, *, adversary: str = "") -> str:
    """The failure a person reads in ten seconds: rule, features, steps, timeline."""
    first = _first_bad(judgement.violations)
    ordered = sorted(judgement.violations, key=lambda v: v.event)
    lines = [
        f"RULE {rule.id} violated on features: {cell.describe()}",
        *([f"  under the {adversary} adversary (the PE's timing choices: see docs/model.md)"] if adversary else []),
        f"  {rule.title}",
        *(f"  at #{v.event}: {v.message}" for v in ordered[:SHOWN_VIOLATIONS]),
    ]
    more = len(ordered) - SHOWN_VIOLATIONS
    if more > 0:
        lines.append(f"  (and {more} more violation{'s' if more > 1 else ''} of {rule.id} in this run)")
    lines += [
        f"  why: {rule.rationale}",
        "steps:",
        run.describe_steps(),
        f"timeline around event #{first.event} (>>):",
        run.trace.timeline(around=first.event),
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
