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

COVERAGE_STARTERS = ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG")
"""The variables that make coverage start in a new Python process (its .pth file reads them)."""


def pytest_configure(config: pytest.Config) -> None:
    """Declare the `unmeasured` marker."""
    config.addinivalue_line(
        "markers",
        "unmeasured: run untraced under ./check's coverage: whole runs and whole example switches judged "
        "end to end, whose model, rule and plugin paths focused tests measure; traced, they cost 3x",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Pause coverage measurement, where it runs, for the duration of an `unmeasured` test's call
    (in this process, and in the processes it starts, which coverage would measure by the environment)."""
    if item.get_closest_marker("unmeasured") is None:
        return (yield)
    # Imported here: the README's first command loads this conftest without the test extra.
    import coverage  # noqa: PLC0415

    cov = coverage.Coverage.current()
    if cov is None:
        return (yield)
    cov.stop()
    with pytest.MonkeyPatch.context() as mp:
        for name in COVERAGE_STARTERS:
            mp.delenv(name, raising=False)
        try:
            return (yield)
        finally:
            cov.start()


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
