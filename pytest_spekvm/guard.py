"""The harness's side of every call into an adapter.

A time limit the adapter cannot swallow, a user's Ctrl-C told apart from an adapter's own
`KeyboardInterrupt`, and the view of the CPU an adapter is given: it acts through the CPU's
instructions, but cannot rewire the model (its trace, features, chooser), act on it from another
thread, or keep acting once its call has returned.

About 500 lines, one module on purpose: the time limit, the tracing that keeps it from being
swallowed and the view that raises it when the adapter acts past it share `_Timeout` and `Limit`,
and are read together.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

import attrs

from . import reference
from .reference.cpu import CPU, ModelError
from .reference.trace import Dsb
from .reference.vcpu import ContractError, ExitReason, Vcpu

if TYPE_CHECKING:
    from .reference.contract import WorldSwitch

REFIRE = 0.05
"""Seconds between repeated alarms once a limit has passed, until the adapter's call unwinds:
an adapter that catches every exception in a loop meets the next one outside its `try`."""

OFFERED = frozenset({"features"})
"""What an adapter may read of the CPU besides its instructions (the view's methods). Everything else is
the model's own state or machinery, for the harness and the rules: the trace they judge, the chooser,
memory, the markers and exception entries that say where a guest ran."""


# The plugin's and the model's own folders (the model is installed beside the plugin, or lives in a
# checkout's reference/): frames there are not the adapter's.
_OWN_DIRS = tuple(str(Path(file).resolve().parent) + os.sep for file in (__file__, reference.__file__ or __file__))


def _outside(frames: list[traceback.FrameSummary]) -> str:
    for frame in reversed(frames):
        if not str(Path(frame.filename).resolve()).startswith(_OWN_DIRS):
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else "?"


def adapter_frame(exc: BaseException) -> str:
    """The innermost frame of the traceback outside the plugin and the model: where the adapter went wrong."""
    return _outside(traceback.extract_tb(exc.__traceback__))


def calling_frame() -> str:
    """The innermost frame of the current stack outside the plugin and the model: the adapter's line acting now."""
    return _outside(traceback.extract_stack())


class _Timeout(BaseException):
    """Raised inside the adapter by the alarm: a BaseException so an adapter's `except Exception` cannot swallow it."""


@attrs.define
class Limit:
    """What happened to one time limit: whether it expired, and whether an enclosing timer's did first."""

    seconds: float
    expired: bool = False
    outer: bool = False  # a timer armed before ours (pytest-timeout's, say) came due first
    active: bool = True  # False once the block is over: an alarm still pending then raises nothing


_SCHEDSTAT = "/proc/thread-self/schedstat"
"""Linux: the thread's time on a CPU, its time runnable but waiting for one (ns), and its timeslices."""


def waited() -> float:
    """Seconds the calling thread has spent ready to run but waiting for a CPU that other processes held
    (Linux's schedstat); 0.0 where the system does not say, and the limit is then plain wall time."""
    try:
        fd = os.open(_SCHEDSTAT, os.O_RDONLY)  # os-level: read twice per adapter call, a file object costs 2.5x
    except OSError:
        return 0.0
    try:
        return int(os.read(fd, 128).split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0
    finally:
        os.close(fd)


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[Limit]:
    """Raise `_Timeout` in the main thread if the block runs longer than `seconds` (0: no limit), and again
    every REFIRE seconds until it ends; `Limit.expired` says so even if the block swallowed every one.

    The block's time is wall time less the time it waited, ready to run, for a CPU that other processes
    held: on a loaded machine (a shared CI runner) a call that is merely starved is not a hang, while a
    call that loops or sleeps is one as before.

    A SIGALRM timer armed before (pytest-timeout's signal method) is honoured: if it comes due first the
    block is interrupted the same way, and on the way out it is armed again with what remains of it (at
    once if its time has passed), so that its owner still sees it fire.
    """
    limit = Limit(seconds)
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield limit
        return
    outer_delay, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    if seconds <= 0 and outer_delay <= 0:
        yield limit
        return
    ours = seconds if seconds > 0 else math.inf
    theirs = outer_delay if outer_delay > 0 else math.inf
    escape: _Escape | None = None

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        nonlocal escape
        if not limit.expired:
            elapsed = time.monotonic() - started
            ran = elapsed - (waited() - waited_before)  # the time a busy machine kept the block off the CPU is not its own
            if elapsed < theirs and ran < ours:
                signal.setitimer(signal.ITIMER_REAL, max(min(ours - ran, theirs - elapsed), 1e-3), REFIRE)
                return
            limit.expired, limit.outer = True, elapsed >= theirs
        # Raised only into the adapter's own code: in the harness or the model (the adapter's next call
        # through the view raises instead) it would break the bookkeeping that reports the hang.
        if limit.active and frame is not None and _adapter_code(frame):
            if escape is None:
                escape = _Escape(limit)
            escape.watch(frame)
            raise _Timeout

    # An alarm can meet the adapter's code running where Python cannot raise: a `__del__` or a weakref
    # callback (the garbage collector runs them at whatever line allocates). Python then reports the
    # timeout as an "Exception ignored in ..." with a traceback through this module; it is the timeout's
    # own, not the adapter's, and the escape raises it again at the adapter's next line: not reported.
    unraisable = sys.unraisablehook

    def ignore_own_timeout(report: Any) -> None:
        if report.exc_type is not _Timeout:
            unraisable(report)

    started, waited_before = time.monotonic(), waited()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    sys.unraisablehook = ignore_own_timeout
    signal.setitimer(signal.ITIMER_REAL, min(ours, theirs), REFIRE)
    try:
        yield limit
    finally:
        limit.active = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)
        if sys.unraisablehook is ignore_own_timeout:
            sys.unraisablehook = unraisable
        if escape is not None:
            escape.close()
        if theirs < math.inf:
            left = theirs - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), outer_interval)


