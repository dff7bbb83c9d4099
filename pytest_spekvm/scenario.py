"""Scenarios: the host's and guests' steps, run against an adapter on the model, with a time limit."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .guard import (
    Guard,
    GuardedSwitch,
    Interrupts,
    Limit,
    _Timeout,
    adapter_frame,
    describe_threads,
    safe_text,
    time_limit,
    watch_interrupts,
)
from .reference.chooser import Chooser, Moment
from .reference.cpu import ModelError
from .reference.features import Features
from .reference.registers import UnknownRegisterError
from .reference.system import System
from .reference.vcpu import ContractError, GuestAccess, GuestAction, GuestCode, GuestExit
from .steps import Op
from .timeouts import DEFAULT_TIMEOUT

if TYPE_CHECKING:
    from .target import Target


@attrs.frozen
class Step:
    """One step of a scenario: a method of `System` and its arguments."""

    op: Op = attrs.field(converter=Op)  # a method of System (a string naming one is converted)
    vcpu: int = 0
    samples: int = 0
    el0: bool = False
    program: tuple[GuestAction, ...] = ()
    pmscr: int = 0b11  # enable_profiling: PMSCR E0SPE [0] / E1SPE [1] (E0HSPE / E2SPE under VHE)

    def describe(self) -> str:
        """The step as a person reads it."""
        if self.op is Op.HOST_RUN:
            return f"host runs {'user' if self.el0 else 'kernel'} code ({self.samples} samples)"
        if self.op is Op.SETUP_VCPU:
            return f"host sets up vcpu {self.vcpu}"
        if self.op is Op.RUN_VCPU:
            return f"run vcpu {self.vcpu}: guest {', '.join(_describe_action(a) for a in self.program) or 'exits at once'}"
        return {
            Op.ENABLE_PROFILING: f"host enables profiling (buffer, then PMSCR {_PMSCR_BITS[self.pmscr & 0b11]})",
            Op.DISABLE_PROFILING: "host disables profiling (drain, buffer off)",
            Op.PAUSE_SAMPLING: "host pauses sampling (PMSCR=0, buffer left enabled)",
            Op.HANDLE_BUFFER_IRQ: "host handles the buffer interrupt",
        }[self.op]


_PMSCR_BITS = {0b00: "0", 0b01: "E0SPE", 0b10: "E1SPE", 0b11: "E0SPE|E1SPE"}


def _describe_action(action: GuestAction) -> str:
    if isinstance(action, GuestCode):
        return f"runs code ({action.samples} samples)"
    if isinstance(action, GuestAccess):
        if action.write:
            return f"writes {action.register} <- {action.value:#x}"
        return f"reads {action.register}"
    return f"exits ({action.reason})"


# The scripted scenario every cell runs: it reaches every rule's precondition on a CPU with SPE.
SCRIPT: tuple[Step, ...] = (
    Step(Op.RUN_VCPU, vcpu=0, program=(GuestCode(1),)),
    Step(Op.ENABLE_PROFILING),
    Step(Op.HOST_RUN, samples=3),
    Step(Op.RUN_VCPU, vcpu=0, program=(GuestCode(2), GuestAccess("PMSCR_EL1"))),
    Step(Op.HOST_RUN, samples=2),  # the host kernel sampled straight after a return
    Step(Op.HOST_RUN, samples=2, el0=True),
    # PMBIDR_EL1 first: its read completes unless the switch asked HDFGRTR_EL2 to trap it (FEAT_FGT).
    Step(Op.RUN_VCPU, vcpu=1, program=(GuestAccess("PMBIDR_EL1"), GuestAccess("PMBPTR_EL1"))),
    Step(Op.RUN_VCPU, vcpu=1, program=(GuestAccess("PMSIRR_EL1", write=True, value=0x100),)),
    Step(Op.PAUSE_SAMPLING),
    Step(Op.RUN_VCPU, vcpu=0, program=(GuestCode(1), GuestExit("hvc"))),
    Step(Op.ENABLE_PROFILING),
    Step(Op.HOST_RUN, samples=80),  # more than the buffer holds: it fills, inside the next entry
    Step(Op.HANDLE_BUFFER_IRQ),
    Step(Op.HOST_RUN, samples=2),
    Step(Op.RUN_VCPU, vcpu=1, program=(GuestCode(1),)),
    Step(Op.DISABLE_PROFILING),
    # vcpu 1's last entry saved the host's live PMSCR: a save area that is not cleared when the
    # buffer is off would now hand it back to a host that turned profiling off.
    Step(Op.RUN_VCPU, vcpu=1, program=(GuestAccess("PMBLIMITR_EL1"),)),
    Step(Op.ENABLE_PROFILING),
    Step(Op.HOST_RUN, samples=1),
    Step(Op.RUN_VCPU, vcpu=0, program=(GuestCode(1),)),
)


_listener: Callable[[bytes, bytes], None] | None = None


def set_listener(listener: Callable[[bytes, bytes], None] | None) -> None:
    """Have every scenario report its start (b"B", the pickled features) and each step (b"S", its description),
    as they happen: a forked child's parent then knows how far it got if it crashes."""
    global _listener  # noqa: PLW0603 - one listener per process, set once in a forked child
    _listener = listener


