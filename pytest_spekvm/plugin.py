"""The pytest plugin: options, target loading, suite collection, verdict table and report header."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import importlib
import importlib.util
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import hookspecs
from .timeouts import DEFAULT_TIMEOUT

# This module is imported in every pytest run of an environment where the package is installed,
# whether or not a target is given: it imports nothing beyond pytest and the standard library.
# The model, the rules and hypothesis are imported when a target is (or a suite file is collected).
if TYPE_CHECKING:
    from .rules import Rule
    from .session import SpekvmSession
    from .space import FeatureSpace
    from .target import Target

pytest_plugins = ["pytest_spekvm.budget", "pytest_spekvm.failures", "pytest_spekvm.xdist_cells"]

TARGET_OPTION = "--spekvm-target"
LIST_TARGETS_OPTION = "--spekvm-list-targets"
TIMEOUT_OPTION = "--spekvm-timeout"
REPRODUCE_OPTION = "--spekvm-reproduce"
MAX_TIMEOUT = 86400.0
"""The longest --spekvm-timeout, a day: beyond it, 0 (no limit) says what is meant."""
LEAN_MARKER = "spekvm_lean"
RULE_MARKER = "spekvm_rule"
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
    ),
    Option(
        "--spekvm-ledger", "spekvm_ledger", "spekvm_ledger", "SPEKVM_LEDGER", "",
        "TOML file of known deviations: a failure it lists is an expected failure with its reason.",
    ),
    Option(
        "--spekvm-ledger-strict", "spekvm_ledger_strict", "spekvm_ledger_strict", "SPEKVM_LEDGER_STRICT", "no",
        "fail the run when a ledger entry is stale (its checks ran and none failed as it says).",
        switch=True,
    ),
    Option(
        "--spekvm-ledger-write", "spekvm_ledger_write", "spekvm_ledger_write", "SPEKVM_LEDGER_WRITE", "",
        "write a ledger listing this run's failures to this TOML file (fill in the reasons).",
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
    ),
)
OPTION_BY_FLAG = {opt.flag: opt for opt in OPTIONS}

# Plugins that only a run with a target needs (they import hypothesis and the model): registered
# by pytest_configure once the target is loaded, so that a run without one stays free of them.
# The C coverage plugin comes first: it must instrument the C builds before the target loads.
TARGET_PLUGINS = ("pytest_spekvm.report", "pytest_spekvm.ledger", "pytest_spekvm.gates")

SESSION_KEY = pytest.StashKey["SpekvmSession"]()
SELECTORS_KEY = pytest.StashKey[list[tuple[Path, str]]]()


def _register(config: pytest.Config, name: str) -> None:
    """Register one of the plugin's own modules as a plugin; its pytest_configure runs now (a historic hook).

    Imported directly rather than through ``import_plugin``: these modules are part of an installed
    plugin, not test code, and an earlier in-process run (pytester) may already have imported them,
    which ``import_plugin`` would report as a module it cannot rewrite.
    """
    if config.pluginmanager.get_plugin(name) is None:
        config.pluginmanager.register(importlib.import_module(name), name)


def _suites_dir() -> Path:
    spec = importlib.util.find_spec("pytest_spekvm.suites")
    assert spec is not None, "pytest_spekvm.suites is part of the package"
    assert spec.submodule_search_locations, "pytest_spekvm.suites is a package"
    return Path(next(iter(spec.submodule_search_locations))).resolve()


SUITES_DIR = _suites_dir()
"""Where the shipped conformance suites are, whether installed or in a checkout."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Make the spekvm hookspecs known."""
    pluginmanager.add_hookspecs(hookspecs)


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
        parser.addini(opt.ini, f"{opt.help} (same as {opt.flag})", default=opt.default)
    group.addoption(
        REPRODUCE_OPTION, dest="spekvm_reproduce", default=None, metavar="RULE:VERSION:BLOB",
        help="replay one failing generated sequence exactly: the value a failure report printed "
        "(rule id, hypothesis version and @reproduce_failure blob); only that rule's sequences test "
        "replays it, the rest of the run is unchanged. Default: none.",
    )
    group.addoption(
        LIST_TARGETS_OPTION, action="store_true", default=False,
        help="list the targets installed packages offer (entry-point group 'spekvm_targets') and exit.",
    )