_HARNESS_CODE = (*_OWN_DIRS, contextlib.__file__)


def _adapter_code(frame: FrameType) -> bool:
    """Whether `frame` runs the adapter's code (or a library it calls), not the plugin's, the model's or a `with`'s exit."""
    return not frame.f_code.co_filename.startswith(_HARNESS_CODE)


class _Escape:
    """The line tracing that makes an expired limit unswallowable: a line of the adapter's run inside an
    `except` that caught the timeout raises it again, so `while True: try: ... except BaseException: pass`
    cannot hold it. Installed only once the limit has expired and the alarm met the adapter's code, and
    removed when the limit's block ends.

    Python has one trace function per thread, and a tracer may already hold it: coverage.py's (whose C
    tracer keeps a stack of the frames it saw called) or a debugger's. That tracer keeps seeing every
    event it would have seen: the escape passes each one on and steps back in front of it after each call
    (coverage's C tracer takes the place back at calls). Raising from a trace function makes Python drop
    the trace function, so the events of the frames that the timeout then unwinds would be lost to that
    tracer, and its stack would be wrong for the rest of the process: a profile function, which Python
    keeps, hands those events on and puts the escape back at once.
    """

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self.previous: Any = sys.gettrace()  # a trace function, or coverage.py's C tracer object
        self.profile: Any = sys.getprofile()
        self.locals: dict[FrameType, _AdapterLines] = {}  # the adapter's frames being traced
        self.closed = False

    def watch(self, frame: FrameType) -> None:
        """Trace from now on, and the adapter's frames from `frame` out to the harness's call into it."""
        if sys.gettrace() is not self:
            sys.settrace(self)
        current: FrameType | None = frame
        while current is not None and _adapter_code(current):
            local = self.locals.get(current)
            if local is None:
                local = self.locals[current] = _AdapterLines(self, current.f_trace)
            current.f_trace = local
            current = current.f_back

    def __call__(self, frame: FrameType, event: str, arg: object) -> Any:
        """The global trace function: a frame starts ('call')."""
        local = self.previous(frame, event, arg) if self.previous is not None else None
        if sys.gettrace() is not self and not self.closed:
            sys.settrace(self)
        if frame.f_back not in self.locals or not _adapter_code(frame):
            return local  # the harness's own calls (and what they call) are not the adapter's
        adapter = self.locals[frame] = _AdapterLines(self, local)
        return adapter

    def raising(self) -> None:
        """A trace function is about to raise: have the next event (the unwinding frame's return) put the tracing back."""
        if self.profile is None:
            sys.setprofile(self._resume)

    def _resume(self, frame: FrameType, event: str, arg: object) -> None:
        """Profile function for the first event after a raise: tracing back on, and the event handed to the
        tracer that missed it."""
        sys.setprofile(self.profile)
        if self.closed:
            return
        sys.settrace(self)
        if event == "call":
            local = self(frame, event, arg)
            if local is not None:
                frame.f_trace = local
        elif event == "return":
            local = frame.f_trace or self.locals.get(frame)
            if local is not None:
                local(frame, event, arg)

    def close(self) -> None:
        """The limit's block is over: the previous tracer alone again."""
        self.closed = True
        if sys.getprofile() == self._resume:
            sys.setprofile(self.profile)
        sys.settrace(self.previous)
        self.locals.clear()


