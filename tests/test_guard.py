"""The guard around the adapter's calls, driven directly: the view of the CPU, the time limit that cannot
be swallowed (and does not count a starved call's wait), the user's Ctrl-C, and the escape tracing chained
to a tracer already installed."""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType, SimpleNamespace
from typing import Any

import pytest
from plugin_harness import TWO_CELLS

from pytest_spekvm import guard
from pytest_spekvm.guard import Call, CpuView, Guard, time_limit, watch_interrupts
from pytest_spekvm.options import TARGET_OPTION
from pytest_spekvm.reference.chooser import WorstCaseChooser
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.features import Features, SpeLevel
from pytest_spekvm.reference.vcpu import ContractError

# ------------------------------------------------------------------- the guard, directly


def _view() -> tuple[Guard, CpuView]:
    guard = Guard()
    return guard, CpuView(CPU(Features(vhe=False, spe=SpeLevel.SPE), WorstCaseChooser()), guard)


def test_late_call_is_a_contract_failure_even_if_caught() -> None:
    """A call through the view after the adapter's call returned raises, and is remembered for the report."""
    guard, view = _view()
    with pytest.raises(ContractError, match="after the adapter's call had returned"):
        view.isb()
    assert guard.violation is not None
    assert "the adapter acts only during its own calls" == guard.violation.clause


def test_view_forwards_instructions_during_a_call() -> None:
    """During a call the view acts on the model: the instructions land in the trace."""
    guard, view = _view()
    guard.method = "vcpu_run"
    view.msr("PMSCR_EL1", 0)
    view.isb()
    view.dsb("nsh")
    view.psb_csync()
    view.hint(17)
    assert 0 == view.mrs("PMSCR_EL1")
    assert view.features.vhe is False
    assert "<CPU nVHE" in repr(view)
    assert guard.violation is None
    with pytest.raises(ContractError):
        del view.el


def test_a_call_waits_for_the_calls_threads_and_keeps_only_their_breaches_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call's threads are waited for; the breach one dies of reaches no thread excepthook, its own errors do."""
    guard, view = _view()
    seen: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))

    def late() -> None:
        while guard.method:  # acts once the call has returned, however slowly the machine runs it
            time.sleep(0.001)
        view.isb()

    def own() -> None:
        raise ValueError("the adapter's own")

    with Call(guard, "vcpu_run"):
        threading.Thread(target=late).start()
        threading.Thread(target=own).start()
    assert [] == guard.left
    assert guard.violation is not None
    assert "after the adapter's call had returned" in guard.violation.message
    assert ["the adapter's own"] == [str(e) for e in seen]


def test_a_call_leaves_threads_python_did_not_start_alone() -> None:
    """A thread Python did not start (seen as a dummy thread) cannot be joined, and is not waited for."""
    guard, seen, done = Guard(), threading.Event(), threading.Event()

    def foreign() -> None:
        threading.current_thread()  # registers a dummy thread, as a C library's thread calling back would
        seen.set()
        done.wait(5)

    with Call(guard, "setup_vcpu"):
        _thread.start_new_thread(foreign, ())
        seen.wait(5)
    done.set()
    assert [] == guard.left


def test_describe_threads_names_what_each_runs() -> None:
    """A thread is named with the function it runs: its target, or a subclass's run()."""

    class Worker(threading.Thread):
        def run(self) -> None:
            pass

    text = guard.describe_threads([threading.Thread(target=time.sleep, name="t1"), Worker(name="t2")])
    assert text.startswith("thread 't1' (running <built-in function sleep>) and thread 't2' (running ")
    assert "test_guard.py:" in text
    assert "in test_describe_threads_names_what_each_runs.<locals>.Worker.run)" in text


def test_real_ctrl_c_is_the_users() -> None:
    """A SIGINT during the adapter's call is noted as the user's, and raises KeyboardInterrupt as Python does."""
    with pytest.raises(KeyboardInterrupt), watch_interrupts() as seen:
        signal.raise_signal(signal.SIGINT)
    assert seen.user


def test_outer_alarm_is_rearmed() -> None:
    """A SIGALRM timer armed before a time limit is armed again, with what remains of it, when the limit ends."""
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1000)
        with time_limit(5) as limit:
            pass
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert not limit.expired
        assert 0 < remaining <= 1000
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_time_starved_by_other_processes_is_not_the_blocks_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block that waited for the CPU all along (as schedstat would say on a loaded machine) does not use up its limit."""
    monkeypatch.setattr(guard, "waited", time.monotonic)
    with time_limit(0.05) as limit:
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            pass
    assert not limit.expired


def test_alarms_once_the_block_is_over_raise_nothing() -> None:
    """Alarms that come due once the block is marked over mark the limit expired, and raise nothing however often they fire again."""
    with time_limit(0.02) as limit:
        limit.active = False  # as at the block's end: an alarm still pending then must not raise
        end = time.monotonic() + 30
        while not limit.expired and time.monotonic() < end:
            pass
        again = time.monotonic() + 4 * guard.REFIRE  # the alarms that fire every REFIRE after the limit passed
        while time.monotonic() < again:
            pass
    assert limit.expired
    assert not limit.outer


def test_timeout_met_in_a_finalizer_is_not_reported_as_unraisable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Within a limit, Python's report of the timeout swallowed where it cannot raise (a `__del__`) is dropped, any other goes on."""
    seen: list[type[BaseException]] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda report: seen.append(report.exc_type))
    with time_limit(5):
        for raised in (guard._Timeout, KeyError):
            sys.unraisablehook(SimpleNamespace(exc_type=raised))
    sys.unraisablehook(SimpleNamespace(exc_type=guard._Timeout))
    assert [KeyError, guard._Timeout] == seen


