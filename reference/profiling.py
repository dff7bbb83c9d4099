"""Sampling and the profiling buffer: which code is sampled, and where each record goes (D17.4, D17.9).

`Profiling` is the half of the `CPU` that collects records, holds them inside the PE, and writes
them (or discards them) through the regime that owns the buffer; `cpu.py` holds the other half:
register access, traps and synchronisation. The split is by job; the state is one CPU's.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable

import attrs

from . import registers as R
from .actors import PE, Actor
from .chooser import Chooser, Moment
from .errors import ModelError
from .features import Features
from .memory import RECORD_SIZE, Fault, Landing, Memory
from .registers import (
    E2PB_EL2,
    HCR_E2H,
    HCR_TGE,
    HCR_VM,
    MASK64,
    PMBLIMITR_E,
    PMBLIMITR_LIMIT,
    PMBSR_BSC_FULL,
    PMBSR_EC,
    PMBSR_EC_BUF,
    PMBSR_EC_FAULT_S1,
    PMBSR_EC_FAULT_S2,
    PMBSR_MSS,
    PMBSR_S,
    PMSCR_EL1_E0SPE,
    PMSCR_EL1_E1SPE,
    PMSCR_EL2_E0HSPE,
    PMSCR_EL2_E2SPE,
    PMSICR_COUNT,
)
from .trace import Kind, PeUpdate, Trace

# The kinds of event sampling and the buffer put in the trace, as module names (CONTRIBUTING.md, Speed: Python 3.11's slow enum member lookup).
_CODE, _RECORD, _PSB, _WRITE, _DISCARD, _FAULT, _FULL, _HW = (
    Kind.CODE, Kind.RECORD, Kind.PSB, Kind.WRITE, Kind.DISCARD, Kind.FAULT, Kind.FULL, Kind.HW,
)

# The bits of each register that a collected record's translation or the buffer's enable
# depends on: a write that changes none of them needs no decision about pending records.
RECORD_DEPENDENCIES: dict[str, int] = {
    "MDCR_EL2": R.MDCR_E2PB.mask,
    "HCR_EL2": HCR_VM | HCR_E2H | HCR_TGE,
    "PMBLIMITR_EL1": PMBLIMITR_E | PMBLIMITR_LIMIT,
    "PMBSR_EL1": PMBSR_S,
    **dict.fromkeys(("VTTBR_EL2", *R.EL1_STAGE1, "TTBR0_EL2", "TTBR1_EL2", "TCR_EL2", "PMBPTR_EL1"), MASK64),
}


class Fate(enum.Enum):
    """What became of a profiling record."""

    PENDING = "pending"  # collected, still inside the PE
    IN_FLIGHT = "in flight"  # translated by a PSB CSYNC, its write not yet completed by a DSB
    WRITTEN = "written"
    DISCARDED = "discarded"
    FAULTED = "faulted"
    FULL = "full"  # turned away by a full or stopped buffer


@functools.lru_cache(maxsize=256)
def _regime(name: str, table: str, base: int, stage2: int | None = None) -> str:
    """A translation regime as the reader sees it: 'EL1&0 stage 1 (TTBR1_EL1=0x10000)', and its stage 2.

    Cached: every record written names the regime it went through, and a run uses a handful.
    """
    text = f"{name} stage 1 ({table}={base:#x})"
    return text if stage2 is None else f"{text} + stage 2 (VTTBR_EL2={stage2:#x})"


# The fates every written record goes through, as module names (CONTRIBUTING.md, Speed: Python 3.11's slow enum member lookup).
_IN_FLIGHT, _WRITTEN = Fate.IN_FLIGHT, Fate.WRITTEN


@attrs.define(slots=True)
class Record:
    """A profiling record: who was sampled, and what became of it."""

    id: int
    actor: Actor
    el: int
    collected_at: int
    epoch: int = 0  # how many context synchronisation events came before its collection
    fate: Fate = Fate.PENDING
    landing: Landing | None = None
    discarded_by: Actor | None = None


class Profiling:
    """Sampling, the records inside the PE, and the profiling buffer: the half of `CPU` that profiles.

    It shares the CPU's state, set up by `CPU.__init__`, and reads registers as they are in force
    through the CPU's `_effective`, `_e2pb` and `_e2h`.
    """

    features: Features
    chooser: Chooser
    memory: Memory
    trace: Trace
    el: int
    actor: Actor
    vcpu: int
    records: list[Record]
    buffer_irq: bool
    _pending: list[Record]  # collected, not yet translated
    _in_flight: list[Record]  # translated by a PSB, writes not yet completed by a DSB
    _epoch: int  # context synchronisation events so far
    _disabled_by: Actor | None  # who last disabled the buffer
    _regs: dict[str, int]
    _stale: dict[str, int]
    _has_spe: bool  # FEAT_SPE
    _buffer_usable: bool  # FEAT_SPE, and the buffer not given to another Security state (PMBIDR_EL1.P)

    def _effective(self, register: str) -> int:
        raise NotImplementedError

    def _e2pb(self, mdcr: int) -> int:
        raise NotImplementedError

    def _e2h(self, hcr: int) -> bool:
        raise NotImplementedError

    def _in_effect(self) -> Callable[[str], int]:
        """`_effective`, for a run of reads: while no write is unsynchronised, the register file
        itself, read with no Python call per register."""
        return self._effective if self._stale else self._regs.__getitem__

    # --------------------------------------------------------------------- sampling

    def sampling_enabled(self) -> bool:
        """Whether code running now at the current EL is sampled (D17.4, StatisticalProfilingEnabled())."""
        if not self._buffer_usable:
            return False
        reg = self._in_effect()
        if not reg("PMBLIMITR_EL1") & PMBLIMITR_E:
            return False
        if reg("PMBSR_EL1") & PMBSR_S:
            return False
        owner_el = 2 if self._e2pb(reg("MDCR_EL2")) == E2PB_EL2 else 1
        if self.el > owner_el:
            return False  # never sampled above the owning EL: an EL1-owned buffer is idle at EL2
        hcr = reg("HCR_EL2")
        tge = bool(hcr & HCR_TGE)
        if owner_el == 1 and tge and self.el < 2:
            return False  # with TGE = 1 the EL1&0 regime is not in use
        if self.el == 2:
            return bool(reg("PMSCR_EL2") & PMSCR_EL2_E2SPE)
        if self.el == 1:
            return bool(reg("PMSCR_EL1") & PMSCR_EL1_E1SPE)
        if self._e2h(hcr) and tge:
            return bool(reg("PMSCR_EL2") & PMSCR_EL2_E0HSPE)
        return bool(reg("PMSCR_EL1") & PMSCR_EL1_E0SPE)

    def run_code(self, samples: int, what: str = "") -> list[Record]:
        """Code runs at the current EL; if sampling is on, `samples` records are collected."""
        if samples < 0:
            msg = f"Cannot run code with {samples} samples because the count cannot be negative"
            raise ModelError(msg)
        self.trace.add(self.actor, self.el, _CODE, value=samples, where=what, vcpu=self.vcpu)
        if not samples or not self.sampling_enabled():
            return []
        new = []
        for _ in range(samples):
            rec = Record(len(self.records), self.actor, self.el, len(self.trace.events), self._epoch)
            self.records.append(rec)
            self._pending.append(rec)
            self.trace.add(self.actor, self.el, _RECORD, record=rec.id, vcpu=self.vcpu)
            new.append(rec)
        # PMSICR_EL1.COUNT moves with every sample taken (its exact value is the PE's business).
        count = (PMSICR_COUNT.get(self._regs["PMSICR_EL1"]) + samples) & PMSICR_COUNT.mask
        self._hw_update("PMSICR_EL1", (self._regs["PMSICR_EL1"] & ~PMSICR_COUNT.mask) | count, "sample counter",
                        PeUpdate.COUNT)
        return new

    # ------------------------------------------------------------- the profiling buffer

    @property
    def pending_records(self) -> int:
        """How many collected records are still inside the PE."""
        return len(self._pending)

    def psb_csync(self) -> None:
        """PSB CSYNC (hint #17): synchronise the profiling operations of every instruction before
        the last context synchronisation event (D17.9).

        Those records are translated now, with the registers in force now, and their writes
        started; later register writes cannot change where they land (D17.9 I_MLGHW), and a DSB
        completes them. Records collected after the last context synchronisation event are not
        guaranteed to be synchronised: the chooser says how many of them the PE writes anyway.
        """
        self.trace.add(self.actor, self.el, _PSB, vcpu=self.vcpu)
        if not self._has_spe:
            return  # a hint: a NOP without SPE
        synchronised = [r for r in self._pending if r.epoch < self._epoch]
        late = [r for r in self._pending if r.epoch >= self._epoch]
        if late:
            count = self.chooser.records_to_write(len(late), Moment.PSB, "psb csync, for records collected after the last context synchronisation event")
            count = max(0, min(count, len(late)))
            synchronised += late[:count]
            late = late[count:]
        self._pending = late
        for rec in synchronised:
            if self._write(rec) and rec.fate is _WRITTEN:
                rec.fate = _IN_FLIGHT
                self._in_flight.append(rec)

    def _complete_writes(self) -> None:
        """A DSB over loads and stores: every write a PSB CSYNC started completes (D17.9)."""
        for rec in self._in_flight:
            rec.fate = _WRITTEN
        self._in_flight = []

    def _discard_pending_if_disabled(self) -> None:
        """At a context synchronisation event, records still inside the PE of a disabled buffer are lost."""
        if self._pending and not self._regs["PMBLIMITR_EL1"] & PMBLIMITR_E:
            self._discard(self._pending, "buffer disabled", self._disabled_by)
            self._pending = []

    def _decide_writes(self, moment: Moment, detail: str) -> None:
        """Something the pending records depend on is about to change: the chooser says how many go first.

        Called only while records are pending (so `detail` is formatted only then)."""
        count = self.chooser.records_to_write(len(self._pending), moment, detail)
        writing, self._pending = self._pending[: max(0, count)], self._pending[max(0, count):]
        for rec in writing:
            self._write(rec)

    def _discard(self, records: list[Record], why: str, by: Actor | None) -> None:
        """Discard `records`: the event's `by` names who stopped the buffer (NO-LOSS reads it)."""
        for rec in records:
            rec.fate, rec.discarded_by = Fate.DISCARDED, by
            self.trace.add(PE, self.el, _DISCARD, record=rec.id,
                           where=f"{why} by {by if by is not None else 'nobody'}", vcpu=self.vcpu, by=by)

    def _buffer_stopped(self, detail: str) -> None:
        """The buffer was disabled or its pointer moved while PSB-started writes had not completed:
        each is written or discarded, as the chooser says (D17.9.1 R_SXWCP). Called only while some are in flight."""
        count = self.chooser.records_to_write(len(self._in_flight), Moment.BUFFER_STOPPED, detail)
        count = max(0, min(count, len(self._in_flight)))
        for rec in self._in_flight[:count]:
            rec.fate = _WRITTEN
        self._discard(self._in_flight[count:], "write not completed (no DSB) when the buffer was stopped", self.actor)
        self._in_flight = []

    def _hw_update(self, register: str, value: int, why: str, cause: PeUpdate, record: int = -1) -> None:
        """The PE updates a register itself: in effect at once, and an event for the rules."""
        self._regs[register] = value
        self._stale.pop(register, None)
        self.trace.add(PE, self.el, _HW, register=register, update=cause, value=value, where=why,
                       record=record, vcpu=self.vcpu)

    def _stop_buffer(self, ec: int, mss: int, why: str, cause: PeUpdate, rec: Record) -> None:
        value = self._regs["PMBSR_EL1"] | PMBSR_S | PMBSR_EC.put(ec) | PMBSR_MSS.put(mss)
        self.buffer_irq = True
        self._hw_update("PMBSR_EL1", value, why, cause, rec.id)

    def _write(self, rec: Record) -> bool:
        """Translate and write one record through the regime that owns the buffer now; False if it was not written."""
        reg = self._in_effect()
        limit = reg("PMBLIMITR_EL1")
        if not limit & PMBLIMITR_E:
            self._discard([rec], "buffer disabled", self._disabled_by)
            return False
        if reg("PMBSR_EL1") & PMBSR_S:
            rec.fate = Fate.FULL
            self.trace.add(PE, self.el, _FULL, record=rec.id, where="buffer stopped (PMBSR_EL1.S=1)",
                           vcpu=self.vcpu)
            return False
        ptr = reg("PMBPTR_EL1")
        if ptr + RECORD_SIZE > limit & PMBLIMITR_LIMIT:
            rec.fate = Fate.FULL
            self._stop_buffer(PMBSR_EC_BUF, PMBSR_BSC_FULL, "buffer full", PeUpdate.FULL, rec)
            self.trace.add(PE, self.el, _FULL, record=rec.id, update=PeUpdate.FULL, where="buffer full",
                           vcpu=self.vcpu)
            return False
        landing = self.translate(ptr)
        rec.landing = landing
        if landing.fault is not None:
            rec.fate = Fate.FAULTED
            ec = PMBSR_EC_FAULT_S1 if landing.fault is Fault.STAGE1 else PMBSR_EC_FAULT_S2
            self._stop_buffer(ec, 0, f"{landing.fault.value} fault", PeUpdate.FAULT, rec)
            self.trace.add(PE, self.el, _FAULT, record=rec.id, vcpu=self.vcpu, landing=landing)
            return False
        rec.fate = _WRITTEN
        self.memory.store(landing, RECORD_SIZE)
        self._regs["PMBPTR_EL1"] = ptr + RECORD_SIZE
        self._stale.pop("PMBPTR_EL1", None)
        self.trace.add(PE, self.el, _WRITE, record=rec.id, register="PMBPTR_EL1",
                       value=ptr + RECORD_SIZE, vcpu=self.vcpu, owner=landing.owner, landing=landing)
        return True

    def translate(self, va: int) -> Landing:
        """Translate a buffer address through the regime that owns the buffer now (MDCR_EL2.E2PB, E2H)."""
        effective = self._in_effect()
        hcr = effective("HCR_EL2")
        upper = bool(va >> 63)
        if self._e2pb(effective("MDCR_EL2")) != E2PB_EL2:
            reg = "TTBR1_EL1" if upper else "TTBR0_EL1"
            ttbr = effective(reg)
            stage2 = effective("VTTBR_EL2") if hcr & HCR_VM else None
            return self.memory.walk(va, ttbr, stage2, _regime("EL1&0", reg, ttbr, stage2))
        if self._e2h(hcr):
            reg = "TTBR1_EL2" if upper else "TTBR0_EL2"
            ttbr = effective(reg)
            return self.memory.walk(va, ttbr, None, _regime("EL2&0", reg, ttbr))
        ttbr = effective("TTBR0_EL2")
        regime = _regime("EL2", "TTBR0_EL2", ttbr)
        if upper:
            # D8.1.2: the EL2 regime without E2H has a single, lower VA range.
            return Landing(0, None, Fault.STAGE1, regime + ", which has no upper VA range")
        return self.memory.walk(va, ttbr, None, regime)

    def records_of(self, actors: Iterable[Actor]) -> list[Record]:
        """The records collected while one of `actors` was running."""
        wanted = set(actors)
        return [r for r in self.records if r.actor in wanted]
