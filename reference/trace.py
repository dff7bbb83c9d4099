"""The trace: the ordered list of architectural events that the rules read, and its timeline."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator

import attrs

from .actors import HOST, Actor
from .memory import Landing, Owner
from .registers import BY_NAME


class Kind(enum.Enum):
    """What an event is."""

    MSR = "msr"  # a system register write
    MRS = "mrs"  # a system register read
    ISB = "isb"
    DSB = "dsb"
    PSB = "psb csync"
    ERET = "eret"  # exception return (a context synchronisation event)
    EXCEPTION = "exception"  # exception entry (a context synchronisation event)
    TRAP = "trap"  # an access trapped to EL2 (the access did not complete)
    TRAP_EL3 = "trap to EL3"  # an access trapped to EL3 (MDCR_EL3.NSPB; the access did not complete)
    UNDEF = "undef"  # an access answered with UNDEFINED (the access did not complete)
    CODE = "code"  # ordinary code ran (and may have been sampled)
    RECORD = "record"  # a profiling record was collected inside the PE
    WRITE = "write"  # a collected record was translated and written to memory
    DISCARD = "discard"  # a collected record was discarded (buffer disabled)
    FAULT = "fault"  # a record's write faulted (PMBSR_EL1.S set, record lost)
    FULL = "full"  # the buffer filled (PMBSR_EL1.S set, record not written)
    HW = "hw"  # the PE updated a register itself (PMBPTR advancing, PMBSR on an event)
    NOTE = "note"  # a software step, for the reader (vcpu0.mdcr_el2 = ...)
    CONTEXT = "guest context"  # an SPE register value the vcpu's saved guest context holds
    ENTRY = "entry"  # the host calls into the switch: the entry window begins
    GUEST = "guest"  # exception return into the guest: the entry window ends
    EXIT = "exit"  # the guest exits to EL2: the exit window begins
    RETURN = "return"  # back in the host: the exit window ends

    # Members are singletons, equal only to themselves: hashed by identity, in C. Enum's own
    # __hash__ is a Python function, and the rules test `kind in {...}` for every event.
    __hash__ = object.__hash__


class Dsb(enum.Enum):
    """The option of a DSB: its shareability domain and the accesses it waits for (`dsb nsh`, `dsb ishst`)."""

    SY = "sy"
    ST = "st"
    LD = "ld"
    ISH = "ish"
    ISHST = "ishst"
    ISHLD = "ishld"
    NSH = "nsh"
    NSHST = "nshst"
    NSHLD = "nshld"
    OSH = "osh"
    OSHST = "oshst"
    OSHLD = "oshld"

    @property
    def completes_records(self) -> bool:
        """Whether this DSB waits for the profiling buffer's writes.

        D17.9: the DSB after a PSB CSYNC "must apply to both loads and stores" (not the *ST or *LD
        forms), in a shareability domain that includes the PE: every domain does (NSH is the PE's own).
        """
        return self not in _LOADS_OR_STORES_ONLY


_LOADS_OR_STORES_ONLY = frozenset({Dsb.ST, Dsb.LD, Dsb.ISHST, Dsb.ISHLD, Dsb.NSHST, Dsb.NSHLD, Dsb.OSHST, Dsb.OSHLD})


class PeUpdate(enum.Enum):
    """Why the PE updated a register by itself (a HW event), or why a record met a full buffer (FULL)."""

    FULL = "full"  # PMBSR_EL1: the buffer filled (buffer management event, BSC full)
    FAULT = "fault"  # PMBSR_EL1: a record's write faulted
    COUNT = "count"  # PMSICR_EL1: the sample counter moved


@attrs.define(slots=True)
class Event:
    """One architectural event.

    `register` is the register actually reached (after VHE redirection), `name` the name the
    code used. For MSR, `res0` holds the RES0 bits the value set, `old` the value replaced.

    The facts the rules decide on are typed fields (`kind`, `actor`, `register`, `value`, `owner`,
    `by`, `update`, `dsb`, `cse`, `into_guest`, `guest_exit`, ...); `where` is text for the reader
    only, and nothing decides on it: given when the event is made, or for a WRITE or FAULT rendered
    from its `landing` when it is read.
    """

    seq: int
    actor: Actor
    el: int
    kind: Kind
    register: str = ""
    name: str = ""
    value: int = 0
    old: int = 0
    res0: int = 0
    record: int = -1  # record id, for RECORD/WRITE/DISCARD/FAULT/FULL
    _where: str = attrs.field(default="", alias="where")  # read as `where`: a trap's reason, a note, ...
    vcpu: int = -1
    owner: Owner | None = None  # WRITE: the owner of the page the record landed in
    by: Actor | None = None  # DISCARD: who stopped the buffer (None: nobody did, the buffer was off)
    update: PeUpdate | None = None  # HW (and FULL, when the buffer filled): why the PE acted
    dsb: Dsb | None = None  # DSB: its option
    cse: bool = True  # EXCEPTION/ERET: whether it was a context synchronisation event
    into_guest: bool = False  # ERET: the return into a guest
    guest_exit: bool = False  # EXCEPTION: a guest's exit to EL2
    landing: Landing | None = None  # WRITE, FAULT: where the record's write went; its text is `where`

    @property
    def where(self) -> str:
        """Text for the reader: a trap's reason, a note, an exception's cause; for a WRITE or FAULT,
        its landing, rendered only when read (most records written are never shown)."""
        return self._where if self.landing is None else str(self.landing)

    def describe(self) -> str:
        """One line of the timeline."""
        k = self.kind
        if k is Kind.MSR:
            shown = self.register if self.name in ("", self.register) else f"{self.name}->{self.register}"
            text = f"msr {shown} <- {self.value:#x}"
            reg = BY_NAME.get(self.register)
            if reg is not None and reg.fields:
                text += f"  = {reg.decode(self.value)}"
            if self.res0:
                text += f"   RES0 bits set: {_bit_names(self.register, self.res0)}"
            return text
        if k is Kind.MRS:
            shown = self.register if self.name in ("", self.register) else f"{self.name}->{self.register}"
            return f"mrs {shown} -> {self.value:#x}"
        if k in (Kind.TRAP, Kind.UNDEF, Kind.TRAP_EL3):
            return f"{k.value}: {self.name or self.register} ({self.where})"
        if k is Kind.DSB:
            return f"dsb {self.dsb.value if self.dsb is not None else self.where}"
        if k is Kind.HW:
            return f"pe    {self.register} <- {self.value:#x} ({self.where})"
        if k in (Kind.RECORD, Kind.WRITE, Kind.DISCARD, Kind.FAULT, Kind.FULL):
            return f"{k.value} #{self.record} {self.where}".rstrip()
        if k is Kind.NOTE:
            return self.where
        if k is Kind.CONTEXT:
            shown = self.register if self.name in ("", self.register) else f"{self.name}->{self.register}"
            return f"vcpu{self.vcpu}.sysregs[{shown}] = {self.value:#x} ({self.where})"
        if k in (Kind.EXCEPTION, Kind.ERET):
            text = f"{k.value} {self.where}".rstrip()
            return text if self.cse else f"{text} (not context synchronising: FEAT_ExS, SCTLR_EL2.EIS/EOS=0)"
        if k in (Kind.ENTRY, Kind.GUEST, Kind.EXIT, Kind.RETURN, Kind.CODE):
            return f"{k.value} {self.where}".rstrip()
        return str(k.value)


def _bit_names(register: str, mask: int) -> str:
    """'bit 14 (TPMS)' for each set bit of `mask`, naming the field where the table has one."""
    reg = BY_NAME.get(register)
    names: list[str] = []
    for bit in range(64):
        if mask >> bit & 1:
            label = f"bit {bit}"
            if reg is not None:
                for f in reg.fields:
                    if f.mask >> bit & 1:
                        label += f" ({f.name})"
            names.append(label)
    return ", ".join(names)


# An Event with no field set yet: `add` sets each in its own frame, where calling `Event(...)`
# would pass all 20 to a second frame, attrs' `__init__`, to set them there.
_new_event = object.__new__


@attrs.define
class Trace:
    """The ordered events of one run of the model."""

    events: list[Event] = attrs.field(factory=list)

    def add(  # noqa: PLR0917 - positional-or-keyword on purpose: see the docstring
        self, actor: Actor, el: int, kind: Kind, register: str = "", name: str = "", value: int = 0,
        old: int = 0, res0: int = 0, record: int = -1, where: str = "", vcpu: int = -1, owner: Owner | None = None,
        by: Actor | None = None, update: PeUpdate | None = None, dsb: Dsb | None = None, cse: bool = True,
        into_guest: bool = False, guest_exit: bool = False, landing: Landing | None = None,
    ) -> Event:
        """Append an event and return it (the parameters are `Event`'s fields, with its defaults).

        They are spelt out rather than taken as `**kw`: the model adds an event for each thing it
        does, and packing keyword arguments into a dict cost more than making the event. They are
        not keyword-only either: CPython fills a keyword-only default from a dict, one lookup per
        field left out, where it copies a positional one from a tuple. It sets the new event's
        fields itself, as `Event`'s own `__init__` would (`test_trace.py` checks each lands in its
        field): one Python call per event rather than two.
        """
        events = self.events
        event = _new_event(Event)
        event.seq = len(events)
        event.actor = actor
        event.el = el
        event.kind = kind
        event.register = register
        event.name = name
        event.value = value
        event.old = old
        event.res0 = res0
        event.record = record
        event._where = where
        event.vcpu = vcpu
        event.owner = owner
        event.by = by
        event.update = update
        event.dsb = dsb
        event.cse = cse
        event.into_guest = into_guest
        event.guest_exit = guest_exit
        event.landing = landing
        events.append(event)
        return event

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def __getitem__(self, index: int) -> Event:
        return self.events[index]

    def of(self, *kinds: Kind) -> list[Event]:
        """The events of the given kinds, in order."""
        return [e for e in self.events if e.kind in kinds]

    def timeline(self, around: int | None = None, context: int = 12, also: Iterable[int] = ()) -> str:
        """The trace as an indented timeline; with `around`, only `context` events either side, and the
        events `also` names (the events a message cites) where they fall outside that window, each in
        its place, with "..." where events are left out."""
        events = self.events
        shown: Iterable[int]
        if around is None:
            shown = range(len(events))
        else:
            window = range(max(0, around - context), min(len(events), around + context + 1))
            shown = sorted({*window, *(seq for seq in also if 0 <= seq < len(events))})
        lines = []
        previous = None
        for seq in shown:
            if previous is not None and seq != previous + 1:
                lines.append("    ...")
            previous = seq
            e = events[seq]
            indent = "  " if e.kind in (Kind.ENTRY, Kind.RETURN, Kind.NOTE) and e.actor == HOST else "    "
            marker = ">>" if around is not None and e.seq == around else "  "
            lines.append(f"{marker}{e.seq:5d} {indent}{e.actor:<6} EL{e.el} {e.describe()}")
        return "\n".join(lines)
