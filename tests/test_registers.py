"""Tests of the register table against the Arm architecture: RES0 masks, encodings, lookup."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference.features import Features, PmuLevel, SpeLevel

MASK64 = (1 << 64) - 1


def _bits(*spans: tuple[int, int] | int) -> int:
    """A mask from bit numbers and (msb, lsb) spans, as the Arm ARM writes them."""
    mask = 0
    for span in spans:
        msb, lsb = span if isinstance(span, tuple) else (span, span)
        mask |= ((1 << (msb - lsb + 1)) - 1) << lsb
    return mask


# MDCR_EL2 as the Arm ARM lists its fields, transcribed independently of registers.py:
# which bits each feature brings. A feature absent from a CPU leaves its bits RES0.
MDCR_BITS_BY_FEATURE: dict[str, int] = {
    "always": _bits(8, 9, 10, 11),  # TDE, TDA, TDOSA, TDRA
    "PMUv3": _bits((4, 0), 5, 6, 7),  # HPMN, TPMCR, TPM, HPME
    "FEAT_SPE": _bits((13, 12), 14),  # E2PB, TPMS
    "FEAT_SPMU": _bits(15),  # EnSPM
    "PMUv3p1": _bits(17),  # HPMD
    "FEAT_TRF": _bits(19),  # TTRF
    "PMUv3p5": _bits(23, 26),  # HCCD, HLP
    "FEAT_TRBE": _bits((25, 24)),  # E2TB
    "FEAT_FGT": _bits(27),  # TDCC
    "FEAT_MTPMU without EL3": _bits(28),  # MTPME (with EL3, MDCR_EL3.MTPME holds it instead)
    "PMUv3p7": _bits(29),  # HPMFZO
    "FEAT_PMUv3_SS": _bits((31, 30)),  # PMSSE
    "SPEv1p2": _bits(36),  # HPMFZS
    "FEAT_EBEP": _bits((41, 40)),  # PMEE
    "FEAT_Debugv8p9": _bits(43),  # EBWE
    "FEAT_STEP2": _bits(50),  # EnSTEPOP
}
# "Bits 16, 18, 22:20, 35:32, 39:37, 42, 49:44 and 63:51 are always RES0."
MDCR_ALWAYS_RES0 = _bits(16, 18, (22, 20), (35, 32), (39, 37), 42, (49, 44), (63, 51))


def _mdcr_res0(*features: str) -> int:
    """The expected MDCR_EL2 RES0 mask for a CPU with the named features (plus the Armv8.0 bits)."""
    live = 0
    for name in ("always", *features):
        live |= MDCR_BITS_BY_FEATURE[name]
    return MASK64 & ~live


EVERYTHING = Features(
    vhe=True, spe=SpeLevel.V1P4, pmu=PmuLevel.V3P9, trf=True, trbe=True, spmu=True, fgt=True,
    mtpmu=True, pmuv3_ss=True, ebep=True, debugv8p9=True, step2=True, el3=False, ecv=True, spe_ernd=True,
    spe_fds=True,
)
NOTHING = Features(spe=SpeLevel.NONE, pmu=PmuLevel.NONE, pmu_counters=0)


def test_design_bit_list_covers_every_bit_once() -> None:
    """The transcribed feature bits and the always-RES0 bits partition the 64 bits of MDCR_EL2."""
    seen = MDCR_ALWAYS_RES0
    for name, mask in MDCR_BITS_BY_FEATURE.items():
        assert 0 == seen & mask, name
        seen |= mask
    assert MASK64 == seen


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        # The seed's CPU: no SPE, PMUv3. Bit 14 (TPMS) is RES0, which is the review's first remark.
        (Features(spe=SpeLevel.NONE), _mdcr_res0("PMUv3")),
        (Features(), _mdcr_res0("PMUv3", "FEAT_SPE")),
        (Features(vhe=True, spe=SpeLevel.V1P1), _mdcr_res0("PMUv3", "FEAT_SPE")),
        (
            Features(spe=SpeLevel.V1P2, pmu=PmuLevel.V3P1),
            _mdcr_res0("PMUv3", "PMUv3p1", "FEAT_SPE", "SPEv1p2"),
        ),
        (
            Features(spe=SpeLevel.V1P3, pmu=PmuLevel.V3P5, trf=True, trbe=True),
            _mdcr_res0("PMUv3", "PMUv3p1", "PMUv3p5", "FEAT_SPE", "SPEv1p2", "FEAT_TRF", "FEAT_TRBE"),
        ),
        (
            Features(spe=SpeLevel.NONE, pmu=PmuLevel.V3P7, fgt=True, mtpmu=True, spmu=True, el3=False),
            _mdcr_res0("PMUv3", "PMUv3p1", "PMUv3p5", "PMUv3p7", "FEAT_FGT", "FEAT_MTPMU without EL3", "FEAT_SPMU"),
        ),
        # With EL3, MDCR_EL2.MTPME is RES0 even on a FEAT_MTPMU CPU.
        (
            Features(spe=SpeLevel.NONE, pmu=PmuLevel.V3P7, fgt=True, mtpmu=True, spmu=True),
            _mdcr_res0("PMUv3", "PMUv3p1", "PMUv3p5", "PMUv3p7", "FEAT_FGT", "FEAT_SPMU"),
        ),
        (
            Features(pmu=PmuLevel.V3P4, pmuv3_ss=True, ebep=True, debugv8p9=True, step2=True),
            _mdcr_res0(
                "PMUv3", "PMUv3p1", "FEAT_SPE", "FEAT_PMUv3_SS", "FEAT_EBEP", "FEAT_Debugv8p9", "FEAT_STEP2",
            ),
        ),
        (Features(pmu=PmuLevel.NONE, pmu_counters=0), _mdcr_res0("FEAT_SPE")),
        # A CPU with every modelled feature leaves exactly the always-RES0 bits.
        (EVERYTHING, MDCR_ALWAYS_RES0),
        # An Armv8.0 CPU with nothing optional has TDE, TDA, TDOSA and TDRA (bits 11:8) only.
        (NOTHING, MASK64 & ~0xF00),
    ],
    ids=lambda v: v.describe() if isinstance(v, Features) else hex(v),
)
def test_mdcr_el2_res0_mask(features: Features, expected: int) -> None:
    """MDCR_EL2's RES0 mask for a feature set is the one the Arm ARM's field list gives."""
    assert hex(expected) == hex(R.res0_mask("MDCR_EL2", features))


def test_tpms_is_res0_exactly_without_spe() -> None:
    """MDCR_EL2.TPMS (bit 14) and E2PB (bits 13:12) are RES0 without FEAT_SPE and live with it."""
    e2pb_tpms = 0x7000
    assert e2pb_tpms == R.res0_mask("MDCR_EL2", Features(spe=SpeLevel.NONE)) & e2pb_tpms
    assert 0 == R.res0_mask("MDCR_EL2", Features()) & e2pb_tpms


# The SPE registers' RES0 masks from the Arm ARM's field lists (bit numbers, not the table).
_PMSCR_LIVE = _bits(0, 1, 3, 4, 5, 6)  # E0SPE/E0HSPE, E1SPE/E2SPE, CX, PA, TS, PCT bit 6
SPE_RES0: list[tuple[str, Features, int]] = [
    ("PMSCR_EL1", Features(), MASK64 & ~_PMSCR_LIVE),
    ("PMSCR_EL2", Features(vhe=True), MASK64 & ~_PMSCR_LIVE),
    ("PMSCR_EL1", Features(ecv=True), MASK64 & ~_PMSCR_LIVE & ~_bits(7)),  # PCT bit 7 needs FEAT_ECV
    ("PMBLIMITR_EL1", Features(), MASK64 & ~_bits(0, (2, 1), (63, 12))),  # E, FM, LIMIT
    ("PMBLIMITR_EL1", Features(spe=SpeLevel.V1P2), MASK64 & ~_bits(0, (2, 1), 5, (63, 12))),  # + PMFZ
    ("PMBPTR_EL1", Features(), 0),
    ("PMBSR_EL1", Features(), MASK64 & ~_bits((15, 0), 16, 17, 18, 19, (31, 26))),  # MSS COLL S EA DL EC
    ("PMSICR_EL1", Features(), MASK64 & ~_bits((31, 0))),  # COUNT
    ("PMSICR_EL1", Features(spe=SpeLevel.V1P2), MASK64 & ~_bits((31, 0))),  # ECOUNT needs FEAT_SPE_ERnd
    ("PMSICR_EL1", Features(spe_ernd=True), MASK64 & ~_bits((31, 0), (63, 56))),  # + ECOUNT
    ("PMSIRR_EL1", Features(), MASK64 & ~_bits(0, (31, 8))),  # RND, INTERVAL
    ("PMSFCR_EL1", Features(), MASK64 & ~_bits(0, 1, 2, 16, 17, 18)),  # FE FT FL B LD ST
    ("PMSFCR_EL1", Features(spe=SpeLevel.V1P3), MASK64 & ~_bits(0, 1, 2, 3, 16, 17, 18)),  # + FnE
    # + FDS [4], with FEAT_SPE_FDS (which needs SPEv1p4)
    ("PMSFCR_EL1", Features(spe=SpeLevel.V1P4, spe_fds=True), MASK64 & ~_bits(0, 1, 2, 3, 4, 16, 17, 18)),
    ("PMSDSFR_EL1", Features(spe=SpeLevel.V1P4, spe_fds=True), 0),  # S [63:0]: one bit per data source
    ("PMSLATFR_EL1", Features(), MASK64 & ~_bits((15, 0))),  # MINLAT
    ("PMSEVFR_EL1", Features(), 0),  # IMPLEMENTATION DEFINED event bits: held as a value
]


@pytest.mark.parametrize(("register", "features", "expected"), SPE_RES0,
                         ids=[f"{r}-{f.spe.name}" for r, f, _ in SPE_RES0])
def test_spe_register_res0_mask(register: str, features: Features, expected: int) -> None:
    """Each SPE register's RES0 mask is the complement of its architected fields."""
    assert hex(expected) == hex(R.res0_mask(register, features))


