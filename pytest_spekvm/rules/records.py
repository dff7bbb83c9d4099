"""The records family: ISOLATION (docs/rules.md#isolation) and NO-LOSS (docs/rules.md#no-loss)."""

from __future__ import annotations

from collections.abc import Mapping

from ..reference import memory as M
from ..reference.actors import HOST
from ..reference.features import Features
from ..reference.registers import PMBSR_S, is_spe
from ..reference.trace import Event, Kind, PeUpdate, Trace
from .rule import Breach, Found, Rule, Severity
from .walk import (
    ACCESSES,
    HOST_SPE_STATE,
    Phase,
    Walk,
    guest_access_message,
    guest_reached,
)

# The kinds and phases tested on every event, as module names (CONTRIBUTING.md, Speed: Python 3.11's slow enum member lookup).
_CONTEXT, _DISCARD, _ENTRY, _FAULT, _FULL, _HW, _MSR, _RECORD, _RETURN, _TRAP_EL3, _WRITE = (
    Kind.CONTEXT, Kind.DISCARD, Kind.ENTRY, Kind.FAULT, Kind.FULL, Kind.HW, Kind.MSR, Kind.RECORD,
    Kind.RETURN, Kind.TRAP_EL3, Kind.WRITE,
)
_IN_ENTRY, _IN_HOST = Phase.ENTRY, Phase.HOST

RECORD_FATES = frozenset({Kind.WRITE, Kind.DISCARD, Kind.FAULT, Kind.FULL})

# The host's SPE values ISOLATION keeps out of the guest's saved context, by register family (the
# VHE host's PMSCR is PMSCR_EL2).
_HOST_VALUE_FAMILY: Mapping[str, str] = {
    "PMSCR_EL1": "PMSCR", "PMSCR_EL2": "PMSCR", **{r: r for r in HOST_SPE_STATE},
}


# ------------------------------------------------------------------ ISOLATION


def _context_leaks(trace: Trace, features: Features) -> list[Breach]:
    """Each value the vcpu's saved guest context holds (CONTEXT events) that is a value the host had
    in that register by then: non-zero, and written by the host, or held by the host's register at
    an entry, or put there by the PE for the host's own records.

    Zero is never taken as a host value: a switch that keeps an all-zero guest SPE context leaks
    nothing.
    """
    walk = Walk(features)
    own = ("PMSCR_EL2" if features.vhe else "PMSCR_EL1", *HOST_SPE_STATE)
    seen: dict[str, dict[int, tuple[str, int]]] = {family: {} for family in _HOST_VALUE_FAMILY.values()}  # value -> (origin, its event)
    found: list[Breach] = []
    for e in trace.events:
        kind = e.kind
        family = _HOST_VALUE_FAMILY.get(e.register, "")
        if kind is _CONTEXT:
            known = seen.get(family, {}).get(e.value) if e.value else None
            if known is not None:
                origin, origin_seq = known
                shown = e.register if e.name in ("", e.register) else f"{e.name}->{e.register}"
                msg = (
                    f"the saved guest context of vcpu {e.vcpu} holds {shown}={e.value:#x} {e.where} (#{e.seq}), "
                    f"a value the host had ({origin}): KVM shows this context to the guest, when it emulates a "
                    f"trapped access, and to userspace (KVM_GET_ONE_REG); expected the host's SPE values kept in "
                    f"the host's own save area, never in the guest's context"
                )
                found.append(Breach(e.seq, msg, (origin_seq,)))
        elif family and e.value:
            if kind is _MSR and e.actor == HOST:
                seen[family].setdefault(e.value, (f"written to {e.register} by the host at #{e.seq}", e.seq))
            elif (kind is _HW or kind is _WRITE) and (walk.phase is _IN_HOST or walk.host_owns_update(e)):
                seen[family].setdefault(e.value, (f"{e.register} as the PE updated it for the host at #{e.seq}", e.seq))
        walk.step(e)
        if kind is _ENTRY and walk.spe_usable:
            for reg in own:
                value = walk.values[reg]
                if value:
                    seen[_HOST_VALUE_FAMILY[reg]].setdefault(value, (f"{reg} at entry #{e.seq}", e.seq))
    return found