def option_source(config: pytest.Config, opt: Option) -> tuple[str, str]:
    """The option's value and where it came from: command line, then environment variable, then
    ini file, then default. The place reads as the user wrote it: '--spekvm-timeout', 'SPEKVM_TIMEOUT'."""
    value = config.getoption(opt.dest)
    if value is not None:
        return str(value), opt.flag
    value = os.environ.get(opt.env)
    if value is not None:
        return value, opt.env
    where = f"{opt.ini} in {config.inipath.name}" if config.inipath is not None else "the default"
    return str(config.getini(opt.ini) or ""), where


def option_path(config: pytest.Config, flag: str) -> Path | None:
    """A path option's value (None when empty); a relative path from the ini file is relative to that file."""
    value, where = option_source(config, OPTION_BY_FLAG[flag])
    if not value.strip():
        return None
    path = Path(value.strip()).expanduser()
    if where.startswith(f"{OPTION_BY_FLAG[flag].ini} in") and config.inipath is not None and not path.is_absolute():
        return config.inipath.parent / path
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


def _target_spec(config: pytest.Config) -> str:
    """--spekvm-target's value; a relative .py path from the ini file is relative to that file, as pytest's own ini paths are."""
    value, where = option_source(config, OPTIONS[0])
    if not value.strip() and where in (OPTIONS[0].flag, OPTIONS[0].env):
        msg = f"{TARGET_OPTION} (from {where}) is empty: give 'reference', an installed target, a dotted module name or a path to a .py file (an unset shell variable, as in {TARGET_OPTION}=$TARGET, expands to nothing)"
        raise pytest.UsageError(msg)
    path = Path(value.strip())
    ini_path = value.strip().endswith(".py") and where.startswith(OPTIONS[0].ini) and not path.is_absolute()
    if ini_path and config.inipath is not None:
        return str(config.inipath.parent / path)
    return value


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """--spekvm-list-targets: print the targets and exit."""
    if not config.getoption("spekvm_list_targets", False):
        return None
    from .target import entry_points

    print("spekvm targets:")
    print("  reference            the built-in reference switch (pytest_spekvm.reference.switch)")
    for name, ep in sorted(entry_points().items()):
        if name != "reference":
            dist = ep.dist.name if ep.dist is not None else "?"
            print(f"  {name:<20} {ep.value} (from {dist})")
    print("or a dotted module name, or a path to a .py file that defines spekvm_adapter")
    return 0


@pytest.hookimpl(trylast=True)
def pytest_spekvm_make_target(config: pytest.Config, spec: str) -> Target:
    """The default target factory: 'reference', an entry point, a dotted module or a .py path."""
    from .target import load

    return load(spec, _timeout(config))


def _timeout(config: pytest.Config) -> float:
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


def _reproduce(config: pytest.Config) -> tuple[str, str, bytes] | None:
    """--spekvm-reproduce=RULE:VERSION:BLOB (or VERSION:BLOB): (rule id or '', hypothesis version, blob)."""
    raw = config.getoption("spekvm_reproduce")
    if raw is None:
        return None
    import hypothesis

    parts = str(raw).strip().split(":")
    rule = parts.pop(0) if len(parts) == 3 and _RULE_ID.match(parts[0]) else ""
    version, blob = (parts[0], parts[1]) if len(parts) == 2 else ("", "")
    try:
        base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        version = ""
    if not version or not blob:
        msg = f"{REPRODUCE_OPTION}={raw!r} is not RULE:VERSION:BLOB (copy it from the failure report, e.g. {REPRODUCE_OPTION}=DRAIN-ORDER:{hypothesis.__version__}:AXicY2BgYAAAAAQAAQ==)"
        raise pytest.UsageError(msg)
    if version != hypothesis.__version__:
        msg = f"{REPRODUCE_OPTION}={raw!r} was recorded with hypothesis {version}, and this is hypothesis {hypothesis.__version__}, which reads it differently (install hypothesis=={version} to replay it, or run the test again to find the failure anew)"
        raise pytest.UsageError(msg)
    return rule, version, blob.encode()


def _extra_rules(config: pytest.Config) -> list[Rule]:
    from .rules import RULES, Rule

    extra: list[Rule] = []
    known = {r.id for r in RULES}
    for result in config.hook.pytest_spekvm_add_rules(config=config):
        for rule in result or ():
            if not isinstance(rule, Rule):
                msg = f"pytest_spekvm_add_rules returned {rule!r}, not a pytest_spekvm.Rule (build one with Rule(id=..., title=..., rationale=..., severity=..., family=..., check=...))"
                raise pytest.UsageError(msg)
            if rule.id in known:
                msg = f"pytest_spekvm_add_rules returned a rule with id {rule.id!r}, which is already taken (ids: {', '.join(sorted(known))})"
                raise pytest.UsageError(msg)
            known.add(rule.id)
            extra.append(rule)
    return extra


