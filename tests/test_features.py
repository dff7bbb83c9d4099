"""Tests of the CPU feature value: validation, derived ID register, description."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_spekvm.reference.features import (
    FEATURE_NAMES,
    FeatureError,
    Features,
    PmuLevel,
    SpeLevel,
)
from pytest_spekvm.reference.registers import id_aa64dfr0_el1


def _field(value: int, msb: int, lsb: int) -> int:
    """Bits [msb:lsb] of `value`, written out here so the tests do not reuse the model's helpers."""
    return (value >> lsb) & ((1 << (msb - lsb + 1)) - 1)


@pytest.mark.parametrize(
    ("level", "pmsver"),
    [
        (SpeLevel.NONE, 0),
        (SpeLevel.SPE, 1),
        (SpeLevel.V1P1, 2),
        (SpeLevel.V1P2, 3),
        (SpeLevel.V1P3, 4),
        (SpeLevel.V1P4, 5),
    ],
)
def test_spe_levels_are_the_pmsver_values(level: SpeLevel, pmsver: int) -> None:
    """Each SPE level's value is the ID_AA64DFR0_EL1.PMSVer encoding the Arm ARM gives it."""
    assert pmsver == int(level)


@pytest.mark.parametrize(
    ("level", "pmuver"),
    [
        (PmuLevel.NONE, 0b0000),
        (PmuLevel.V3, 0b0001),
        (PmuLevel.V3P1, 0b0100),
        (PmuLevel.V3P4, 0b0101),
        (PmuLevel.V3P5, 0b0110),
        (PmuLevel.V3P7, 0b0111),
        (PmuLevel.V3P8, 0b1000),
        (PmuLevel.V3P9, 0b1001),
    ],
)
def test_pmu_levels_are_the_pmuver_values(level: PmuLevel, pmuver: int) -> None:
    """Each PMU level's value is its ID_AA64DFR0_EL1.PMUVer encoding in the Arm ARM."""
    assert pmuver == int(level)


def test_default_features_are_a_plain_nvhe_spe_cpu() -> None:
    """The default CPU is nVHE with FEAT_SPE and PMUv3 with six counters, nothing optional."""
    f = Features()
    assert (False, SpeLevel.SPE, False, PmuLevel.V3, 6) == (
        f.vhe, f.spe, f.spe_owned_by_higher_el, f.pmu, f.pmu_counters,
    )
    assert [] == [name for name in FEATURE_NAMES if getattr(f, name)]


def test_levels_given_as_ints_are_converted() -> None:
    """`spe` and `pmu` given as plain ints become the enums."""
    f = Features(spe=3, pmu=6)  # type: ignore[arg-type]
    assert (SpeLevel.V1P2, PmuLevel.V3P5) == (f.spe, f.pmu)


