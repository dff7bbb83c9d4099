"""HOST-STATE: after every exit the host sees the SPE state it had before entry.

Sampling control, buffer control and MDCR_EL2's host bits, whatever happened on earlier runs;
only the architecture's own updates for the host's records (PMBPTR_EL1 advancing, a full buffer
setting PMBSR_EL1.S) may change them.
"""

from __future__ import annotations

import pytest

from pytest_spekvm import Features, SpekvmSession


@pytest.mark.spekvm_rule("HOST-STATE")
def test_host_state(spekvm: SpekvmSession, spekvm_rule: str, spekvm_cell: Features, request: pytest.FixtureRequest) -> None:
    """HOST-STATE holds on this feature cell under the scripted scenario."""
    spekvm.check_cell(spekvm_rule, spekvm_cell, request.node.nodeid)


@pytest.mark.spekvm_rule("HOST-STATE")
def test_host_state_sequences(spekvm: SpekvmSession, spekvm_rule: str, request: pytest.FixtureRequest) -> None:
    """HOST-STATE holds for generated features, event sequences and chooser answers."""
    spekvm.explore(spekvm_rule, request.node.nodeid)