# HDFGRTR_EL2 as the Arm ARM lists its fields (D24.2.67; positions as Linux arch/arm64/tools/sysreg
# gives them), transcribed independently of registers.py: which bits each feature brings.
HDFGRTR_BITS_BY_FEATURE: dict[str, int] = {
    # DBGBCRn, DBGBVRn, DBGWCRn, DBGWVRn, MDSCR, DBGCLAIM, DBGAUTHSTATUS, DBGPRCR, OSLSR, OSECCR
    "always": _bits((7, 0), 9, 10),
    "FEAT_DoubleLock": _bits(11),  # OSDLR_EL1: ID_AA64DFR0_EL1.DoubleLock reads 0b0000 (implemented) everywhere
    # PMEVCNTRn, PMEVTYPERn, PMCCFILTR, PMCCNTR, PMCNTEN, PMINTEN, PMOVS, PMSELR, PMMIR; PMUSERENR, PMCEIDn
    "FEAT_PMUv3": _bits((19, 12), 22, 57, 58),
    "FEAT_SPE": _bits((32, 23), 63),  # PMBLIMITR_EL1 .. PMSLATFR_EL1, PMBIDR_EL1
    "FEAT_SPE_FnE": _bits(62),  # nPMSNEVFR_EL1
    # TRC, TRCAUTHSTATUS, TRCAUXCTLR, TRCCLAIM, TRCCNTVRn, TRCID, TRCIMSPECn, TRCOSLSR .. TRCVICTLR: FEAT_ETE
    # (or ETMv4 with System register access), which only FEAT_TRBE brings here (TraceVer reads 1 only there)
    "FEAT_ETE": _bits((37, 33), 40, 41, (48, 43)),
    "FEAT_TRBE": _bits((56, 50)),  # TRBBASER, TRBIDR, TRBLIMITR, TRBMAR, TRBPTR, TRBSR, TRBTRG
    "FEAT_BRBE": _bits((61, 59)),  # nBRBIDR, nBRBCTL, nBRBDATA: ID_AA64DFR0_EL1.BRBE reads 0 everywhere
}
HDFGRTR_ALWAYS_RES0 = _bits(49, 42, (39, 38), (21, 20), 8)


