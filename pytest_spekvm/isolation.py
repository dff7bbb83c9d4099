"""Crash isolation: a target whose adapter runs native code (the C kit's declares `isolate = True`)
runs each cell's scripted scenario, and each sequences test, in a forked process.

A crash there (SIGSEGV, SIGABRT, SIGBUS, a stack overflow, `exit()`) or a C loop that calls no
accessor fails that one check, naming the signal, the C file, line and function of the last
accessor call and the steps so far; the run goes on. The child runs the same code as an
in-process run and sends back plain data: each rule's verdict and report for a cell, the outcome of
a sequences test; steps are streamed as they start, so a crash still says how far the scenario got.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import select
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from . import ckit, scenario
from .failure_report import ContractFailure, SpekvmFailure, contract_body, is_not_judged, not_judged
from .findings import Finding, make_finding
from .reference.features import Features
from .scenario import AdapterFailure
from .session import CellOutcome
from .verdicts import Verdicts

if TYPE_CHECKING:
    from .session import SpekvmSession

CRASH_CLAUSE = "the adapter's native code does not crash or end the process"
_HEADER = struct.Struct("!cI")
GRACE = 5.0
"""Seconds, beyond two time limits, that a child may go without starting a step before it is killed as hung."""


class _Channel:
    """The child's end: frames of (kind, payload) written to the pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, kind: bytes, payload: bytes) -> None:  # pragma: no cover - runs in the forked child
        data = _HEADER.pack(kind, len(payload)) + payload
        while data:
            data = data[os.write(self.fd, data) :]


class _Child:
    """What the parent learnt from a child: its frames, how it ended."""

    def __init__(self) -> None:
        self.result: Any = None
        self.error = ""
        self.steps: list[str] = []
        self.cell: Features | None = None
        self.status = 0
        self.hung = False


def _run_forked(work: Callable[[_Channel], Any], timeout: float) -> _Child:
    """Run `work` in a forked child; its return value comes back pickled, its progress as it goes."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked child: its coverage is not collected
        os.close(read_fd)
        faulthandler.disable()  # a crash is reported by the parent, at the C line, not as a dump of Python frames
        channel = _Channel(write_fd)
        code = 0
        try:
            scenario.set_listener(channel.send)
            channel.send(b"R", pickle.dumps(work(channel)))
        except BaseException:
            channel.send(b"E", traceback.format_exc().encode(errors="replace"))
            code = 70
        ckit.dump_coverage()  # gcov writes its counts at exit, which os._exit skips (--spekvm-c-coverage)
        os._exit(code)
    os.close(write_fd)
    child = _Child()
    try:
        _collect(read_fd, child, 2 * timeout + GRACE if timeout > 0 else None)
        if child.hung:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(read_fd)
        _, status = _wait(pid)
        child.status = status
    return child


def _wait(pid: int) -> tuple[int, int]:
    try:
        return os.waitpid(pid, 0)
    except BaseException:  # interrupted in the parent (pytest-timeout, Ctrl-C): do not leave the child running
        os.kill(pid, signal.SIGKILL)
        return os.waitpid(pid, 0)


def _collect(fd: int, child: _Child, patience: float | None) -> None:
    """Read the child's frames until it closes the pipe, or until it has started no step for `patience` seconds."""
    buffer = b""
    last = time.monotonic()
    while True:
        wait = None if patience is None else max(0.0, last + patience - time.monotonic())
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            child.hung = True
            return
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return
        buffer += chunk
        last = time.monotonic()
        while len(buffer) >= _HEADER.size:
            kind, size = _HEADER.unpack_from(buffer)
            if len(buffer) < _HEADER.size + size:
                break
            payload = buffer[_HEADER.size : _HEADER.size + size]
            buffer = buffer[_HEADER.size + size :]
            _frame(child, kind, payload)


def _frame(child: _Child, kind: bytes, payload: bytes) -> None:
    if kind == b"B":
        child.cell = pickle.loads(payload)
        child.steps = []
    elif kind == b"S":
        child.steps.append(payload.decode())
    elif kind == b"R":
        child.result = pickle.loads(payload)
    else:
        child.error = payload.decode(errors="replace")


def _ending(child: _Child, session: SpekvmSession) -> tuple[str, str]:
    """(clause, what happened) for a child that sent no result."""
    site_of = getattr(session.target.factory, "crash_site", None)
    site = site_of() if callable(site_of) else None
    at = f"; the last accessor call was at {site}" if site else ""
    if child.hung:
        return "vcpu_run() returns", (
            f"the adapter's native code neither returned nor started another step for {2 * session.timeout + GRACE:g}s"
            f" (--spekvm-timeout {session.timeout:g}s per call): a loop that calls no accessor cannot be interrupted, so its process was killed{at}"
        )
    if os.WIFSIGNALED(child.status):
        number = os.WTERMSIG(child.status)
        try:
            name = signal.Signals(number).name
        except ValueError:  # pragma: no cover - every signal that kills a process here has a name
            name = f"signal {number}"
        return CRASH_CLAUSE, f"the process running the adapter was killed by {name} ({signal.strsignal(number)}){at}"
    code = os.WEXITSTATUS(child.status)
    if child.error:
        return CRASH_CLAUSE, f"the process running the adapter failed (exit status {code}):\n{child.error}"
    return CRASH_CLAUSE, f"the adapter's native code ended the process with exit status {code} (exit() or _exit()){at}"


