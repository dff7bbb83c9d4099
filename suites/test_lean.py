"""LEAN: the review's cost remarks, a severity of their own (deselect with -m "not lean").

On VHE the switch touches no SPE register and issues no SPE barrier ("The vcpu can run. but it
can't hide."; "I believe you can avoid that on VHE"); where SPE is absent, owned elsewhere or
unused, no PMSCR write and no SPE barrier ("this feels like hitting the brakes each time we
enter the guest"); restore writes PMSCR only when the save changed it.
"""

from __future__ import annotations

import pytest

from pytest_spekvm import Features, SpekvmSession


@pytest.mark.spekvm_rule("LEAN")
def test_lean(spekvm: SpekvmSession, spekvm_rule: str, spekvm_cell: Features, request: pytest.FixtureRequest) -> None:
    """LEAN holds on this feature cell under the scripted scenario."""
    spekvm.check_cell(spekvm_rule, spekvm_cell, request.node.nodeid)


@pytest.mark.spekvm_rule("LEAN")
def test_lean_sequences(spekvm: SpekvmSession, spekvm_rule: str, request: pytest.FixtureRequest) -> None:
    """LEAN holds for generated features, event sequences and chooser answers."""
    spekvm.explore(spekvm_rule, request.node.nodeid)
