"""The trap family: TRAP-COND (docs/rules.md#trap-cond) and UNDEF (docs/rules.md#undef)."""

from __future__ import annotations

from ..reference.actors import HOST, SOFTWARE
from ..reference.features import Features
from ..reference.registers import E2PB_RESERVED, E2PB_TRAPPING, HDFGRTR_PMBIDR, MDCR_E2PB, MDCR_TPMS, is_spe
from ..reference.trace import Event, Kind, Trace
from .rule import Breach, Found, Rule, Severity
from .walk import (
    ACCESSES,
    GUEST_READABLE,
    NOT_CSE,
    RegisterReplay,
    guest_access_message,
    guest_reached,
    into_guest,
    msr_text,
)

# The kinds tested on every event, as module names (CONTRIBUTING.md, Speed: Python 3.11's slow enum member lookup).
_ENTRY, _MRS, _MSR, _TRAP, _TRAP_EL3, _UNDEF = (
    Kind.ENTRY, Kind.MRS, Kind.MSR, Kind.TRAP, Kind.TRAP_EL3, Kind.UNDEF,
)

# ------------------------------------------------------------------ TRAP-COND


def _trap_problems(mdcr: int) -> list[str]:
    problems = []
    if not mdcr & MDCR_TPMS:
        problems.append("TPMS=0 (expected 1, so the guest's sampling-control accesses trap)")
    e2pb = MDCR_E2PB.get(mdcr)
    if e2pb not in E2PB_TRAPPING:
        problems.append(f"E2PB={e2pb:#04b} (expected 0b00 or 0b10, so its buffer accesses trap)")
    return problems


def _msr_of(register: str, regs: RegisterReplay) -> str:
    return f"msr {register} <- {regs[register]:#x}"


def check_trap_cond(trace: Trace, features: Features) -> Found:
    """With FEAT_SPE: the guest runs under TPMS=1 and a trapping E2PB in force, and its SPE accesses trap.

    Without FEAT_SPE: no MDCR_EL2 write by host or hypervisor sets TPMS or E2PB. With it, no write
    of the reserved E2PB value 0b01. A guest read of PMBIDR_EL1 need not trap, unless the switch
    set HDFGRTR_EL2.PMBIDR_EL1: then it must.

    Exercised with FEAT_SPE: a guest was entered *and* tried an SPE register, so that the trap
    was observed, not only inferred from MDCR_EL2. Without FEAT_SPE: an MDCR_EL2 write by host
    or hypervisor code.
    """
    found: list[Breach] = []
    if not features.has_spe:
        spe_bits = MDCR_TPMS | MDCR_E2PB.mask
        written = False
        for e in trace.events:
            if e.kind is _MSR and e.register == "MDCR_EL2" and e.actor in SOFTWARE:
                written = True
                if e.value & spe_bits:
                    got = f"TPMS={int(bool(e.value & MDCR_TPMS))}, E2PB={MDCR_E2PB.get(e.value):#04b}"
                    msg = (
                        f"{msr_text(e)} by {e.actor} sets SPE trap controls on a CPU without FEAT_SPE "
                        f"(expected TPMS=0, E2PB=0b00, got {got})"
                    )
                    found.append(Breach(e.seq, msg))
        return Found(written or bool(found), found)

    entered = accessed = False
    fgt_write: Event | None = None  # the last HDFGRTR_EL2 write by host or hypervisor
    regs = RegisterReplay(features)
    for e in trace.events:
        kind = e.kind
        if kind is _MSR and e.register == "MDCR_EL2" and e.actor in SOFTWARE and MDCR_E2PB.get(e.value) == E2PB_RESERVED:
            msg = (
                f"{msr_text(e)} by {e.actor} writes the reserved value 0b01 to MDCR_EL2.E2PB "
                f"(it may act as any allocated value, Arm ARM K1.2.19; expected 0b00, 0b10 or 0b11)"
            )
            found.append(Breach(e.seq, msg))
        elif into_guest(e):
            entered = True
            values = (regs["MDCR_EL2"],) if e.cse else regs.in_force("MDCR_EL2")
            for mdcr in values:
                problems = _trap_problems(mdcr)
                if problems:
                    stale = "" if mdcr == regs["MDCR_EL2"] else (
                        f" (the value before the unsynchronised {_msr_of('MDCR_EL2', regs)}: the ERET is {NOT_CSE}; "
                        "expected an ISB before it)"
                    )
                    msg = f"eret {e.where} with MDCR_EL2={mdcr:#x} in force{stale}: " + "; ".join(problems)
                    found.append(Breach(e.seq, msg))
                    break
        elif kind is _MSR and e.register == "HDFGRTR_EL2" and e.actor in SOFTWARE:
            fgt_write = e
        if kind in ACCESSES and e.actor.is_guest and is_spe(e.register):
            if e.register not in GUEST_READABLE:
                accessed = True
                if guest_reached(e):
                    msg = guest_access_message(e) + " (expected a trap to EL2)"
                    found.append(Breach(e.seq, msg))
            elif fgt_write is not None and regs["HDFGRTR_EL2"] & HDFGRTR_PMBIDR and kind is not _UNDEF:
                # The switch asked for the fine-grained trap of PMBIDR_EL1: the read must take it.
                accessed = True
                if kind is _MRS:
                    msg = (
                        f"{guest_access_message(e)}, though the {msr_text(fgt_write)} at #{fgt_write.seq} set "
                        f"HDFGRTR_EL2.PMBIDR_EL1 (expected the read to trap to EL2: the trap was not in force "
                        f"when the guest ran; where the ERET into the guest is {NOT_CSE}, an ISB before it)"
                    )
                    found.append(Breach(e.seq, msg, (fgt_write.seq,)))
        regs.step(e)
    return Found((entered and accessed) or bool(found), found)


