"""Project rules: the ones conftests and plugins add through the spekvm_add_rules hook."""

from __future__ import annotations

import pytest

from pytest_spekvm import Features, SpekvmSession


def test_project_rule(
    spekvm: SpekvmSession, spekvm_project_rule: str, spekvm_cell: Features, request: pytest.FixtureRequest
) -> None:
    """The added rule holds on this feature cell under the scripted scenario."""
    spekvm.check_cell(spekvm_project_rule, spekvm_cell, request.node.nodeid)


def test_project_rule_sequences(
    spekvm: SpekvmSession, spekvm_project_rule: str, request: pytest.FixtureRequest
) -> None:
    """The added rule holds for generated features, event sequences and chooser answers."""
    spekvm.explore(spekvm_project_rule, request.node.nodeid)
