"""The plugin's options, the plugin for that job: each option declared once with its ini and
environment twins (`OPTIONS`), and read back with where its value came from, checked.

PYTEST_DONT_REWRITE: plugin.py imports this module before pytest reaches it in `pytest_plugins`,
too late to rewrite its asserts (it has none), and pytest would warn of that in every run.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import pytest

from .timeouts import DEFAULT_TIMEOUT

# Imported in every pytest run (see plugin.py): pytest and the standard library only.

TARGET_OPTION = "--spekvm-target"
LIST_TARGETS_OPTION = "--spekvm-list-targets"
TIMEOUT_OPTION = "--spekvm-timeout"
REPRODUCE_OPTION = "--spekvm-reproduce"
NO_SHRINK_OPTION = "--spekvm-no-shrink"
MAX_TIMEOUT = 86400.0
"""The longest --spekvm-timeout, a day: beyond it, 0 (no limit) says what is meant."""
_RULE_ID = re.compile(r"[A-Z][A-Z0-9-]*\Z")


# dataclasses, not attrs: pytest has imported dataclasses already, attrs would cost every pytest run.
@dataclasses.dataclass(frozen=True)
class Option:
    """One option, declared once: its command-line flag, ini twin, environment twin and default."""

    flag: str
    dest: str
    ini: str
    env: str
    default: str
    help: str
    switch: bool = False  # a flag without a value on the command line; "yes"/"no" in ini and env
    number: bool = False  # a number: in pytest's native TOML table it may be a TOML number


OPTIONS: tuple[Option, ...] = (
    Option(
        TARGET_OPTION, "spekvm_target", "spekvm_target", "SPEKVM_TARGET", "",
        "implementation to check: 'reference' (the built-in reference switch), an installed target "
        "(see --spekvm-list-targets), a dotted module name, or a path to a .py file defining "
        "spekvm_adapter. Without it the conformance suites do not run.",
    ),
    Option(
        TIMEOUT_OPTION, "spekvm_timeout", "spekvm_timeout", "SPEKVM_TIMEOUT", f"{DEFAULT_TIMEOUT:g}",
        "seconds one call into the adapter (setup_vcpu, vcpu_run) may take before it is reported "
        "as hanging; 0 disables the limit.",
        number=True,
    ),
    Option(
        "--spekvm-report", "spekvm_report", "spekvm_report", "SPEKVM_REPORT", "",
        "write the run's verdicts, cells, coverage, failures (with fingerprints) and gates to this "
        "JSON file (schema: pytest_spekvm/report.schema.json).",
    ),
    Option(
        "--spekvm-fail-on", "spekvm_fail_on", "spekvm_fail_on", "SPEKVM_FAIL_ON", "all",
        "comma-separated rule severities whose failures fail the run ('all', or e.g. 'correctness'); "
        "failures of the other severities are reported and leave the exit status alone.",
    ),
    Option(
        "--spekvm-never-exercised", "spekvm_never_exercised", "spekvm_never_exercised",
        "SPEKVM_NEVER_EXERCISED", "fail",
        "what a rule that no check exercised does to the run when the feature space lets the reference "
        "switch reach it: 'fail' or 'warn' (a rule the space cannot reach is reported not applicable).",
    ),
    Option(
        "--spekvm-min-coverage", "spekvm_min_coverage", "spekvm_min_coverage", "SPEKVM_MIN_COVERAGE", "0",
        "the least share, in percent, of reachable (rule, precondition) pairs the run must exercise.",
        number=True,
    ),
    Option(
        "--spekvm-ledger", "spekvm_ledger", "spekvm_ledger", "SPEKVM_LEDGER", "",
        "TOML file of known deviations: a failure it lists is an expected failure with its reason.",
    ),
    Option(
        "--spekvm-ledger-strict", "spekvm_ledger_strict", "spekvm_ledger_strict", "SPEKVM_LEDGER_STRICT", "no",
        "fail the run when a ledger entry is stale (its scripted checks ran and none failed as it says; "
        "generated sequences that miss a listed failure prove nothing, and never make an entry stale).",
        switch=True,
    ),
    Option(
        "--spekvm-ledger-write", "spekvm_ledger_write", "spekvm_ledger_write", "SPEKVM_LEDGER_WRITE", "",
        "write a ledger listing this run's failures to this TOML file (fill in the reasons).",
    ),
    Option(
        NO_SHRINK_OPTION, "spekvm_no_shrink", "spekvm_no_shrink", "SPEKVM_NO_SHRINK", "no",
        "report a failing generated sequence as hypothesis first found it, without shrinking it to a "
        "short one: the verdict comes sooner, the report's steps are longer, and its --spekvm-reproduce "
        "value replays it the same.",
        switch=True,
    ),
    Option(
        "--spekvm-c-coverage", "spekvm_c_coverage", "spekvm_c_coverage", "SPEKVM_C_COVERAGE", "no",
        "build a C target (pytest_spekvm.ckit) with gcov instrumentation and report the line and branch "
        "coverage of its sources at the end of the run (needs gcc and gcovr).",
        switch=True,
    ),
    Option(
        "--spekvm-c-coverage-fail-under", "spekvm_c_coverage_fail_under", "spekvm_c_coverage_fail_under",
        "SPEKVM_C_COVERAGE_FAIL_UNDER", "0",
        "with --spekvm-c-coverage: the least line coverage, in percent, of the C sources.",
        number=True,
    ),
)
OPTION_BY_FLAG = {opt.flag: opt for opt in OPTIONS}

# pytest 9.2 takes a type expression for an ini option. In its native TOML table ([tool.pytest]) a value
# then has to be of that type, so a plain `str` would refuse `spekvm_no_shrink = true`: a switch also
# takes a TOML bool there, a number a TOML number. String first, so that ini files and -o still give
# the text this module parses and checks itself. Older pytest reads every TOML value as text anyway.
_TYPED_INI = tuple(int(part) for part in re.findall(r"\d+", pytest.__version__)[:2]) >= (9, 2)


def pytest_addoption(parser: pytest.Parser) -> None:
    """The spekvm option group; each option has an ini and an environment twin."""
    group = parser.getgroup("spekvm", "pytest-spekvm: SPE world-switch conformance")
    for opt in OPTIONS:
        shown = opt.default or "none"
        kind: dict[str, Any] = {"action": "store_const", "const": "yes"} if opt.switch else {"metavar": "VALUE"}
        group.addoption(
            opt.flag, dest=opt.dest, default=None, **kind,
            help=f"{opt.help} Also ini '{opt.ini}' and environment {opt.env}; default: {shown}.",
        )
        typed: Any = (str | bool if opt.switch else str | float if opt.number else str) if _TYPED_INI else None
        parser.addini(opt.ini, f"{opt.help} (same as {opt.flag})", type=typed, default=opt.default)
    group.addoption(
        REPRODUCE_OPTION, dest="spekvm_reproduce", default=None, metavar="RULE@TARGET:VERSION:BLOB",
        help="replay one failing generated sequence exactly: the value a failure report printed "
        "(rule id, target name, hypothesis version and @reproduce_failure blob); only that rule's sequences test "
        "replays it, the rest of the run is unchanged. Default: none.",
    )
    group.addoption(
        LIST_TARGETS_OPTION, action="store_true", default=False,
        help="list the targets installed packages offer (entry-point group 'spekvm_targets') and exit.",
    )


def _given_with_o(config: pytest.Config, ini: str) -> bool:
    """Whether -o/--override-ini gave the ini option `ini`, the value getini then returns."""
    # What getini reads: pytest 8 keeps it in the private config._override_ini; pytest 9 has no such
    # attribute and reads the parsed -o values (those of the ini file's addopts too, as pytest 8 does not).
    overrides = getattr(config, "_override_ini", None)
    if overrides is None:  # pragma: no branch - the installed pytest takes one way only (CI measures pytest 9)
        overrides = config.getoption("override_ini", None) or ()
    return any(str(given).partition("=")[0] == ini for given in overrides)


def option_source(config: pytest.Config, opt: Option) -> tuple[str, str]:
    """The option's value and where it came from: command line, then environment variable, then
    -o, then ini file, then default. The place reads as the user wrote it: '--spekvm-timeout', 'SPEKVM_TIMEOUT',
    'spekvm_timeout, given with -o', 'spekvm_timeout in pytest.ini'."""
    value = config.getoption(opt.dest)
    if value is not None:
        return str(value), opt.flag
    value = os.environ.get(opt.env)
    if value is not None:
        return value, opt.env
    ini = config.getini(opt.ini)  # text, or under pytest 9.2's native TOML a bool or a number
    value = "" if ini is None else str(ini)
    if _given_with_o(config, opt.ini):
        return value, f"{opt.ini}, given with -o"
    if config.inipath is not None:
        return value, f"{opt.ini} in {config.inipath.name}"
    return value, "the default" if value == opt.default else f"{opt.ini}, given with -o"


def option_path(config: pytest.Config, flag: str) -> Path | None:
    """A path option's value (None when empty); a relative path from the ini file is relative to that file, one from
    the command line, the environment or -o to the folder pytest started in."""
    value, where = option_source(config, OPTION_BY_FLAG[flag])
    if not value.strip():
        return None
    path = Path(value.strip()).expanduser()
    if where.startswith(f"{OPTION_BY_FLAG[flag].ini} in") and config.inipath is not None and not path.is_absolute():
        return config.inipath.parent / path
    return path


def option_output_path(config: pytest.Config, flag: str, example: str) -> Path | None:
    """A path option the run writes a file to (None when empty): not a folder, and under a folder that
    exists or can be made; anything else is a usage error with an `example`."""
    path = option_path(config, flag)
    if path is None:
        return None
    raw, where = option_source(config, OPTION_BY_FLAG[flag])
    # os.path's tests, not Path's: they answer False where stat fails for want of permission, which
    # the write at the end of the run then reports.
    if os.path.isdir(path):
        msg = f"{flag} (from {where}) is {raw!r}, a folder, not a file path (give a file path, e.g. {flag}={example})"
        raise pytest.UsageError(msg)
    folder = path.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not os.path.isdir(folder):
        msg = f"{flag} (from {where}) is {raw!r}, whose folder cannot be made because {folder} is not a folder (give a file path whose folder exists or can be made, e.g. {flag}={example})"
        raise pytest.UsageError(msg)
    return path


def option_switch(config: pytest.Config, flag: str) -> bool:
    """A yes/no option's value; anything else is a usage error naming the accepted forms."""
    raw, where = option_source(config, OPTION_BY_FLAG[flag])
    value = raw.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("", "0", "no", "false", "off"):
        return False
    msg = f"{flag} (from {where}) is {raw!r}, not yes or no (give yes/no, true/false, on/off or 1/0)"
    raise pytest.UsageError(msg)


