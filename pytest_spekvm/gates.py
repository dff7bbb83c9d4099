"""The run's gates: which failures fail the run (--spekvm-fail-on), rules never exercised, the
architectural coverage matrix (--spekvm-min-coverage), the ledger's stale and expired entries;
then the JSON report (--spekvm-report) and the verdicts as JUnit properties.

A rule's **precondition** is judged per architectural class of CPU: a cell id without its PMU
part (``nvhe-spe1``, ``nvhe-spe1-el3``, ``vhe-spe0``): whether the switch runs under VHE, the SPE
level (PMSVer) and whether a higher EL owns the buffer (PMBIDR_EL1.P), the features that decide
whether a rule can apply at all. A (rule, class) pair is **reachable** when the built-in reference
switch reaches the rule's precondition (its `exercised`) on a cell of that class, under the
scripted scenario with the target's implementation choices; the run **exercised** it when one of
its checks of the rule, scripted or generated, reached the precondition on a CPU of that class.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from . import ledger as ledger_mod
from .failure_report import rule_error_text
from .findings import GENERATED
from .options import (
    OPTION_BY_FLAG,
    option_output_path,
    option_path,
    option_percent,
    option_source,
    option_switch,
)
from .plugin import FINISHED_KEY, session_of
from .reference.chooser import WorstCaseChooser
from .reference.features import Features
from .reference.switch import ReferenceSwitch
from .reference.system import Choices
from .reference.trace import Trace
from .report import RunLog, build_report, runlog, write_report
from .rules import Rule, RuleError, Severity
from .scenario import SCRIPT, Run
from .session import SpekvmSession
from .space import FeatureSpace, cell_id
from .target import Target

FAIL_ON = "--spekvm-fail-on"
NEVER_EXERCISED = "--spekvm-never-exercised"
MIN_COVERAGE = "--spekvm-min-coverage"
REPORT = "--spekvm-report"
LEDGER_STRICT = "--spekvm-ledger-strict"
LEDGER_WRITE = "--spekvm-ledger-write"


def precondition_class(cell: str) -> str:
    """The architectural class of a cell id: 'nvhe-spe1-el3-pmuv3-flags' -> 'nvhe-spe1-el3'."""
    parts = cell.split("-")
    return "-".join(p for p in parts[:3] if not p.startswith("pmu"))


@attrs.frozen
class Settings:
    """The gate options, read and checked once."""

    fail_on: frozenset[str]
    warn_never_exercised: bool
    min_coverage: float


def _settings(config: pytest.Config) -> Settings:
    severities = [s.value for s in Severity]
    raw, where = option_source(config, OPTION_BY_FLAG[FAIL_ON])
    wanted = {part.strip().lower() for part in raw.split(",") if part.strip()}
    if not wanted or wanted == {"all"}:
        wanted = set(severities)
    unknown = sorted(wanted - set(severities))
    if unknown:
        msg = f"{FAIL_ON} (from {where}) is {raw!r}: {', '.join(unknown)} is not a rule severity (give 'all' or a comma-separated list of {', '.join(severities)})"
        raise pytest.UsageError(msg)
    raw, where = option_source(config, OPTION_BY_FLAG[NEVER_EXERCISED])
    if raw.strip().lower() not in ("fail", "warn"):
        msg = f"{NEVER_EXERCISED} (from {where}) is {raw!r}, not 'fail' or 'warn'"
        raise pytest.UsageError(msg)
    warn = raw.strip().lower() == "warn"
    return Settings(frozenset(wanted), warn, option_percent(config, MIN_COVERAGE, 90))


SETTINGS_KEY = pytest.StashKey[Settings]()


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Check the gate options when a target is given (misuse stops the run before any test)."""
    if session_of(config) is not None:
        config.stash[SETTINGS_KEY] = _settings(config)
        option_switch(config, LEDGER_STRICT)
        option_output_path(config, REPORT, "spekvm-report.json")
        option_output_path(config, LEDGER_WRITE, "spekvm-ledger.toml")


# ------------------------------------------------------------------------- reachability


@functools.cache
def _reference_trace(cell: Features, choices: Choices) -> Trace:
    """The trace of the reference switch running the scripted scenario on `cell` (once per process)."""
    target = Target("reference", "reference", "built in", ReferenceSwitch, choices=choices)
    run = Run.start(target, cell, WorstCaseChooser())
    run.do_all(SCRIPT)
    return run.system.cpu.trace


