"""The machinery every rule shares: register replay and the window walk over a trace.

A checker reads the trace once, in order. Two classes rebuild what it needs from the events alone
(never from the CPU object, so a rule judges exactly what the trace shows):

- `RegisterReplay` gives every register's value after each event, and `in_force` the values the
  PE may still use for a register before the next context synchronisation event;
- `Walk` is a `RegisterReplay` that also knows where the trace is relative to the world switch's
  windows (`Phase`): the host, the entry window, the guest, the exit window. It keeps the
  registers as they were when the current entry window began (`at_entry`), whether the host's
  buffer was live then (`live`), and the trap controls the boot code left (`boot`).

A project's own rule can use both; the pattern is to read the state for an event, then step past it::

    from pytest_spekvm.reference.trace import Kind
    from pytest_spekvm.rules import Breach, Found, Phase, Walk

    def check(trace, features):  # no PMSCR_EL1 write in an exit window
        walk = Walk(features)
        found = []
        for e in trace.events:
            if walk.phase is Phase.EXIT and e.kind is Kind.MSR and e.register == "PMSCR_EL1":
                found.append(Breach(e.seq, f"PMSCR_EL1 written in the exit window at #{e.seq}"))
            walk.step(e)
        return Found(exercised=walk.entry >= 0, breaches=found)

The terms (entry window, live, in force, CSE) are defined in docs/rules.md#terms.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping

from ..reference import memory as M
from ..reference.actors import BOOT
from ..reference.features import Features
from ..reference.registers import PMBLIMITR_E, PMBSR_S, is_spe, reset_values
from ..reference.trace import Event, Kind, PeUpdate, Trace

__all__ = [
    "ACCESSES",
    "BOOT_CONTROLS",
    "HOST_SPE_STATE",
    "NOT_CSE",
    "Phase",
    "RegisterReplay",
    "Walk",
    "guest_access_message",
    "guest_reached",
    "into_guest",
    "is_cse",
    "msr_text",
    "registers_after",
    "replay",
    "shown",
]

# ------------------------------------------------------------------ architecture facts

# SPE registers a guest may reach without a trap: PMBIDR_EL1 is trapped only by the fine-grained
# trap HDFGRTR_EL2.PMBIDR_EL1 (FEAT_FGT), and holds no host value (from EL1 it reads P = 1 while EL2
# owns the buffer). Its read must trap only where the switch set that trap (TRAP-COND).
GUEST_READABLE = frozenset({"PMBIDR_EL1"})
# Trap controls the boot code sets for the host, which every exit gives back (HOST-STATE).
BOOT_CONTROLS = ("MDCR_EL2", "HDFGRTR_EL2")
# The host's SPE state that every exit gives back (HOST-STATE); PMSCR is added per VHE.
HOST_SPE_STATE = (
    "PMSICR_EL1", "PMSIRR_EL1", "PMSFCR_EL1", "PMSEVFR_EL1", "PMSLATFR_EL1", "PMSNEVFR_EL1", "PMSDSFR_EL1",
    "PMBLIMITR_EL1", "PMBPTR_EL1", "PMBSR_EL1",
)
ACCESSES = frozenset({Kind.MRS, Kind.MSR, Kind.TRAP, Kind.UNDEF, Kind.TRAP_EL3})

# The kinds a walk tests every event for (every checker steps one through every event), as module names
# (CONTRIBUTING.md, Speed: Python 3.11's slow enum member lookup).
_MSR, _WRITE, _HW, _ISB, _EXCEPTION, _ERET = (
    Kind.MSR, Kind.WRITE, Kind.HW, Kind.ISB, Kind.EXCEPTION, Kind.ERET,
)
_ENTRY, _GUEST, _EXIT, _RETURN = Kind.ENTRY, Kind.GUEST, Kind.EXIT, Kind.RETURN


def is_cse(event: Event) -> bool:
    """Whether `event` is a context synchronisation event (ISB; exception entry or return where it is one)."""
    kind = event.kind
    return kind is _ISB or ((kind is _EXCEPTION or kind is _ERET) and event.cse)


def into_guest(event: Event) -> bool:
    """Whether `event` is the exception return into a guest (the end of an entry window)."""
    return event.kind is _ERET and event.into_guest


def guest_reached(e: Event) -> bool:
    """A guest access to an SPE register holding host state that completed (or went past EL2 to EL3)."""
    return (
        (e.kind is Kind.MRS or e.kind is Kind.MSR or e.kind is Kind.TRAP_EL3)
        and e.actor.is_guest
        and is_spe(e.register)
        and e.register not in GUEST_READABLE
    )


# ------------------------------------------------------------------ register replay


class RegisterReplay:
    """Every register's value as the trace's events leave it, rebuilt from the events alone.

    MSR events write their value; the PE's own updates are events too (WRITE carries the
    advanced PMBPTR_EL1, HW the new PMBSR_EL1 or PMSICR_EL1). Values start at the CPU's reset
    values. `stale` holds, for each register written since the last context synchronisation
    event, the value in force before that write: until the next one the PE may use either.
    """

    __slots__ = ("stale", "values")

    def __init__(self, features: Features) -> None:
        self.values: dict[str, int] = reset_values(features)
        self.stale: dict[str, int] = {}

    def step(self, event: Event) -> None:
        """Apply `event`'s effect on the registers, if it has one."""
        kind = event.kind
        if kind is _MSR:
            if event.register not in self.stale:
                self.stale[event.register] = self.values[event.register]
            self.values[event.register] = event.value
        elif kind is _HW or kind is _WRITE:
            self.values[event.register] = event.value
            self.stale.pop(event.register, None)
        elif self.stale and is_cse(event):
            self.stale.clear()

    def in_force(self, register: str) -> tuple[int, ...]:
        """The values the PE may use for `register` now: the latest, and the one before it if unsynchronised."""
        value = self.values[register]
        old = self.stale.get(register)
        return (value,) if old is None or old == value else (value, old)

    def __getitem__(self, register: str) -> int:
        return self.values[register]


