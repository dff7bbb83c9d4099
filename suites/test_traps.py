"""Traps and UNDEFINED: the guest cannot reach SPE, and nothing touches SPE where it does not exist.

TRAP-COND: MDCR_EL2.TPMS and E2PB are set only where FEAT_SPE exists; where it exists, every
guest access to an SPE register traps to EL2.
UNDEF: no SPE register is accessed without FEAT_SPE; no buffer register but PMBIDR_EL1 is
accessed while PMBIDR_EL1.P is 1.
"""

from __future__ import annotations

import pytest

from pytest_spekvm import Features, SpekvmSession


@pytest.mark.spekvm_rule("TRAP-COND")
def test_trap_cond(spekvm: SpekvmSession, spekvm_rule: str, spekvm_cell: Features, request: pytest.FixtureRequest) -> None:
    """TRAP-COND holds on this feature cell under the scripted scenario."""
    spekvm.check_cell(spekvm_rule, spekvm_cell, request.node.nodeid)


@pytest.mark.spekvm_rule("TRAP-COND")
def test_trap_cond_sequences(spekvm: SpekvmSession, spekvm_rule: str, request: pytest.FixtureRequest) -> None:
    """TRAP-COND holds for generated features, event sequences and chooser answers."""
    spekvm.explore(spekvm_rule, request.node.nodeid)


@pytest.mark.spekvm_rule("UNDEF")
def test_undef(spekvm: SpekvmSession, spekvm_rule: str, spekvm_cell: Features, request: pytest.FixtureRequest) -> None:
    """UNDEF holds on this feature cell under the scripted scenario."""
    spekvm.check_cell(spekvm_rule, spekvm_cell, request.node.nodeid)


@pytest.mark.spekvm_rule("UNDEF")
def test_undef_sequences(spekvm: SpekvmSession, spekvm_rule: str, request: pytest.FixtureRequest) -> None:
    """UNDEF holds for generated features, event sequences and chooser answers."""
    spekvm.explore(spekvm_rule, request.node.nodeid)
