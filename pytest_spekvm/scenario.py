"""Scenarios: the host's and guests' steps, run against an adapter on the model, with a time limit."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import attrs

from . import reference
from .reference.chooser import Chooser
from .reference.cpu import ModelError
from .reference.features import Features
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


class AdapterFailure(Exception):
    """The implementation under test broke a contract clause while a scenario ran."""

    def __init__(self, clause: str, message: str, step: int, hung: bool = False) -> None:
        super().__init__(message)
        self.clause = clause
        self.step = step
        self.hung = hung  # the call ran out of --spekvm-timeout


class _Timeout(BaseException):
    """Raised inside the adapter by the alarm: a BaseException so an adapter's `except Exception` cannot swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `_Timeout` in the main thread if the block runs longer than `seconds` (0: no limit)."""
    usable = seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# The plugin's and the model's own folders (the model is installed beside the plugin, or lives in a
# checkout's reference/): frames there are not the adapter's.
_OWN_DIRS = tuple(str(Path(file).resolve().parent) + os.sep for file in (__file__, reference.__file__ or __file__))


def _adapter_frame(exc: BaseException) -> str:
    """The innermost frame of the traceback outside the plugin and the model: where the adapter went wrong."""
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if not str(Path(frame.filename).resolve()).startswith(_OWN_DIRS):
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else "?"


def _bad_mdcr(system: System, index: int) -> str | None:
    """Why the MDCR_EL2 that setup_vcpu left in vcpu `index` is not a register value, or None if it is one."""
    value: object = system.vcpus[index].mdcr_el2
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 64:
        return None
    return f"setup_vcpu() set vcpu.mdcr_el2 to {value!r}; expected an int from 0 to 2**64-1 (the MDCR_EL2 value the guest runs with)"


@attrs.define
class Run:
    """A scenario in progress: the system, the steps done so far, and what went wrong."""

    system: System
    steps: list[Step] = attrs.field(factory=list)
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def start(cls, target: Target, features: Features, chooser: Chooser, timeout: float = DEFAULT_TIMEOUT) -> Run:
        """Boot a system with a fresh adapter from `target`."""
        try:
            with time_limit(timeout):
                adapter = target.make()
        except _Timeout:
            msg = f"making a fresh adapter took more than {timeout:g}s (--spekvm-timeout)"
            raise AdapterFailure("spekvm_adapter() returns promptly", msg, 0, hung=True) from None
        except (Exception, SystemExit) as exc:  # sys.exit() in an adapter is its failure, not pytest's
            msg = f"spekvm_adapter() raised {type(exc).__name__}: {exc} at {_adapter_frame(exc)}"
            raise AdapterFailure("spekvm_adapter() returns an adapter", msg, 0) from exc
        return cls(System(features, adapter, chooser, choices=target.choices), timeout=timeout)

    def do(self, step: Step) -> None:
        """Perform one step, turning the adapter's misbehaviour into `AdapterFailure`."""
        self.steps.append(step)
        system = self.system
        index = len(self.steps)
        if step.op not in ("setup_vcpu", "run_vcpu"):
            if step.op == "host_run":
                system.host_run(step.samples, step.el0)
            elif step.op == "enable_profiling":
                system.enable_profiling(step.pmscr)
            else:
                getattr(system, step.op)()
            return
        method = "setup_vcpu" if step.op == "setup_vcpu" else "vcpu_run"
        try:
            with time_limit(self.timeout):
                if step.op == "setup_vcpu":
                    system.setup_vcpu(step.vcpu)
                else:
                    # KVM's run loop calls kvm_arm_setup_debug before every entry.
                    method = "setup_vcpu"
                    system.setup_vcpu(step.vcpu)
                    method = "vcpu_run"
                    system.run_vcpu(step.vcpu, step.program)
        except _Timeout:
            msg = f"{method}() did not return within {self.timeout:g}s (--spekvm-timeout); it may loop forever"
            raise AdapterFailure(f"{method}() returns", msg, index, hung=True) from None
        except ContractError as exc:
            raise AdapterFailure(exc.clause, str(exc.args[0]), index) from exc
        except ModelError as exc:
            msg = f"{method}() asked the model for something that cannot exist: {exc} (at {_adapter_frame(exc)})"
            raise AdapterFailure(f"{method}() uses only what the CPU model offers", msg, index) from exc
        except (Exception, SystemExit) as exc:
            bad = _bad_mdcr(system, step.vcpu) if method == "setup_vcpu" else None
            if bad is not None:
                # The model failed on the value, not the adapter's code: name the value, not a model frame.
                raise AdapterFailure("setup_vcpu() sets vcpu.mdcr_el2 to a 64-bit value", bad, index) from exc
            msg = f"{method}() raised {type(exc).__name__}: {exc} at {_adapter_frame(exc)}"
            raise AdapterFailure(f"{method}() returns normally", msg, index) from exc

    def do_all(self, steps: Sequence[Step]) -> None:
        """Perform `steps` in order, then let the host finish (drain and stop profiling)."""
        for step in steps:
            self.do(step)
        self.system.finish()

    def describe_steps(self) -> str:
        """The steps so far, numbered, for a failure message."""
        return "\n".join(f"  {i}. {s.describe()}" for i, s in enumerate(self.steps, 1))