def _hdfgrtr_res0(*features: str) -> int:
    """The expected HDFGRTR_EL2 RES0 mask for a CPU with the named features (plus the Armv8.0 debug fields and OSDLR_EL1)."""
    live = 0
    for name in ("always", "FEAT_DoubleLock", *features):
        live |= HDFGRTR_BITS_BY_FEATURE[name]
    return MASK64 & ~live


def test_hdfgrtr_el2_bit_list_covers_every_bit_once() -> None:
    """The transcribed HDFGRTR_EL2 feature bits and the always-RES0 bits partition the 64 bits."""
    seen = HDFGRTR_ALWAYS_RES0
    for name, mask in HDFGRTR_BITS_BY_FEATURE.items():
        assert 0 == seen & mask, name
        seen |= mask
    assert MASK64 == seen


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        (Features(fgt=True, spe=SpeLevel.NONE, pmu=PmuLevel.NONE, pmu_counters=0), _hdfgrtr_res0()),
        (Features(fgt=True, spe=SpeLevel.NONE), _hdfgrtr_res0("FEAT_PMUv3")),
        (Features(fgt=True), _hdfgrtr_res0("FEAT_PMUv3", "FEAT_SPE")),
        (Features(fgt=True, spe=SpeLevel.V1P1), _hdfgrtr_res0("FEAT_PMUv3", "FEAT_SPE")),
        (Features(fgt=True, spe=SpeLevel.V1P2), _hdfgrtr_res0("FEAT_PMUv3", "FEAT_SPE", "FEAT_SPE_FnE")),
        (Features(fgt=True, pmu=PmuLevel.NONE, pmu_counters=0, spe=SpeLevel.V1P4, spe_fds=True),
         _hdfgrtr_res0("FEAT_SPE", "FEAT_SPE_FnE")),
        # FEAT_TRF alone brings no trace unit reached as System registers, and no trace buffer.
        (Features(fgt=True, trf=True), _hdfgrtr_res0("FEAT_PMUv3", "FEAT_SPE")),
        (Features(fgt=True, trf=True, trbe=True), _hdfgrtr_res0("FEAT_PMUv3", "FEAT_SPE", "FEAT_ETE", "FEAT_TRBE")),
        (Features(fgt=True, spe=SpeLevel.NONE, pmu=PmuLevel.NONE, pmu_counters=0, trf=True, trbe=True),
         _hdfgrtr_res0("FEAT_ETE", "FEAT_TRBE")),
        (EVERYTHING, _hdfgrtr_res0("FEAT_PMUv3", "FEAT_SPE", "FEAT_SPE_FnE", "FEAT_ETE", "FEAT_TRBE")),
        # Features no HDFGRTR_EL2 field asks for change nothing.
        (Features(vhe=True, fgt=True, spmu=True, mtpmu=True, ebep=True, pmuv3_ss=True, debugv8p9=True, step2=True),
         _hdfgrtr_res0("FEAT_PMUv3", "FEAT_SPE")),
    ],
    ids=[
        "nothing", "pmuv3", "spe", "spev1p1", "spev1p2", "spev1p4-no-pmu", "trf", "trf-trbe", "trbe-alone",
        "everything", "unrelated-flags",
    ],
)
def test_hdfgrtr_el2_res0_mask(features: Features, expected: int) -> None:
    """HDFGRTR_EL2's RES0 mask is its unallocated bits plus every field whose feature the CPU lacks."""
    assert hex(expected) == hex(R.res0_mask("HDFGRTR_EL2", features))


