"""Machine-readable results: what each suite test found, as JUnit properties and as the JSON report.

Each suite test's report carries a `spekvm` attribute (plain data, so pytest-xdist sends it from
the workers): the rule, its severity, where it ran (a cell id or ``generated``), and its failures
as structured findings. The process that writes the results (the only one, or the xdist
controller) gathers them in a `RunLog`; gates.py judges the run from it at the end and calls
`build_report` for `--spekvm-report`.
"""

from __future__ import annotations

import json
import platform
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import attrs
import hypothesis
import pytest
from hypothesis import settings

from .collection import is_suite, rule_of
from .failure_report import ContractFailure, is_not_judged, replay_value
from .failures import _BLOB
from .findings import GENERATED, findings_of
from .options import REPRODUCE_OPTION, TARGET_OPTION
from .plugin import session_of
from .reference.features import Features
from .reference.system import Choices
from .session import SpekvmSession
from .space import FeatureSpace, cell_id

_GIVEN = re.compile(r"--spekvm-reproduce=([A-Z][A-Z0-9-]*@[^\n]*?:[^:\s']+:[A-Za-z0-9+/=]+)")
"""The value of a --spekvm-reproduce line a report prints itself (a hang's)."""

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
"""The JSON Schema of the report, shipped with the package."""


@attrs.define
class TestRecord:
    """One suite test as the run saw it."""

    nodeid: str
    rule: str
    severity: str
    where: str  # a cell id, or GENERATED
    outcome: str = "not run"  # passed, failed, known (an expected failure the ledger lists), skipped
    findings: list[dict[str, Any]] = attrs.field(factory=list)
    reproduce: str | None = None
    known: dict[str, Any] | None = None  # the ledger entry that matched: {"index", "reason"}
    # The adapter broke the contract on this test's cell before its rule was judged: the test that
    # reports the broken clause (failed), or one of the cell's other checks (skipped).
    not_judged: bool = False


@attrs.define
class RunLog:
    """The suite tests of this run, by node id, and the failures that are not the suites' (setup errors, other tests)."""

    tests: dict[str, TestRecord] = attrs.field(factory=dict)
    other_failures: int = 0
    gates: list[dict[str, Any]] = attrs.field(factory=list)
    extra: dict[str, Any] = attrs.field(factory=dict)  # sections the gates and the ledger add to the report


RUNLOG_KEY = pytest.StashKey[RunLog]()


def runlog(config: pytest.Config) -> RunLog:
    """This run's RunLog (made on first use)."""
    log = config.stash.get(RUNLOG_KEY, None)
    if log is None:
        log = config.stash[RUNLOG_KEY] = RunLog()
    return log


def item_facts(item: pytest.Item, session: SpekvmSession) -> dict[str, str] | None:
    """Rule, severity and cell (or 'generated') of a suite test; None for any other test."""
    if not is_suite(item.path):
        return None
    rule = session.rules.get(rule_of(item))
    if rule is None:
        return None
    callspec = getattr(item, "callspec", None)
    cell = callspec.params.get("spekvm_cell") if callspec is not None else None
    where = cell_id(cell) if isinstance(cell, Features) else GENERATED
    return {"rule": rule.id, "severity": rule.severity.value, "where": where}


def _reproduce_value(exc: BaseException, target: str) -> str | None:
    """RULE@TARGET:VERSION:BLOB of a generated failure (hypothesis' blob, in its notes or, for a contract failure
    or a hang, in the report itself), or None."""
    texts: list[str] = []
    rule = ""
    stack = [exc]
    while stack:
        current = stack.pop()
        rule = rule or getattr(current, "spekvm_rule", "")
        texts += [str(current), *getattr(current, "__notes__", [])]
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
    text = "\n".join(texts)
    found = _BLOB.search(text)
    if found:
        return replay_value(rule, target, f"{found[1]}:{found[2]}") if rule else f"{found[1]}:{found[2]}"
    given = _GIVEN.search(text)
    return given[1] if given else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Put the test's rule, severity, cell and findings on its report and in its JUnit properties."""
    report = yield
    session = session_of(item.config)
    facts = item_facts(item, session) if session is not None else None
    if facts is None:
        return report
    if call.when == "setup":
        item.user_properties.extend([
            ("spekvm_rule", facts["rule"]),
            ("spekvm_severity", facts["severity"]),
            ("spekvm_cell", facts["where"]),
            ("spekvm_target", session.target.name if session is not None else ""),
        ])
    if call.when == "call" or report.failed:
        data: dict[str, Any] = {**facts, "when": call.when, "findings": [], "reproduce": None, "not_judged": False}
        if call.excinfo is not None and report.failed:
            found = findings_of(call.excinfo.value)
            data["findings"] = [f.to_dict() for f in found]
            data["reproduce"] = _reproduce_value(call.excinfo.value, session.target.name if session is not None else "")
            data["not_judged"] = isinstance(call.excinfo.value, ContractFailure)
            if found:
                item.user_properties.append(("spekvm_fingerprint", ",".join(f.fingerprint for f in found)))
        elif call.excinfo is not None and report.skipped:
            data["not_judged"] = is_not_judged(call.excinfo.value)
        report.spekvm = data
    return report


