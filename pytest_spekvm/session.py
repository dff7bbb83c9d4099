"""One pytest session's view of the target: judging cells and generated sequences against the rules."""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import hypothesis
import pytest
from hypothesis import Phase, reproduce_failure, settings, target
from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.core import encode_failure
from hypothesis.errors import DidNotReproduce
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from .reference.chooser import WorstCaseChooser
from .reference.features import Features
from .rules import Judgement, Rule, Violation
from .scenario import SCRIPT, AdapterFailure, Run, Step
from .space import FeatureSpace
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
    """A rule violated or a contract clause broken: reported as its message, without a traceback."""


class ContractFailure(SpekvmFailure):
    """The adapter broke a contract clause: reported once per cell and clause; the cell's rules are not judged."""

    def __init__(self, text: str, clause: str, cell: Features) -> None:
        super().__init__(text)
        self.clause = clause
        self.cell = cell


class _Hung(BaseException):
    """An adapter call hung during a generated sequence: a BaseException so that hypothesis stops at
    once instead of shrinking; it carries the report, and the blob that replays the sequence."""

    def __init__(self, text: str, clause: str, cell: Features) -> None:
        super().__init__(text)
        self.clause = clause
        self.cell = cell


@attrs.frozen
class CellOutcome:
    """The scripted scenario run once on one cell: the run, or how the adapter failed.

    A cell run in a process of its own (`isolation`) comes back judged: `judged` maps each rule to
    (exercised, the violation's report or ''), and `failure_body` is the contract failure's report.
    """

    run: Run | None
    failure: AdapterFailure | None
    judged: Mapping[str, tuple[bool, str]] | None = None
    failure_body: str = ""


@attrs.define
class SpekvmSession:
    """The target, the feature space and the rules of this run, and what the checks found."""

    target: Target
    space: FeatureSpace
    rules: dict[str, Rule]
    timeout: float = 10.0
    reproduce: tuple[str, bytes] | None = None  # --spekvm-reproduce: (hypothesis version, blob)
    reproduce_rule: str = ""  # the rule whose sequences test the blob replays ('': every one selected)
    verdicts: Verdicts = attrs.field(factory=Verdicts)
    replayed: list[str] = attrs.field(factory=list)  # what --spekvm-reproduce found now passes
    _cells: dict[Features, CellOutcome] = attrs.field(factory=dict)
    _reported: dict[tuple[str, Features], str] = attrs.field(factory=dict)  # (clause, cell) -> the test that reported it

    # ------------------------------------------------------------------------ scripted cells

    def cell_outcome(self, cell: Features) -> CellOutcome:
        """Run the scripted scenario on `cell` with the worst-case chooser, once per session."""
        outcome = self._cells.get(cell)
        if outcome is None:
            if self.target.isolated:
                from .isolation import run_cell_isolated  # noqa: PLC0415 - only C targets fork

                outcome = run_cell_isolated(self, cell)
            else:
                outcome = self.run_cell(cell)
            self._cells[cell] = outcome
            self.verdicts.saw(cell)
        return outcome

    def run_cell(self, cell: Features) -> CellOutcome:
        """The scripted scenario on `cell`, in this process."""
        run: Run | None = None
        try:
            run = Run.start(self.target, cell, WorstCaseChooser(), self.timeout)
            run.do_all(SCRIPT)
            self.verdicts.steps += len(run.steps)
            return CellOutcome(run, None)
        except AdapterFailure as failure:
            return CellOutcome(run, failure)

    def check_cell(self, rule_id: str, cell: Features, nodeid: str = "") -> None:
        """Judge `rule_id` on the scripted scenario for `cell`; fail the test with a timeline if broken."""
        started = time.perf_counter()
        try:
            self._check_cell(rule_id, cell, nodeid)
        finally:
            self.verdicts.seconds += time.perf_counter() - started

    def _check_cell(self, rule_id: str, cell: Features, nodeid: str) -> None:
        rule = self.rules[rule_id]
        outcome = self.cell_outcome(cell)
        replay = self.replay_hint(nodeid, scripted=True)
        if outcome.failure is not None:
            body = outcome.failure_body or contract_body(outcome.failure, cell, outcome.run)
            self.contract_failed(rule_id, False, outcome.failure.clause, cell, nodeid=nodeid, text=f"{body}\nreplay: {replay}")
        if outcome.judged is not None:
            exercised, text = outcome.judged[rule_id]
            self.verdicts.record(rule_id, exercised, bool(text))
            if text:
                raise SpekvmFailure(f"{text}\nreplay: {replay}")
            return
        assert outcome.run is not None
        judgement = rule.judge(outcome.run.trace, cell)
        self.verdicts.record(rule_id, judgement.exercised, bool(judgement.violations))
        if judgement.violations:
            raise SpekvmFailure(format_violation(rule, judgement, cell, outcome.run, replay))

    def contract_failed(self, rule_id: str, exercised: bool, clause: str, cell: Features, *, nodeid: str, text: str) -> None:
        """The adapter broke `clause` on `cell` before `rule_id` could be judged: the first test to meet it fails
        with the report, every later one is skipped as not judged, naming the test that reported it."""
        self.verdicts.record(rule_id, exercised, failed=False, judged=False)
        key = (clause, cell)
        reported = self._reported.get(key)
        if reported is None:
            self._reported[key] = nodeid or rule_id
            self.verdicts.contract_failures += 1
            error = ContractFailure(text, clause, cell)
            error.spekvm_rule = rule_id  # type: ignore[attr-defined]
            raise error
        reason = f"not judged (adapter failed): CONTRACT {clause!r} broken on {cell.describe()}, reported by {reported}"
        raise pytest.skip.Exception(reason, _use_item_location=True)

    # ------------------------------------------------------------------ generated sequences

    @staticmethod
    def profile_chosen() -> bool:
        """Whether a hypothesis profile other than 'default' is loaded (--hypothesis-profile, or CI)."""
        return settings.get_current_profile_name() != "default"

    def hypothesis_settings(self) -> settings:
        """The loaded hypothesis profile, or the fast default when none was chosen."""
        if self.profile_chosen():
            return settings(settings.default, deadline=None, print_blob=True)
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
            # leaves it to the thorough profile.
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        )

    def explore(self, rule_id: str, nodeid: str = "") -> None:
        """Judge `rule_id` over hypothesis-generated features, event sequences and chooser answers."""
        if self.target.isolated:
            from .isolation import explore_isolated  # noqa: PLC0415 - only C targets fork

            explore_isolated(self, rule_id, nodeid)
        else:
            self.explore_here(rule_id, nodeid)

    def explore_here(self, rule_id: str, nodeid: str = "", replay: bool = True) -> None:
        """`explore`, in this process (`replay` False: ignore --spekvm-reproduce)."""
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
            run_state_machine_as_test(machine, settings=self.hypothesis_settings())  # type: ignore[no-untyped-call, unused-ignore]  # typed in newer hypothesis
        except _Hung as hung:
            self.contract_failed(rule_id, seen["exercised"], hung.clause, hung.cell, nodeid=nodeid, text=str(hung))
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
            exc.spekvm_rule = rule_id  # type: ignore[attr-defined]
            self.contract_failed(rule_id, seen["exercised"], exc.clause, exc.cell, nodeid=nodeid, text=_with_notes(exc))
        except BaseException as exc:
            exc.spekvm_rule = rule_id  # type: ignore[attr-defined]
            self.verdicts.record(rule_id, exercised=seen["exercised"], failed=True)
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
        self.verdicts.record(rule_id, exercised=seen["exercised"], failed=False)

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