def option_percent(config: pytest.Config, flag: str, example: int) -> float:
    """A percentage option's value (0 to 100); anything else is a usage error with an `example`."""
    raw, where = option_source(config, OPTION_BY_FLAG[flag])
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        msg = f"{flag} (from {where}) is {raw!r}, not a percentage from 0 to 100 (give e.g. {flag}={example})"
        raise pytest.UsageError(msg)
    return value


def target_spec(config: pytest.Config) -> str:
    """--spekvm-target's value; a relative .py path from the ini file is relative to that file, as pytest's own ini paths are."""
    value, where = option_source(config, OPTIONS[0])
    if not value.strip() and where in (OPTIONS[0].flag, OPTIONS[0].env):
        msg = f"{TARGET_OPTION} (from {where}) is empty: give 'reference', an installed target, a dotted module name or a path to a .py file (an unset shell variable, as in {TARGET_OPTION}=$TARGET, expands to nothing)"
        raise pytest.UsageError(msg)
    path = Path(value.strip())
    ini_path = value.strip().endswith(".py") and where.startswith(f"{OPTIONS[0].ini} in ") and not path.is_absolute()
    if ini_path and config.inipath is not None:
        return str(config.inipath.parent / path)
    return value


def target_given(config: pytest.Config) -> bool:
    """Whether this run checks a target (and is not only listing the installed ones)."""
    return not config.getoption("spekvm_list_targets", False) and bool(target_spec(config))


