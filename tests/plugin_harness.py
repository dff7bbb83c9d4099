"""What the plugin's black-box tests share: a two-cell feature space, and checking that a run showed no
traceback of its own."""

from __future__ import annotations

import pytest

# Two cells: nVHE and VHE with FEAT_SPE, no PMU, no optional flags. The smoke run at configure
# time uses the first (nVHE), so an adapter that misbehaves on VHE only is loaded and then tested.
TWO_CELLS = """
from pytest_spekvm import FeatureSpace, PmuLevel, SpeLevel


def pytest_spekvm_narrow_features(config, space):
    return FeatureSpace(spe={SpeLevel.SPE}, spe_owned_by_higher_el={False}, pmu={PmuLevel.NONE}, flags=set())
"""


def assert_no_traceback(result: pytest.RunResult) -> None:
    """Neither stream shows a Python traceback or a frame of the plugin."""
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    assert "pytest_spekvm/" not in output.replace("pytest_spekvm/reference", "")