def check_isolation(trace: Trace, features: Features) -> Found:
    """No record lands outside the host's buffer; no guest access reaches an SPE register holding host
    state; the vcpu's saved guest context holds no host SPE value.

    Exercised: a record was still inside the PE when an entry began, or one was written while
    the switch or the guest ran, or a guest tried an SPE register, or the guest's saved context
    held an SPE register.
    """
    phase = _IN_HOST
    collected: dict[int, Event] = {}
    pending = 0
    exercised = context = False
    found: list[Breach] = []
    for e in trace.events:
        kind = e.kind
        if kind is _RECORD:
            collected[e.record] = e
            pending += 1
        elif kind in RECORD_FATES:
            pending -= 1
            if kind is _WRITE:
                if phase is not _IN_HOST:
                    exercised = True
                if e.owner != M.HOST_BUFFER:
                    rec = collected.get(e.record)
                    origin = f"collected at #{rec.seq} while {rec.actor} ran" if rec else "of unknown origin"
                    msg = (
                        f"record #{e.record} ({origin}) was written at #{e.seq} to {e.where}: expected the "
                        f"host's profiling buffer, got {e.owner if e.owner is not None else 'unowned'} memory"
                    )
                    found.append(Breach(e.seq, msg, (rec.seq,) if rec else ()))
        elif kind is _ENTRY:
            phase = _IN_ENTRY
            exercised = exercised or pending > 0
        elif kind is _RETURN:
            phase = _IN_HOST
        elif kind in ACCESSES and e.actor.is_guest and is_spe(e.register):
            exercised = True
            if guest_reached(e) and e.kind is not _TRAP_EL3:
                msg = guest_access_message(e) + " (expected a trap to EL2: no guest reaches host SPE state)"
                found.append(Breach(e.seq, msg))
        elif kind is _CONTEXT:
            context = True
    if context:
        # Only a switch that keeps SPE registers in the guest's context pays for this second pass.
        found = sorted((*found, *_context_leaks(trace, features)), key=lambda b: b.event)
    return Found(exercised or context or bool(found), found)


# ------------------------------------------------------------------ NO-LOSS


def check_no_loss(trace: Trace, features: Features) -> Found:
    """Host records are written, unless the host itself disabled the buffer or the buffer filled
    or stopped for the host's own reasons while its limit and pointer were the host's.

    Exercised: a record was collected while the host ran.
    """
    walk = Walk(features)
    host: dict[int, Event] = {}
    stop_is_hosts = True  # the last stop of the buffer (PMBSR_EL1.S set) was the host's own business
    found: list[Breach] = []
    for e in trace.events:
        kind = e.kind
        if kind is _RECORD:
            if e.actor == HOST:
                host[e.record] = e
        elif kind is _HW and e.register == "PMBSR_EL1":
            stop_is_hosts = walk.host_owns_update(e)
        elif kind is _MSR and e.register == "PMBSR_EL1":
            if not e.value & PMBSR_S:
                stop_is_hosts = True
            elif e.actor != HOST and not walk.values["PMBSR_EL1"] & PMBSR_S:
                stop_is_hosts = False  # software other than the host stopped the running buffer
        elif kind is _DISCARD or kind is _FAULT or kind is _FULL:
            rec = host.get(e.record)
            if rec is not None:
                if kind is _DISCARD:
                    lost = "" if e.by == HOST else f"discarded ({e.where})"
                elif kind is _FAULT:
                    lost = f"lost to a {e.where}"
                elif e.update is PeUpdate.FULL:
                    lost = "" if not walk.foreign else "lost as 'buffer full' while the switch had moved the buffer's limit or pointer"
                else:
                    lost = "" if stop_is_hosts else "lost: the buffer had been stopped by an event that was not the host's own"
                if lost:
                    msg = (
                        f"record #{e.record} collected while the host ran (#{rec.seq}) was {lost} at #{e.seq}: "
                        f"expected it written to the host's buffer"
                    )
                    found.append(Breach(e.seq, msg, (rec.seq,)))
        walk.step(e)
    return Found(bool(host), found)


ISOLATION = Rule(
    "ISOLATION",
    "No profiling record reaches guest or hypervisor memory; the guest never reaches host SPE state",
    "Patch: 'so that the host can make use of SPE without corrupting guest memory'. Judged on where "
    "the model writes each record, on the guest's accesses, and on the SPE values the vcpu's saved "
    "guest context holds (shown to the guest by trap emulation and to userspace). docs/rules.md#isolation",
    Severity.CORRECTNESS,
    "records",
    check_isolation,
)

NO_LOSS = Rule(
    "NO-LOSS",
    "Every host record reaches the host's buffer unless the buffer filled or the host stopped it",
    "Patch: 'Now drain all buffered data to memory'; Arm ARM D17.4 and D17.9.1 R_SXWCP: disabling the "
    "buffer discards records collected but not yet written. Judged on each record's fate in the "
    "model. docs/rules.md#no-loss",
    Severity.CORRECTNESS,
    "records",
    check_no_loss,
)

RULES = (ISOLATION, NO_LOSS)