def timeout_of(config: pytest.Config) -> float:
    opt = OPTIONS[1]
    raw, where = option_source(config, opt)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    # The limit is a POSIX interval timer: it cannot hold infinity or NaN, nor billions of seconds.
    if not 0 <= value <= MAX_TIMEOUT:
        msg = f"{TIMEOUT_OPTION} (from {where}) is {raw!r}, not a number of seconds from 0 to {MAX_TIMEOUT:g} (give e.g. {TIMEOUT_OPTION}=10, or 0 for no limit)"
        raise pytest.UsageError(msg)
    return value


def reproduce_of(config: pytest.Config) -> tuple[str, str, str, bytes] | None:
    """--spekvm-reproduce=RULE@TARGET:VERSION:BLOB (RULE:VERSION:BLOB and VERSION:BLOB are accepted too):
    (rule id or '', target name or '', hypothesis version, blob)."""
    raw = config.getoption("spekvm_reproduce")
    if raw is None:
        return None
    import hypothesis

    # The version and the blob (base64) hold no ':', the target's name may: split from the right.
    parts = str(raw).strip().rsplit(":", 2)
    head = parts.pop(0) if len(parts) == 3 else ""
    rule, _, target = head.partition("@")
    version, blob = (parts[0], parts[1]) if len(parts) == 2 and (not rule or _RULE_ID.match(rule)) else ("", "")
    try:
        base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        version = ""
    if not version or not blob or (head and not target and "@" in head):
        msg = f"{REPRODUCE_OPTION}={raw!r} is not RULE@TARGET:VERSION:BLOB (copy it from the failure report, e.g. {REPRODUCE_OPTION}=DRAIN-ORDER@reference:{hypothesis.__version__}:AXicY2BgYAAAAAQAAQ==)"
        raise pytest.UsageError(msg)
    if version != hypothesis.__version__:
        msg = f"{REPRODUCE_OPTION}={raw!r} was recorded with hypothesis {version}, and this is hypothesis {hypothesis.__version__}, which reads it differently (install hypothesis=={version} to replay it, or run the test again to find the failure anew)"
        raise pytest.UsageError(msg)
    return rule, target, version, blob.encode()
