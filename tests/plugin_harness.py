"""What the plugin's black-box tests share: a two-cell feature space, an adapter that misbehaves on VHE
cells only, and checking that a run showed no traceback of its own."""

from __future__ import annotations

import pytest

# Two cells: nVHE and VHE with FEAT_SPE, no PMU, no optional flags. The smoke run at configure
# time uses the first (nVHE), so an adapter that misbehaves on VHE only is loaded and then tested.
TWO_CELLS = """
from pytest_spekvm import FeatureSpace, PmuLevel, SpeLevel


def pytest_spekvm_narrow_features(config, space):
    return FeatureSpace(spe={SpeLevel.SPE}, spe_owned_by_higher_el={False}, pmu={PmuLevel.NONE}, flags=set())
"""


# An adapter whose `{method}` does `{misbehave}` (indented 12 spaces) first on VHE cells: the smoke run
# (nVHE) loads it, the VHE cells then meet the misbehaviour.
ON_VHE = """
import sys, threading, time
import pytest
from pytest_spekvm.reference.switch import ReferenceSwitch
from pytest_spekvm.reference.trace import Kind, Trace


class Weird(BaseException):
    pass


class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("no text")

    def __repr__(self):
        raise RuntimeError("no repr")


class Switch(ReferenceSwitch):
    def {method}(self, cpu, vcpu, *args):
        if cpu.features.vhe:
{misbehave}
        return super().{method}(cpu, vcpu, *args)


spekvm_adapter = Switch
"""


def assert_no_traceback(result: pytest.RunResult) -> None:
    """Neither stream shows a Python traceback or a frame of the plugin."""
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    assert "pytest_spekvm/" not in output.replace("pytest_spekvm/reference", "")
