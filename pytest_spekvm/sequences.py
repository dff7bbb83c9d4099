"""Generated sequences: the hypothesis state machine that drives the host, the vcpus and the chooser
on a CPU drawn from the feature space, and judges one rule on the trace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import hypothesis
from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.core import encode_failure
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from .failure_report import (
    HUNG_NOTE,
    ContractFailure,
    Hung,
    SpekvmFailure,
    contract_finding,
    format_adapter_failure,
    format_violation,
    replay_value,
    reproduce_line,
    rule_error_body,
    rule_error_finding,
    violation_finding,
)
from .reference.chooser import WorstCaseChooser
from .reference.features import Features
from .rules import Rule, RuleError
from .scenario import AdapterFailure, Run, Step
from .space import cell_id
from .steps import Op
from .strategies import HypothesisChooser, features, guest_programs

if TYPE_CHECKING:
    from .session import SpekvmSession


def machine_for(session: SpekvmSession, checked: Rule, seen: dict[str, Any], replay: str) -> type[RuleBasedStateMachine]:
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
                self._step(data, Step(Op.ENABLE_PROFILING))
                self._step(data, Step(Op.HOST_RUN, samples=2))

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
                    report += f"\n{HUNG_NOTE}\n{reproduce_line(replay_value(checked.id, session.target.name, blob))}"
                    raise Hung(report, failure.clause, self.cell, finding) from None
                broken = ContractFailure(report, failure.clause, self.cell, finding)
                seen.setdefault("contract", broken)  # the exploration's first, should hypothesis not see it again
                raise broken from None

        def _step(self, data: Any, step: Step) -> None:
            assert self.run is not None
            self.chooser.data = data
            run = self.run
            self._guard(lambda: run.do(step))
            session.verdicts.steps += 1

        @rule(
            data=st.data(),
            action=st.sampled_from([Op.ENABLE_PROFILING, Op.DISABLE_PROFILING, Op.PAUSE_SAMPLING]),
            pmscr=st.sampled_from([0b11, 0b01, 0b10]),
        )
        def host_changes_profiling(self, data: Any, action: Op, pmscr: int) -> None:
            """One rule for the SPE driver's three moves, so repeating the rule still varies the move."""
            self._step(data, Step(action, pmscr=pmscr))

        @rule(data=st.data(), samples=st.one_of(st.integers(0, 6), st.just(300)), el0=st.booleans())
        def host_runs_code(self, data: Any, samples: int, el0: bool) -> None:
            self._step(data, Step(Op.HOST_RUN, samples=samples, el0=el0))

        @precondition(lambda self: self.run is not None and self.run.system.cpu.buffer_irq)
        @rule(data=st.data())
        def handle_buffer_irq(self, data: Any) -> None:
            self._step(data, Step(Op.HANDLE_BUFFER_IRQ))

        @rule(data=st.data(), vcpu=st.integers(0, 1), program=guest_programs())
        def enter_vcpu(self, data: Any, vcpu: int, program: Sequence[Any]) -> None:
            self._step(data, Step(Op.RUN_VCPU, vcpu=vcpu, program=tuple(program)))

        @rule(data=st.data(), samples=st.integers(1, 4), vcpu=st.integers(0, 1), program=guest_programs())
        def after_host_code_enter_vcpu(self, data: Any, samples: int, vcpu: int, program: Sequence[Any]) -> None:
            """The common case, worth a rule of its own: the host runs, then enters a guest."""
            self._step(data, Step(Op.HOST_RUN, samples=samples))
            self._step(data, Step(Op.RUN_VCPU, vcpu=vcpu, program=tuple(program)))

        def judged(self) -> None:
            """Judge the whole trace. Once, at the end: every checker is causal (a violation at an
            event depends only on the events before it), so judging after each step would find
            the same violations at a cost quadratic in the sequence's length; shrinking then drops
            the steps after the first bad one."""
            if self.run is None or self.cell is None:
                return
            try:
                judgement = checked.judge(self.run.trace, self.cell)
            except RuleError as error:
                self.failed = True
                text = f"{rule_error_body(checked, error, self.cell, self.run)}\nreplay: {replay}"
                raise SpekvmFailure(text, rule_error_finding(checked, error, self.cell, self.run, generated=True)) from None
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
