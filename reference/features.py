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


def _check(features: Features) -> None:
    """Reject combinations the architecture does not allow, naming the rule broken."""
    problems: list[str] = []
    if features.spe_owned_by_higher_el and features.spe == SpeLevel.NONE:
        problems.append("PMBIDR_EL1.P=1 needs FEAT_SPE (PMBIDR_EL1 only exists with SPE)")
    if features.spe_owned_by_higher_el and not features.el3:
        problems.append(
            "a buffer owned by another Security state needs EL3 (MDCR_EL3.NSPB decides it; EL3 never owns the buffer)"
        )
    if features.pmu == PmuLevel.NONE and features.pmu_counters:
        problems.append(
            f"pmu_counters={features.pmu_counters} needs PMUv3 (PMCR_EL0.N only exists with PMUv3)"
        )
    if not 0 <= features.pmu_counters <= 31:
        problems.append(f"pmu_counters={features.pmu_counters} does not fit PMCR_EL0.N (0..31)")
    for flag, (needed, possible) in FLAG_NEEDS.items():
        if getattr(features, flag) and not possible(features.spe, features.pmu, attrs.asdict(features)):
            problems.append(f"{FEATURE_NAMES[flag]} needs {needed}")
    if problems:
        msg = "Cannot build these CPU features because " + "; ".join(problems)
        raise FeatureError(msg)


FlagTest = Callable[[SpeLevel, "PmuLevel", Mapping[str, Any]], bool]

# What each boolean feature needs besides itself: the one place these dependencies are written.
FLAG_NEEDS: dict[str, tuple[str, FlagTest]] = {
    "mtpmu": ("PMUv3", lambda spe, pmu, flags: pmu != PmuLevel.NONE),
    "pmuv3_ss": ("PMUv3", lambda spe, pmu, flags: pmu != PmuLevel.NONE),
    "ebep": ("PMUv3", lambda spe, pmu, flags: pmu != PmuLevel.NONE),
    # FEAT_TRBE requires FEAT_ETE, which requires FEAT_TRF.
    "trbe": ("FEAT_TRF (TRBE implies ETE, which implies TRF)", lambda spe, pmu, flags: bool(flags.get("trf"))),
    "spe_ernd": ("FEAT_SPE", lambda spe, pmu, flags: spe != SpeLevel.NONE),
    # Arm ARM (DDI0487 K.a): "If FEAT_SPE_FDS is implemented, then FEAT_SPEv1p4 is implemented."
    "spe_fds": ("FEAT_SPEv1p4", lambda spe, pmu, flags: spe >= SpeLevel.V1P4),
}


def flag_possible(flag: str, spe: SpeLevel, pmu: PmuLevel, flags: Mapping[str, Any]) -> bool:
    """Whether boolean feature `flag` can be on with this SPE and PMU level and the other `flags`."""
    need = FLAG_NEEDS.get(flag)
    return need is None or need[1](spe, pmu, flags)


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
"""Boolean feature attributes and the architecture's name for each."""


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


# ID_AA64DFR0_EL1 field positions (register ID_AA64DFR0_EL1, op0 3 op1 0 CRn 0 CRm 5 op2 0).
ID_AA64DFR0_PMUVER_SHIFT = 8  # ID_AA64DFR0_EL1.PMUVer [11:8]
ID_AA64DFR0_PMSVER_SHIFT = 32  # ID_AA64DFR0_EL1.PMSVer [35:32]
ID_AA64DFR0_TRACEFILT_SHIFT = 40  # ID_AA64DFR0_EL1.TraceFilt [43:40]
ID_AA64DFR0_TRACEBUFFER_SHIFT = 44  # ID_AA64DFR0_EL1.TraceBuffer [47:44]
ID_AA64DFR0_MTPMU_SHIFT = 48  # ID_AA64DFR0_EL1.MTPMU [51:48]
ID_AA64DFR0_DEBUGVER_SHIFT = 0  # ID_AA64DFR0_EL1.DebugVer [3:0]
DEBUGVER_V8P9 = 0b1011  # ID_AA64DFR0_EL1.DebugVer 0b1011: FEAT_Debugv8p9
DEBUGVER_V8 = 0b0110  # ID_AA64DFR0_EL1.DebugVer 0b0110: Armv8.0 debug


def id_aa64dfr0_el1(features: Features) -> int:
    """The ID_AA64DFR0_EL1 value a CPU with `features` reports."""
    value = int(features.pmu) << ID_AA64DFR0_PMUVER_SHIFT
    value |= int(features.spe) << ID_AA64DFR0_PMSVER_SHIFT
    value |= int(features.trf) << ID_AA64DFR0_TRACEFILT_SHIFT
    value |= int(features.trbe) << ID_AA64DFR0_TRACEBUFFER_SHIFT
    value |= int(features.mtpmu) << ID_AA64DFR0_MTPMU_SHIFT
    debugver = DEBUGVER_V8P9 if features.debugv8p9 else DEBUGVER_V8
    return value | debugver << ID_AA64DFR0_DEBUGVER_SHIFT
