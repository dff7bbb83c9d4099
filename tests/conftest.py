"""Fixtures shared by the project's tests: a pytester that runs the plugin in isolation."""

from __future__ import annotations

from collections.abc import Iterator

import hypothesis.core
import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

# The plugin imports the model, the rules and hypothesis only when a run has a target. An
# in-process pytester run forgets the modules it imported when it ends, and the next one would load
# fresh copies of their classes beside the ones this process holds: import them here, once.
from pytest_spekvm import failures, rules, scenario, session, space, target  # noqa: F401
from pytest_spekvm.options import OPTIONS


@pytest.fixture
def spekvm_pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.Pytester]:
    """A pytester whose runs see no SPEKVM_* variable from the outside, keep their hypothesis
    database in their own folder, start from hypothesis' default profile, and leave the profile
    as they found it (an in-process run with --hypothesis-profile changes it for the whole process)."""
    for opt in OPTIONS:
        monkeypatch.delenv(opt.env, raising=False)
    profile = settings.get_current_profile_name()
    # An in-process --hypothesis-seed sets a process-wide forced seed that hypothesis never resets.
    monkeypatch.setattr(hypothesis.core, "global_force_seed", hypothesis.core.global_force_seed)
    settings.load_profile("default")
    set_hypothesis_home_dir(pytester.path / ".hypothesis")
    try:
        yield pytester
    finally:
        set_hypothesis_home_dir(None)
        settings.load_profile(profile)


def _weight(item: pytest.Item) -> int:
    """0 for a whole run (`no_cover`), 1 for a test that runs pytest in pytest, 2 for the rest."""
    if item.get_closest_marker("no_cover") is not None:
        return 0
    return 1 if "pytester" in getattr(item, "fixturenames", ()) else 2


def _mutant(item: pytest.Item) -> str:
    """The mutant a test is parametrized with ('' for none)."""
    callspec = getattr(item, "callspec", None)
    return str(callspec.params.get("mutant", "")) if callspec is not None else ""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first (a stable sort keeps each file's order): under xdist's worksteal
    distribution (./check) they start at once on the workers, and the short ones fill in beside them,
    instead of one long test running alone at the end. Within a weight, the tests of one mutant run
    one after the other, so the worker that judges it keeps its session for all of them (test_mutants.py)."""
    items.sort(key=lambda item: (_weight(item), _mutant(item)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print why each rerun test failed the first time: the rerun plugin lists only their names (-rR), and a
    rerun that passed would otherwise leave nothing to diagnose the race by."""
    reruns = terminalreporter.stats.get("rerun", [])
    if not reruns:
        return
    terminalreporter.section("why the rerun tests failed first")
    for report in reruns:
        terminalreporter.line(f"{report.nodeid}:")
        terminalreporter.line(str(report.longrepr))  # whole: the cause can sit anywhere in a pytester run's output