class _AdapterLines:
    """The local trace function of one of the adapter's frames: passes each event on to the frame's own
    (the previous tracer's), then raises the timeout again on a line run while an `except` handles it."""

    def __init__(self, escape: _Escape, inner: Any) -> None:
        self.escape = escape
        self.inner = inner

    def __call__(self, frame: FrameType, event: str, arg: object) -> Any:
        if self.inner is not None:
            self.inner = self.inner(frame, event, arg)
        escape = self.escape
        if event == "line" and not escape.closed and isinstance(sys.exc_info()[1], _Timeout):
            escape.raising()
            raise _Timeout
        return self


@attrs.define
class Interrupts:
    """Whether the user pressed Ctrl-C (SIGINT) while the adapter ran."""

    user: bool = False


@contextlib.contextmanager
def watch_interrupts() -> Iterator[Interrupts]:
    """Note a real SIGINT during the block (and raise KeyboardInterrupt, as Python does), so that a
    KeyboardInterrupt the adapter raises itself can be told apart from the user's."""
    seen = Interrupts()
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover - the suites run in the main thread
        yield seen
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        seen.user = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


def safe_text(value: object, conversion: Callable[[object], str] = repr) -> str:
    """`repr(value)` (or another conversion), or a note saying it raised: an adapter's object must not break a report."""
    try:
        text = conversion(value)
    except BaseException as exc:
        return f"<{type(value).__name__} whose {conversion.__name__}() raised {type(exc).__name__}>"
    if conversion is repr and len(text) > 200:  # a value shown in a message; an exception's text is kept whole
        return text[:197] + "..."
    return text


def where_defined(function: object) -> str:
    """file:line of a function (the adapter's method), for blaming a value it left behind."""
    try:
        target = inspect.unwrap(cast(Callable[..., Any], function))
        file = inspect.getsourcefile(target) or "?"
        line = inspect.getsourcelines(target)[1]
    except (TypeError, OSError):
        return f"{safe_text(function)}"
    name = getattr(target, "__qualname__", "?")
    return f"{file}:{line} in {name}"


@attrs.define
class Violation:
    """A contract clause the adapter broke through the view (reported even if the adapter caught the error)."""

    clause: str
    message: str


class Guard:
    """One scenario's watch over the adapter: which call is in progress, and what the adapter did wrong."""

    def __init__(self) -> None:
        self.method = ""  # the adapter method running now ('' between calls)
        self.thread = threading.get_ident()
        self.limit: Limit | None = None
        self.violation: Violation | None = None
        self.view: CpuView | None = None
        self.thrown: list[ContractError] = []  # the errors raised at the adapter's other threads
        self.left: list[threading.Thread] = []  # the threads the last call started and left running
        self.left_by = ""  # the call that started them

    def break_clause(self, clause: str, message: str) -> ContractError:
        """Remember the first clause broken, and make the error to raise at the adapter."""
        if self.violation is None:
            self.violation = Violation(clause, f"{message} (at {calling_frame()})")
        error = ContractError(clause, message)
        if threading.get_ident() != self.thread:
            self.thrown.append(error)
        return error

    def check(self, what: str) -> None:
        """The adapter is about to act through the view: it may only do so during its own calls, from their thread."""
        if not self.method:
            msg = f"cpu.{what} was called after the adapter's call had returned (a thread, a callback or a stored closure kept acting on the CPU); the adapter acts on the CPU only during setup_vcpu() and vcpu_run()"
            raise self.break_clause("the adapter acts only during its own calls", msg)
        if threading.get_ident() != self.thread:
            msg = f"cpu.{what} was called from thread {threading.current_thread().name!r} during {self.method}(); the adapter acts on the CPU only from the thread that called it"
            raise self.break_clause("the adapter acts only from the calling thread", msg)
        if self.limit is not None and self.limit.expired:
            raise _Timeout


# Threads Python did not start (a C library's, met in a callback) can be neither joined nor waited for.
_FOREIGN: tuple[type, ...] = tuple(t for t in (getattr(threading, "_DummyThread", None),) if isinstance(t, type))


