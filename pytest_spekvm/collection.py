"""Collecting the shipped suites, the plugin for that job: where they are and how they are imported,
the node ids a run printed given back as arguments, the cells and project rules they run over, the
rule each test checks (its `spekvm_rule` marker), their markers and keywords, and their fixtures."""

from __future__ import annotations

import functools
import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .options import TARGET_OPTION
from .plugin import session_of

if TYPE_CHECKING:
    from .session import SpekvmSession

LEAN_MARKER = "spekvm_lean"
RULE_MARKER = "spekvm_rule"
SELECTORS_KEY = pytest.StashKey[list[tuple[Path, str]]]()


def _suites_dir() -> Path:
    spec = importlib.util.find_spec("pytest_spekvm.suites")
    assert spec is not None, "pytest_spekvm.suites is part of the package"
    assert spec.submodule_search_locations, "pytest_spekvm.suites is a package"
    return Path(next(iter(spec.submodule_search_locations))).resolve()


SUITES_DIR = _suites_dir()
"""Where the shipped conformance suites are, whether installed or in a checkout."""


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Declare the markers; with a target (the session made), add the shipped suites to what pytest collects."""
    # `spekvm` and `spekvm_rule` in every run: --strict-markers refuses a project's own test marked
    # spekvm_rule, a suite file collected without a target, or `-m "not spekvm"`, if they are not declared.
    config.addinivalue_line("markers", "spekvm: a conformance check of pytest-spekvm")
    config.addinivalue_line("markers", f"{RULE_MARKER}(id): the rule a conformance check of pytest-spekvm judges")
    if session_of(config) is None:
        return
    config.addinivalue_line("markers", f"{LEAN_MARKER}: a LEAN check of pytest-spekvm (the review's cost remarks), not a correctness one")
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        add_suites(config)
    else:
        select_in_suites(config)


def add_suites(config: pytest.Config) -> None:
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
        return (given.resolve(), name) if is_suite(given) and given.is_file() and not inside_rootdir else None
    suite = SUITES_DIR / Path(path_part).name
    return (suite, name) if path_part.endswith(".py") and suite.is_file() else None


def select_in_suites(config: pytest.Config) -> None:
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


@functools.lru_cache(maxsize=1024)
def is_suite(path: Path) -> bool:
    """Whether `path` is a file of the suites folder (asked for every collected item: the answer is kept)."""
    try:
        return path.resolve().parent == SUITES_DIR
    except OSError:  # pragma: no cover - an unreadable path is simply not ours
        return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave out the project-rules suite when no plugin or conftest added a rule."""
    if collection_path.name == "test_project_rules.py" and is_suite(collection_path):
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
    if is_suite(module_path):
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
    rule_id = rule_of(request.node)
    if not rule_id:
        pytest.fail(f"{request.node.nodeid} asks for spekvm_rule but names no rule: mark it @pytest.mark.{RULE_MARKER}(RULE_ID)", pytrace=False)
    return rule_id


def rule_of(item: pytest.Item) -> str:
    """The id of the rule an item checks, from its `spekvm_rule` marker ('' if it has none)."""
    marker = item.get_closest_marker(RULE_MARKER)
    return str(marker.args[0]) if marker is not None and marker.args else ""


# tryfirst: the markers and keywords must be there before -m and -k deselect by them.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark suite items `spekvm` and LEAN ones `spekvm_lean` (-m), give them their rule id as a keyword (-k DRAIN-ORDER),
    and keep only the suite tests that node-id arguments named."""
    session = session_of(config)
    if session is None and not any(is_suite(item.path) for item in items):
        return
    from .rules import Severity

    selectors = config.stash.get(SELECTORS_KEY, [])
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if is_suite(item.path):
            item.add_marker(pytest.mark.spekvm)
            rule = session.rules.get(rule_of(item)) if session is not None else None
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


# tryfirst: on an xdist worker the check must empty the collection before xdist sends it to the controller.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """A --spekvm-reproduce value replays its rule's sequences test: a run that selects none is a usage
    error (the value came from another test). Under xdist the controller collects nothing and each
    worker collects the whole selection: a worker that finds no such test runs nothing and sends an
    empty collection, and the controller raises the error (pytest_xdist_node_collection_finished)."""
    spekvm = session_of(session.config)
    if spekvm is None or not spekvm.reproduce_rule:
        return
    if session.config.pluginmanager.has_plugin("dsession"):  # the xdist controller
        return
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if rule_of(item) == spekvm.reproduce_rule and (callspec is None or "spekvm_cell" not in callspec.params):
            return
    if hasattr(session.config, "workerinput"):
        session.items.clear()
        return
    raise pytest.UsageError(_no_such_test(spekvm.reproduce_rule))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """On the xdist controller: a worker's empty collection under --spekvm-reproduce is the usage error a run in one
    process gives (a worker empties it when it finds no test of the value's rule; one with nothing selected is as empty)."""
    spekvm = session_of(node.config)
    if spekvm is not None and spekvm.reproduce_rule and not ids:
        raise pytest.UsageError(_no_such_test(spekvm.reproduce_rule))


def _no_such_test(rule_id: str) -> str:
    from .options import REPRODUCE_OPTION

    return f"{REPRODUCE_OPTION} replays a sequence of {rule_id}'s sequences test, and this run selects no such test (it came from another test: run it with the command its report printed, or drop the -k/-m or node ids that deselect it)"