def test_hdfgrtr_el2_fields_follow_what_id_aa64dfr0_el1_reports() -> None:
    """The fields over features the model holds only as ID_AA64DFR0_EL1 values (BRBE, DoubleLock, TraceVer) are live exactly as it reports them."""
    reg = R.BY_NAME["HDFGRTR_EL2"]
    ids = R.BY_NAME["ID_AA64DFR0_EL1"]
    for features in (NOTHING, Features(fgt=True), EVERYTHING):
        value = R.id_aa64dfr0_el1(features)
        res0 = reg.res0_mask(features)
        assert (0, 0b0000, int(features.trbe)) == (ids.field("BRBE").get(value), ids.field("DoubleLock").get(value), ids.field("TraceVer").get(value))
        assert (True, False) == (bool(res0 & HDFGRTR_BITS_BY_FEATURE["FEAT_BRBE"]), bool(res0 & HDFGRTR_BITS_BY_FEATURE["FEAT_DoubleLock"]))
        # A trace unit as System registers is reported only with FEAT_TRBE (which needs FEAT_ETE).
        assert features.trbe == (not res0 & HDFGRTR_BITS_BY_FEATURE["FEAT_ETE"])


@pytest.mark.parametrize(
    ("register", "field", "trap_when"),
    [("PMBIDR_EL1", "PMBIDR_EL1", 1), ("PMSNEVFR_EL1", "nPMSNEVFR_EL1", 0), ("PMBPTR_EL1", "PMBPTR_EL1", 1)],
)
def test_hdfgrtr_el2_names_the_field_that_traps_each_spe_register(register: str, field: str, trap_when: int) -> None:
    """Each SPE register a HDFGRTR_EL2 field covers maps to that field, the n-prefixed ones trapping when 0."""
    assert (field, trap_when) == R.HDFGRTR_TRAPS[register]