def test_features_are_immutable() -> None:
    """A Features value cannot be changed after construction."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Features().vhe = True  # type: ignore[misc]


def test_features_compare_and_hash_by_value() -> None:
    """Two equal feature sets are equal and hash alike, so they can key a dict of verdicts."""
    assert {Features(vhe=True): 1}[Features(vhe=True)] == 1


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"spe": SpeLevel.NONE, "spe_owned_by_higher_el": True}, "PMBIDR_EL1.P=1 needs FEAT_SPE"),
        ({"pmu": PmuLevel.NONE, "pmu_counters": 4}, "pmu_counters=4 needs PMUv3"),
        ({"pmu_counters": 32}, "pmu_counters=32 does not fit PMCR_EL0.N (0..31)"),
        ({"pmu_counters": -1}, "pmu_counters=-1 does not fit PMCR_EL0.N (0..31)"),
        ({"trbe": True}, "FEAT_TRBE needs FEAT_TRF"),
        ({"pmu": PmuLevel.NONE, "pmu_counters": 0, "mtpmu": True}, "FEAT_MTPMU needs PMUv3"),
        ({"pmu": PmuLevel.NONE, "pmu_counters": 0, "pmuv3_ss": True}, "FEAT_PMUv3_SS needs PMUv3"),
        ({"pmu": PmuLevel.NONE, "pmu_counters": 0, "ebep": True}, "FEAT_EBEP needs PMUv3"),
        ({"spe": SpeLevel.V1P3, "spe_fds": True}, "FEAT_SPE_FDS needs FEAT_SPEv1p4"),
    ],
)
def test_impossible_combinations_are_refused(kwargs: dict[str, object], problem: str) -> None:
    """A combination the architecture rules out raises FeatureError naming the rule it breaks."""
    with pytest.raises(FeatureError) as info:
        Features(**kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("Cannot build these CPU features because ")
    assert problem in message


def test_every_broken_rule_is_named_at_once() -> None:
    """Several problems are reported together, separated by semicolons, not one per attempt."""
    with pytest.raises(FeatureError) as info:
        Features(spe=SpeLevel.NONE, spe_owned_by_higher_el=True, trbe=True)
    expected = (
        "Cannot build these CPU features because PMBIDR_EL1.P=1 needs FEAT_SPE (PMBIDR_EL1 only "
        "exists with SPE); FEAT_TRBE needs FEAT_TRF (TRBE implies ETE, which implies TRF)"
    )
    assert expected == str(info.value)


def test_feature_error_is_a_value_error() -> None:
    """FeatureError is a ValueError, so generic callers that catch bad values catch it too."""
    assert issubclass(FeatureError, ValueError)


def test_evolve_validates_the_copy() -> None:
    """`evolve` applies changes and refuses to produce an impossible CPU."""
    f = Features()
    assert Features(vhe=True) == f.evolve(vhe=True)
    with pytest.raises(FeatureError, match="needs FEAT_SPE"):
        f.evolve(spe=SpeLevel.NONE, spe_owned_by_higher_el=True)


@pytest.mark.parametrize(
    ("pmu", "level", "expected"),
    [
        (PmuLevel.NONE, PmuLevel.V3, False),
        (PmuLevel.V3, PmuLevel.V3, True),
        (PmuLevel.V3, PmuLevel.V3P1, False),
        (PmuLevel.V3P5, PmuLevel.V3P1, True),
        (PmuLevel.V3P5, PmuLevel.V3P5, True),
        (PmuLevel.V3P5, PmuLevel.V3P7, False),
        (PmuLevel.V3P9, PmuLevel.V3P7, True),
    ],
)
def test_has_pmu_orders_the_levels(pmu: PmuLevel, level: PmuLevel, expected: bool) -> None:
    """`has_pmu(level)` is true from `level` on, and never without PMUv3."""
    counters = 0 if pmu == PmuLevel.NONE else 6
    assert expected == Features(pmu=pmu, pmu_counters=counters).has_pmu(level)


@pytest.mark.parametrize(
    ("features", "text"),
    [
        (Features(), "nVHE, FEAT_SPE (PMSVer=1), PMUv3 (6 counters)"),
        (
            Features(vhe=True, spe=SpeLevel.NONE, pmu=PmuLevel.NONE, pmu_counters=0),
            "VHE, no SPE (PMSVer=0), no PMUv3",
        ),
        (
            Features(spe=SpeLevel.V1P2, spe_owned_by_higher_el=True, pmu=PmuLevel.V3P5, pmu_counters=3),
            "nVHE, SPEv1p2 (PMSVer=3), buffer given to another Security state by EL3 (PMBIDR_EL1.P=1), PMUv3p5 (3 counters)",
        ),
        (
            Features(trf=True, trbe=True, fgt=True, step2=True),
            "nVHE, FEAT_SPE (PMSVer=1), PMUv3 (6 counters), FEAT_FGT, FEAT_STEP2, FEAT_TRF, FEAT_TRBE",
        ),
    ],
)
def test_describe_reads_like_the_counterexample_header(features: Features, text: str) -> None:
    """The one-line description names VHE, the SPE level, P, the PMU and each optional feature."""
    assert text == features.describe()
    assert text == str(features)


def test_id_register_of_a_full_featured_cpu() -> None:
    """ID_AA64DFR0_EL1 carries PMSVer, PMUVer, TraceFilt, TraceBuffer, MTPMU, TraceVer and DebugVer in place."""
    f = Features(
        spe=SpeLevel.V1P4, pmu=PmuLevel.V3P9, trf=True, trbe=True, mtpmu=True, debugv8p9=True,
    )
    # PMSVer 5 at [35:32], TraceBuffer 1 at [47:44], TraceFilt 1 at [43:40], MTPMU 1 at
    # [51:48], PMUVer 0b1001 at [11:8], TraceVer 1 at [7:4] (FEAT_TRBE's FEAT_ETE), DebugVer
    # 0b1011 (Debugv8p9) at [3:0].
    expected = 0x0001_1105_0000_091B
    assert hex(expected) == hex(id_aa64dfr0_el1(f))


def test_id_register_of_a_bare_cpu() -> None:
    """A CPU without SPE or PMU reports PMSVer 0, PMUVer 0 and Armv8.0 debug (DebugVer 0b0110)."""
    f = Features(spe=SpeLevel.NONE, pmu=PmuLevel.NONE, pmu_counters=0)
    assert 0x6 == id_aa64dfr0_el1(f)


@st.composite
def valid_features(draw: st.DrawFn) -> Features:
    """Any feature combination the architecture allows."""
    spe = draw(st.sampled_from(SpeLevel), label="spe")
    pmu = draw(st.sampled_from(PmuLevel), label="pmu")
    has_pmu = pmu != PmuLevel.NONE
    trf = draw(st.booleans(), label="trf")
    return Features(
        vhe=draw(st.booleans(), label="vhe"),
        spe=spe,
        spe_owned_by_higher_el=spe != SpeLevel.NONE and draw(st.booleans(), label="P"),
        pmu=pmu,
        pmu_counters=draw(st.integers(0, 31), label="counters") if has_pmu else 0,
        trf=trf,
        trbe=trf and draw(st.booleans(), label="trbe"),
        spmu=draw(st.booleans(), label="spmu"),
        fgt=draw(st.booleans(), label="fgt"),
        mtpmu=has_pmu and draw(st.booleans(), label="mtpmu"),
        pmuv3_ss=has_pmu and draw(st.booleans(), label="pmuv3_ss"),
        ebep=has_pmu and draw(st.booleans(), label="ebep"),
        debugv8p9=draw(st.booleans(), label="debugv8p9"),
        step2=draw(st.booleans(), label="step2"),
        spe_fds=spe >= SpeLevel.V1P4 and draw(st.booleans(), label="spe_fds"),
    )


@given(features=valid_features())
def test_id_register_fields_decode_back_to_the_features(features: Features) -> None:
    """Every ID_AA64DFR0_EL1 field the model derives decodes back to the feature it came from."""
    value = id_aa64dfr0_el1(features)
    # TraceVer [7:4] 1 only with FEAT_TRBE (its FEAT_ETE has System registers), DoubleLock [39:36] 0b0000
    # (implemented), BRBE [55:52] 0: what the model's CPUs report of the features Features does not hold.
    expected = (
        int(features.spe), int(features.pmu), int(features.trf), int(features.trbe),
        int(features.mtpmu), 0b1011 if features.debugv8p9 else 0b0110, int(features.trbe), 0b0000, 0,
    )
    actual = (
        _field(value, 35, 32), _field(value, 11, 8), _field(value, 43, 40), _field(value, 47, 44),
        _field(value, 51, 48), _field(value, 3, 0), _field(value, 7, 4), _field(value, 39, 36), _field(value, 55, 52),
    )
    assert expected == actual


@given(st.data())
def test_drawn_chooser_takes_a_reserved_value_as_one_it_is_allowed(data: st.DataObject) -> None:
    """The generated sequences' chooser answers a reserved value with the adversary's choice or a drawn one, always one allowed."""
    from pytest_spekvm.strategies import HypothesisChooser  # noqa: PLC0415 - the plugin's side, beside the model's tests

    allowed = (0b00, 0b10, 0b11)
    assert HypothesisChooser(data).reserved_as("MDCR_EL2", "E2PB", allowed) in allowed
