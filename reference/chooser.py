"""The chooser: every nondeterministic decision the model makes is asked of one of these."""

from __future__ import annotations

import enum
import random
from typing import Protocol, runtime_checkable


class Moment(enum.Enum):
    """Where the model asks a chooser how many collected records the PE writes out first.

    The model asks just before something the records depend on changes, so the answer decides
    which registers translate them (docs/model.md).
    """

    MSR = "msr"  # a write to a register a record's translation or the buffer's enable depends on
    EXCEPTION_ENTRY = "exception entry"  # any exception entry except the guest's exit to EL2
    GUEST_EXIT = "guest exit"  # the exception entry that ends a guest's run (exit to EL2)
    ERET = "eret"  # an exception return
    PSB = "psb"  # a PSB CSYNC: records collected after the last context synchronisation event
    BUFFER_STOPPED = "buffer stopped"  # in-flight writes when the buffer is disabled or its pointer moved


@runtime_checkable
class Chooser(Protocol):
    """Answers the model's questions where the architecture allows more than one outcome.

    The model asks only where the answer can change what happens, so a chooser sees few,
    meaningful questions. Decisions are made on the structured arguments (`Moment`, register
    names, values), never on the wording of a description.
    """

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """Whether an unsynchronised write of `new` over `old` to `register` is in effect now.

        Asked each time the model's behaviour depends on the register between an MSR and the
        next context synchronisation event.
        """
        ...

    def records_to_write(self, pending: int, moment: Moment, detail: str) -> int:
        """How many of `pending` records (oldest first) the PE writes out now, at `moment`.

        For `Moment.PSB` the records are those collected after the last context synchronisation
        event (a PSB is not guaranteed to synchronise them); for `Moment.BUFFER_STOPPED` they are
        writes a PSB started that no DSB has completed (the rest are discarded, D17.9.1 R_SXWCP).
        `detail` describes the moment for a reader. The answer is clamped to 0..pending.
        """
        ...

    def reserved_as(self, register: str, field: str, allowed: tuple[int, ...]) -> int:
        """Which of `allowed` a field holding a reserved value takes now (Arm ARM K1.2.19).

        Asked where the value acts (`allowed`: the allocated values it may behave as) and where a
        direct read returns it (`allowed`: every value of the field, since the read is UNKNOWN).
        """
        ...


class WorstCaseChooser:
    """The adversary: keeps unsynchronised writes invisible, and holds records inside the PE
    through the whole entry, letting them out only when the guest exits to EL2.

    At that moment the guest's regime is in force (unless the exit is not context synchronising,
    when the hypervisor's own choice of registers is), so a record the entry did not synchronise
    is translated by the guest's tables or the hypervisor's, never by the host's: a missing drain
    shows as a record in the wrong memory or lost. A write a PSB started but no DSB completed is
    discarded if the buffer is disabled.
    """

    name = "worst-case"

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """An unsynchronised write is never in effect."""
        return False

    def records_to_write(self, pending: int, moment: Moment, detail: str) -> int:
        """Everything at a guest exit, nothing anywhere else."""
        return pending if moment is Moment.GUEST_EXIT else 0

    def reserved_as(self, register: str, field: str, allowed: tuple[int, ...]) -> int:
        """The last allocated value (for MDCR_EL2.E2PB 0b01: 0b11, EL1 owns the buffer, nothing traps)."""
        return allowed[-1]

    def __repr__(self) -> str:
        return "WorstCaseChooser()"


class HoldingChooser:
    """The other extreme of timing: unsynchronised writes take effect at once, and the PE holds
    collected records for as long as the architecture lets it (until a PSB synchronises them, or a
    disable discards them).

    It exposes the mistakes the worst case hides: a buffer disabled before its records were
    synchronised and completed (they are discarded), sampling that comes back before the
    translation does, and traps that take effect before the guest runs only by luck.
    """

    name = "holding"

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """An unsynchronised write is in effect at once."""
        return True

    def records_to_write(self, pending: int, moment: Moment, detail: str) -> int:
        """Nothing, ever: records leave the PE only when a PSB must write them."""
        return 0

    def reserved_as(self, register: str, field: str, allowed: tuple[int, ...]) -> int:
        """The first allocated value (for MDCR_EL2.E2PB 0b01: 0b00, EL2 owns the buffer)."""
        return allowed[0]

    def __repr__(self) -> str:
        return "HoldingChooser()"


class SplitChooser:
    """An adversary that keeps translation stale and lets sampling controls through.

    Writes to the sampling and buffer controls (PMSCR_ELx, PMBLIMITR_EL1) take effect at once;
    writes to anything else (the translation regimes, MDCR_EL2, HCR_EL2) stay invisible until a
    context synchronisation event; records are written at every chance. So sampling turned back on
    before the host's translation is synchronised writes records through the wrong regime.
    """

    name = "split"
    FAST = frozenset({"PMSCR_EL1", "PMSCR_EL2", "PMBLIMITR_EL1"})

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """Sampling and buffer controls: at once; everything else: not until synchronised."""
        return register in self.FAST

    def records_to_write(self, pending: int, moment: Moment, detail: str) -> int:
        """Every record, every time."""
        return pending

    def reserved_as(self, register: str, field: str, allowed: tuple[int, ...]) -> int:
        """The first allocated value."""
        return allowed[0]

    def __repr__(self) -> str:
        return "SplitChooser()"


class EagerChooser:
    """Writes records at once and makes writes visible at once."""

    name = "eager"

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """An unsynchronised write is always in effect."""
        return True

    def records_to_write(self, pending: int, moment: Moment, detail: str) -> int:
        """Every pending record is written straight away."""
        return pending

    def reserved_as(self, register: str, field: str, allowed: tuple[int, ...]) -> int:
        """The first allocated value."""
        return allowed[0]

    def __repr__(self) -> str:
        return "EagerChooser()"


class RandomChooser:
    """A seeded pseudo-random chooser: the same seed gives the same run."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._random = random.Random(seed)

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """A coin toss."""
        return self._random.random() < 0.5

    def records_to_write(self, pending: int, moment: Moment, detail: str) -> int:
        """A uniform choice from 0 to `pending`."""
        return self._random.randint(0, pending)

    def reserved_as(self, register: str, field: str, allowed: tuple[int, ...]) -> int:
        """A uniform choice."""
        return self._random.choice(allowed)

    def __repr__(self) -> str:
        return f"RandomChooser(seed={self.seed})"


ADVERSARIES: tuple[type[WorstCaseChooser] | type[HoldingChooser] | type[SplitChooser], ...] = (
    WorstCaseChooser,
    HoldingChooser,
    SplitChooser,
)
"""The fixed adversaries every scripted cell runs under: each exposes a different class of mistake."""