def test_hdfgrtr_el2_traps_only_spe_registers() -> None:
    """Only HDFGRTR_EL2's fields over SPE registers trap in the model: one for each EL1 SPE register but PMSDSFR_EL1 (FEAT_FGT2's)."""
    assert R.SPE_REGISTERS - {"PMSCR_EL2", "PMSDSFR_EL1"} == set(R.HDFGRTR_TRAPS)


def test_hdfgrtr_el2_decodes_every_field_by_name() -> None:
    """A timeline shows HDFGRTR_EL2's fields by name, the reserved bits as a raw value."""
    value = _bits(62, 51, 11, 49)
    assert "nPMSNEVFR_EL1 | TRBIDR_EL1 | OSDLR_EL1 | 0x2000000000000" == R.BY_NAME["HDFGRTR_EL2"].decode(value)


def test_hdfgrtr_el2_needs_feat_fgt() -> None:
    """HDFGRTR_EL2 exists only with FEAT_FGT, and only EL2 reaches it."""
    reg = R.BY_NAME["HDFGRTR_EL2"]
    assert (False, True, 2) == (reg.implemented(Features()), reg.implemented(Features(fgt=True)), reg.min_el)


def test_non_exhaustive_register_is_res0_only_in_absent_feature_fields() -> None:
    """HCR_EL2 is only partly described, so only E2H (bit 34) is RES0, and only without VHE."""
    assert (1 << 34, 0) == (
        R.res0_mask("HCR_EL2", Features()), R.res0_mask("HCR_EL2", Features(vhe=True)),
    )


# Encodings (op0, op1, CRn, CRm, op2) from the Arm ARM.
ENCODINGS = [
    ("MDCR_EL2", (3, 4, 1, 1, 1)),
    ("HCR_EL2", (3, 4, 1, 1, 0)),
    ("HDFGRTR_EL2", (3, 4, 3, 1, 4)),  # Linux arch/arm64/tools/sysreg: Sysreg HDFGRTR_EL2 3 4 3 1 4
    ("ID_AA64DFR0_EL1", (3, 0, 0, 5, 0)),
    ("VTTBR_EL2", (3, 4, 2, 1, 0)),
    ("TTBR0_EL1", (3, 0, 2, 0, 0)),
    ("TTBR1_EL1", (3, 0, 2, 0, 1)),
    ("TCR_EL1", (3, 0, 2, 0, 2)),
    ("TTBR0_EL2", (3, 4, 2, 0, 0)),
    ("TTBR1_EL2", (3, 4, 2, 0, 1)),
    ("TCR_EL2", (3, 4, 2, 0, 2)),
    ("PMSCR_EL1", (3, 0, 9, 9, 0)),
    ("PMSCR_EL2", (3, 4, 9, 9, 0)),
    ("PMSCR_EL12", (3, 5, 9, 9, 0)),
    ("PMSICR_EL1", (3, 0, 9, 9, 2)),
    ("PMSIRR_EL1", (3, 0, 9, 9, 3)),
    ("PMSFCR_EL1", (3, 0, 9, 9, 4)),
    ("PMSEVFR_EL1", (3, 0, 9, 9, 5)),
    ("PMSLATFR_EL1", (3, 0, 9, 9, 6)),
    ("PMSIDR_EL1", (3, 0, 9, 9, 7)),
    ("PMSNEVFR_EL1", (3, 0, 9, 9, 1)),
    ("PMBLIMITR_EL1", (3, 0, 9, 10, 0)),
    ("PMBPTR_EL1", (3, 0, 9, 10, 1)),
    ("PMBSR_EL1", (3, 0, 9, 10, 3)),
    ("PMSDSFR_EL1", (3, 0, 9, 10, 4)),  # Linux arch/arm64/tools/sysreg: Sysreg PMSDSFR_EL1 3 0 9 10 4
    ("PMBIDR_EL1", (3, 0, 9, 10, 7)),
    ("TTBR0_EL12", (3, 5, 2, 0, 0)),
    ("TTBR1_EL12", (3, 5, 2, 0, 1)),
    ("TCR_EL12", (3, 5, 2, 0, 2)),
]