@functools.cache
def reached_by(cell: Features, choices: Choices, rule: Rule) -> bool | RuleError:
    """Whether the reference switch reaches `rule`'s precondition on `cell`, or how the rule's checker failed on its trace."""
    try:
        return rule.judge(_reference_trace(cell, choices), cell).exercised
    except RuleError as error:
        return error


def reachable(space: FeatureSpace, choices: Choices, rules: Iterable[Rule]) -> tuple[dict[str, set[str]], dict[str, str]]:
    """Rule id -> the classes of `space` where the reference switch reaches the rule's precondition; and
    rule id -> what its checker did on the reference switch's trace of a class where it could not judge it.

    Each class is tried on its first and its last cell (the one with the optional features on)."""
    ordered = tuple(rules)
    classes: dict[str, list[Features]] = {}
    for cell in space.cells():
        classes.setdefault(precondition_class(cell_id(cell)), []).append(cell)
    found: dict[str, set[str]] = {rule.id: set() for rule in ordered}
    broken: dict[str, str] = {}
    for name, cells in classes.items():
        for cell in dict.fromkeys((cells[0], cells[-1])):
            for rule in ordered:
                reached = reached_by(cell, choices, rule)
                if isinstance(reached, RuleError):
                    broken.setdefault(rule.id, f"{rule_error_text(reached)} (on the reference switch's trace, {cell_id(cell)})")
                elif reached:
                    found[rule.id].add(name)
    return found, broken


def _checked_classes(log: RunLog, space: FeatureSpace) -> dict[str, set[str]]:
    """Rule id -> the classes its checks ran on: a scripted cell's class, every class for generated sequences."""
    everywhere = {precondition_class(cell_id(c)) for c in space.cells()}
    checked: dict[str, set[str]] = {}
    for test in log.tests.values():
        if test.outcome in ("not run", "skipped") or test.not_judged:
            continue
        mine = checked.setdefault(test.rule, set())
        mine.update(everywhere if test.where == GENERATED else {precondition_class(test.where)})
    return checked


@attrs.frozen
class Coverage:
    """The (rule, class) pairs the run could reach and those it exercised."""

    reachable: dict[str, set[str]]  # within the classes the rule was checked on
    exercised: dict[str, set[str]]
    not_applicable: set[str]  # rules checked, but reachable on none of the classes checked
    # Rule id -> what its checker did on the reference switch's trace where it could not judge it:
    # where such a rule is reachable is unknown, and it is never called not applicable.
    broken: dict[str, str] = attrs.field(factory=dict)

    def share(self) -> float:
        """Exercised reachable pairs, in percent of the reachable ones (100 when none is reachable)."""
        total = sum(len(v) for v in self.reachable.values())
        done = sum(len(self.exercised[k] & v) for k, v in self.reachable.items())
        return 100.0 * done / total if total else 100.0

    def pairs(self) -> list[dict[str, Any]]:
        """Every reachable pair and whether it was exercised, for the report."""
        return [
            {"rule": rule, "precondition": name, "exercised": name in self.exercised[rule]}
            for rule, names in self.reachable.items()
            for name in sorted(names)
        ]


def coverage(session: SpekvmSession, log: RunLog) -> Coverage:
    """The coverage matrix of this run."""
    checked = _checked_classes(log, session.space)
    rules = [session.rules[r] for r in session.rules if r in checked]
    reach, broken = reachable(session.space, session.target.choices, rules)
    exercised: dict[str, set[str]] = {rule.id: set() for rule in rules}
    for rule_id, cell in session.verdicts.pairs:
        if rule_id in exercised:
            exercised[rule_id].add(precondition_class(cell))
    within = {rule_id: reach[rule_id] & checked[rule_id] for rule_id in reach}
    return Coverage(within, exercised, {r for r, names in within.items() if not names and r not in broken}, broken)


# ------------------------------------------------------------------------------ the gates


