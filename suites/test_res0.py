"""RES0: no write puts a 1 in a bit that is RES0 for this CPU's features, in any register.

Review: "This is RES0 on CPUs that do not implement SPE. Can we make this conditional on SPE
being available?" A read-modify-write that carries back a bit the CPU let through counts too.
"""

from __future__ import annotations

import pytest

from pytest_spekvm import Features, SpekvmSession


@pytest.mark.spekvm_rule("RES0")
def test_res0(spekvm: SpekvmSession, spekvm_rule: str, spekvm_cell: Features, request: pytest.FixtureRequest) -> None:
    """RES0 holds on this feature cell under the scripted scenario and the worst-case chooser."""
    spekvm.check_cell(spekvm_rule, spekvm_cell, request.node.nodeid)


@pytest.mark.spekvm_rule("RES0")
def test_res0_sequences(spekvm: SpekvmSession, spekvm_rule: str, request: pytest.FixtureRequest) -> None:
    """RES0 holds for generated features, event sequences and chooser answers."""
    spekvm.explore(spekvm_rule, request.node.nodeid)