def _space(config: pytest.Config, target: Target) -> FeatureSpace:
    from .space import FeatureSpace

    space = target.space
    # pluggy leaves out the None results (hookspec: "return None to leave it as it is").
    for narrowed in config.hook.pytest_spekvm_narrow_features(config=config, space=space):
        if not isinstance(narrowed, FeatureSpace):
            msg = f"pytest_spekvm_narrow_features returned {narrowed!r}, not a pytest_spekvm.FeatureSpace"
            raise pytest.UsageError(msg)
        try:
            space = space.intersect(narrowed)
        except ValueError as exc:
            msg = f"pytest_spekvm_narrow_features left no CPU to test: {exc}"
            raise pytest.UsageError(msg) from exc
    return space


def _smoke(target: Target, space: FeatureSpace, timeout: float) -> None:
    """One setup and one run on the first cell: an adapter that cannot do even that is misused, not tested."""
    from .reference.chooser import WorstCaseChooser
    from .scenario import SCRIPT, AdapterFailure, Run

    cell = next(iter(space.cells()))
    try:
        run = Run.start(target, cell, WorstCaseChooser(), timeout)
        run.do(SCRIPT[0])
    except AdapterFailure as failure:
        msg = f"{TARGET_OPTION}={target.spec}: the adapter breaks the contract clause {failure.clause!r} on the first run ({cell.describe()}): {failure}"
        raise pytest.UsageError(msg) from None


def target_given(config: pytest.Config) -> bool:
    """Whether this run checks a target (and is not only listing the installed ones)."""
    return not config.getoption("spekvm_list_targets", False) and bool(_target_spec(config))


def pytest_configure(config: pytest.Config) -> None:
    """Load and validate the target once; add the shipped suites to what pytest collects."""
    config.addinivalue_line("markers", "spekvm: a conformance check of pytest-spekvm")
    config.addinivalue_line("markers", f"{RULE_MARKER}(id): the rule a conformance check of pytest-spekvm judges")
    if not target_given(config):
        return
    config.addinivalue_line("markers", f"{LEAN_MARKER}: a LEAN check of pytest-spekvm (the review's cost remarks), not a correctness one")
    from .budget import budget_of
    from .rules import RULES
    from .session import SpekvmSession
    from .target import Target, TargetError

    spec = _target_spec(config)
    timeout = _timeout(config)
    _register(config, "pytest_spekvm.ccoverage")
    try:
        target = config.hook.pytest_spekvm_make_target(config=config, spec=spec)
    except TargetError as exc:
        raise pytest.UsageError(str(exc)) from None
    if not isinstance(target, Target):
        msg = f"{TARGET_OPTION}={spec}: pytest_spekvm_make_target returned {target!r}, not a pytest_spekvm target (return pytest_spekvm.target.load(spec) or from_factory(...), or None to leave {spec!r} to the next implementation)"
        raise pytest.UsageError(msg)
    reproduce = _reproduce(config)
    rules = {r.id: r for r in (*RULES, *_extra_rules(config))}
    if reproduce is not None and reproduce[0] and reproduce[0] not in rules:
        msg = f"{REPRODUCE_OPTION} names the rule {reproduce[0]!r}, which this run does not have (rules: {', '.join(rules)}); copy the value from the failure report"
        raise pytest.UsageError(msg)
    space = _space(config, target)
    _smoke(target, space, timeout)
    fast_default, explain = budget_of(config)
    config.stash[SESSION_KEY] = SpekvmSession(
        target=target, space=space, rules=rules, timeout=timeout,
        reproduce=None if reproduce is None else reproduce[1:], reproduce_rule="" if reproduce is None else reproduce[0],
        fast_default=fast_default, explain=explain,
    )
    for name in TARGET_PLUGINS:
        _register(config, name)
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        _add_suites(config)
    else:
        _select_in_suites(config)


def _add_suites(config: pytest.Config) -> None:
    """No paths given: pytest collects its testpaths or the current directory, and the suites besides."""
    args = list(config.args)
    if not any(SUITES_DIR.is_relative_to(Path(arg).resolve()) for arg in args if Path(arg).exists()):
        args.append(str(SUITES_DIR))
    config.args = args


