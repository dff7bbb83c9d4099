"""The known-deviation ledger: failures a team knows about and accepts, reported as expected failures.

A ledger is a TOML file (``--spekvm-ledger``) with one ``[[deviation]]`` table per deviation::

    [[deviation]]
    rule = "RES0"                          # the rule id
    cells = ["*-spe0-*", "generated"]      # cell ids as the test ids show them, or glob patterns;
                                           # "generated" (or "*") covers the generated sequences
    reason = "TPMS is set on CPUs without SPE; harmless on the parts we ship"
    expires = 2027-06-30                   # optional: from the day after, the entry fails the run

or ``fingerprint = "0123456789abcdef"`` (a failure's fingerprint, as the report and the JUnit
properties give it) instead of ``cells``. A failure of the rule whose cell id (or ``generated``)
matches a pattern, or whose fingerprint is listed, is an expected failure (xfail) with the reason.
A rule whose generated sequences an entry covers is not shrunk: the first failing example is
enough to confirm the known failure.

An entry whose scripted checks ran without any failure it covers is **stale** (reported; it fails
the run under ``--spekvm-ledger-strict``): a scripted check is deterministic, so its passing shows
the deviation is gone. An entry whose only checks that ran are generated sequences, and that did
not meet its failure, is **not found**: a search that missed is no proof (the budget and the seed
decide what it meets), so it is a note, never a warning, and the entry stays. A fingerprint does not
say which kind of check found it: an entry that names one is stale once a scripted check of its rule
has run without it, so a deviation that only generated sequences find is listed by
``cells = ["generated"]``, not by its fingerprint.

An entry past its ``expires`` date covers nothing and fails the run. ``--spekvm-ledger-write=PATH``
writes a ledger listing the run's failures, one entry per rule.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from .findings import GENERATED
from .options import option_path
from .plugin import session_of
from .report import RunLog, TestRecord

LEDGER_OPTION = "--spekvm-ledger"
KEYS = frozenset({"rule", "cells", "fingerprint", "reason", "expires"})


@attrs.frozen
class Deviation:
    """One entry of the ledger."""

    index: int  # 1-based position in the file, for messages
    rule: str
    reason: str
    cells: tuple[str, ...] = ()
    fingerprint: str = ""
    expires: datetime.date | None = None

    def expired(self, today: datetime.date) -> bool:
        """Whether the entry's expiry date has passed."""
        return self.expires is not None and today > self.expires

    def covers_test(self, rule: str, where: str) -> bool:
        """Whether a test of `rule` at `where` (a cell id, or 'generated') is one this entry speaks of."""
        if rule != self.rule:
            return False
        return bool(self.fingerprint) or any(fnmatch.fnmatchcase(where, pattern) for pattern in self.cells)

    def matches(self, rule: str, finding: dict[str, Any]) -> bool:
        """Whether the failure `finding` of `rule` is this deviation."""
        if rule != self.rule:
            return False
        if self.fingerprint:
            return bool(finding.get("fingerprint") == self.fingerprint)
        return any(fnmatch.fnmatchcase(str(finding.get("where", "")), pattern) for pattern in self.cells)

    def describe(self) -> str:
        """'entry 2 (RES0, cells *-spe0-*)' for messages."""
        what = f"fingerprint {self.fingerprint}" if self.fingerprint else f"cells {', '.join(self.cells)}"
        return f"entry {self.index} ({self.rule}, {what})"


def _fail(path: Path, why: str) -> pytest.UsageError:
    return pytest.UsageError(f"{LEDGER_OPTION}: Cannot use ledger {path} because {why}")