# ------------------------------------------------------------------ UNDEF


def check_undef(trace: Trace, features: Features) -> Found:
    """No host or hypervisor access is UNDEFINED, traps to EL3, or (the host's) traps to EL2.

    Exercised: the world switch ran (an entry) on a CPU where SPE accesses are UNDEFINED or trap
    to EL3 (no FEAT_SPE, or the buffer given to another Security state), or on one with FEAT_ExS
    (where the hypervisor's traps can outlive the ERET to the host); or any violation.
    """
    owned = features.spe_owned_by_higher_el
    switched = False
    found: list[Breach] = []
    for e in trace.events:
        kind = e.kind
        if kind is _ENTRY:
            switched = True
        judged = kind is _UNDEF or kind is _TRAP_EL3 or kind is _TRAP
        if not judged or e.actor not in SOFTWARE or (kind is _TRAP and e.actor != HOST):
            continue
        who = f"{e.name or e.register} by {e.actor} at EL{e.el}"  # for a message: made only for the accesses judged
        if kind is _UNDEF:
            if is_spe(e.register) and not features.has_spe:
                expected = "no SPE register access without FEAT_SPE: check ID_AA64DFR0_EL1.PMSVer first"
            else:
                expected = "only accesses the architecture defines here"
            msg = f"access to {who} is UNDEFINED ({e.where}); expected {expected}"
            found.append(Breach(e.seq, msg))
        elif kind is _TRAP_EL3:
            msg = (
                f"access to {who} traps to EL3 ({e.where}); expected only PMBIDR_EL1 touched while "
                f"PMBIDR_EL1.P reads 1 at EL2 (check it first, as the patch does: 'is it owned by EL3?')"
            )
            found.append(Breach(e.seq, msg))
        else:  # the host's own access trapped to EL2
            msg = (
                f"the host's own access to {who} trapped to EL2 ({e.where}): the hypervisor's trap "
                f"configuration is still in force after the return to the host (expected the host's "
                f"MDCR_EL2 back, and in force)"
            )
            found.append(Breach(e.seq, msg))
    hazard = not features.has_spe or owned or features.exs
    return Found((hazard and switched) or bool(found), found)


TRAP_COND = Rule(
    "TRAP-COND",
    "MDCR_EL2.TPMS/E2PB are set only with FEAT_SPE; with them in force, every guest SPE access traps to EL2",
    "Patch: 'any attempts by a guest to use SPE will result in a trap'; review: 'Can we make this "
    "conditional on SPE being available?'. Arm ARM D24.7, the SPE registers' accessibility pseudocode "
    "(MDCR_EL2.TPMS traps the sampling controls; E2PB IN {'x0'} traps PMBLIMITR/PMBPTR/PMBSR, as in D24.7.2 "
    "PMBLIMITR_EL1; PMBIDR_EL1 only through HDFGRTR_EL2.PMBIDR_EL1, D24.2.67, which must "
    "trap once the switch sets it); K1.2.19 (a reserved value may act as any allocated one). Judged "
    "by the guest's accesses the model observes. docs/rules.md#trap-cond",
    Severity.CORRECTNESS,
    "traps",
    check_trap_cond,
)

UNDEF = Rule(
    "UNDEF",
    "No host or hypervisor SPE access is UNDEFINED or traps to EL3, and the host's own never traps to EL2",
    "Arm ARM D24.7: without FEAT_SPE the SPE registers are UNDEFINED; with MDCR_EL3.NSPB giving the "
    "buffer to another Security state every SPE register but PMBIDR_EL1 traps to EL3 "
    "(CheckMDCR_EL3_NSPBTrap); the patch: 'Yes; is it owned by EL3?'. Judged by the accesses the model "
    "answers. docs/rules.md#undef",
    Severity.CORRECTNESS,
    "traps",
    check_undef,
)

RULES = (TRAP_COND, UNDEF)