def test_waited_reads_schedstat_or_says_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The time a thread waited for a CPU comes from Linux's schedstat; where there is none, or it reads
    as something else, it is 0 (plain wall time)."""
    assert guard.waited() >= 0.0
    monkeypatch.setattr(guard, "_SCHEDSTAT", "/nonexistent/schedstat")
    assert 0.0 == guard.waited()
    (tmp_path / "schedstat").write_text("12 34 5\n")
    monkeypatch.setattr(guard, "_SCHEDSTAT", str(tmp_path / "schedstat"))
    assert 34e-9 == guard.waited()
    (tmp_path / "schedstat").write_text("garbage\n")
    assert 0.0 == guard.waited()


PYTEST_TIMEOUT = """
import time


def test_spekvm_then_sleep(spekvm, spekvm_cell, request):
    spekvm.check_cell("RES0", spekvm_cell, request.node.nodeid)
    time.sleep(30)
"""


@pytest.mark.skipif(os.name != "posix", reason="pytest-timeout's signal method needs SIGALRM")
def test_pytest_timeout_still_fires_after_a_spekvm_run(spekvm_pytester: pytest.Pytester) -> None:
    """pytest-timeout's alarm (signal method) armed around a test still fires after the test ran a spekvm check."""
    spekvm_pytester.makeconftest(TWO_CELLS)
    spekvm_pytester.makepyfile(test_own=PYTEST_TIMEOUT)
    result = spekvm_pytester.runpytest(
        f"{TARGET_OPTION}=reference", "test_own.py", "-k", "nvhe", "--timeout=2", "--timeout-method=signal",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Failed: Timeout*"])


# ------------------------------------------------- the escape tracing, chained to a previous tracer


class FakeSys:
    """The trace and profile slots of `sys`, as the escape tracing sees them, without tracing this process."""

    def __init__(self, trace: Any = None) -> None:
        self.trace, self.profile = trace, None
        self.exc_info = sys.exc_info

    def gettrace(self) -> Any:
        return self.trace

    def settrace(self, function: Any) -> None:
        self.trace = function

    def getprofile(self) -> Any:
        return self.profile

    def setprofile(self, function: Any) -> None:
        self.profile = function


class Recorder:
    """A previous tracer (coverage.py's, say) that notes each event and, like coverage's C tracer, takes the trace slot back at a call."""

    def __init__(self, fake: FakeSys) -> None:
        self.fake, self.events = fake, list[tuple[str, str]]()

    def __call__(self, frame: FrameType, event: str, arg: object) -> Any:
        self.events.append((frame.f_code.co_name, event))
        if event == "call":
            self.fake.settrace(self)
        return self


def through_harness(callback: Any) -> Any:
    """Call `callback` from a function whose code lives in the plugin's folder: the harness, to the escape."""
    namespace: dict[str, Any] = {}
    exec(compile("def harness(callback):\n    return callback()\n", guard.__file__, "exec"), namespace)
    return namespace["harness"](callback)


def test_escape_chains_to_the_previous_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The escape hands each event to the tracer it found, steps back in front of it after a call, traces the
    adapter's frames only, and after raising puts itself back at the next event, handing that event on."""
    fake = FakeSys()
    previous = fake.trace = Recorder(fake)
    monkeypatch.setattr(guard, "sys", fake)
    escape = guard._Escape(guard.Limit(1))
    found: dict[str, Any] = {}

    def own() -> Any:
        return escape(sys._getframe(), "call", None)

    def work() -> None:
        here = sys._getframe()
        here.f_trace = previous  # as coverage's C tracer leaves it on the frames it traces
        escape.watch(here)
        found["watched"] = here.f_trace
        found["own"] = own()  # the adapter calls a function of its own: traced for the escape
        found["harness"] = through_harness(lambda: escape(sys._getframe(1), "call", None))  # the harness's: not
        try:
            raise guard._Timeout
        except guard._Timeout:
            with pytest.raises(guard._Timeout):
                here.f_trace(here, "line", None)  # a line run while the adapter handles the timeout
        fake.trace = None  # as Python does when a trace function raises
        fake.profile(here, "return", None)

    through_harness(work)
    assert isinstance(found["watched"], guard._AdapterLines)
    assert isinstance(found["own"], guard._AdapterLines)
    assert previous is found["harness"]
    assert [("own", "call"), ("harness", "call"), ("work", "line"), ("work", "return")] == previous.events
    assert escape is fake.trace  # put back by the profile function, which took itself away
    assert fake.profile is None
    escape.close()
    assert previous is fake.trace
    assert escape.closed


def test_escape_after_its_block_is_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once closed, a pending profile event leaves tracing alone, and a frame's escape tracing only passes events on."""
    fake = FakeSys()
    monkeypatch.setattr(guard, "sys", fake)
    escape = guard._Escape(guard.Limit(1))
    frame = sys._getframe()
    escape.raising()
    resume = fake.profile
    escape.close()
    assert fake.profile is None
    resume(frame, "call", None)
    assert fake.trace is None
    lines = guard._AdapterLines(escape, None)
    try:
        raise guard._Timeout
    except guard._Timeout:
        assert lines is lines(frame, "line", None)


def test_escape_resumes_on_a_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first event after a raise may be a call: the new frame gets its tracing as if the escape had been in place."""
    fake = FakeSys()
    monkeypatch.setattr(guard, "sys", fake)
    escape = guard._Escape(guard.Limit(1))
    escape.raising()

    def callee() -> FrameType:
        return sys._getframe()

    def work() -> FrameType:
        escape.watch(sys._getframe())
        frame = callee()
        fake.profile(frame, "call", None)
        return frame

    frame = through_harness(work)
    assert isinstance(frame.f_trace, guard._AdapterLines)
    assert escape is fake.trace
    escape.close()