def _entry(path: Path, index: int, raw: object, rules: Sequence[str]) -> Deviation:
    where = f"entry {index}"
    if not isinstance(raw, dict):
        raise _fail(path, f"{where} is {raw!r}, not a table (write [[deviation]] then rule = ..., cells = [...], reason = ...)")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise _fail(path, f"{where} has unknown keys {unknown} (known: {sorted(KEYS)})")
    rule = raw.get("rule")
    if rule not in rules:
        raise _fail(path, f"{where} names rule {rule!r}, which is not a rule of this run (rules: {', '.join(rules)})")
    reason = raw.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise _fail(path, f"{where} ({rule}) has no reason (give reason = \"why this deviation is accepted\")")
    cells, fingerprint = raw.get("cells"), raw.get("fingerprint")
    if (cells is None) == (fingerprint is None):
        raise _fail(path, f"{where} ({rule}) needs exactly one of cells = [...] and fingerprint = \"...\"")
    if cells is not None and (not isinstance(cells, list) or not cells or not all(isinstance(c, str) and c for c in cells)):
        raise _fail(path, f"{where} ({rule}) has cells = {cells!r}, not a list of cell ids or glob patterns (e.g. [\"nvhe-spe0-*\", \"generated\"])")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise _fail(path, f"{where} ({rule}) has fingerprint = {fingerprint!r}, not a string")
    expires = raw.get("expires")
    if isinstance(expires, str):
        try:
            expires = datetime.date.fromisoformat(expires)
        except ValueError:
            expires = False
    if isinstance(expires, datetime.datetime) or not (expires is None or isinstance(expires, datetime.date)):
        raise _fail(path, f"{where} ({rule}) has expires = {raw.get('expires')!r}, not a date (write expires = 2027-06-30)")
    return Deviation(index, str(rule), reason.strip(), tuple(cells or ()), str(fingerprint or ""), expires)


def load(path: Path, rules: Sequence[str]) -> tuple[Deviation, ...]:
    """Read and check the ledger at `path` against the run's rule ids."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(path, f"it cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise _fail(path, f"it is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}; TOML is UTF-8: save the file as UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path, f"it is not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"deviation"})
    if unknown:
        raise _fail(path, f"it has top-level keys {unknown}; a ledger holds only [[deviation]] tables")
    entries = data.get("deviation", [])
    if not isinstance(entries, list):
        raise _fail(path, "'deviation' is not an array of tables (write [[deviation]], with two brackets)")
    return tuple(_entry(path, i, raw, rules) for i, raw in enumerate(entries, 1))


@attrs.define
class Ledger:
    """The run's ledger and what it covered."""

    path: Path
    entries: tuple[Deviation, ...]
    today: datetime.date

    def live(self) -> list[Deviation]:
        """The entries that have not expired."""
        return [e for e in self.entries if not e.expired(self.today)]

    def match(self, rule: str, findings: Sequence[dict[str, Any]]) -> Deviation | None:
        """The live entry every finding matches (the first that matches them all), or None."""
        for entry in self.live():
            if findings and all(entry.matches(rule, f) for f in findings):
                return entry
        return None

    def statuses(self, tests: Sequence[TestRecord]) -> list[dict[str, Any]]:
        """Each entry with its status: 'matched', 'stale' (its scripted checks ran and passed), 'not found'
        (only its generated sequences ran, and missed its failure), 'expired', or 'not checked' (none of its
        tests ran)."""
        found = []
        for entry in self.entries:
            ran = [t for t in tests if entry.covers_test(t.rule, t.where) and t.outcome in ("passed", "failed")]
            if entry.expired(self.today):
                status = "expired"
            elif any(t.known and t.known["index"] == entry.index for t in tests):
                status = "matched"
            elif any(t.where != GENERATED for t in ran):
                status = "stale"
            elif ran:
                status = "not found"
            else:
                status = "not checked"
            found.append({
                "index": entry.index,
                "rule": entry.rule,
                "cells": list(entry.cells),
                "fingerprint": entry.fingerprint or None,
                "reason": entry.reason,
                "expires": entry.expires.isoformat() if entry.expires else None,
                "status": status,
            })
        return found


LEDGER_KEY = pytest.StashKey[Ledger]()


