"""Line and branch coverage of a C world switch: --spekvm-c-coverage builds the C target with gcov
instrumentation (its own build slot), every process writes its counts when the session ends, and
the process that reports (the only one, or the xdist controller) summarises them with gcovr.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from . import ckit
from .options import OPTION_BY_FLAG, option_percent, option_source, option_switch
from .plugin import session_of

C_COVERAGE = "--spekvm-c-coverage"
C_COVERAGE_FAIL_UNDER = "--spekvm-c-coverage-fail-under"
RESULT_KEY = pytest.StashKey[dict[str, Any]]()


def _fail_under(config: pytest.Config) -> float:
    return option_percent(config, C_COVERAGE_FAIL_UNDER, 80)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Before the target loads: check the threshold (with or without C coverage) and instrument the C builds if asked."""
    fail_under = _fail_under(config)
    if option_switch(config, C_COVERAGE):
        ckit.set_coverage(True)
    elif fail_under > 0:
        # A threshold without the measurement would be a gate that is off without anyone noticing.
        raw, where = option_source(config, OPTION_BY_FLAG[C_COVERAGE_FAIL_UNDER])
        msg = f"{C_COVERAGE_FAIL_UNDER} (from {where}) is {raw!r}, and the gate needs {C_COVERAGE}: without it no C coverage is measured (add {C_COVERAGE}, or drop the threshold)"
        raise pytest.UsageError(msg)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """On the process that reports, forget the counts earlier runs left in the build (workers start later)."""
    if not option_switch(session.config, C_COVERAGE) or hasattr(session.config, "workerinput"):
        return
    for build in ckit.coverage_builds():
        for stale in build.objects.glob("*.gcda"):
            stale.unlink(missing_ok=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave the kit as it was (an in-process run must not instrument or report the next one's builds)."""
    ckit.set_coverage(False)
    ckit.forget_coverage()


def gcovr_summary(builds: list[ckit.CoverageBuild]) -> dict[str, Any]:
    """gcovr's JSON summary of the builds' sources: per file and in total, lines and branches."""
    sources = sorted({s.resolve() for b in builds for s in b.sources})
    root = Path(os.path.commonpath([str(s.parent) for s in sources]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "summary.json"
        # --include-internal-functions: kernel-style static functions are named __like_this, which
        # gcovr otherwise takes for the compiler's own and leaves out, with their lines.
        command = [
            sys.executable, "-m", "gcovr", "--root", str(root), "--include-internal-functions", "--json-summary", str(out),
        ]
        for build in builds:
            command += ["--object-directory", str(build.objects), str(build.objects)]
        for source in sources:
            command += ["--filter", re.escape(str(source))]
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp)
        except OSError as exc:
            done = subprocess.CompletedProcess(command, -1, "", str(exc))
        if done.returncode != 0 or not out.is_file():
            msg = f"Cannot summarise the C coverage because gcovr failed (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()} (install gcovr, and build with gcc, whose gcov gcovr runs)"
            return {"error": msg}
        data: dict[str, Any] = json.loads(out.read_text())
        return data


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Every process writes its counts; the one that reports summarises them and applies the threshold."""
    config = session.config
    if not option_switch(config, C_COVERAGE):
        return
    ckit.dump_coverage()
    builds = ckit.coverage_builds()
    if hasattr(config, "workerinput") or session_of(config) is None:
        return
    threshold = _fail_under(config)
    if builds:
        summary = gcovr_summary(builds)
    else:
        # Asked for, with nothing to measure: a Python target builds no C code. Said, and a threshold
        # that nothing measured can meet fails the run rather than pass unnoticed.
        nothing = f"{C_COVERAGE}: the target built no C code to measure (it measures a C target built with pytest_spekvm.ckit)"
        summary = {"error": f"{nothing}, so {C_COVERAGE_FAIL_UNDER}={threshold:g} cannot be met"} if threshold > 0 else {"nothing": nothing}
    summary["fail_under"] = threshold
    config.stash[RESULT_KEY] = summary
    if "error" in summary or float(summary.get("line_percent", 0.0)) + 1e-9 < threshold:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Lines and branches of each C source the run executed, and the threshold's verdict."""
    summary = config.stash.get(RESULT_KEY, None)
    if summary is None:
        return
    tr = terminalreporter
    tr.write_sep("-", "spekvm C coverage (gcov, gcovr)")
    if "error" in summary:
        tr.write_line(f"spekvm FAILED: {summary['error']}")
        return
    if "nothing" in summary:
        tr.write_line(f"spekvm: nothing measured: {summary['nothing']}")
        return
    for entry in summary.get("files", []):
        tr.write_line(
            f"{entry['filename']:<40} lines {entry['line_covered']}/{entry['line_total']} ({entry['line_percent']}%)"
            f"  branches {entry['branch_covered']}/{entry['branch_total']} ({entry['branch_percent']}%)"
        )
    line = (
        f"TOTAL lines {summary['line_covered']}/{summary['line_total']} ({summary['line_percent']}%)"
        f"  branches {summary['branch_covered']}/{summary['branch_total']} ({summary['branch_percent']}%)"
    )
    tr.write_line(line)
    if float(summary["line_percent"]) + 1e-9 < summary["fail_under"]:
        tr.write_line(f"spekvm FAILED: C line coverage {summary['line_percent']}% is below {C_COVERAGE_FAIL_UNDER}={summary['fail_under']:g}")
