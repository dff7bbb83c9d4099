"""Where the records go: into the host's buffer, never elsewhere, and none lost.

ISOLATION: no profiling record reaches guest or hypervisor memory; the guest never reads a host
SPE value. NO-LOSS: every record the host's sampling produced reaches the host's buffer, unless
the architecture says it may be discarded (buffer full, buffer disabled by the host itself).
"""

from __future__ import annotations

import pytest

from pytest_spekvm import Features, SpekvmSession


@pytest.mark.spekvm_rule("ISOLATION")
def test_isolation(spekvm: SpekvmSession, spekvm_rule: str, spekvm_cell: Features, request: pytest.FixtureRequest) -> None:
    """ISOLATION holds on this feature cell under the scripted scenario."""
    spekvm.check_cell(spekvm_rule, spekvm_cell, request.node.nodeid)


@pytest.mark.spekvm_rule("ISOLATION")
def test_isolation_sequences(spekvm: SpekvmSession, spekvm_rule: str, request: pytest.FixtureRequest) -> None:
    """ISOLATION holds for generated features, event sequences and chooser answers."""
    spekvm.explore(spekvm_rule, request.node.nodeid)


@pytest.mark.spekvm_rule("NO-LOSS")
def test_no_loss(spekvm: SpekvmSession, spekvm_rule: str, spekvm_cell: Features, request: pytest.FixtureRequest) -> None:
    """NO-LOSS holds on this feature cell under the scripted scenario."""
    spekvm.check_cell(spekvm_rule, spekvm_cell, request.node.nodeid)


@pytest.mark.spekvm_rule("NO-LOSS")
def test_no_loss_sequences(spekvm: SpekvmSession, spekvm_rule: str, request: pytest.FixtureRequest) -> None:
    """NO-LOSS holds for generated features, event sequences and chooser answers."""
    spekvm.explore(spekvm_rule, request.node.nodeid)
