"""The generated sequences' budget and hypothesis' own options: which profile the suites run with,
the plugin's `spekvm-thorough` profile, `--hypothesis-explain` and `--hypothesis-show-statistics`.

The suites run their fast default unless the user chose a budget: `--hypothesis-profile`, a profile
their conftest loaded, or the `ci` profile hypothesis loads by itself on CI. hypothesis' pytest
plugin derives a profile from the loaded one for `--hypothesis-verbosity` and `--hypothesis-explain`
(`default-with-verbose-verbosity`); that changes how the run reports, not what it runs, so the choice
is read before hypothesis' plugin configures, never from the profile's name afterwards.

Nothing here imports hypothesis unless a target is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest

THOROUGH = "spekvm-thorough"
"""The plugin's own profile: 400 sequences per rule of up to 40 steps."""

_CHOSEN = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """With a target: register `spekvm-thorough` before hypothesis' plugin loads `--hypothesis-profile`,
    and note whether the user chose a budget."""
    from .options import target_given

    if not target_given(config):
        return
    from hypothesis import settings

    settings.register_profile(THOROUGH, max_examples=400, stateful_step_count=40, deadline=None, print_blob=True)
    _check_profile(config)
    # hypothesis' "default" profile, loaded or named, is what the fast default stands in for.
    profile = config.getoption("hypothesis_profile", None) or settings.get_current_profile_name()
    config.stash[_CHOSEN] = profile != "default"


def _check_profile(config: pytest.Config) -> None:
    """--hypothesis-profile names a registered profile: a usage error here, before hypothesis' own plugin
    would stop on it with an INTERNALERROR."""
    from hypothesis import settings

    name = config.getoption("hypothesis_profile", None)
    known = sorted(getattr(settings, "_profiles", {}))
    if name and known and name not in known:
        msg = f"--hypothesis-profile={name!r} is not a registered hypothesis profile (registered: {', '.join(known)}; the plugin's own is {THOROUGH})"
        raise pytest.UsageError(msg)


def budget_of(config: pytest.Config) -> tuple[bool, bool]:
    """Whether the fast default applies, and whether to explain failures (--hypothesis-explain)."""
    return not config.stash.get(_CHOSEN, False), bool(config.getoption("hypothesis_explain", False))


EVENT_WIDTH = 120
"""Events longer than this are cut: hypothesis describes a retried rule draw with the repr of every rule."""


def _shorten_events(stats: dict[str, Any]) -> None:
    for key, phase in stats.items():
        if not (key.endswith("-phase") and isinstance(phase, dict)):
            continue
        for case in phase.get("test-cases", ()):
            events = case.get("events") if isinstance(case, dict) else None
            if isinstance(events, list):
                case["events"] = [e if len(str(e)) <= EVENT_WIDTH else f"{str(e)[:EVENT_WIDTH - 3]}..." for e in events]


def _uses_spekvm(item: pytest.Item) -> bool:
    return "spekvm" in getattr(item, "fixturenames", ()) and item.get_closest_marker("hypothesis") is None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Under `--hypothesis-show-statistics`, hand the statistics of a test's generated sequences to
    hypothesis' plugin, which prints them in its statistics section as it does for `@given` tests."""
    if not (item.config.getoption("hypothesis_show_statistics", False) and _uses_spekvm(item)):
        return (yield)
    from hypothesis.statistics import collector, describe_statistics

    def note(stats: dict[str, Any]) -> None:
        stats["nodeid"] = item.nodeid
        _shorten_events(stats)
        described = describe_statistics(cast(Any, stats))
        previous = getattr(item, "hypothesis_statistics", "")
        item.hypothesis_statistics = f"{previous}\n\n{described}" if previous else described  # type: ignore[attr-defined]

    callback: Callable[[dict[str, Any]], None] = note
    with cast(Any, collector).with_value(callback):
        return (yield)
