"""The feature space a run generates from, its cells and the strategy over it; loading a target twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_spekvm import Features, FeatureSpace, PmuLevel, SpeLevel
from pytest_spekvm.space import FULL_SPACE, OPTIONAL_FLAGS, cell_id
from pytest_spekvm.strategies import features
from pytest_spekvm.target import load


def test_full_space_cells() -> None:
    """The full space has 2 x (1 + 5 x 2) x 8 plain cells, one FEAT_ExS cell and one all-flags cell per VHE x SPE x P, and one no-EL3 cell per VHE x SPE: 232, all distinct."""
    cells = list(FULL_SPACE.cells())
    assert 2 * 11 * len(PmuLevel) + 2 * 11 * 2 + 2 * 6 == len(cells) == len(set(cells)) == len({cell_id(c) for c in cells})
    assert all(FULL_SPACE.contains(c) for c in cells)


def test_no_flags_no_flag_cells() -> None:
    """A space without optional features has only the plain cells, none with a flag."""
    cells = list(FeatureSpace(flags=()).cells())
    assert 2 * 11 * len(PmuLevel) == len(cells)  # no FEAT_ExS and no no-EL3 cells either: they carry flags
    assert not any(getattr(c, f) for c in cells for f in OPTIONAL_FLAGS)


def test_flag_cells_drop_what_they_cannot_have() -> None:
    """Without a PMU the all-flags cells leave out the PMU-only features; without FEAT_TRF they leave out FEAT_TRBE."""
    no_pmu = [c for c in FeatureSpace(pmu={PmuLevel.NONE}).cells() if c.trf]
    assert no_pmu
    assert not any(c.mtpmu or c.pmuv3_ss or c.ebep for c in no_pmu)
    no_trf = [c for c in FeatureSpace(flags={"trbe", "fgt"}).cells() if c.fgt]
    assert no_trf
    assert not any(c.trbe for c in no_trf)


def test_flag_cells_have_feat_spe_fds_only_from_spev1p4() -> None:
    """The all-flags cells carry FEAT_SPE_FDS exactly where FLAG_NEEDS allows it: SPEv1p4 and later."""
    with_fds = {c.spe for c in FULL_SPACE.cells() if c.spe_fds}
    flagged = {c.spe for c in FULL_SPACE.cells() if c.fgt}
    assert ({SpeLevel.V1P4}, True) == (with_fds, SpeLevel.V1P3 in flagged)


@settings(max_examples=50, database=None)
@given(data=st.data())
def test_strategy_draws_feat_spe_fds_only_where_it_can_exist(data: st.DataObject) -> None:
    """The features strategy never builds FEAT_SPE_FDS below SPEv1p4, and can build it there."""
    space = FeatureSpace(spe={SpeLevel.V1P3, SpeLevel.V1P4}, flags={"spe_fds"})
    cpu = data.draw(features(space), label="cpu")
    assert not cpu.spe_fds or cpu.spe >= SpeLevel.V1P4


@pytest.mark.parametrize(
    ("space", "cpu", "inside"),
    [
        (FeatureSpace(vhe={True}), Features(vhe=False), False),
        (FeatureSpace(spe_owned_by_higher_el={False}), Features(spe=SpeLevel.SPE, spe_owned_by_higher_el=True), False),
        (FeatureSpace(spe_owned_by_higher_el={False}), Features(spe=SpeLevel.NONE), True),
        (FeatureSpace(flags={"trf"}), Features(trf=True, fgt=True), False),
        (FeatureSpace(flags={"trf"}), Features(trf=True), True),
    ],
)
def test_contains(space: FeatureSpace, cpu: Features, inside: bool) -> None:
    """A CPU lies in a space when each of its dimensions and each flag it has are allowed (P counts only with SPE)."""
    assert inside == space.contains(cpu)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flags": {"sve"}}, "Cannot build a feature space with flags ['sve'] because the known flags are"),
        ({"vhe": ()}, "because a dimension has no value left"),
    ],
)
def test_bad_space(kwargs: dict[str, object], message: str) -> None:
    """An unknown flag or an empty dimension is refused when the space is built."""
    with pytest.raises(ValueError, match="Cannot") as excinfo:
        FeatureSpace(**kwargs)  # type: ignore[arg-type]
    assert message in str(excinfo.value)


@settings(max_examples=50, database=None)
@given(data=st.data())
def test_strategy_stays_in_space(data: st.DataObject) -> None:
    """The features strategy draws only CPUs of the space it is given."""
    space = FeatureSpace(vhe={False}, spe={SpeLevel.V1P1, SpeLevel.V1P2}, pmu={PmuLevel.NONE}, flags={"trf", "trbe"})
    assert space.contains(data.draw(features(space), label="cpu"))


def test_load_twice_imports_once(tmp_path: Path) -> None:
    """Loading the same .py target twice in one process imports the file once."""
    path = tmp_path / "twice.py"
    path.write_text("from pytest_spekvm.reference.switch import ReferenceSwitch as spekvm_adapter\nLOADS = []\nLOADS.append(1)\n")
    first, second = load(str(path)), load(str(path))
    assert first.factory is second.factory
    assert str(path) == first.origin == second.origin
