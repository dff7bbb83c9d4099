"""Failure reports: a rule violation or a broken contract reads as its report, shaped by pytest's `--tb`.

- `--tb=auto`, `long` and `native`: the whole report (rule, features, steps, timeline, replay) and
  hypothesis' notes (the generated steps, the `--spekvm-reproduce` line);
- `--tb=short`: the rule, the features, the violations and the replay lines, without steps and timeline;
- `--tb=line`: one line per failure, `file:line: RULE ... violated on features: ...`;
- `--tb=no`: nothing (pytest prints no failure section).

The report is built from pytest's own representation classes, so it travels from xdist workers
intact and the short test summary (`-rf`, `-q`) shows its first line.
"""

from __future__ import annotations

import re
from collections.abc import Generator

import pytest

# pytest's failure representation: not public API, but the shape pytest (and xdist, which
# serialises it) has kept since pytest 6.
from _pytest._code.code import ReprEntryNative, ReprExceptionInfo, ReprFileLocation, ReprTraceback

_BLOB = re.compile(r"@reproduce_failure\('([^']+)', b'([^']+)'\)")


def _failure_parts(exc: BaseException, rule: str = "") -> list[tuple[str, list[str], str]] | None:
    """(report, notes, rule id) for a SpekvmFailure or each one of a group of them; None for anything else."""
    from .failure_report import SpekvmFailure

    rule = getattr(exc, "spekvm_rule", rule)
    if isinstance(exc, SpekvmFailure):
        return [(str(exc), list(getattr(exc, "__notes__", [])), rule)]
    if isinstance(exc, BaseExceptionGroup):
        parts = [_failure_parts(e, rule) for e in exc.exceptions]
        if all(parts):
            flat = [part for group in parts if group for part in group]
            notes = list(getattr(exc, "__notes__", []))
            return [*flat[:-1], (flat[-1][0], [*flat[-1][1], *notes], flat[-1][2])]
    return None


def _replay_anywhere(lines: list[str], rule: str, target: str) -> list[str]:
    """The --spekvm-reproduce line for hypothesis' @reproduce_failure blob in `lines` (unless the report has one)."""
    from .failure_report import replay_value, reproduce_line
    from .options import REPRODUCE_OPTION

    found = _BLOB.search("\n".join(lines))
    if not found or "replay anywhere: " in lines[0]:
        return []
    if rule:
        return [reproduce_line(replay_value(rule, target, f"{found[1]}:{found[2]}"))]
    return [f"replay anywhere: add {REPRODUCE_OPTION}={found[1]}:{found[2]} to the command above"]


def _short(report: str) -> list[str]:
    """The report without its steps and timeline: what failed, on which CPU, and how to replay it."""
    lines = report.splitlines()
    head = lines[: lines.index("steps:")] if "steps:" in lines else lines
    return [*head, *(line for line in lines[len(head):] if line.startswith(("replay:", "replay anywhere:")))]


def failure_text(exc: BaseException, style: str, target: str) -> str | None:
    """The report of a SpekvmFailure (or a group of them) in `style` (pytest's --tb), its replay lines naming
    `target` (the target's name); None if `exc` is not one."""
    parts = _failure_parts(exc)
    if parts is None:
        return None
    shown = []
    for report, notes, rule in parts:
        lines = [report, *notes]
        if style == "short":
            shown.append("\n".join([*_short(report), *_replay_anywhere(lines, rule, target)]))
        else:
            shown.append("\n".join([*lines, *_replay_anywhere(lines, rule, target)]))
    return "\n\n".join(shown)


def _longrepr(item: pytest.Item, text: str, style: str) -> ReprExceptionInfo:
    path, lineno, _ = item.location
    crash = ReprFileLocation(path=path, lineno=(lineno or 0) + 1, message=text.partition("\n")[0])
    entries = [] if style in ("line", "no") else [ReprEntryNative([text + "\n"])]
    return ReprExceptionInfo(reprtraceback=ReprTraceback(entries, None, "native"), reprcrash=crash)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A rule violation reads as the rule's report, not as a traceback through the plugin; pytest
    never builds that traceback (with the locals and arguments of every frame, it costs far more
    than the check did)."""
    from .plugin import session_of

    style = str(item.config.getoption("tbstyle", "auto"))
    session = session_of(item.config)
    target = session.target.name if session is not None else ""
    text = None if call.excinfo is None else failure_text(call.excinfo.value, style, target)
    if text is None:
        return (yield)
    longrepr = _longrepr(item, text, style)
    if call.when != "call":  # pytest renders a setup or teardown failure itself: replace its rendering
        report = yield
        if report.failed:
            report.longrepr = longrepr
        return report
    # pytest asks the item for a call's failure representation: the item answers with the report.
    item.repr_failure = lambda excinfo, style=None: longrepr  # type: ignore[method-assign]
    try:
        return (yield)
    finally:
        del item.repr_failure