def describe_threads(threads: list[threading.Thread]) -> str:
    """"thread 'Thread-3 (late)' (running bad.py:7 in late)" for each thread, joined by 'and'."""
    texts = []
    for thread in threads:
        run = getattr(thread, "_target", None) or thread.run  # what Thread(target=...) runs, or a subclass's run()
        texts.append(f"thread {safe_text(thread.name)} (running {where_defined(run)})")
    return " and ".join(texts)


class Call:
    """One call into the adapter, as a context: the guard knows which method runs, and the call ends only
    when every thread it started has ended.

    What such a thread does to the CPU, however late, is then refused by the view (the call returned)
    and judged with the step that made the call, not by chance in whichever scenario runs when it acts;
    the error it dies of is the clause it broke, reported with its line, not printed again by Python or
    pytest as an unhandled thread exception. A thread that outlives the step's time limit is the call's
    failure (`guard.left` names it). The threads are waited for even if the call raised: hypothesis ends
    a test case by raising through the model, and the case after it must not meet this one's threads.
    A class rather than a generator, and the threads compared as lists: it wraps every adapter call.
    """

    __slots__ = ("before", "guard", "hook", "method", "outer")

    def __init__(self, guard: Guard, method: str) -> None:
        self.guard = guard
        self.method = method
        self.outer = ""
        self.before: list[threading.Thread] = []
        self.hook = threading.excepthook

    def quiet(self, args: threading.ExceptHookArgs) -> None:
        """`threading.excepthook` during the call: the errors the view raised at other threads are reported by their clause."""
        if not any(args.exc_value is error for error in self.guard.thrown):
            self.hook(args)

    def __enter__(self) -> None:
        guard = self.guard
        self.outer, guard.method = guard.method, self.method
        self.hook, threading.excepthook = threading.excepthook, self.quiet
        self.before = threading.enumerate()

    def __exit__(self, *exc: object) -> None:
        guard = self.guard
        guard.method = self.outer
        try:
            after, before = threading.enumerate(), self.before
            if after != before:
                left = [t for t in after if t not in before and t.is_alive() and not isinstance(t, _FOREIGN)]
                if exc[0] is None:  # the call returned: a thread outliving the limit is its failure
                    guard.left, guard.left_by = left, self.method
                for thread in left:
                    thread.join()  # under the step's time limit: its alarm ends a wait that would not end
                guard.left = []
        finally:
            threading.excepthook = self.hook


class CpuView:
    """What an adapter is given as `cpu`: the model's CPU, through its instructions only."""

    __slots__ = ("_cpu", "_guard")
    _cpu: CPU
    _guard: Guard

    def __init__(self, cpu: CPU, guard: Guard) -> None:
        object.__setattr__(self, "_cpu", cpu)
        object.__setattr__(self, "_guard", guard)

    def mrs(self, name: Any) -> int:
        """MRS: read a system register."""
        self._guard.check("mrs")
        return self._cpu.mrs(name)

    def msr(self, name: Any, value: int) -> None:
        """MSR: write a system register; the value must be one (None is not a read)."""
        self._guard.check("msr")
        if value is None:
            msg = f"Cannot write None to {safe_text(name, str)} because a system register value is an int (cpu.mrs(name) reads one)"
            raise ModelError(msg)
        self._cpu.msr(name, value)

    def isb(self) -> None:
        """ISB."""
        self._guard.check("isb")
        self._cpu.isb()

    def dsb(self, domain: str | Dsb = Dsb.SY) -> None:
        """DSB over `domain`."""
        self._guard.check("dsb")
        self._cpu.dsb(domain)

    def psb_csync(self) -> None:
        """PSB CSYNC."""
        self._guard.check("psb_csync")
        self._cpu.psb_csync()

    def hint(self, imm: int) -> None:
        """HINT #imm."""
        self._guard.check("hint")
        self._cpu.hint(imm)

    def run_guest(self, vcpu: Vcpu) -> ExitReason:
        """ERET into the guest and take its exit back: vcpu_run's job, never setup_vcpu's."""
        guard = self._guard
        guard.check("run_guest")
        if guard.method == "setup_vcpu":
            msg = "setup_vcpu() called cpu.run_guest(vcpu): setup_vcpu is kvm_arm_setup_debug, run in the host before the run; only vcpu_run enters the guest"
            raise guard.break_clause("setup_vcpu() does not enter the guest", msg)
        return self._cpu.run_guest(vcpu)

    def __getattr__(self, name: str) -> Any:
        guard = self._guard
        guard.check(name)
        if name not in OFFERED:
            msg = f"{guard.method}() read cpu.{name}, which is the model's own state or machinery (the trace the rules judge, the chooser, memory, trace markers, exception entry and return); an adapter acts through the CPU's instructions (cpu.mrs, cpu.msr, cpu.isb, cpu.dsb, cpu.psb_csync, cpu.hint, cpu.run_guest) and reads cpu.features"
            raise guard.break_clause("the adapter leaves the model's state alone", msg)
        return getattr(self._cpu, name)

    def __setattr__(self, name: str, value: object) -> None:
        guard = self._guard
        msg = f"{guard.method or 'the adapter'}() assigned cpu.{name} = {safe_text(value)}; an adapter changes the CPU only through its instructions (cpu.msr, cpu.isb, ...), never the model's attributes"
        raise guard.break_clause("the adapter leaves the model's state alone", msg)

    def __delattr__(self, name: str) -> None:
        self.__setattr__(name, None)

    def __repr__(self) -> str:
        return f"<CPU {self._cpu.features.describe()}>"