def _numbered(steps: list[str]) -> str:
    return "\n".join(f"  {i}. {text}" for i, text in enumerate(steps, 1)) or "  (none: it failed while booting)"


# ----------------------------------------------------------------------------- scripted cells


def run_cell_isolated(session: SpekvmSession, cell: Features) -> tuple[CellOutcome, ...]:
    """The scripted scenario on `cell` under each adversary, in a child: every rule judged there, or the
    contract failure (a crash included) reported here."""

    def work(channel: _Channel) -> tuple[tuple[CellOutcome, ...], int]:  # pragma: no cover - runs in the forked child
        outcomes = session.run_cell(cell)
        steps = session.verdicts.steps
        for outcome in outcomes:
            if outcome.failure is not None:
                run = outcome.run
                done = tuple(step.describe() for step in run.steps) if run is not None else ()
                body = contract_body(outcome.failure, cell, run)
                return (CellOutcome(None, outcome.failure, outcome.adversary, failure_body=body, steps=done),), steps
        judged = {rule_id: session.judge(rule, cell, outcomes) for rule_id, rule in session.rules.items()}
        return (CellOutcome(None, None, outcomes[0].adversary, judged=judged),), steps

    before = session.verdicts.steps
    child = _run_forked(work, session.timeout)
    if child.result is not None:
        outcomes, steps = child.result
        session.verdicts.steps += steps - before
        return outcomes  # type: ignore[no-any-return]
    clause, message = _ending(child, session)
    failure = AdapterFailure(clause, message, len(child.steps), hung=child.hung)
    body = contract_body(failure, cell, None, steps=_numbered(child.steps))
    return (CellOutcome(None, failure, failure_body=body, steps=tuple(child.steps)),)


# -------------------------------------------------------------------------- generated sequences


def _pack(exc: BaseException) -> dict[str, Any]:  # pragma: no cover - runs in the forked child
    """A failure as plain data: a SpekvmFailure's report, notes and facts, a group of them, or a traceback."""
    notes = list(getattr(exc, "__notes__", []))
    if isinstance(exc, BaseExceptionGroup) and all(isinstance(e, SpekvmFailure) for e in exc.exceptions):
        return {"group": [_pack(e) for e in exc.exceptions], "message": exc.message, "notes": notes}
    if isinstance(exc, SpekvmFailure):
        facts = {"text": str(exc), "notes": notes, "finding": exc.finding, "rule": getattr(exc, "spekvm_rule", "")}
        if isinstance(exc, ContractFailure):
            return {**facts, "clause": exc.clause, "cell": exc.cell}
        return {**facts, "clause": None}
    return {"text": "".join(traceback.format_exception(exc)), "notes": [], "finding": None, "rule": "", "clause": None}


def _unpack(data: dict[str, Any]) -> BaseException:
    """The failure `_pack` described, to raise in this process."""
    error: BaseException
    if "group" in data:
        error = BaseExceptionGroup(data["message"], [_unpack(member) for member in data["group"]])
    elif data["clause"] is not None:
        error = ContractFailure(data["text"], data["clause"], data["cell"], data["finding"])
    else:
        error = SpekvmFailure(data["text"], data["finding"])
    if data.get("rule"):
        setattr(error, "spekvm_rule", data["rule"])  # noqa: B010 - an attribute the failure reports read
    for note in data["notes"]:
        error.add_note(note)
    return error


def explore_isolated(session: SpekvmSession, rule_id: str, nodeid: str) -> None:
    """A sequences test in a child; its verdicts, reports and skips come back as if it ran here."""

    def work(channel: _Channel) -> dict[str, Any]:  # pragma: no cover - runs in the forked child
        session.verdicts = Verdicts()
        known = dict(session._reported)
        outcome: dict[str, Any] = {"kind": "passed"}
        try:
            session.explore_here(rule_id, nodeid)
        except pytest.skip.Exception as exc:
            outcome = {"kind": "skipped", "text": str(exc.msg), "not_judged": is_not_judged(exc)}
        except BaseException as exc:
            outcome = {"kind": "failed", "failure": _pack(exc)}
        outcome["verdicts"] = session.verdicts.to_dict()
        outcome["reported"] = {k: v for k, v in session._reported.items() if known.get(k) != v}
        outcome["replayed"] = session.replayed
        return outcome

    child = _run_forked(work, session.timeout)
    result = child.result
    if result is None:
        clause, message = _ending(child, session)
        failure = AdapterFailure(clause, message, len(child.steps), hung=child.hung)
        cell = child.cell
        if cell is None:
            raise SpekvmFailure(f"CONTRACT {clause!r} broken while generating sequences for {rule_id}\n  {message}")
        text = contract_body(failure, cell, None, steps=_numbered(child.steps))
        text += f"\nreplay: {session.replay_command(nodeid)}   (the process died before hypothesis could save the example: run it again to search anew)"
        finding: Finding = attrs.evolve(
            make_finding(rule_id, cell, [], generated=True, clause=clause, message=message), steps=tuple(child.steps)
        )
        session.contract_failed(rule_id, False, clause, cell, nodeid=nodeid, text=text, finding=finding)
        return
    session.verdicts.merge(result["verdicts"])
    session._reported.update(result["reported"])
    session.replayed[:] = result["replayed"]
    kind = result["kind"]
    if kind == "passed":
        return
    if kind == "skipped":
        raise not_judged(result["text"]) if result["not_judged"] else pytest.skip.Exception(result["text"], _use_item_location=True)
    raise _unpack(result["failure"])
