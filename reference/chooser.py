"""The chooser: every nondeterministic decision the model makes is asked of one of these."""

from __future__ import annotations

import random
from typing import Protocol, runtime_checkable

EXIT_FROM_GUEST = "exception entry (exit from guest"
"""How the reason the CPU gives at a guest's exit to EL2 begins."""


@runtime_checkable
class Chooser(Protocol):
    """Answers the model's questions where the architecture allows more than one outcome.

    The model asks only where the answer can change what happens (DESIGN.md section 6), so a
    chooser sees few, meaningful questions.
    """

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """Whether an unsynchronised write of `new` over `old` to `register` is in effect now.

        Asked each time the model's behaviour depends on the register between an MSR and the
        next context synchronisation event.
        """
        ...

    def records_to_write(self, pending: int, reason: str) -> int:
        """How many of the `pending` collected records (oldest first) the PE writes out now.

        Asked just before `reason` (an event that may change the records' translation or the
        buffer's enable) happens. The answer is clamped to 0..pending.
        """
        ...


class WorstCaseChooser:
    """The adversary: keeps unsynchronised writes invisible, and holds records inside the PE
    through the whole entry, letting them out only when the guest exits to EL2.

    At that moment the guest's regime is certainly in force (the ERET synchronised it), so a
    record the entry did not drain is translated by the guest's tables or the hypervisor's,
    never by the host's: a missing drain always shows as a record in the wrong memory.
    """

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """An unsynchronised write is never in effect."""
        return False

    def records_to_write(self, pending: int, reason: str) -> int:
        """Everything at a guest exit, nothing anywhere else."""
        return pending if reason.startswith(EXIT_FROM_GUEST) else 0


class EagerChooser:
    """The opposite extreme: writes records at once and makes writes visible at once."""

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """An unsynchronised write is always in effect."""
        return True

    def records_to_write(self, pending: int, reason: str) -> int:
        """Every pending record is written straight away."""
        return pending


class RandomChooser:
    """A seeded pseudo-random chooser: the same seed gives the same run."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._random = random.Random(seed)

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """A coin toss."""
        return self._random.random() < 0.5

    def records_to_write(self, pending: int, reason: str) -> int:
        """A uniform choice from 0 to `pending`."""
        return self._random.randint(0, pending)

    def __repr__(self) -> str:
        return f"RandomChooser(seed={self.seed})"
