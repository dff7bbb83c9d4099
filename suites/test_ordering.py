"""Ordering: drain before the host's buffer loses its translation; re-enable only once it is back.

DRAIN-ORDER: before anything changes the translation the host's live buffer would use, or stops
the buffer, a context synchronisation event at EL2, then PSB CSYNC, then a DSB over loads and
stores; and the guest starts with its profiling off in force.
RESTORE-ORDER: host sampling resumes only with the host's translation and buffer ownership in
force ("The host page table is installed, but not yet synchronised"). docs/rules.md has both.
"""

from __future__ import annotations

import pytest

from pytest_spekvm import Features, SpekvmSession


@pytest.mark.spekvm_rule("DRAIN-ORDER")
def test_drain_order(spekvm: SpekvmSession, spekvm_rule: str, spekvm_cell: Features, request: pytest.FixtureRequest) -> None:
    """DRAIN-ORDER holds on this feature cell under the scripted scenario."""
    spekvm.check_cell(spekvm_rule, spekvm_cell, request.node.nodeid)


@pytest.mark.spekvm_rule("DRAIN-ORDER")
def test_drain_order_sequences(spekvm: SpekvmSession, spekvm_rule: str, request: pytest.FixtureRequest) -> None:
    """DRAIN-ORDER holds for generated features, event sequences and chooser answers."""
    spekvm.explore(spekvm_rule, request.node.nodeid)


@pytest.mark.spekvm_rule("RESTORE-ORDER")
def test_restore_order(spekvm: SpekvmSession, spekvm_rule: str, spekvm_cell: Features, request: pytest.FixtureRequest) -> None:
    """RESTORE-ORDER holds on this feature cell under the scripted scenario."""
    spekvm.check_cell(spekvm_rule, spekvm_cell, request.node.nodeid)


@pytest.mark.spekvm_rule("RESTORE-ORDER")
def test_restore_order_sequences(spekvm: SpekvmSession, spekvm_rule: str, request: pytest.FixtureRequest) -> None:
    """RESTORE-ORDER holds for generated features, event sequences and chooser answers."""
    spekvm.explore(spekvm_rule, request.node.nodeid)