class AdapterFailure(Exception):
    """The implementation under test broke a contract clause while a scenario ran."""

    def __init__(self, clause: str, message: str, step: int, hung: bool = False) -> None:
        super().__init__(message)
        self.clause = clause
        self.step = step
        self.hung = hung  # the call ran out of --spekvm-timeout

    def __reduce__(self) -> tuple[type[AdapterFailure], tuple[str, str, int, bool]]:
        return AdapterFailure, (self.clause, str(self.args[0]), self.step, self.hung)


_OUTCOMES = {
    "Skipped": "pytest.skip() in an adapter cannot skip a cell: declare feature_space for the CPUs it does not support",
    "Failed": "pytest.fail() in an adapter is the adapter failing, not a rule",
    "Exit": "pytest.exit() in an adapter cannot end the run",
    "XFailed": "pytest.xfail() in an adapter cannot mark a cell",
    "KeyboardInterrupt": "raised by the adapter's own code, not a Ctrl-C from the user",
    "SystemExit": "sys.exit() in an adapter is its failure, not the end of the run",
}


def describe_exception(exc: BaseException) -> str:
    """'Type: message (what it means here)', whatever the exception's __str__ does."""
    name = type(exc).__name__
    text = f"{name}: {safe_text(exc, str)}"
    note = _OUTCOMES.get(name)
    return f"{text} ({note})" if note else text


class WatchedChooser:
    """The chooser, as the model asks it: an exception it raises (hypothesis ending a test case) is kept,
    so the harness raises it again after the adapter's call even if the adapter caught it."""

    def __init__(self, chooser: Chooser) -> None:
        self.chooser = chooser
        self.raised: BaseException | None = None

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """The chooser's answer."""
        try:
            return self.chooser.write_visible(register, old, new)
        except BaseException as exc:
            self.raised = exc
            raise

    def records_to_write(self, pending: int, moment: Moment, detail: str) -> int:
        """The chooser's answer."""
        try:
            return self.chooser.records_to_write(pending, moment, detail)
        except BaseException as exc:
            self.raised = exc
            raise

    def reserved_as(self, register: str, field: str, allowed: tuple[int, ...]) -> int:
        """The chooser's answer."""
        try:
            return self.chooser.reserved_as(register, field, allowed)
        except BaseException as exc:
            self.raised = exc
            raise