def _with_notes(exc: BaseException) -> str:
    """The exception's message and hypothesis' notes (the falsifying steps, the blob)."""
    return "\n".join([str(exc), *getattr(exc, "__notes__", [])])


def reproduce_line(rule_id: str, blob_text: str) -> str:
    """The line that replays a generated failure anywhere (`blob_text`: hypothesis' @reproduce_failure arguments)."""
    return f"replay anywhere: add {shlex.quote(f'--spekvm-reproduce={rule_id}:{blob_text}')} to the command above"


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
                if failure.hung:
                    choices = current_build_context().data.choices
                    blob = f"{hypothesis.__version__}:{encode_failure(choices).decode()}"
                    report += f"\n{HUNG_NOTE}\n{reproduce_line(checked.id, blob)}"
                    raise _Hung(report, failure.clause, self.cell) from None
                raise ContractFailure(report, failure.clause, self.cell) from None

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

        @invariant()
        def judged(self) -> None:
            if self.run is None or self.cell is None:
                return
            judgement = checked.judge(self.run.trace, self.cell)
            self.exercised = self.exercised or judgement.exercised
            seen["exercised"] = seen["exercised"] or judgement.exercised
            if judgement.violations:
                self.failed = True
                raise SpekvmFailure(format_violation(checked, judgement, self.cell, self.run, replay))

        def teardown(self) -> None:
            if self.run is None or self.cell is None or self.failed:
                return  # a failed step has been reported; the end of the scenario adds nothing
            self.chooser.data = None
            # The end of the scenario: the chooser is no longer asked, the host drains as it would.
            self.run.set_chooser(WorstCaseChooser())
            self._guard(self.run.finish)
            self.judged()
            # Steer generation towards runs that reach the rule's precondition.
            target(float(self.exercised), label=f"{checked.id} exercised")

    SpekvmMachine.__name__ = SpekvmMachine.__qualname__ = f"Spekvm_{checked.id.replace('-', '_')}"
    return SpekvmMachine


# ----------------------------------------------------------------------------- failure text


def _first_bad(violations: Sequence[Violation]) -> Violation:
    return min(violations, key=lambda v: v.event)


def violation_body(rule: Rule, judgement: Judgement, cell: Features, run: Run) -> str:
    """The failure a person reads in ten seconds: rule, features, steps, timeline."""
    first = _first_bad(judgement.violations)
    ordered = sorted(judgement.violations, key=lambda v: v.event)
    lines = [
        f"RULE {rule.id} violated on features: {cell.describe()}",
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


def format_violation(rule: Rule, judgement: Judgement, cell: Features, run: Run, replay: str) -> str:
    """The violation's report, ending with the command that replays it."""
    return f"{violation_body(rule, judgement, cell, run)}\nreplay: {replay}"


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