def ledger_of(config: pytest.Config) -> Ledger | None:
    """The run's ledger, if one was given."""
    return config.stash.get(LEDGER_KEY, None)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Load the ledger; rules whose generated sequences it covers are no longer shrunk."""
    session = session_of(config)
    path = option_path(config, LEDGER_OPTION)
    if session is None or path is None:
        return
    ledger = Ledger(path, load(path, list(session.rules)), datetime.date.today())
    config.stash[LEDGER_KEY] = ledger
    session.unshrunk = frozenset(e.rule for e in ledger.live() if e.covers_test(e.rule, GENERATED) and e.cells)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failure the ledger lists becomes an expected failure with the entry's reason."""
    report = yield
    ledger = ledger_of(item.config)
    data = getattr(report, "spekvm", None)
    if ledger is None or not isinstance(data, dict) or not report.failed or call.when != "call" or data.get("not_judged"):
        return report  # a broken contract is the adapter failing, not a deviation a ledger can accept
    entry = ledger.match(data["rule"], data["findings"])
    if entry is not None:
        data["known"] = {"index": entry.index, "reason": entry.reason}
        report.outcome = "skipped"
        report.wasxfail = f"known deviation ({ledger.path.name} {entry.describe()}): {entry.reason}"
    return report


def _candidates(space_cells: Sequence[str]) -> list[str]:
    """Patterns a written ledger may fold cells into: everything, a VHE mode, an SPE level, a PMU level, a class."""
    found: dict[str, None] = {"*": None}
    for cell in space_cells:
        parts = cell.split("-")
        pmu = next(p for p in parts if p.startswith("pmu"))
        found[f"{parts[0]}-*"] = None
        found[f"{parts[0]}-{parts[1]}-*"] = None
        found[f"*-{pmu}"] = None
        found[f"{parts[0]}-*-{pmu}"] = None
        head = cell.split("-pmu")[0]
        found[f"{head}-*" if head.endswith("-el3") else f"{head}-pmu*"] = None
    return list(found)


def _patterns(failing: set[str], space_cells: Sequence[str]) -> list[str]:
    """The failing cell ids, folded greedily into patterns ('nvhe-spe0-*', '*-pmunone') that match failing cells only."""
    left = {c for c in failing if c != GENERATED}
    shown: list[str] = []
    candidates = _candidates(space_cells)
    while left:
        best, covered = "", set[str]()
        for pattern in candidates:
            matched = {c for c in space_cells if fnmatch.fnmatchcase(c, pattern)}
            if len(matched) > 1 and matched <= failing and len(matched & left) > len(covered):
                best, covered = pattern, matched & left
        if not best:
            break
        shown.append(best)
        left -= covered
    return sorted(shown) + sorted(left) + ([GENERATED] if GENERATED in failing else [])


def write(path: Path, tests: Sequence[TestRecord], target: str, space_cells: Sequence[str]) -> int:
    """Write a ledger of the failures in `tests`, one entry per rule listing its failing cells; the number of entries."""
    cells: dict[str, set[str]] = {}
    for test in tests:
        if test.outcome in ("failed", "known") and not test.not_judged:
            cells.setdefault(test.rule, set()).add(test.where)
    lines = [
        f"# Known deviations of {target}, written by --spekvm-ledger-write from one run's failures.",
        "# Replace each reason with why the deviation is accepted; add expires = YYYY-MM-DD to revisit it.",
    ]
    for rule in sorted(cells):
        listed = _patterns(cells[rule], space_cells)
        lines += [
            "",
            "[[deviation]]",
            f"rule = {json.dumps(rule)}",
            "cells = [" + ", ".join(json.dumps(c) for c in listed) + "]",
            f"reason = {json.dumps('not yet reviewed: fails ' + rule + ' (written from the run)')}",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(cells)


def ledger_section(config: pytest.Config, log: RunLog) -> dict[str, Any] | None:
    """The report's ledger section, or None without a ledger."""
    ledger = ledger_of(config)
    if ledger is None:
        return None
    return {"path": str(ledger.path), "entries": ledger.statuses(list(log.tests.values()))}
