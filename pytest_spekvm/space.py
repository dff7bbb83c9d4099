"""The CPU feature space a run generates from: allowed values per dimension, and its discrete cells."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Iterator

import attrs

from .reference.features import DIMENSIONS, FEATURE_NAMES, Decided, Features, PmuLevel, SpeLevel, possible

OPTIONAL_FLAGS: tuple[str, ...] = tuple(FEATURE_NAMES)
"""Boolean features (FEAT_TRF, FEAT_FGT, ...) that only decide whether MDCR_EL2 fields exist."""

CELL_COUNTERS = 6
"""PMCR_EL0.N of a cell's CPU wherever it has PMUv3 (the counters change no rule's verdict)."""


def _bools(values: Iterable[bool]) -> frozenset[bool]:
    return frozenset(bool(v) for v in values)


def _spe_levels(values: Iterable[int]) -> frozenset[SpeLevel]:
    return frozenset(SpeLevel(v) for v in values)


def _pmu_levels(values: Iterable[int]) -> frozenset[PmuLevel]:
    return frozenset(PmuLevel(v) for v in values)


def _names(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


@attrs.frozen
class FeatureSpace:
    """Which values of each feature dimension an implementation supports (default: all).

    The dimensions and their values are `reference.features.DIMENSIONS`, one field each; `flags`
    are the optional boolean features that may be on.
    """

    vhe: frozenset[bool] = attrs.field(default=frozenset(DIMENSIONS["vhe"]), converter=_bools)
    spe: frozenset[SpeLevel] = attrs.field(default=frozenset(DIMENSIONS["spe"]), converter=_spe_levels)
    spe_owned_by_higher_el: frozenset[bool] = attrs.field(
        default=frozenset(DIMENSIONS["spe_owned_by_higher_el"]), converter=_bools
    )
    pmu: frozenset[PmuLevel] = attrs.field(default=frozenset(DIMENSIONS["pmu"]), converter=_pmu_levels)
    flags: frozenset[str] = attrs.field(default=frozenset(OPTIONAL_FLAGS), converter=_names)
    el3: frozenset[bool] = attrs.field(default=frozenset(DIMENSIONS["el3"]), converter=_bools)

    @flags.validator
    def _check_flags(self, attribute: attrs.Attribute[frozenset[str]], value: frozenset[str]) -> None:
        unknown = sorted(value - set(OPTIONAL_FLAGS))
        if unknown:
            msg = f"Cannot build a feature space with flags {unknown} because the known flags are {list(OPTIONAL_FLAGS)}"
            raise ValueError(msg)

    def __attrs_post_init__(self) -> None:
        if not all(getattr(self, dimension) for dimension in DIMENSIONS):
            msg = f"Cannot use feature space {self.describe()} because a dimension has no value left"
            raise ValueError(msg)
        if not any(True for _ in self.cells()):
            msg = f"Cannot use feature space {self.describe()} because no valid CPU lies in it"
            raise ValueError(msg)

    def contains(self, features: Features) -> bool:
        """Whether `features` lies in this space: each dimension's value is allowed, unless the CPU could
        not have that dimension on (PMBIDR_EL1.P counts only with SPE and EL3), and each flag it has is."""
        values = attrs.asdict(features, recurse=False)
        for dimension in DIMENSIONS:
            value = values[dimension]
            if value not in getattr(self, dimension) and (value or possible(dimension, values)):
                return False
        return all(f in self.flags for f in OPTIONAL_FLAGS if values[f])

    def intersect(self, other: FeatureSpace) -> FeatureSpace:
        """The CPUs in both spaces."""
        return FeatureSpace(**{name: getattr(self, name) & getattr(other, name) for name in (*DIMENSIONS, "flags")})

    def allowed(self, dimension: str, decided: Decided) -> list[bool]:
        """The values of a boolean `dimension` this space allows on a CPU with the features `decided` before it
        (`reference.features.ORDER`): on only where the dependencies let it be."""
        on = possible(dimension, decided)
        return [value for value in sorted(getattr(self, dimension)) if not value or on]

    def owner_values(self, spe: SpeLevel, el3: bool = True) -> list[bool]:
        """PMBIDR_EL1.P values possible with `spe` (and EL3 or not) in this space (only 0 without SPE or EL3)."""
        return self.allowed("spe_owned_by_higher_el", {"spe": spe, "el3": el3})

    def flags_for(self, spe: SpeLevel, pmu: PmuLevel) -> dict[str, bool]:
        """Every flag of this space that a CPU with `spe` and `pmu` can have, on."""
        flags: dict[str, bool] = {}
        for flag in sorted(self.flags, key=OPTIONAL_FLAGS.index):
            if possible(flag, {"spe": spe, "pmu": pmu, **flags}):
                flags[flag] = True
        return flags

    def cells(self) -> Iterator[Features]:
        """Every discrete cell (worked out once per space: a run's collection asks for them once per suite test)."""
        return iter(_cells(self))

    def _each_cell(self) -> Iterator[Features]:
        """Every discrete cell.

        Each VHE x SPE level x PMBIDR_EL1.P x PMU level with EL3 and no optional flag; for each
        VHE x SPE x P, one cell with FEAT_ExS alone (exception entry and return to EL2 may not
        synchronise), and one with the newest PMU and every allowed flag on; and, where the space
        has CPUs without EL3, one such cell per VHE x SPE with every flag on.
        """
        el3 = True in self.el3
        for vhe, spe, pmu in itertools.product(sorted(self.vhe), sorted(self.spe), sorted(self.pmu)):
            for owned in self.owner_values(spe, el3):
                yield Features(vhe=vhe, spe=spe, spe_owned_by_higher_el=owned, pmu=pmu, pmu_counters=_counters(pmu), el3=el3)
        if not self.flags:
            return
        top = max(self.pmu)
        base = PmuLevel.V3 if PmuLevel.V3 in self.pmu else top
        for vhe, spe in itertools.product(sorted(self.vhe), sorted(self.spe)):
            for owned in self.owner_values(spe, el3):
                cpu = Features(vhe=vhe, spe=spe, spe_owned_by_higher_el=owned, el3=el3)
                if "exs" in self.flags:
                    yield cpu.evolve(pmu=base, pmu_counters=_counters(base), exs=True)
                yield cpu.evolve(pmu=top, pmu_counters=_counters(top), **self.flags_for(spe, top))
            if el3 and False in self.el3 and False in self.spe_owned_by_higher_el:
                yield Features(vhe=vhe, spe=spe, pmu=top, pmu_counters=_counters(top), el3=False, **self.flags_for(spe, top))

    def describe(self) -> str:
        """One line: 'VHE {nVHE,VHE} x SPE {0..5} x P {0,1} x PMU {...} x flags {...}'."""
        vhe = ",".join("VHE" if v else "nVHE" for v in sorted(self.vhe))
        spe = ",".join(str(int(s)) for s in sorted(self.spe))
        owned = ",".join(str(int(p)) for p in sorted(self.spe_owned_by_higher_el))
        pmu = ",".join(p.name for p in sorted(self.pmu))
        flags = ",".join(sorted(self.flags)) or "none"
        el3 = ",".join(str(int(v)) for v in sorted(self.el3))
        return (
            f"{{{vhe}}} x PMSVer {{{spe}}} x PMBIDR.P {{{owned}}} x PMU {{{pmu}}} x EL3 {{{el3}}} x flags {{{flags}}}"
        )


@functools.lru_cache(maxsize=64)
def _cells(space: FeatureSpace) -> tuple[Features, ...]:
    return tuple(space._each_cell())


def _counters(pmu: PmuLevel) -> int:
    return CELL_COUNTERS if possible("pmu_counters", {"pmu": pmu}) else 0


@functools.lru_cache(maxsize=1024)
def cell_id(features: Features) -> str:
    """A short, stable test id for a cell: 'nvhe-spe1-el3-pmuv3-all' (kept: collection asks it of every cell per suite test)."""
    parts = ["vhe" if features.vhe else "nvhe", f"spe{int(features.spe)}"]
    if features.spe_owned_by_higher_el:
        parts.append("el3")
    parts.append(f"pmu{features.pmu.name.lower()}")
    flags = [f for f in OPTIONAL_FLAGS if getattr(features, f)]
    if flags == ["exs"]:
        parts.append("exs")
    elif flags:
        parts.append("flags")
    if not features.el3:
        parts.append("noel3")
    return "-".join(parts)


FULL_SPACE = FeatureSpace()