def _suite_selector(arg: str, config: pytest.Config) -> tuple[Path, str] | None:
    """(suite file, test name or '') if `arg` names a test of the shipped suites by the node id a run printed."""
    path_part, _, name = arg.partition("::")
    given = config.invocation_params.dir / path_part
    if given.exists():
        # A real path into the suites: pytest would name its items after the file itself when
        # the suites lie outside the rootdir ("::test_res0[...]"); select within the folder instead.
        inside_rootdir = SUITES_DIR.is_relative_to(config.rootpath)
        return (given.resolve(), name) if _is_suite(given) and given.is_file() and not inside_rootdir else None
    suite = SUITES_DIR / Path(path_part).name
    return (suite, name) if path_part.endswith(".py") and suite.is_file() else None


def _select_in_suites(config: pytest.Config) -> None:
    """Let the node ids a run printed ('test_res0.py::test_res0[nvhe-spe0-pmunone]') be given back as arguments.

    The suites are collected from their own folder, wherever pytest runs, so their node ids are
    relative to that folder and name no file in the current directory. Such an argument is
    replaced by the suites folder, and the items it does not name are deselected after collection.
    """
    selectors: list[tuple[Path, str]] = []
    args: list[str] = []
    for arg in config.args:
        selector = _suite_selector(arg, config)
        if selector is None:
            args.append(arg)
            continue
        selectors.append(selector)
        if str(SUITES_DIR) not in args:
            args.append(str(SUITES_DIR))
    if selectors:
        config.args = args
        config.stash[SELECTORS_KEY] = selectors


def _selected(item: pytest.Item, selectors: list[tuple[Path, str]]) -> bool:
    name = item.nodeid.partition("::")[2]
    return any(
        item.path == path and (not wanted or name == wanted or name.startswith((f"{wanted}[", f"{wanted}::")))
        for path, wanted in selectors
    )


def session_of(config: pytest.Config) -> SpekvmSession | None:
    """The spekvm session of this run, if a target was given."""
    return config.stash.get(SESSION_KEY, None)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """Target, where it came from, its feature space and the hypothesis profile."""
    session = session_of(config)
    if session is None:
        return None
    import attrs
    from hypothesis import settings

    from .reference.chooser import ADVERSARIES
    from .reference.system import Choices

    target = session.target
    version = f" {target.version}" if target.version else ""
    return [
        f"spekvm target: {target.name}{version} ({target.spec}) from {target.origin}",
        f"spekvm feature space: {session.space.describe()} ({sum(1 for _ in session.space.cells())} cells)",
        "spekvm implementation choices: "
        + ", ".join(f"{f.name}={getattr(target.choices, f.name)}" for f in attrs.fields(Choices)),
        "spekvm adversaries: scripted cells under "
        + ", ".join(a.name for a in ADVERSARIES)
        + "; generated sequences draw every timing choice",
        f"spekvm hypothesis profile: {settings.get_current_profile_name()}"
        + (" (suites use their fast default; choose with --hypothesis-profile)" if session.fast_default else ""),
    ]


def _is_suite(path: Path) -> bool:
    try:
        return path.resolve().parent == SUITES_DIR
    except OSError:  # pragma: no cover - an unreadable path is simply not ours
        return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave out the project-rules suite when no plugin or conftest added a rule."""
    if collection_path.name == "test_project_rules.py" and _is_suite(collection_path):
        session = session_of(config)
        if session is None:
            return True
        from .rules import RULES

        builtin = {r.id for r in RULES}
        if all(rule_id in builtin for rule_id in session.rules):
            return True
    return None


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """The suites folder is a plain directory to pytest: its package is imported by name, not by path."""
    if path.resolve() == SUITES_DIR:
        return pytest.Dir.from_parent(parent, path=path)
    return None


class SuiteModule(pytest.Module):
    """A suite file, imported as pytest_spekvm.suites.NAME wherever it lives, so it has one name."""

    def _getobj(self) -> Any:
        return importlib.import_module(f"pytest_spekvm.suites.{self.path.stem}")


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """Suite files get the SuiteModule collector."""
    if _is_suite(module_path):
        return SuiteModule.from_parent(parent, path=module_path)
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`spekvm_cell` runs over every discrete cell of the feature space; `spekvm_project_rule` over added rules."""
    session = session_of(metafunc.config)
    if "spekvm_cell" in metafunc.fixturenames:
        from .space import cell_id

        cells = list(session.space.cells()) if session is not None else []
        metafunc.parametrize("spekvm_cell", cells, ids=[cell_id(c) for c in cells])
    if "spekvm_project_rule" in metafunc.fixturenames:
        from .rules import RULES

        builtin = {r.id for r in RULES}
        extra = [r for r in session.rules.values() if r.id not in builtin] if session is not None else []
        params = [pytest.param(r.id, id=r.id, marks=getattr(pytest.mark, RULE_MARKER)(r.id)) for r in extra]
        metafunc.parametrize("spekvm_project_rule", params)