def replay(trace: Trace, features: Features) -> Iterator[tuple[Event, Mapping[str, int]]]:
    """Each event with every register's value just after it, in one pass.

    The mapping is shared and updated in place as the iteration moves on: copy it to keep it.
    """
    regs = RegisterReplay(features)
    for event in trace.events:
        regs.step(event)
        yield event, regs.values


def registers_after(trace: Trace, features: Features, seq: int) -> dict[str, int]:
    """A copy of every register's value just after event `seq` (-1: before the first event)."""
    regs = RegisterReplay(features)
    for event in trace.events[: seq + 1]:
        regs.step(event)
    return dict(regs.values)


# ------------------------------------------------------------------ the window walk


class Phase(enum.Enum):
    """Where the trace is, relative to the world switch's windows (docs/rules.md#terms)."""

    HOST = "host"  # outside the switch
    ENTRY = "entry"  # from the host's call to the ERET into the guest (inclusive)
    GUEST = "guest"  # the guest runs
    EXIT = "exit"  # from the guest's exit to EL2 to the return to the host (inclusive)


# The phases, as module names for the walk's hot path (see the kinds above).
_IN_HOST, _IN_ENTRY, _IN_GUEST, _IN_EXIT = Phase.HOST, Phase.ENTRY, Phase.GUEST, Phase.EXIT