class _Collector:
    """Gathers the suite tests' outcomes into the RunLog (on the xdist controller, from the workers' reports)."""

    def __init__(self, config: pytest.Config) -> None:
        self.log = runlog(config)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Record one phase's report of one test."""
        data = getattr(report, "spekvm", None)
        log = self.log
        if not isinstance(data, dict):
            if report.failed:
                log.other_failures += 1
            return
        record = log.tests.get(report.nodeid)
        if record is None:
            record = log.tests[report.nodeid] = TestRecord(report.nodeid, data["rule"], data["severity"], data["where"])
        if report.when == "call":
            record.not_judged = bool(data.get("not_judged"))
        if data.get("known"):
            record.outcome, record.known = "known", data["known"]
        elif report.failed:
            record.outcome = "failed"
        elif report.skipped and record.outcome == "not run":
            record.outcome = "skipped"
        elif report.passed and record.outcome == "not run":
            record.outcome = "passed"
        if data["findings"]:
            record.findings = data["findings"]
            record.reproduce = data["reproduce"]


def pytest_configure(config: pytest.Config) -> None:
    """Start gathering this run's suite outcomes."""
    config.pluginmanager.register(_Collector(config), "spekvm-runlog")


# ---------------------------------------------------------------------------- the JSON report


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:  # pragma: no cover - running from a tree without metadata
        return "unknown"


def features_dict(features: Features) -> dict[str, Any]:
    """A cell's features as plain data."""
    data = attrs.asdict(features)
    return {k: (int(v) if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in data.items()}


def space_dict(space: FeatureSpace) -> dict[str, Any]:
    """The feature space as plain data."""
    return {
        "description": space.describe(),
        "cells": sum(1 for _ in space.cells()),
        "vhe": sorted(space.vhe),
        "pmsver": sorted(int(s) for s in space.spe),
        "pmbidr_p": sorted(int(p) for p in space.spe_owned_by_higher_el),
        "pmu": sorted(p.name for p in space.pmu),
        "flags": sorted(space.flags),
    }


def _cell_verdict(record: TestRecord | None, exercised: bool) -> str:
    if record is not None and record.not_judged:
        return "not judged"
    if record is None or record.outcome in ("not run", "skipped"):
        return "not run"
    if record.outcome in ("failed", "known"):
        return "failed" if record.outcome == "failed" else "known deviation"
    return "passed" if exercised else "never exercised"


def _failures(log: RunLog, session: SpekvmSession) -> list[dict[str, Any]]:
    failures = []
    for nodeid in sorted(log.tests):
        record = log.tests[nodeid]
        for finding in record.findings:
            replay = f"pytest {TARGET_OPTION}={session.target.spec} '{nodeid}'"
            failures.append({
                "nodeid": nodeid,
                "rule": record.rule,
                "severity": record.severity,
                "where": finding["where"],
                "cell": finding["cell"],
                "features": finding["features"],
                "steps": finding["steps"],
                "first_bad_event": finding["first_bad_event"],
                "clause": finding["clause"],
                "message": finding["message"],
                "replay": replay,
                "reproduce": record.reproduce,
                "replay_anywhere": f"{replay} {REPRODUCE_OPTION}={record.reproduce}" if record.reproduce else None,
                "fingerprint": finding["fingerprint"],
                "known": record.known,
            })
    return failures


def build_report(config: pytest.Config, session: SpekvmSession, verdicts: dict[str, str], exit_status: int) -> dict[str, Any]:
    """The whole report as plain data; `verdicts` is each rule's verdict as the gates judged it."""
    log = runlog(config)
    target = session.target
    tallies = session.verdicts.tallies
    known: dict[str, int] = {}
    for record in log.tests.values():
        if record.outcome == "known":
            known[record.rule] = known.get(record.rule, 0) + 1
    rules = []
    for rule in session.rules.values():
        tally = tallies.get(rule.id)
        rules.append({
            "id": rule.id,
            "title": rule.title,
            "severity": rule.severity.value,
            "family": rule.family,
            "rationale": rule.rationale,
            "verdict": verdicts.get(rule.id, "not run"),
            "counts": {
                "checks": tally.checks if tally else 0,
                "exercised": tally.exercised if tally else 0,
                "failed": tally.failed if tally else 0,
                "not_judged": tally.not_judged if tally else 0,
                "known": known.get(rule.id, 0),
            },
        })
    by_cell: dict[tuple[str, str], TestRecord] = {(r.rule, r.where): r for r in log.tests.values()}
    cells = []
    for cell in session.space.cells():
        cid = cell_id(cell)
        cells.append({
            "id": cid,
            "description": cell.describe(),
            "features": features_dict(cell),
            "verdicts": {
                rule_id: _cell_verdict(by_cell.get((rule_id, cid)), (rule_id, cid) in session.verdicts.pairs)
                for rule_id in session.rules
            },
            "exercised_by_generated": sorted(
                rule_id for rule_id in session.rules
                if (rule_id, cid) in session.verdicts.pairs and (rule_id, GENERATED) in by_cell
            ),
        })
    seed = config.getoption("hypothesis_seed", None)
    return {
        "schema_version": SCHEMA_VERSION,
        "target": {"name": target.name, "version": target.version, "spec": target.spec, "origin": target.origin},
        "versions": {
            "pytest_spekvm": _version("pytest-spekvm"),
            "hypothesis": hypothesis.__version__,
            "pytest": pytest.__version__,
            "python": platform.python_version(),
            "implementation": sys.implementation.name,
        },
        "hypothesis": {"profile": settings.get_current_profile_name(), "seed": str(seed) if seed is not None else None},
        "feature_space": space_dict(session.space),
        "choices": {f.name: getattr(target.choices, f.name) for f in attrs.fields(Choices)},
        "rules": rules,
        "cells": cells,
        "failures": _failures(log, session),
        **log.extra,
        "gates": log.gates,
        "exit_status": exit_status,
    }


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write `report` as indented JSON, keys in a stable order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