@pytest.fixture(scope="session")
def spekvm(request: pytest.FixtureRequest) -> SpekvmSession:
    """The spekvm session: the target, the feature space, the rules, and the checks."""
    session = session_of(request.config)
    if session is None:
        pytest.skip(f"no target given: run with {TARGET_OPTION}=reference (or your own adapter)")
    return session


@pytest.fixture
def spekvm_rule(request: pytest.FixtureRequest) -> str:
    """The id of the rule this test checks: the one its `spekvm_rule` marker names."""
    rule_id = _rule_of(request.node)
    if not rule_id:
        pytest.fail(f"{request.node.nodeid} asks for spekvm_rule but names no rule: mark it @pytest.mark.{RULE_MARKER}(RULE_ID)", pytrace=False)
    return rule_id


def _rule_of(item: pytest.Item) -> str:
    """The id of the rule an item checks, from its `spekvm_rule` marker ('' if it has none)."""
    marker = item.get_closest_marker(RULE_MARKER)
    return str(marker.args[0]) if marker is not None and marker.args else ""


# tryfirst: the markers and keywords must be there before -m and -k deselect by them.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark suite items `spekvm` and LEAN ones `spekvm_lean` (-m), give them their rule id as a keyword (-k DRAIN-ORDER),
    and keep only the suite tests that node-id arguments named."""
    session = session_of(config)
    if session is None and not any(_is_suite(item.path) for item in items):
        return
    from .rules import Severity

    selectors = config.stash.get(SELECTORS_KEY, [])
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if _is_suite(item.path):
            item.add_marker(pytest.mark.spekvm)
            rule = session.rules.get(_rule_of(item)) if session is not None else None
            if rule is not None:
                item.extra_keyword_matches.add(rule.id)
            if rule is not None and rule.severity is Severity.LEAN:
                item.add_marker(LEAN_MARKER)
            if selectors and not _selected(item, selectors):
                dropped.append(item)
                continue
        kept.append(item)
    if dropped:
        items[:] = kept
        config.hook.pytest_deselected(items=dropped)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker, send the verdicts to the controller."""
    spekvm_session = session_of(session.config)
    workeroutput = getattr(session.config, "workeroutput", None)
    if spekvm_session is not None and workeroutput is not None:
        workeroutput["spekvm_verdicts"] = spekvm_session.verdicts.to_dict()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the xdist controller, add a worker's verdicts."""
    data = getattr(node, "workeroutput", {}).get("spekvm_verdicts")
    spekvm_session = session_of(node.config)
    if data and spekvm_session is not None:
        spekvm_session.verdicts.merge(data)


def _rule_rows(rules: Iterable[Rule]) -> list[tuple[str, str, str]]:
    return [(r.id, r.severity.value, r.title) for r in rules]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The verdict per rule, and which feature combinations the run exercised."""
    session = session_of(config)
    if session is None:
        return
    tr = terminalreporter
    for line in session.replayed:
        tr.write_line(f"spekvm {REPRODUCE_OPTION}: {line}")
    if not session.verdicts.tallies:
        return
    tr.write_sep("=", f"spekvm verdicts for {session.target.name}")
    for line in session.verdicts.table(_rule_rows(session.rules.values())):
        tr.write_line(line)
    dims = session.verdicts.dimensions
    verdicts = session.verdicts
    rate = f" ({verdicts.steps / verdicts.seconds:,.0f} steps/s)" if verdicts.seconds else ""
    tr.write_line(f"scenario steps: {verdicts.steps:,} in {verdicts.seconds:.1f} s of checks{rate}")
    tr.write_line(
        f"feature combinations exercised: {len(session.verdicts.combinations)}; "
        + "; ".join(f"{name} {{{', '.join(sorted(values))}}}" for name, values in sorted(dims.items()))
    )