class GuardedSwitch:
    """The adapter, as the model calls it: through a `CpuView`, with the results checked where they are made."""

    def __init__(self, adapter: WorldSwitch, guard: Guard) -> None:
        self.adapter = adapter
        self.guard = guard

    def _view(self, cpu: CPU) -> CPU:
        guard = self.guard
        if guard.view is None:
            guard.view = CpuView(cpu, guard)
        return cast(CPU, guard.view)

    def setup_vcpu(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """The adapter's setup_vcpu; the MDCR_EL2 and the save areas it leaves are checked here, so the blame stays with it."""
        with Call(self.guard, "setup_vcpu"):
            adapter: Any = self.adapter  # its setup_vcpu is declared to return None, which is what is checked
            result: object = adapter.setup_vcpu(self._view(cpu), vcpu, host_mdcr_el2)
        _refuse_awaitable(self.adapter.setup_vcpu, "setup_vcpu", result)
        value: object = vcpu.mdcr_el2
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
            msg = f"setup_vcpu() set vcpu.mdcr_el2 to {safe_text(value)}; expected an int from 0 to 2**64-1 (the MDCR_EL2 value the guest runs with) (setup_vcpu at {where_defined(self.adapter.setup_vcpu)})"
            raise ContractError("setup_vcpu() sets vcpu.mdcr_el2 to a 64-bit value", msg)
        _check_save_areas(vcpu, "setup_vcpu", self.adapter.setup_vcpu)

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> ExitReason | None:
        """The adapter's vcpu_run; the save areas it leaves are checked here, before the model reads the guest's."""
        with Call(self.guard, "vcpu_run"):
            result: object = self.adapter.vcpu_run(self._view(cpu), vcpu)
        _refuse_awaitable(self.adapter.vcpu_run, "vcpu_run", result)
        _check_save_areas(vcpu, "vcpu_run", self.adapter.vcpu_run)
        return cast("ExitReason | None", result)


_SAVE_AREAS = tuple(f.name for f in attrs.fields(Vcpu) if f.default == attrs.Factory(dict))
"""The vcpu's save areas, the dicts its fields default to (`Vcpu` says what each holds): the adapter fills
them, and never replaces one with something else."""


def _check_save_areas(vcpu: Vcpu, name: str, method: object) -> None:
    """Each save area of `vcpu` is still a dict after the adapter's `name`() (the model and the reference's
    steps index them): one it replaced is blamed on it, not on the line of the model that meets it."""
    for area in _SAVE_AREAS:
        value: object = getattr(vcpu, area)
        if not isinstance(value, dict):
            msg = f"{name}() set vcpu.{area} to {safe_text(value)}; expected a dict, register name -> value ({name} at {where_defined(method)})"
            raise ContractError(f"{name}() leaves vcpu.{area} a dict", msg)


def _refuse_awaitable(method: object, name: str, result: object) -> None:
    """An `async def` method (or a generator) returns without having run: the contract is synchronous."""
    if inspect.isawaitable(result) or inspect.isgenerator(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # no "coroutine was never awaited" warning on top of the report
        msg = f"{name}() returned {safe_text(result)} without running: it is an `async def` or a generator ({where_defined(method)}); the adapter's methods are plain functions that do their work before returning"
        raise ContractError(f"{name}() is a plain function", msg)
