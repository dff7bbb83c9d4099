"""The CPU features the model knows, as one immutable, validated value."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

import attrs


class SpeLevel(enum.IntEnum):
    """ID_AA64DFR0_EL1.PMSVer [35:32]: which Statistical Profiling Extension is implemented."""

    NONE = 0  # PMSVer 0b0000: no SPE
    SPE = 1  # PMSVer 0b0001: FEAT_SPE
    V1P1 = 2  # PMSVer 0b0010: FEAT_SPEv1p1
    V1P2 = 3  # PMSVer 0b0011: FEAT_SPEv1p2
    V1P3 = 4  # PMSVer 0b0100: FEAT_SPEv1p3
    V1P4 = 5  # PMSVer 0b0101: FEAT_SPEv1p4


class PmuLevel(enum.IntEnum):
    """ID_AA64DFR0_EL1.PMUVer [11:8]: which PMU architecture is implemented."""

    NONE = 0b0000  # PMUVer 0b0000: no PMUv3
    V3 = 0b0001  # PMUVer 0b0001: FEAT_PMUv3
    V3P1 = 0b0100  # PMUVer 0b0100: FEAT_PMUv3p1
    V3P4 = 0b0101  # PMUVer 0b0101: FEAT_PMUv3p4
    V3P5 = 0b0110  # PMUVer 0b0110: FEAT_PMUv3p5
    V3P7 = 0b0111  # PMUVer 0b0111: FEAT_PMUv3p7
    V3P8 = 0b1000  # PMUVer 0b1000: FEAT_PMUv3p8
    V3P9 = 0b1001  # PMUVer 0b1001: FEAT_PMUv3p9


class FeatureError(ValueError):
    """A combination of features that the Arm architecture rules out."""


Decided = Mapping[str, Any]
"""Values of a CPU's features by attribute: the whole CPU, or the dimensions decided so far."""


@attrs.frozen
class Dependency:
    """What a feature needs besides itself: wherever `attribute` is on (true, or non-zero), `holds` is true.

    `holds` reads only the features before `attribute` in `ORDER`, so a generator that decides the
    features in that order can ask, at each, whether it may be on (`possible`).
    """

    attribute: str
    needed: str  # what it needs, as the error names it
    holds: Callable[[Decided], bool] = attrs.field(eq=False, repr=False)
    name: str = ""  # how the error names the feature ("": its FEATURE_NAMES name, or attribute=value)

    def message(self, features: Decided) -> str:
        """'FEAT_TRBE needs FEAT_TRF (...)': the rule a CPU with this feature on and `holds` false breaks."""
        name = self.name or FEATURE_NAMES.get(self.attribute) or f"{self.attribute}={features[self.attribute]}"
        return f"{name} needs {self.needed}"


# What each feature needs besides itself: the one place these dependencies are written. Features
# builds no CPU that breaks one, and the feature space's cells and the generator's strategy ask them.
DEPENDENCIES: tuple[Dependency, ...] = (
    Dependency("spe_owned_by_higher_el", "FEAT_SPE (PMBIDR_EL1 only exists with SPE)",
               lambda f: f["spe"] != SpeLevel.NONE, name="PMBIDR_EL1.P=1"),
    Dependency("spe_owned_by_higher_el", "EL3 (MDCR_EL3.NSPB decides it; EL3 never owns the buffer)",
               lambda f: bool(f["el3"]), name="a buffer owned by another Security state"),
    Dependency("pmu_counters", "PMUv3 (PMCR_EL0.N only exists with PMUv3)", lambda f: f["pmu"] != PmuLevel.NONE),
    Dependency("mtpmu", "PMUv3", lambda f: f["pmu"] != PmuLevel.NONE),
    Dependency("pmuv3_ss", "PMUv3", lambda f: f["pmu"] != PmuLevel.NONE),
    Dependency("ebep", "PMUv3", lambda f: f["pmu"] != PmuLevel.NONE),
    # FEAT_TRBE requires FEAT_ETE, which requires FEAT_TRF.
    Dependency("trbe", "FEAT_TRF (TRBE implies ETE, which implies TRF)", lambda f: bool(f.get("trf"))),
    Dependency("spe_ernd", "FEAT_SPE", lambda f: f["spe"] != SpeLevel.NONE),
    # Arm ARM (DDI0487 K.a): "If FEAT_SPE_FDS is implemented, then FEAT_SPEv1p4 is implemented."
    Dependency("spe_fds", "FEAT_SPEv1p4", lambda f: f["spe"] >= SpeLevel.V1P4),
)


def possible(attribute: str, decided: Decided) -> bool:
    """Whether feature `attribute` may be on (true, non-zero) on a CPU with the features `decided` before it in `ORDER`."""
    return all(d.holds(decided) for d in DEPENDENCIES if d.attribute == attribute)


def _check(features: Features) -> None:
    """Reject combinations the architecture does not allow, naming the rule broken."""
    values = attrs.asdict(features, recurse=False)
    broken = [d for d in DEPENDENCIES if values[d.attribute] and not d.holds(values)]
    problems = [d.message(values) for d in broken if d.attribute not in FEATURE_NAMES]
    if not 0 <= features.pmu_counters <= 31:
        problems.append(f"pmu_counters={features.pmu_counters} does not fit PMCR_EL0.N (0..31)")
    problems += [d.message(values) for d in broken if d.attribute in FEATURE_NAMES]
    if problems:
        msg = "Cannot build these CPU features because " + "; ".join(problems)
        raise FeatureError(msg)