def rule_verdicts(session: SpekvmSession, log: RunLog, cov: Coverage) -> dict[str, str]:
    """Each rule's verdict: passed, failed, known deviation, never exercised, not applicable or not run."""
    verdicts: dict[str, str] = {}
    for rule_id in session.rules:
        tests = [t for t in log.tests.values() if t.rule == rule_id]
        tally = session.verdicts.tallies.get(rule_id)
        verdict = tally.verdict() if tally is not None else "not run"
        if any(t.outcome == "failed" and not t.not_judged for t in tests):
            verdict = "failed"
        elif verdict == "failed" and any(t.outcome == "known" for t in tests):
            verdict = "known deviation"
        elif verdict == "never exercised" and rule_id in cov.not_applicable:
            verdict = "not applicable"
        verdicts[rule_id] = verdict
    return verdicts


def _gate(name: str, passed: bool, detail: str, failing: bool = True) -> dict[str, Any]:
    return {"gate": name, "passed": passed, "failing": failing and not passed, "detail": detail}


def evaluate(config: pytest.Config, session: SpekvmSession, log: RunLog, cov: Coverage, verdicts: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every gate's result; those with `failing` set fail the run."""
    gates: list[dict[str, Any]] = []
    opts = config.stash[SETTINGS_KEY]
    # A broken contract fails the run whatever the severity of the rule whose check reported it.
    blocking = [t for t in log.tests.values() if t.outcome == "failed" and (t.severity in opts.fail_on or t.not_judged)]
    tolerated = [t for t in log.tests.values() if t.outcome == "failed" and t not in blocking]
    gates.append(_gate(
        "fail-on", not blocking,
        f"{len(blocking)} failing checks of severities {', '.join(sorted(opts.fail_on))}; "
        f"{len(tolerated)} of other severities reported only",
    ))
    never = sorted(
        r for r, v in verdicts.items() if v == "never exercised" and session.rules[r].severity.value in opts.fail_on and r not in cov.broken
    )
    for rule_id in never:
        where = ", ".join(sorted(cov.reachable.get(rule_id, ())))
        gates.append(_gate(
            f"never-exercised {rule_id}", False,
            f"{rule_id} was checked but never exercised, although the feature space lets the reference switch reach it on {where}",
            failing=not opts.warn_never_exercised,
        ))
    for rule_id, error in cov.broken.items():
        gates.append(_gate(
            f"rule-error {rule_id}", False,
            f"{rule_id} could not be judged on the reference switch, so where it is reachable is unknown: {error}",
        ))
    share = cov.share()
    gates.append(_gate(
        "coverage", share + 1e-9 >= opts.min_coverage,
        f"{share:.1f}% of reachable (rule, precondition) pairs exercised; minimum {opts.min_coverage:g}%",
    ))
    section = ledger_mod.ledger_section(config, log)
    if section is not None:
        strict = option_switch(config, LEDGER_STRICT)
        for entry in section["entries"]:
            label = f"ledger entry {entry['index']} ({entry['rule']})"
            if entry["status"] == "expired":
                gates.append(_gate(f"ledger-expired {entry['index']}", False, f"{label} expired on {entry['expires']}: fix the deviation or renew the entry"))
            elif entry["status"] == "stale":
                gates.append(_gate(
                    f"ledger-stale {entry['index']}", False,
                    f"{label} is stale: its checks ran and none failed as it says (remove it)", failing=strict,
                ))
    return gates


def _exit_status(session: pytest.Session, log: RunLog, gates: list[dict[str, Any]]) -> int:
    status = int(session.exitstatus)
    if status not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return status  # interrupted, internal or usage error, nothing collected: left as it is
    fail_on = next(g for g in gates if g["gate"] == "fail-on")
    suite_failures = any(t.outcome == "failed" for t in log.tests.values())
    if status == pytest.ExitCode.TESTS_FAILED and not log.other_failures and suite_failures and fail_on["passed"]:
        status = pytest.ExitCode.OK  # only failures of severities --spekvm-fail-on leaves out
    if any(g["failing"] for g in gates):
        status = pytest.ExitCode.TESTS_FAILED
    return int(status)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Judge the gates, set the exit status, write the report, the ledger and the JUnit properties (not on xdist workers)."""
    config = session.config
    spekvm = session_of(config)
    if spekvm is None or hasattr(config, "workerinput") or SETTINGS_KEY not in config.stash:
        return
    log = runlog(config)
    if not log.tests:
        return
    cov = coverage(spekvm, log)
    verdicts = rule_verdicts(spekvm, log, cov)
    log.gates = evaluate(config, spekvm, log, cov, verdicts)
    section = ledger_mod.ledger_section(config, log)
    if section is not None:
        log.extra["ledger"] = section
    log.extra["coverage"] = {
        "cells": sum(1 for _ in spekvm.space.cells()),
        "cells_exercised": sorted(spekvm.verdicts.combinations),
        "share": round(cov.share(), 2),
        "pairs": cov.pairs(),
    }
    config.stash[FINISHED_KEY] = {"verdicts": verdicts, "coverage": cov}
    # A file that cannot be written (the path checked at configure time may have changed since) fails
    # the run like a gate, and the rest of the run's output and the other file are still written.
    write_to = option_path(config, LEDGER_WRITE)
    if write_to is not None:
        cells = [cell_id(c) for c in spekvm.space.cells()]
        try:
            ledger_mod.write(write_to, list(log.tests.values()), spekvm.target.name, cells)
        except OSError as exc:
            log.gates.append(_unwritten(LEDGER_WRITE, "the ledger", write_to, exc))
    session.exitstatus = _exit_status(session, log, log.gates)
    report_to = option_path(config, REPORT)
    if report_to is not None:
        try:
            write_report(report_to, build_report(config, spekvm, verdicts, int(session.exitstatus)))
        except OSError as exc:
            log.gates.append(_unwritten(REPORT, "the JSON report", report_to, exc))
            session.exitstatus = _exit_status(session, log, log.gates)
    _junit_properties(config, verdicts)


def _unwritten(flag: str, what: str, path: Path, exc: OSError) -> dict[str, Any]:
    """The failing gate of a file the run could not write."""
    why = exc.strerror or str(exc)
    if exc.filename is not None and Path(exc.filename) != path:
        why += f": {exc.filename}"
    return _gate(f"write {flag}", False, f"{flag}: Cannot write {what} to {path} because {why}")


def _junit_properties(config: pytest.Config, verdicts: Mapping[str, str]) -> None:
    """Each rule's verdict as a property of the JUnit XML test suite (never-exercised ones included)."""
    from _pytest.junitxml import xml_key  # noqa: PLC0415 - pytest's own JUnit writer, present only with --junitxml

    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    for rule_id, verdict in verdicts.items():
        xml.add_global_property(f"spekvm_verdict_{rule_id}", verdict)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The rules' verdicts as the gates judged them, the coverage matrix in short, and the gates that did not pass."""
    finished = config.stash.get(FINISHED_KEY, None)
    if finished is None:
        return
    tr = terminalreporter
    log = runlog(config)
    cov: Coverage = finished["coverage"]
    tr.write_sep("-", "spekvm coverage and gates")
    total = sum(len(v) for v in cov.reachable.values())
    done = sum(len(cov.exercised[k] & v) for k, v in cov.reachable.items())
    tr.write_line(f"(rule, precondition) pairs exercised: {done} of {total} reachable ({cov.share():.1f}%)")
    for rule_id, names in cov.reachable.items():
        missed = sorted(names - cov.exercised[rule_id])
        if missed:
            tr.write_line(f"  {rule_id}: not exercised on {', '.join(missed)}")
    for rule_id in sorted(cov.not_applicable):
        tr.write_line(f"  {rule_id}: not applicable (the feature space checked excludes its precondition)")
    for gate in log.gates:
        if not gate["passed"] and gate["gate"] != "fail-on":
            tr.write_line(f"spekvm {'FAILED' if gate['failing'] else 'warning'}: {gate['detail']}")
    tolerated = sorted({t.rule for t in log.tests.values() if t.outcome == "failed" and not t.not_judged} - {
        t.rule for t in log.tests.values() if t.outcome == "failed" and t.severity in config.stash[SETTINGS_KEY].fail_on
    })
    if tolerated:
        tr.write_line(f"reported, not failing the run ({FAIL_ON}): failures of {', '.join(tolerated)}")
    known = [t for t in log.tests.values() if t.outcome == "known"]
    if known:
        rules = sorted({t.rule for t in known})
        tr.write_line(f"known deviations (ledger): {len(known)} expected failures of {', '.join(rules)}")
    section = ledger_mod.ledger_section(config, log)
    for entry in section["entries"] if section is not None else ():
        if entry["status"] == "not found":
            tr.write_line(
                f"ledger entry {entry['index']} ({entry['rule']}): not found by this run's generated sequences, which "
                "are a search, not a proof: the entry stays (a larger hypothesis budget meets the failure more often)"
            )
