"""What the plugin's black-box tests share: checking that a run showed no traceback of its own."""

from __future__ import annotations

import pytest


def assert_no_traceback(result: pytest.RunResult) -> None:
    """Neither stream shows a Python traceback or a frame of the plugin."""
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    assert "pytest_spekvm/" not in output.replace("pytest_spekvm/reference", "")
