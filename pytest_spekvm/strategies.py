"""Hypothesis strategies: CPU features, guest programs, and a chooser whose answers are drawn."""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import strategies as st

from .reference.chooser import Moment, WorstCaseChooser
from .reference.features import Features, PmuLevel, SpeLevel, possible
from .reference.registers import BY_NAME, SPE_REGISTERS
from .reference.vcpu import GuestAccess, GuestAction, GuestCode, GuestExit
from .space import FULL_SPACE, OPTIONAL_FLAGS, FeatureSpace

GUEST_SPE_REGISTERS = tuple(sorted(name for name in SPE_REGISTERS if BY_NAME[name].min_el == 1))
"""The SPE registers a guest may try to touch (all but PMBIDR_EL1 trap when the switch is right)."""


# The feature draws' strategies, made once (a CPU is drawn at the start of every sequence).
_VHE = st.integers(0, 2)
_SPE_ABSENT = st.integers(0, 3)
_EL3_ABSENT = st.integers(0, 7)
_OWNED = st.integers(0, 3)
_COUNTERS = st.integers(0, 31)
_FLAG = st.booleans()


@functools.cache
def _one_of_values(values: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


@st.composite
def features(draw: Any, space: FeatureSpace = FULL_SPACE) -> Features:
    """A valid CPU from `space`: every value of every dimension is reachable."""
    # nVHE is where the drain happens: two CPUs in three, when the space has both.
    vhe = draw(_one_of_values(tuple(sorted(space.vhe))), label="VHE") if len(space.vhe) == 1 else (
        draw(_VHE, label="VHE (2: yes)") == 2
    )
    # One CPU in four has no SPE (when the space allows both); the simplest CPU, and the one
    # shrinking heads for, has FEAT_SPE.
    levels = tuple(sorted(s for s in space.spe if s != SpeLevel.NONE))
    if levels and SpeLevel.NONE in space.spe:
        absent = draw(_SPE_ABSENT, label="SPE absent (3: yes)") == 3
    else:
        absent = not levels
    spe = SpeLevel.NONE if absent else draw(_one_of_values(levels), label="SPE level (PMSVer)")
    # Most KVM hosts have EL3: one CPU in eight has none (when the space allows both).
    el3 = sorted(space.el3)[0] if len(space.el3) == 1 else draw(_EL3_ABSENT, label="EL3 absent (7: yes)") != 7
    owners = space.owner_values(spe, el3) or [False]
    # PMBIDR_EL1.P=1 leaves nothing to switch: one CPU in four, so most runs have a buffer to use.
    owned = owners[0] if len(owners) == 1 else draw(_OWNED, label="PMBIDR_EL1.P (3: set)") == 3
    pmu = draw(_one_of_values(tuple(sorted(space.pmu))), label="PMU level (PMUVer)")
    counters = draw(_COUNTERS, label="PMU counters (HPMN)") if possible("pmu_counters", {"pmu": pmu}) else 0
    flags: dict[str, bool] = {}
    for flag in sorted(space.flags, key=OPTIONAL_FLAGS.index):
        if possible(flag, {"spe": SpeLevel(spe), "pmu": PmuLevel(pmu), **flags}):
            flags[flag] = draw(_FLAG, label=f"FEAT {flag}")
    return Features(vhe=vhe, spe=SpeLevel(spe), spe_owned_by_higher_el=owned, pmu=PmuLevel(pmu),
                    pmu_counters=counters, el3=el3, **flags)


# A guest action's parts, made once: guest programs are drawn at most steps of a sequence.
_ACTION_KIND = st.integers(0, 2)  # 0: run code (the simplest), 1: touch an SPE register, 2: exit
_SAMPLES = st.integers(0, 4)
_EL0 = st.booleans()
_GUEST_REGISTER = st.sampled_from(GUEST_SPE_REGISTERS)
_WRITE = st.booleans()
_GUEST_VALUE = st.sampled_from([0, 1, 3, 0xFFFF])
_EXIT_REASON = st.sampled_from(["hvc", "irq", "abort"])


@st.composite
def guest_actions(draw: Any) -> GuestAction:
    """One thing a guest does: run code, touch an SPE register, or exit.

    One composite, not `one_of` over `builds`: the same choices (which action, then its fields, each
    shrinking to its first value) with two layers of hypothesis' machinery fewer per action.
    """
    kind = draw(_ACTION_KIND, label="guest action (0: code, 1: SPE register, 2: exit)")
    if kind == 0:
        return GuestCode(samples=draw(_SAMPLES, label="guest samples"), el0=draw(_EL0, label="guest code at EL0"))
    if kind == 1:
        return GuestAccess(
            register=draw(_GUEST_REGISTER, label="guest register"), write=draw(_WRITE, label="guest writes it"),
            value=draw(_GUEST_VALUE, label="guest value"),
        )
    return GuestExit(reason=draw(_EXIT_REASON, label="guest exit reason"))


_GUEST_PROGRAMS = st.lists(guest_actions(), max_size=4).map(tuple)


def guest_programs() -> st.SearchStrategy[tuple[GuestAction, ...]]:
    """What a guest does during one run."""
    return _GUEST_PROGRAMS


# The chooser's strategies, made once: building a strategy costs more than drawing from it, and the
# model asks the chooser several times a step.
_DEPART = st.integers(0, 3)


@functools.cache
def _counts(pending: int) -> st.SearchStrategy[int]:
    return st.integers(0, pending)


@functools.cache
def _values(allowed: tuple[int, ...]) -> st.SearchStrategy[int]:
    return st.sampled_from(allowed)


class HypothesisChooser:
    """A chooser whose every answer is a labelled hypothesis draw, so shrinking minimises it too.

    Each draw is an offset from the worst-case adversary's answer: the simplest example, and the
    one shrinking heads for, is the adversary's, and hypothesis explores every other answer.
    """

    def __init__(self, data: Any = None) -> None:
        self.data = data
        self._worst = WorstCaseChooser()

    def _deviates(self, what: str) -> bool:
        # One answer in four departs from the adversary: most runs stay on the worst case, and
        # every other answer stays reachable.
        return bool(self.data.draw(_DEPART, label=f"depart from the worst case ({what})") == 3)

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """Drawn: is the unsynchronised write in effect? (simplest: not yet)"""
        worst = self._worst.write_visible(register, old, new)
        return not worst if self._deviates(f"write to {register} visible") else worst

    def records_to_write(self, pending: int, moment: Moment, detail: str) -> int:
        """Drawn: how many records the PE writes out at `moment` (simplest: the adversary's count)."""
        worst = self._worst.records_to_write(pending, moment, detail)
        if not self._deviates(f"records written at {moment.value}"):
            return worst
        return int(self.data.draw(_counts(pending), label=f"records written at {moment.value}"))

    def reserved_as(self, register: str, field: str, allowed: tuple[int, ...]) -> int:
        """Drawn: which of `allowed` a reserved value acts or reads back as (simplest: the adversary's)."""
        worst = self._worst.reserved_as(register, field, allowed)
        if not self._deviates(f"{register}.{field} reserved value"):
            return worst
        return int(self.data.draw(_values(allowed), label=f"{register}.{field} reserved value takes"))
