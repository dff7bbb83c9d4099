"""RES0: no write puts a 1 in a bit that is RES0 for the CPU's features (docs/rules.md#res0)."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from ..reference import registers as R
from ..reference.actors import SOFTWARE
from ..reference.features import Features
from ..reference.trace import Kind, Trace
from .rule import Breach, Found, Rule, Severity
from .walk import msr_text

# The kinds tested on every event, as module names (CONTRIBUTING.md, Speed: Python 3.11's slow enum member lookup).
_MSR = Kind.MSR


@functools.cache  # keyed by Features: the lattice is finite and small, so the cache stays so too
def _res0_masks(features: Features) -> Mapping[str, int]:
    return {r.name: r.res0_mask(features) for r in R.REGISTERS}


def _bit_span(mask: int) -> str:
    """'bit 14', 'bits 13:12' (contiguous) or 'bits 20, 16'."""
    bits = [b for b in range(63, -1, -1) if mask >> b & 1]
    if len(bits) == 1:
        return f"bit {bits[0]}"
    if bits[0] - bits[-1] == len(bits) - 1:
        return f"bits {bits[0]}:{bits[-1]}"
    return "bits " + ", ".join(str(b) for b in bits)


def _res0_parts(register: str, bad: int) -> list[str]:
    """Each field (or undescribed span) of `bad`, with the feature it would need."""
    reg = R.BY_NAME[register]
    parts: list[str] = []
    rest = bad
    for f in sorted(reg.fields, key=lambda f: -f.lsb):
        hit = bad & f.mask
        if hit:
            rest &= ~f.mask
            verb = "is" if hit & (hit - 1) == 0 else "are"
            parts.append(f"{_bit_span(hit)} ({f.name}) {verb} RES0 without {f.needs.name}")
    if rest:
        verb = "is" if rest & (rest - 1) == 0 else "are"
        parts.append(f"{_bit_span(rest)} {verb} RES0 on every CPU")
    return parts


def check_res0(trace: Trace, features: Features) -> Found:
    """Every MSR by host or hypervisor code against the RES0 mask for these features.

    Exercised: at least one such MSR (the boot set-up is the harness's, guest writes trap).
    """
    masks = _res0_masks(features)
    exercised = False
    found: list[Breach] = []
    for e in trace.events:
        if e.kind is not _MSR or e.actor not in SOFTWARE:
            continue
        exercised = True
        bad = e.value & masks[e.register]
        if bad:
            parts = "; ".join(_res0_parts(e.register, bad))
            msg = f"{msr_text(e)} by {e.actor}: {parts} (expected {e.value & ~bad:#x}, got {e.value:#x})"
            found.append(Breach(e.seq, msg))
    return Found(exercised, found)


RES0 = Rule(
    "RES0",
    "No write puts a 1 in a bit that is RES0 for this CPU's features",
    "Review: 'This is RES0 on CPUs that do not implement SPE. Can we make this conditional on SPE "
    "being available?' and 'I'm not completely confident writing new bits to registers that do not "
    "necessarily implement the feature.' Arm ARM, Glossary RES0: software must write the field as 0 "
    "(or the value it read) to stay compatible with a future use of the bit. docs/rules.md#res0",
    Severity.CORRECTNESS,
    "res0",
    check_res0,
)

RULES = (RES0,)