FEATURE_NAMES = {
    "spmu": "FEAT_SPMU",
    "fgt": "FEAT_FGT",
    "mtpmu": "FEAT_MTPMU",
    "pmuv3_ss": "FEAT_PMUv3_SS",
    "ebep": "FEAT_EBEP",
    "debugv8p9": "FEAT_Debugv8p9",
    "step2": "FEAT_STEP2",
    "trf": "FEAT_TRF",
    "trbe": "FEAT_TRBE",
    "exs": "FEAT_ExS",
    "ecv": "FEAT_ECV",
    "spe_ernd": "FEAT_SPE_ERnd",
    "spe_fds": "FEAT_SPE_FDS",
}
"""Boolean feature attributes (the flags) and the architecture's name for each."""

DIMENSIONS: Mapping[str, tuple[Any, ...]] = {
    "vhe": (False, True),
    "spe": tuple(SpeLevel),
    "spe_owned_by_higher_el": (False, True),
    "pmu": tuple(PmuLevel),
    "el3": (False, True),
}
"""The dimensions a CPU is chosen along besides the flags, each with every value it may take; the
feature space (`pytest_spekvm.space`) and the generator's strategy derive theirs from it."""

ORDER: tuple[str, ...] = ("vhe", "spe", "el3", "spe_owned_by_higher_el", "pmu", "pmu_counters", *FEATURE_NAMES)
"""The order in which the features can be decided: each `Dependency` reads only those before its own."""


@attrs.frozen
class Features:
    """One CPU: which of the features that MDCR_EL2 and the SPE registers depend on it has.

    Construction validates the combination (`FeatureError` names the broken rule), so every
    `Features` value is one the architecture allows.
    """

    vhe: bool = False
    spe: SpeLevel = attrs.field(default=SpeLevel.SPE, converter=SpeLevel)
    # MDCR_EL3.NSPB (and NSPBE) give the buffer to another Security state: PMBIDR_EL1.P [4] reads 1
    # at Non-secure EL1 and EL2, and every other SPE register traps to EL3 from them.
    spe_owned_by_higher_el: bool = False
    el3: bool = True  # EL3 implemented (most KVM hosts have firmware at EL3; not all)
    pmu: PmuLevel = attrs.field(default=PmuLevel.V3, converter=PmuLevel)
    pmu_counters: int = 6  # PMCR_EL0.N: what the host puts in MDCR_EL2.HPMN
    trf: bool = False
    trbe: bool = False
    spmu: bool = False
    fgt: bool = False
    mtpmu: bool = False
    pmuv3_ss: bool = False
    ebep: bool = False
    debugv8p9: bool = False
    step2: bool = False
    # FEAT_ExS: SCTLR_EL2.EIS/EOS can make exception entry to / return from EL2 not context
    # synchronising (without it both are always context synchronisation events).
    exs: bool = False
    ecv: bool = False  # FEAT_ECV: PMSCR_ELx.PCT bit 7 (the physical offset counter)
    spe_ernd: bool = False  # FEAT_SPE_ERnd: PMSICR_EL1.ECOUNT [63:56]
    spe_fds: bool = False  # FEAT_SPE_FDS: PMSDSFR_EL1, the data source filter (PMSFCR_EL1.FDS [4])

    def __attrs_post_init__(self) -> None:
        _check(self)

    @property
    def has_spe(self) -> bool:
        """FEAT_SPE or later is implemented."""
        return self.spe != SpeLevel.NONE

    @property
    def has_pmuv3(self) -> bool:
        """FEAT_PMUv3 or later is implemented."""
        return self.pmu != PmuLevel.NONE

    def has_pmu(self, level: PmuLevel) -> bool:
        """PMUv3 is implemented at `level` or later."""
        return self.pmu != PmuLevel.NONE and self.pmu >= level

    def evolve(self, **changes: Any) -> Features:
        """A copy with `changes` applied (and validated)."""
        return attrs.evolve(self, **changes)

    def describe(self) -> str:
        """One line for a human: 'nVHE, FEAT_SPE (PMSVer=1), PMUv3 (6 counters)'."""
        parts = ["VHE" if self.vhe else "nVHE"]
        if self.spe == SpeLevel.NONE:
            parts.append("no SPE (PMSVer=0)")
        else:
            level = "FEAT_SPE" if self.spe == SpeLevel.SPE else f"SPE{self.spe.name.lower()}"
            parts.append(f"{level} (PMSVer={int(self.spe)})")
            if self.spe_owned_by_higher_el:
                parts.append("buffer given to another Security state by EL3 (PMBIDR_EL1.P=1)")
        if self.pmu == PmuLevel.NONE:
            parts.append("no PMUv3")
        else:
            name = "PMUv3" if self.pmu == PmuLevel.V3 else f"PMU{self.pmu.name.lower()}"
            parts.append(f"{name} ({self.pmu_counters} counters)")
        parts.extend(label for attr, label in FEATURE_NAMES.items() if getattr(self, attr))
        if not self.el3:
            parts.append("no EL3")
        return ", ".join(parts)

    def __str__(self) -> str:
        return self.describe()