@pytest.mark.parametrize(("name", "encoding"), ENCODINGS, ids=[n for n, _ in ENCODINGS])
def test_encoding_names_the_register(name: str, encoding: tuple[int, int, int, int, int]) -> None:
    """An access by (op0, op1, CRn, CRm, op2) reaches the register the architecture puts there."""
    assert name == R.lookup(R.Encoding(*encoding))


def test_every_known_register_has_a_checked_encoding() -> None:
    """The encoding list above covers every name the model knows, so none goes unchecked."""
    assert sorted(R.ALL_NAMES) == sorted(n for n, _ in ENCODINGS)


@pytest.mark.parametrize(
    ("name", "sys_reg"),
    [
        ("PMSCR_EL1", 0x18_9900),  # Linux sys_reg(3, 0, 9, 9, 0)
        ("PMBLIMITR_EL1", 0x18_9A00),  # sys_reg(3, 0, 9, 10, 0)
        ("PMBIDR_EL1", 0x18_9AE0),  # sys_reg(3, 0, 9, 10, 7)
        ("MDCR_EL2", 0x1C_1120),  # sys_reg(3, 4, 1, 1, 1)
        ("PMSCR_EL12", 0x1D_9900),  # sys_reg(3, 5, 9, 9, 0)
    ],
)
def test_sys_reg_values_match_linux(name: str, sys_reg: int) -> None:
    """Linux's sys_reg() value of a register encodes and decodes to the same register."""
    reg = R.BY_NAME.get(name)
    encoding = reg.encoding if reg is not None else R.EL12_ALIASES[name][0]
    assert (sys_reg, name) == (encoding.sys_reg, R.lookup(sys_reg))


@given(
    op0=st.integers(0, 3),
    op1=st.integers(0, 7),
    crn=st.integers(0, 15),
    crm=st.integers(0, 15),
    op2=st.integers(0, 7),
)
def test_sys_reg_round_trips(op0: int, op1: int, crn: int, crm: int, op2: int) -> None:
    """Any encoding survives sys_reg() and decoding back."""
    encoding = R.Encoding(op0, op1, crn, crm, op2)
    assert encoding == R.Encoding.from_sys_reg(encoding.sys_reg)


def test_encoding_prints_as_the_assembler_spells_it() -> None:
    """An encoding prints as the generic S<op0>_<op1>_C<n>_C<m>_<op2> name assemblers accept."""
    assert "S3_0_C9_C10_7" == str(R.Encoding(3, 0, 9, 10, 7))


def test_lookup_is_case_insensitive() -> None:
    """Register names are accepted in lower case, as Linux's read_sysreg() spells them."""
    assert "PMSCR_EL1" == R.lookup("pmscr_el1")


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ("PMSCR_EL3", "'PMSCR_EL3'"),
        (R.Encoding(3, 0, 9, 10, 5), "S3_0_C9_C10_5"),  # PMBMAR_EL1 (FEAT_SPE_nVM): not modelled
        (R.Encoding(3, 0, 9, 10, 2).sys_reg, "S3_0_C9_C10_2"),
        (True, "True"),  # a bool is not a sys_reg() value
    ],
)
def test_unknown_register_is_named(given: object, named: str) -> None:
    """An unknown name or encoding raises UnknownRegisterError naming what was asked for."""
    with pytest.raises(R.UnknownRegisterError) as info:
        R.lookup(given)  # type: ignore[arg-type]
    assert f"Cannot access system register {named} because the model does not know" in str(info.value)


def test_unknown_register_error_is_a_key_error_with_a_readable_message() -> None:
    """UnknownRegisterError is a KeyError whose str() is the message, not its repr."""
    err = R.UnknownRegisterError("Cannot access system register 'X' because ...")
    assert (True, "Cannot access system register 'X' because ...") == (isinstance(err, KeyError), str(err))


def test_field_lookup_names_the_register_and_its_fields() -> None:
    """Asking a register for a field it lacks names the register and lists its fields."""
    with pytest.raises(KeyError) as info:
        R.BY_NAME["PMBIDR_EL1"].field("E")
    assert "PMBIDR_EL1 has no field 'E' (fields: ALIGN, P, F, EA)" == info.value.args[0]