@attrs.define
class Run:
    """A scenario in progress: the system, the steps done so far, and what went wrong."""

    system: System
    steps: list[Step] = attrs.field(factory=list)
    timeout: float = DEFAULT_TIMEOUT
    guard: Guard = attrs.field(factory=Guard, repr=False)
    chooser: Any = attrs.field(default=None, repr=False)  # the WatchedChooser the model was given
    # The trace the model started with: the one the rules judge, whatever the adapter does. Not in
    # the repr: pytest shows the locals of a failing test's frames, and a trace is long.
    trace: Any = attrs.field(default=None, repr=False)
    _features: Any = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.trace is None:
            self.trace = self.system.cpu.trace
        if self.chooser is None:
            self.chooser = self.system.cpu.chooser
        self._features = self.system.cpu.features

    @classmethod
    def start(cls, target: Target, features: Features, chooser: Chooser, timeout: float = DEFAULT_TIMEOUT) -> Run:
        """Boot a system with a fresh adapter from `target`."""
        error: BaseException | None = None
        limit, seen = Limit(timeout), Interrupts()
        adapter: Any = None
        try:
            with watch_interrupts() as seen, time_limit(timeout) as limit:
                adapter = target.make()
        except BaseException as exc:
            error = exc
        if seen.user:
            raise KeyboardInterrupt
        if limit.expired:
            msg = f"making a fresh adapter took more than {timeout:g}s (--spekvm-timeout)"
            raise AdapterFailure("spekvm_adapter() returns promptly", msg, 0, hung=True) from None
        if error is not None:
            msg = f"spekvm_adapter() raised {describe_exception(error)} at {adapter_frame(error)}"
            raise AdapterFailure("spekvm_adapter() returns an adapter", msg, 0) from error
        if _listener is not None:
            _listener(b"B", pickle.dumps(features))
        guard = Guard()
        watched = WatchedChooser(chooser)
        system = System(features, GuardedSwitch(adapter, guard), watched, choices=target.choices)
        return cls(system, timeout=timeout, guard=guard, chooser=watched)

    def set_chooser(self, chooser: Chooser) -> None:
        """The harness hands the model another chooser (the end of a generated scenario)."""
        self.chooser = self.system.cpu.chooser = WatchedChooser(chooser)

    def do(self, step: Step) -> None:
        """Perform one step, turning the adapter's misbehaviour into `AdapterFailure`."""
        if _listener is not None:
            _listener(b"S", step.describe().encode())
        self.steps.append(step)
        system = self.system
        index = len(self.steps)
        if step.op not in (Op.SETUP_VCPU, Op.RUN_VCPU):
            if step.op is Op.HOST_RUN:
                system.host_run(step.samples, step.el0)
            elif step.op is Op.ENABLE_PROFILING:
                system.enable_profiling(step.pmscr)
            else:
                getattr(system, step.op.value)()
            return
        self._check_state(index)
        method = "setup_vcpu"
        error: BaseException | None = None
        limit, seen = Limit(self.timeout), Interrupts()
        try:
            with watch_interrupts() as seen, time_limit(self.timeout) as limit:
                self.guard.limit = limit
                system.setup_vcpu(step.vcpu)  # KVM's run loop calls kvm_arm_setup_debug before every entry
                if step.op is Op.RUN_VCPU:
                    method = "vcpu_run"
                    system.run_vcpu(step.vcpu, step.program)
        except BaseException as exc:
            error = exc
        finally:
            self.guard.limit = None
        self._settle(method, index, error, seen, limit)

    def _settle(self, method: str, index: int, error: BaseException | None, seen: Interrupts, limit: Limit) -> None:
        """After a call into the adapter: the user's Ctrl-C, hypothesis' own exceptions, then the adapter's faults."""
        if seen.user:
            raise KeyboardInterrupt
        raised, self.chooser.raised = self.chooser.raised, None
        if raised is not None:
            raise raised  # hypothesis ending the test case (overrun, ...): not the adapter's doing
        left = [thread for thread in self.guard.left if thread.is_alive()]
        if limit.expired and left:
            by, violation = self.guard.left_by, self.guard.violation
            msg = f"{by}() returned, leaving running {describe_threads(left)} that it started, still running when the time limit of {self.timeout:g}s (--spekvm-timeout) expired; the adapter acts on the CPU only during its own calls, and they leave no thread of theirs running"
            if not all(thread.daemon for thread in left):  # Python waits for such a thread before the process ends
                msg += " (a thread that is not a daemon keeps pytest from exiting until it ends)"
            if violation is not None:  # what the thread did to the CPU comes first
                raise AdapterFailure(violation.clause, f"{violation.message}; and {msg}", index, hung=True)
            raise AdapterFailure(f"{by}() leaves no thread running", msg, index, hung=True)
        if limit.expired:
            if limit.outer:
                msg = f"{method}() was stopped when a time limit set around the test (a SIGALRM timer such as pytest-timeout's) expired"
            else:
                msg = f"{method}() did not return within {self.timeout:g}s (--spekvm-timeout); it may loop forever"
            if not isinstance(error, _Timeout):
                msg += " (it went on past the limit)"
            raise AdapterFailure(f"{method}() returns", msg, index, hung=True) from None
        self._check_state(index)
        if error is None:
            return
        if isinstance(error, ContractError):
            raise AdapterFailure(error.clause, str(error.args[0]), index) from error
        if isinstance(error, (ModelError, UnknownRegisterError)):
            msg = f"{method}() asked the model for something that cannot exist: {safe_text(error, str)} (at {adapter_frame(error)})"
            raise AdapterFailure(f"{method}() uses only what the CPU model offers", msg, index) from error
        msg = f"{method}() raised {describe_exception(error)} at {adapter_frame(error)}"
        raise AdapterFailure(f"{method}() returns normally", msg, index) from error

    def _check_state(self, index: int) -> None:
        """A clause the adapter broke through its view of the CPU (even if it caught the error), or the model rewired."""
        violation = self.guard.violation
        if violation is not None:
            raise AdapterFailure(violation.clause, violation.message, index)
        cpu = self.system.cpu
        for name, expected in (("trace", self.trace), ("chooser", self.chooser), ("features", self._features)):
            found = getattr(cpu, name)
            if found is not expected:
                msg = f"the model's cpu.{name} was replaced by {safe_text(found)}; the rules judge the model's own record, which an adapter cannot replace"
                raise AdapterFailure("the adapter leaves the model's state alone", msg, index)

    def finish(self) -> None:
        """The host finishes (drains and stops profiling); anything the adapter did after its last call is reported."""
        self.system.finish()
        self._check_state(len(self.steps))

    def do_all(self, steps: Sequence[Step]) -> None:
        """Perform `steps` in order, then let the host finish (drain and stop profiling)."""
        for step in steps:
            self.do(step)
        self.finish()

    def describe_steps(self) -> str:
        """The steps so far, numbered, for a failure message."""
        return "\n".join(f"  {i}. {s.describe()}" for i, s in enumerate(self.steps, 1))