class Walk(RegisterReplay):
    """Register replay plus the window the trace is in, both as they stand *before* the next event.

    Checkers read the state for an event, then `step` past it: so the ERET into the guest is
    seen inside the entry window, and the RETURN marker inside the exit window. The walk also
    follows whether the buffer's limit and pointer are still the host's own in a window (a
    switch may move them: then what the PE does to them is no longer the host's business).

    What it keeps, besides `values` and `stale`:

    - `phase`: the `Phase` the trace is in;
    - `entry`: the seq of the ENTRY that opened the current (or last) window, -1 before any;
    - `at_entry`: every register's value when that entry window began;
    - `live`: whether the host's buffer was live at that entry (FEAT_SPE, the buffer not given to
      another Security state, PMBLIMITR_EL1.E = 1 and PMBSR_EL1.S = 0);
    - `foreign`: whether, in this window, software moved the buffer's limit or pointer off the host's;
    - `boot`: MDCR_EL2 and HDFGRTR_EL2 as the boot code left them;
    - `spe_usable`: whether the CPU has FEAT_SPE with the buffer not given away.
    """

    __slots__ = ("at_entry", "boot", "entry", "foreign", "live", "phase", "spe_usable")

    def __init__(self, features: Features) -> None:
        super().__init__(features)
        self.phase = _IN_HOST
        self.entry = -1
        self.at_entry: dict[str, int] = {}
        self.live = False
        self.foreign = False
        self.boot = dict.fromkeys(BOOT_CONTROLS, 0)
        self.spe_usable = features.has_spe and not features.spe_owned_by_higher_el

    def step(self, event: Event) -> None:
        """Apply `event` to the registers and the phase."""
        # The hot path of every checker: one test of the kind for the common events.
        kind = event.kind
        if kind is _WRITE or kind is _HW:
            self.values[event.register] = event.value
            if self.stale:
                self.stale.pop(event.register, None)
        elif kind is _MSR:
            register = event.register
            values = self.values
            if self.phase is not _IN_HOST:
                if register in _BUFFER_POINTERS:
                    # Moved off the value the host's own records left there, or back onto it.
                    self.foreign = event.value != values[register] or self.foreign
                    if register == "PMBLIMITR_EL1" and event.value == self.at_entry[register]:
                        self.foreign = False
            elif event.actor == BOOT and register in self.boot:
                self.boot[register] = event.value
            if register not in self.stale:
                self.stale[register] = values[register]
            values[register] = event.value
        elif kind in _WALK_KINDS:
            if self.stale and is_cse(event):
                self.stale.clear()
            if kind is _ENTRY:
                self.phase = _IN_ENTRY
                self.entry = event.seq
                self.at_entry = dict(self.values)
                self.foreign = False
                v = self.values
                self.live = self.spe_usable and bool(v["PMBLIMITR_EL1"] & PMBLIMITR_E) and not v["PMBSR_EL1"] & PMBSR_S
            elif kind is _GUEST or (kind is _ERET and event.into_guest):
                self.phase = _IN_GUEST
            elif kind is _EXIT or (kind is _EXCEPTION and event.guest_exit):
                self.phase = _IN_EXIT
            elif kind is _RETURN:
                self.phase = _IN_HOST
                self.foreign = False

    @property
    def in_window(self) -> bool:
        """Inside the entry or the exit window: where the world switch's own code runs."""
        return self.phase is _IN_ENTRY or self.phase is _IN_EXIT

    def returns_to_host(self, event: Event) -> bool:
        """Whether `event` is the exception return that ends the exit window."""
        return event.kind is Kind.ERET and self.phase is Phase.EXIT

    def host_owns_update(self, event: Event) -> bool:
        """Whether the PE's update `event` (HW or WRITE) is the architecture acting for the host's
        own records on the host's own buffer: the limit and pointer are the host's, and the record
        was written through the host's regime (a WRITE into the host's buffer, a full buffer, the
        sample counter)."""
        if self.foreign:
            return False
        if event.kind is Kind.WRITE:
            return event.owner == M.HOST_BUFFER
        return event.update is PeUpdate.FULL or event.update is PeUpdate.COUNT


_BUFFER_POINTERS = frozenset({"PMBPTR_EL1", "PMBLIMITR_EL1"})
_WALK_KINDS = frozenset({Kind.ISB, Kind.EXCEPTION, Kind.ERET, Kind.ENTRY, Kind.GUEST, Kind.EXIT, Kind.RETURN})


# ------------------------------------------------------------------ wording


NOT_CSE = "not a context synchronisation event (FEAT_ExS with SCTLR_EL2.EIS/EOS=0)"


def shown(event: Event) -> str:
    """The register as the code named it, with the one reached if VHE redirected it."""
    return event.register if event.name in ("", event.register) else f"{event.name}->{event.register}"


def msr_text(event: Event) -> str:
    """'msr PMSCR_EL1 <- 0x0' as the code wrote it."""
    return f"msr {shown(event)} <- {event.value:#x}"


def guest_access_message(e: Event) -> str:
    """What a guest's SPE access did, for a violation."""
    if e.kind is Kind.MRS:
        return f"{e.actor} read {e.register} at #{e.seq} without trapping: got {e.value:#x}"
    if e.kind is Kind.TRAP_EL3:
        return f"{e.actor}'s access to {e.register} at #{e.seq} trapped to EL3, not to EL2"
    return f"{e.actor} wrote {e.value:#x} to {e.register} at #{e.seq} without trapping"