@pytest.mark.parametrize(
    ("register", "fields", "expected"),
    [
        ("MDCR_EL2", {"TPMS": 1}, 1 << 14),
        ("MDCR_EL2", {"E2PB": 0b11, "HPMN": 6}, 0x3006),
        ("PMBLIMITR_EL1", {"E": 1, "FM": 0b10}, 0b101),
        ("PMBSR_EL1", {"S": 1, "EC": 0b100100}, 1 << 17 | 0b100100 << 26),
        ("HCR_EL2", {"E2H": 1, "TGE": 1}, 1 << 34 | 1 << 27),
    ],
)
def test_bits_builds_values_from_fields(register: str, fields: dict[str, int], expected: int) -> None:
    """`bits` puts each named field's value at the field's position."""
    assert hex(expected) == hex(R.bits(register, **fields))


@pytest.mark.parametrize("value", [-1, 4])
def test_bits_refuses_a_value_wider_than_the_field(value: int) -> None:
    """A field value outside the field's width is refused, naming register, field and width."""
    with pytest.raises(ValueError, match=rf"Cannot set MDCR_EL2.E2PB to {value} because it is a 2-bit field"):
        R.bits("MDCR_EL2", E2PB=value)


def test_field_mask_combines_fields() -> None:
    """`field_mask` is the union of the named fields' bits."""
    assert 0b11 == R.field_mask("PMSCR_EL1", "E0SPE", "E1SPE")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0x4C66, "TPMS | TDRA | TDOSA | TPM | TPMCR | HPMN(6)"),
        (0x3006, "E2PB(3) | HPMN(6)"),
        (0x1F, "HPMN(0x1f)"),
        (0, "0"),
        (1 << 16 | 1 << 14, "TPMS | 0x10000"),  # bit 16 is no field: shown as a raw value
    ],
)
def test_decode_names_the_fields(value: int, text: str) -> None:
    """`decode` shows a value as its set fields, high bits first, then any bits outside fields."""
    assert text == R.BY_NAME["MDCR_EL2"].decode(value)


@pytest.mark.parametrize(
    ("name", "features", "expected"),
    [
        ("PMSCR_EL1", Features(spe=SpeLevel.NONE), False),
        ("PMSCR_EL1", Features(), True),
        ("TTBR1_EL2", Features(), False),
        ("TTBR1_EL2", Features(vhe=True), True),
        ("MDCR_EL2", NOTHING, True),
        ("PMSDSFR_EL1", Features(spe=SpeLevel.V1P4), False),
        ("PMSDSFR_EL1", Features(spe=SpeLevel.V1P4, spe_fds=True), True),
    ],
)
def test_implemented_follows_the_register_feature(name: str, features: Features, expected: bool) -> None:
    """A register exists only on CPUs with the feature it needs."""
    assert expected == R.BY_NAME[name].implemented(features)


def test_field_get_and_put_are_inverse() -> None:
    """A field's value put in place and read back is the value, and its width is msb - lsb + 1."""
    ec = R.BY_NAME["PMBSR_EL1"].field("EC")
    assert (6, 0b100101, 0b100101 << 26) == (ec.width, ec.get(ec.put(0b100101)), ec.put(0b100101))


def test_needs_answers_for_a_feature_set() -> None:
    """A `Needs` is a predicate on features, named as the architecture names the feature."""
    assert ("FEAT_SPEv1p2", False, True) == (
        R.SPEV1P2.name, R.SPEV1P2(Features(spe=SpeLevel.V1P1)), R.SPEV1P2(Features(spe=SpeLevel.V1P2)),
    )


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        (Features(spe=SpeLevel.NONE), 0),
        # FE [0], FT [1], FL [2]; Interval [11:8] 0, MaxSize [15:12] 6, CountSize [19:16] 2
        (Features(spe=SpeLevel.SPE), _bits(0, 1, 2, 13, 14, 17)),
        (Features(spe=SpeLevel.V1P2), _bits(0, 1, 2, 6, 13, 14, 17)),  # + FnE [6]
        (Features(spe=SpeLevel.V1P4, pmu=PmuLevel.V3P9, spe_ernd=True, spe_fds=True), _bits(0, 1, 2, 5, 6, 7, 13, 14, 17)),  # + ERnd [5], FDS [7]
    ],
    ids=["no-spe", "spev1", "spev1p2", "ernd-fds"],
)
def test_pmsidr_el1_reports_the_filters_the_cpu_has(features: Features, expected: int) -> None:
    """PMSIDR_EL1 reads FnE, ERnd and FDS set exactly where the CPU has FEAT_SPEv1p2, FEAT_SPE_ERnd and FEAT_SPE_FDS."""
    assert hex(expected) == hex(R.reset_values(features)["PMSIDR_EL1"])
