"""The report header, the plugin for that job: the target, its feature space, its declared choices,
the adversaries and the hypothesis profile, at the top of a run with a target."""

from __future__ import annotations

import pytest

from .plugin import session_of


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
