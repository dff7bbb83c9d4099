"""The declarative table of every system register the model knows, and what follows from it.

The table (`REGISTERS`) gives each register's encoding and fields; RES0 masks, the field masks and
positions the model and the rules read, the ID register's value and the registers' reset values are
derived from it here, once.

Longer than the project's other modules (about 570 lines) on purpose: the table is one declarative
list a reader checks against the Arm ARM row by row, and every constant derived from it sits beside
it, so that a field's position is written in exactly one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import attrs

from .features import Features, PmuLevel, SpeLevel

MASK64 = (1 << 64) - 1


@attrs.frozen
class Encoding:
    """A system register's encoding (op0, op1, CRn, CRm, op2), as MRS/MSR name it."""

    op0: int
    op1: int
    crn: int
    crm: int
    op2: int

    @property
    def sys_reg(self) -> int:
        """The value of Linux's `sys_reg(op0, op1, crn, crm, op2)`: the fields at bits [20:5]."""
        return (
            self.op0 << 19 | self.op1 << 16 | self.crn << 12 | self.crm << 8 | self.op2 << 5
        )

    @classmethod
    def from_sys_reg(cls, value: int) -> Encoding:
        """Decode a `sys_reg()` value."""
        return cls(
            op0=(value >> 19) & 0x3,
            op1=(value >> 16) & 0x7,
            crn=(value >> 12) & 0xF,
            crm=(value >> 8) & 0xF,
            op2=(value >> 5) & 0x7,
        )

    def __str__(self) -> str:
        return f"S{self.op0}_{self.op1}_C{self.crn}_C{self.crm}_{self.op2}"


@attrs.frozen
class Needs:
    """A feature a field or register depends on: RES0 (or UNDEFINED) without it."""

    name: str
    test: Callable[[Features], bool] = attrs.field(eq=False, repr=False)

    def __call__(self, features: Features) -> bool:
        return self.test(features)


ALWAYS = Needs("Armv8.0", lambda f: True)
VHE = Needs("FEAT_VHE", lambda f: f.vhe)
SPE = Needs("FEAT_SPE", lambda f: f.has_spe)
SPEV1P2 = Needs("FEAT_SPEv1p2", lambda f: f.spe >= SpeLevel.V1P2)
PMUV3 = Needs("FEAT_PMUv3", lambda f: f.has_pmuv3)
PMUV3P1 = Needs("FEAT_PMUv3p1", lambda f: f.has_pmu(PmuLevel.V3P1))
PMUV3P5 = Needs("FEAT_PMUv3p5", lambda f: f.has_pmu(PmuLevel.V3P5))
PMUV3P7 = Needs("FEAT_PMUv3p7", lambda f: f.has_pmu(PmuLevel.V3P7))
SPMU = Needs("FEAT_SPMU", lambda f: f.spmu)
TRF = Needs("FEAT_TRF", lambda f: f.trf)
TRBE = Needs("FEAT_TRBE", lambda f: f.trbe)
FGT = Needs("FEAT_FGT", lambda f: f.fgt)
# MDCR_EL2.MTPME exists only with FEAT_MTPMU when EL3 is not implemented (MDCR_EL3.MTPME otherwise).
MTPMU_NO_EL3 = Needs("FEAT_MTPMU without EL3", lambda f: f.mtpmu and not f.el3)
SPE_FNE = Needs("FEAT_SPE_FnE", lambda f: f.spe >= SpeLevel.V1P2)  # every PMSVer >= 3 CPU has it
ECV = Needs("FEAT_ECV", lambda f: f.ecv)
SPE_ERND = Needs("FEAT_SPE_ERnd", lambda f: f.spe_ernd)
SPE_FDS = Needs("FEAT_SPE_FDS", lambda f: f.spe_fds)
PMUV3_SS = Needs("FEAT_PMUv3_SS", lambda f: f.pmuv3_ss)
EBEP = Needs("FEAT_EBEP", lambda f: f.ebep)
DEBUGV8P9 = Needs("FEAT_Debugv8p9", lambda f: f.debugv8p9)
STEP2 = Needs("FEAT_STEP2", lambda f: f.step2)
# Features `Features` does not hold, as the CPU's ID_AA64DFR0_EL1 reports them (id_aa64dfr0_el1): no
# FEAT_BRBE, and FEAT_DoubleLock (DoubleLock 0b0000 is "implemented").
BRBE = Needs("FEAT_BRBE", lambda f: _reported(f, "BRBE") != BRBE_NONE)
DOUBLELOCK = Needs("FEAT_DoubleLock", lambda f: _reported(f, "DoubleLock") == DOUBLELOCK_IMPLEMENTED)
# The trace unit's registers reached as System registers: FEAT_ETE, or FEAT_ETMv4 with FEAT_TRC_SR
# (HDFGRTR_EL2's TRC* fields; TRCSSCSRn, TRCSEQSTR and TRCCNTVRn ask ETMv4 for the register too), as
# ID_AA64DFR0_EL1.TraceVer reports them: here only on FEAT_TRBE CPUs, whose FEAT_ETE brings them.
TRACE_UNIT_SR = Needs("FEAT_ETE or FEAT_TRC_SR", lambda f: _reported(f, "TraceVer") != TRACEVER_NONE)


def _reported(features: Features, field_name: str) -> int:
    """ID_AA64DFR0_EL1.`field_name` as a CPU with `features` reports it."""
    return BY_NAME["ID_AA64DFR0_EL1"].field(field_name).get(id_aa64dfr0_el1(features))


@attrs.frozen
class Field:
    """A field of a register: bits [msb:lsb], RES0 unless the CPU has `needs`."""

    name: str
    msb: int
    lsb: int
    needs: Needs = ALWAYS
    width: int = attrs.field(init=False)  # number of bits
    mask: int = attrs.field(init=False)  # the field's bits in place

    @width.default
    def _width(self) -> int:
        return self.msb - self.lsb + 1

    @mask.default
    def _mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb

    def get(self, value: int) -> int:
        """The field's value out of a register value."""
        return (value & self.mask) >> self.lsb

    def put(self, field_value: int) -> int:
        """The field's value in place in a register value."""
        return (field_value << self.lsb) & self.mask


def _field(name: str, bits: str, needs: Needs = ALWAYS) -> Field:
    """A field from 'msb:lsb' or 'bit' as the Arm ARM writes it."""
    msb, _, lsb = bits.partition(":")
    return Field(name, int(msb), int(lsb or msb), needs)


# What a register is for: the rules and the CPU group registers by these.
SPE_SAMPLING = "spe-sampling"  # controlled by MDCR_EL2.TPMS for EL1
SPE_BUFFER = "spe-buffer"  # controlled by MDCR_EL2.E2PB for EL1
TRANSLATION = "translation"
CONTROL = "control"
IDENT = "id"


@attrs.frozen
class Register:
    """A system register: its encoding, fields, lowest EL that may access it, and kind.

    `exhaustive` means every bit outside the listed fields is RES0; registers the model only
    partly describes (HCR_EL2) or holds as opaque values (TTBR*) are not exhaustive.
    """

    name: str
    encoding: Encoding
    fields: tuple[Field, ...] = ()
    needs: Needs = ALWAYS
    min_el: int = 1
    writable: bool = True
    exhaustive: bool = True
    kind: str = CONTROL
    # The fields from the most significant down, as `decode` shows them (sorted once, not per call).
    _msb_first: tuple[Field, ...] = attrs.field(init=False, eq=False, repr=False)

    @_msb_first.default
    def _sort_fields(self) -> tuple[Field, ...]:
        return tuple(sorted(self.fields, key=lambda f: -f.lsb))

    def field(self, name: str) -> Field:
        """The field called `name` (KeyError naming the register otherwise)."""
        for f in self.fields:
            if f.name == name:
                return f
        msg = f"{self.name} has no field {name!r} (fields: {', '.join(f.name for f in self.fields)})"
        raise KeyError(msg)

    def res0_mask(self, features: Features) -> int:
        """Bits that are RES0 on a CPU with `features`: undescribed bits, and absent features' fields."""
        if self.exhaustive:
            live = 0
            for f in self.fields:
                if f.needs(features):
                    live |= f.mask
            return MASK64 & ~live
        dead = 0
        for f in self.fields:
            if not f.needs(features):
                dead |= f.mask
        return dead

    def implemented(self, features: Features) -> bool:
        """Whether this register exists on a CPU with `features` (else accesses are UNDEFINED)."""
        return self.needs(features)

    def decode(self, value: int) -> str:
        """The value as 'FIELD(v) | FLAG | ...', for a timeline a person reads."""
        parts: list[str] = []
        for f in self._msb_first:
            v = f.get(value)
            if not v:
                continue
            parts.append(f.name if f.width == 1 else f"{f.name}({v:#x})" if v > 9 else f"{f.name}({v})")
        rest = value
        for f in self.fields:
            rest &= ~f.mask
        if rest:
            parts.append(f"{rest:#x}")
        return " | ".join(parts) if parts else "0"


def _reg(
    name: str,
    enc: tuple[int, int, int, int, int],
    fields: Iterable[tuple[str, str] | tuple[str, str, Needs]] = (),
    **kw: object,
) -> Register:
    return Register(name, Encoding(*enc), tuple(_field(*f) for f in fields), **kw)  # type: ignore[arg-type]


def _spe(
    name: str,
    enc: tuple[int, int, int, int, int],
    fields: Iterable[tuple[str, str] | tuple[str, str, Needs]],
    kind: str,
    **kw: object,
) -> Register:
    return _reg(name, enc, fields, needs=SPE, kind=kind, **kw)


# PMSCR_EL1 and PMSCR_EL2 fields (Arm ARM D24.7, PMSCR_EL1/PMSCR_EL2): PCT [7:6], TS [5], PA [4],
# CX [3]. PCT bit 7 (the physical offset counter) exists only with FEAT_ECV: the table holds PCT's
# two bits as two fields so that each carries the feature it needs, "PCT" (bit 6, what `bits(PCT=1)`
# sets) and "PCT[7]" (as reports name the bit: the architecture has no field of its own there).
_PMSCR_COMMON: list[tuple[str, str] | tuple[str, str, Needs]] = [
    ("CX", "3"), ("PA", "4"), ("TS", "5"), ("PCT", "6"), ("PCT[7]", "7", ECV),
]

REGISTERS: tuple[Register, ...] = (
    # ID_AA64DFR0_EL1 (3 0 0 5 0): read-only feature identification.
    # TraceVer, DoubleLock and BRBE: what the CPU reports of features `Features` does not hold
    # (id_aa64dfr0_el1); HDFGRTR_EL2's fields over them follow these values.
    _reg("ID_AA64DFR0_EL1", (3, 0, 0, 5, 0), [
        ("DebugVer", "3:0"), ("TraceVer", "7:4"), ("PMUVer", "11:8"), ("PMSVer", "35:32"),
        ("DoubleLock", "39:36"), ("TraceFilt", "43:40"), ("TraceBuffer", "47:44"), ("MTPMU", "51:48"),
        ("BRBE", "55:52"),
    ], writable=False, exhaustive=False, kind=IDENT),
    # MDCR_EL2 (3 4 1 1 1): fields and the feature each needs, from the Arm ARM's MDCR_EL2.
    _reg("MDCR_EL2", (3, 4, 1, 1, 1), [
        ("HPMN", "4:0", PMUV3), ("TPMCR", "5", PMUV3), ("TPM", "6", PMUV3), ("HPME", "7", PMUV3),
        ("TDE", "8"), ("TDA", "9"), ("TDOSA", "10"), ("TDRA", "11"),
        ("E2PB", "13:12", SPE), ("TPMS", "14", SPE), ("EnSPM", "15", SPMU),
        ("HPMD", "17", PMUV3P1), ("TTRF", "19", TRF), ("HCCD", "23", PMUV3P5),
        ("E2TB", "25:24", TRBE), ("HLP", "26", PMUV3P5), ("TDCC", "27", FGT),
        ("MTPME", "28", MTPMU_NO_EL3), ("HPMFZO", "29", PMUV3P7), ("PMSSE", "31:30", PMUV3_SS),
        ("HPMFZS", "36", SPEV1P2), ("PMEE", "41:40", EBEP), ("EBWE", "43", DEBUGV8P9),
        ("EnSTEPOP", "50", STEP2),
    ], min_el=2),
    # HCR_EL2 (3 4 1 1 0): only the fields the switch uses are described; E2H [34] needs FEAT_VHE.
    _reg("HCR_EL2", (3, 4, 1, 1, 0), [
        ("VM", "0"), ("SWIO", "1"), ("FMO", "3"), ("IMO", "4"), ("AMO", "5"), ("TSC", "19"),
        ("TGE", "27"), ("RW", "31"), ("E2H", "34", VHE),
    ], min_el=2, exhaustive=False),
    # HDFGRTR_EL2 (3 4 3 1 4, FEAT_FGT): fine-grained traps of EL1 reads to EL2, every field (Arm ARM
    # D24.2.67; positions as Linux arch/arm64/tools/sysreg, Sysreg HDFGRTR_EL2, gives them), each RES0
    # without the feature the Arm ARM names for it; bits 49, 42, 39:38, 21:20 and 8 are RES0. Only the
    # fields over SPE registers trap anything here (HDFGRTR_TRAPS). The model's CPUs report no
    # FEAT_BRBE, so the nBRB* fields are RES0 on every one; the trace unit fields need FEAT_ETE (or
    # ETMv4 with System register access), which here only FEAT_TRBE brings (see TRACE_UNIT_SR).
    _reg("HDFGRTR_EL2", (3, 4, 3, 1, 4), [
        # Debug (Armv8.0 unless noted).
        ("DBGBCRn_EL1", "0"), ("DBGBVRn_EL1", "1"), ("DBGWCRn_EL1", "2"), ("DBGWVRn_EL1", "3"),
        ("MDSCR_EL1", "4"), ("DBGCLAIM", "5"), ("DBGAUTHSTATUS_EL1", "6"), ("DBGPRCR_EL1", "7"),
        ("OSLSR_EL1", "9"), ("OSECCR_EL1", "10"), ("OSDLR_EL1", "11", DOUBLELOCK),
        # PMU.
        ("PMEVCNTRn_EL0", "12", PMUV3), ("PMEVTYPERn_EL0", "13", PMUV3), ("PMCCFILTR_EL0", "14", PMUV3),
        ("PMCCNTR_EL0", "15", PMUV3), ("PMCNTEN", "16", PMUV3), ("PMINTEN", "17", PMUV3),
        ("PMOVS", "18", PMUV3), ("PMSELR_EL0", "19", PMUV3), ("PMMIR_EL1", "22", PMUV3),
        # SPE.
        ("PMBLIMITR_EL1", "23", SPE), ("PMBPTR_EL1", "24", SPE), ("PMBSR_EL1", "25", SPE),
        ("PMSCR_EL1", "26", SPE), ("PMSEVFR_EL1", "27", SPE), ("PMSFCR_EL1", "28", SPE),
        ("PMSICR_EL1", "29", SPE), ("PMSIDR_EL1", "30", SPE), ("PMSIRR_EL1", "31", SPE),
        ("PMSLATFR_EL1", "32", SPE),
        # Trace unit.
        ("TRC", "33", TRACE_UNIT_SR), ("TRCAUTHSTATUS", "34", TRACE_UNIT_SR),
        ("TRCAUXCTLR", "35", TRACE_UNIT_SR), ("TRCCLAIM", "36", TRACE_UNIT_SR),
        ("TRCCNTVRn", "37", TRACE_UNIT_SR), ("TRCID", "40", TRACE_UNIT_SR), ("TRCIMSPECn", "41", TRACE_UNIT_SR),
        ("TRCOSLSR", "43", TRACE_UNIT_SR), ("TRCPRGCTLR", "44", TRACE_UNIT_SR),
        ("TRCSEQSTR", "45", TRACE_UNIT_SR), ("TRCSSCSRn", "46", TRACE_UNIT_SR),
        ("TRCSTATR", "47", TRACE_UNIT_SR), ("TRCVICTLR", "48", TRACE_UNIT_SR),
        # Trace buffer.
        ("TRBBASER_EL1", "50", TRBE), ("TRBIDR_EL1", "51", TRBE), ("TRBLIMITR_EL1", "52", TRBE),
        ("TRBMAR_EL1", "53", TRBE), ("TRBPTR_EL1", "54", TRBE), ("TRBSR_EL1", "55", TRBE),
        ("TRBTRG_EL1", "56", TRBE),
        # PMU, branch records, SPE.
        ("PMUSERENR_EL0", "57", PMUV3), ("PMCEIDn_EL0", "58", PMUV3),
        ("nBRBIDR", "59", BRBE), ("nBRBCTL", "60", BRBE), ("nBRBDATA", "61", BRBE),
        ("nPMSNEVFR_EL1", "62", SPE_FNE), ("PMBIDR_EL1", "63", SPE),
    ], needs=FGT, min_el=2),
    # Stage 2 base (VTTBR_EL2, 3 4 2 1 0) and the stage 1 regimes (TTBR0/1, TCR).
    _reg("VTTBR_EL2", (3, 4, 2, 1, 0), min_el=2, exhaustive=False, kind=TRANSLATION),
    _reg("TTBR0_EL1", (3, 0, 2, 0, 0), exhaustive=False, kind=TRANSLATION),
    _reg("TTBR1_EL1", (3, 0, 2, 0, 1), exhaustive=False, kind=TRANSLATION),
    _reg("TCR_EL1", (3, 0, 2, 0, 2), exhaustive=False, kind=TRANSLATION),
    _reg("TTBR0_EL2", (3, 4, 2, 0, 0), min_el=2, exhaustive=False, kind=TRANSLATION),
    _reg("TTBR1_EL2", (3, 4, 2, 0, 1), needs=VHE, min_el=2, exhaustive=False, kind=TRANSLATION),
    _reg("TCR_EL2", (3, 4, 2, 0, 2), min_el=2, exhaustive=False, kind=TRANSLATION),
    # SPE sampling control (trapped from EL1 by MDCR_EL2.TPMS).
    _spe("PMSCR_EL1", (3, 0, 9, 9, 0), [("E0SPE", "0"), ("E1SPE", "1"), *_PMSCR_COMMON], SPE_SAMPLING),
    _spe("PMSCR_EL2", (3, 4, 9, 9, 0), [("E0HSPE", "0"), ("E2SPE", "1"), *_PMSCR_COMMON], SPE_SAMPLING,
         min_el=2),
    # PMSNEVFR_EL1 (3 0 9 9 1): the inverted event filter of FEAT_SPE_FnE, an event mask.
    _reg("PMSNEVFR_EL1", (3, 0, 9, 9, 1), needs=SPE_FNE, kind=SPE_SAMPLING, exhaustive=False),
    _spe("PMSICR_EL1", (3, 0, 9, 9, 2), [("COUNT", "31:0"), ("ECOUNT", "63:56", SPE_ERND)], SPE_SAMPLING),
    _spe("PMSIRR_EL1", (3, 0, 9, 9, 3), [("RND", "0"), ("INTERVAL", "31:8")], SPE_SAMPLING),
    # PMSFCR_EL1.FDS [4] enables the data source filter of FEAT_SPE_FDS (PMSDSFR_EL1).
    _spe("PMSFCR_EL1", (3, 0, 9, 9, 4), [
        ("FE", "0"), ("FT", "1"), ("FL", "2"), ("FnE", "3", SPEV1P2), ("FDS", "4", SPE_FDS), ("B", "16"),
        ("LD", "17"), ("ST", "18"),
    ], SPE_SAMPLING),
    # PMSEVFR_EL1 (3 0 9 9 5): an event mask with IMPLEMENTATION DEFINED bits, held as a value.
    _spe("PMSEVFR_EL1", (3, 0, 9, 9, 5), [], SPE_SAMPLING, exhaustive=False),
    _spe("PMSLATFR_EL1", (3, 0, 9, 9, 6), [("MINLAT", "15:0")], SPE_SAMPLING),
    _spe("PMSIDR_EL1", (3, 0, 9, 9, 7), [
        ("FE", "0"), ("FT", "1"), ("FL", "2"), ("ARCHINST", "3"), ("LDS", "4"), ("ERND", "5", SPE_ERND),
        ("FnE", "6", SPEV1P2), ("FDS", "7", SPE_FDS), ("INTERVAL", "11:8"), ("MAXSIZE", "15:12"),
        ("COUNTSIZE", "19:16"), ("FORMAT", "23:20"), ("PBT", "24"),
    ], SPE_SAMPLING, writable=False),
    # SPE profiling buffer (trapped from EL1 by MDCR_EL2.E2PB).
    _spe("PMBLIMITR_EL1", (3, 0, 9, 10, 0), [
        ("E", "0"), ("FM", "2:1"), ("PMFZ", "5", SPEV1P2), ("LIMIT", "63:12"),
    ], SPE_BUFFER),
    _spe("PMBPTR_EL1", (3, 0, 9, 10, 1), [("PTR", "63:0")], SPE_BUFFER),
    _spe("PMBSR_EL1", (3, 0, 9, 10, 3), [
        ("MSS", "15:0"), ("COLL", "16"), ("S", "17"), ("EA", "18"), ("DL", "19"), ("EC", "31:26"),
    ], SPE_BUFFER),
    # PMSDSFR_EL1 (3 0 9 10 4, Linux arch/arm64/tools/sysreg: S [63:0]): the data source filter of
    # FEAT_SPE_FDS, a sampling control: MDCR_EL2.TPMS traps it from EL1 (D24.7, MDCR_EL2.TPMS).
    _reg("PMSDSFR_EL1", (3, 0, 9, 10, 4), [("S", "63:0")], needs=SPE_FDS, kind=SPE_SAMPLING),
    _spe("PMBIDR_EL1", (3, 0, 9, 10, 7), [("ALIGN", "3:0"), ("P", "4"), ("F", "5"), ("EA", "11:8")],
         SPE_BUFFER, writable=False),
)

BY_NAME: Mapping[str, Register] = {r.name: r for r in REGISTERS}

# The HDFGRTR_EL2 field that traps an EL1 read of each SPE register, and the field value that traps
# it: 1, except for the n-prefixed fields, which trap when 0 (nPMSNEVFR_EL1). The fields named after
# an SPE register are the ones over SPE registers; the others cover registers the model does not
# have. PMSDSFR_EL1 is trapped by HDFGRTR2_EL2.nPMSDSFR_EL1 (FEAT_FGT2), which the model does not have.
HDFGRTR_TRAPS: Mapping[str, tuple[str, int]] = {
    **{
        f.name: (f.name, 1) for f in BY_NAME["HDFGRTR_EL2"].fields
        if f.name in BY_NAME and BY_NAME[f.name].kind in (SPE_SAMPLING, SPE_BUFFER)
    },
    "PMSNEVFR_EL1": ("nPMSNEVFR_EL1", 0),
}

# At EL2 with HCR_EL2.E2H = 1, these *_EL1 names reach their EL2 twin (Arm ARM, "Register
# redirection when E2H is 1"). Of the SPE registers only PMSCR has a twin.
VHE_EL2_TWIN: Mapping[str, str] = {
    "PMSCR_EL1": "PMSCR_EL2",
    "TTBR0_EL1": "TTBR0_EL2",
    "TTBR1_EL1": "TTBR1_EL2",
    "TCR_EL1": "TCR_EL2",
}

# *_EL12 names reach the real EL1 register from EL2 when E2H = 1 (UNDEFINED otherwise).
EL12_ALIASES: Mapping[str, tuple[Encoding, str]] = {
    "PMSCR_EL12": (Encoding(3, 5, 9, 9, 0), "PMSCR_EL1"),
    "TTBR0_EL12": (Encoding(3, 5, 2, 0, 0), "TTBR0_EL1"),
    "TTBR1_EL12": (Encoding(3, 5, 2, 0, 1), "TTBR1_EL1"),
    "TCR_EL12": (Encoding(3, 5, 2, 0, 2), "TCR_EL1"),
}

BY_ENCODING: Mapping[Encoding, str] = {
    **{r.encoding: r.name for r in REGISTERS},
    **{enc: alias for alias, (enc, _) in EL12_ALIASES.items()},
}

ALL_NAMES: frozenset[str] = frozenset(BY_NAME) | frozenset(EL12_ALIASES)


class UnknownRegisterError(KeyError):
    """A register name or encoding the model does not know."""

    def __str__(self) -> str:
        return str(self.args[0])


def lookup(name_or_encoding: str | Encoding | int) -> str:
    """The model's name for a register given by name, `Encoding` or `sys_reg()` value."""
    if isinstance(name_or_encoding, str) and name_or_encoding in ALL_NAMES:
        return name_or_encoding
    if isinstance(name_or_encoding, int) and not isinstance(name_or_encoding, bool):
        name_or_encoding = Encoding.from_sys_reg(name_or_encoding)
    if isinstance(name_or_encoding, Encoding):
        try:
            return BY_ENCODING[name_or_encoding]
        except KeyError:
            msg = (
                f"Cannot access system register {name_or_encoding} because the model does not know "
                f"that encoding (known: {', '.join(sorted(ALL_NAMES))})"
            )
            raise UnknownRegisterError(msg) from None
    name = str(name_or_encoding).upper()
    if name not in ALL_NAMES:
        msg = (
            f"Cannot access system register {name_or_encoding!r} because the model does not know it "
            f"(known: {', '.join(sorted(ALL_NAMES))})"
        )
        raise UnknownRegisterError(msg)
    return name


def res0_mask(register: str, features: Features) -> int:
    """RES0 bits of `register` for a CPU with `features`."""
    return BY_NAME[register].res0_mask(features)


def bits(register: str, **fields: int) -> int:
    """A value of `register` with the named fields set: `bits("MDCR_EL2", TPMS=1, HPMN=6)`."""
    reg = BY_NAME[register]
    value = 0
    for name, v in fields.items():
        f = reg.field(name)
        if v < 0 or v >= 1 << f.width:
            msg = f"Cannot set {register}.{name} to {v} because it is a {f.width}-bit field"
            raise ValueError(msg)
        value |= f.put(v)
    return value


def field_mask(register: str, *names: str) -> int:
    """The mask of the named fields of `register`."""
    reg = BY_NAME[register]
    mask = 0
    for name in names:
        mask |= reg.field(name).mask
    return mask


# ------------------------------------------------------------------ fields the model and the rules read

# Each is the table's own field (a mask, or a `Field` where a value of several bits is read), so a
# position is written once: in the table above.
PMBLIMITR_E = field_mask("PMBLIMITR_EL1", "E")  # PMBLIMITR_EL1.E [0]: the buffer is enabled
PMBLIMITR_LIMIT = field_mask("PMBLIMITR_EL1", "LIMIT")  # PMBLIMITR_EL1.LIMIT [63:12]
PMBSR_S = field_mask("PMBSR_EL1", "S")  # PMBSR_EL1.S [17]: the buffer is stopped (collection off)
PMBSR_EC = BY_NAME["PMBSR_EL1"].field("EC")  # PMBSR_EL1.EC [31:26]: the event class
PMBSR_MSS = BY_NAME["PMBSR_EL1"].field("MSS")  # PMBSR_EL1.MSS [15:0]: the class's syndrome
PMBIDR_P = field_mask("PMBIDR_EL1", "P")  # PMBIDR_EL1.P [4]: the buffer is owned by a higher EL or another Security state
MDCR_E2PB = BY_NAME["MDCR_EL2"].field("E2PB")  # MDCR_EL2.E2PB [13:12]: who owns the buffer, EL1 traps
MDCR_TPMS = field_mask("MDCR_EL2", "TPMS")  # MDCR_EL2.TPMS [14]: EL1 sampling-control accesses trap
MDCR_HPMN = field_mask("MDCR_EL2", "HPMN")  # MDCR_EL2.HPMN [4:0]: the counters EL1 may use
HCR_VM = field_mask("HCR_EL2", "VM")  # HCR_EL2.VM [0]: stage 2 translation on
HCR_TGE = field_mask("HCR_EL2", "TGE")  # HCR_EL2.TGE [27]: the EL1&0 regime is not in use
HCR_E2H = field_mask("HCR_EL2", "E2H")  # HCR_EL2.E2H [34]: the host runs at EL2 (VHE)
PMSCR_EL1_E0SPE = field_mask("PMSCR_EL1", "E0SPE")  # PMSCR_EL1.E0SPE [0]: EL0 sampled
PMSCR_EL1_E1SPE = field_mask("PMSCR_EL1", "E1SPE")  # PMSCR_EL1.E1SPE [1]: EL1 sampled
PMSCR_EL1_SPE = PMSCR_EL1_E0SPE | PMSCR_EL1_E1SPE  # PMSCR_EL1.E0SPE [0] | E1SPE [1]: EL1&0 sampling
PMSCR_EL2_E0HSPE = field_mask("PMSCR_EL2", "E0HSPE")  # PMSCR_EL2.E0HSPE [0]: EL0 sampled under TGE
PMSCR_EL2_E2SPE = field_mask("PMSCR_EL2", "E2SPE")  # PMSCR_EL2.E2SPE [1]: EL2 sampled
PMSICR_COUNT = BY_NAME["PMSICR_EL1"].field("COUNT")  # PMSICR_EL1.COUNT [31:0]: the sample counter
HDFGRTR_PMBIDR = field_mask("HDFGRTR_EL2", "PMBIDR_EL1")  # HDFGRTR_EL2.PMBIDR_EL1 [63]: EL1 reads of PMBIDR_EL1 trap
ID_AA64DFR0_PMSVER = BY_NAME["ID_AA64DFR0_EL1"].field("PMSVer")  # ID_AA64DFR0_EL1.PMSVer [35:32]

# Field values.
PMBSR_EC_BUF = 0b000000  # PMBSR_EL1.EC: buffer management event
PMBSR_EC_FAULT_S1 = 0b100100  # PMBSR_EL1.EC: stage 1 data abort on write to buffer
PMBSR_EC_FAULT_S2 = 0b100101  # PMBSR_EL1.EC: stage 2 data abort on write to buffer
PMBSR_BSC_FULL = 0b000001  # PMBSR_EL1.MSS.BSC for EC=0: buffer filled
PMBIDR_ALIGN_64 = 6  # PMBIDR_EL1.ALIGN: 2^6 = 64-byte aligned, matching the model's record size
E2PB_EL2 = 0b00  # MDCR_EL2.E2PB: buffer owned by EL2, EL1 accesses trap
E2PB_RESERVED = 0b01  # MDCR_EL2.E2PB: reserved; behaves as an allocated value (K1.2.19)
E2PB_EL1_TRAP = 0b10  # MDCR_EL2.E2PB: owned by EL1, EL1 accesses trap
E2PB_EL1 = 0b11  # MDCR_EL2.E2PB: owned by EL1, no trap
E2PB_ALLOCATED = (E2PB_EL2, E2PB_EL1_TRAP, E2PB_EL1)
# K1.2.19: after a direct write of a reserved value, "a subsequent read of the field returns an
# UNKNOWN value": any of the field's values.
E2PB_ANY = (E2PB_EL2, E2PB_RESERVED, E2PB_EL1_TRAP, E2PB_EL1)
# E2PB values under which EL1 accesses to PMBLIMITR/PMBPTR/PMBSR trap to EL2 (pseudocode: E2PB IN {'x0'}).
E2PB_TRAPPING = frozenset({E2PB_EL2, E2PB_EL1_TRAP})
DEBUGVER_V8P9 = 0b1011  # ID_AA64DFR0_EL1.DebugVer 0b1011: FEAT_Debugv8p9
DEBUGVER_V8 = 0b0110  # ID_AA64DFR0_EL1.DebugVer 0b0110: Armv8.0 debug
TRACEVER_NONE = 0b0000  # ID_AA64DFR0_EL1.TraceVer 0b0000: no System register interface to a trace unit
TRACEVER_SR = 0b0001  # ID_AA64DFR0_EL1.TraceVer 0b0001: trace unit System registers (FEAT_ETE has them)
DOUBLELOCK_IMPLEMENTED = 0b0000  # ID_AA64DFR0_EL1.DoubleLock 0b0000: FEAT_DoubleLock (0b1111: not implemented)
BRBE_NONE = 0b0000  # ID_AA64DFR0_EL1.BRBE 0b0000: no FEAT_BRBE

# ------------------------------------------------------------------ register groups

SPE_REGISTERS: frozenset[str] = frozenset(r.name for r in REGISTERS if r.kind in (SPE_SAMPLING, SPE_BUFFER))
"""Every SPE register (sampling controls and the buffer's registers, PMBIDR_EL1 and PMSIDR_EL1 included)."""
# Buffer registers E2PB traps (PMBIDR_EL1 is not among them: only HDFGRTR_EL2.PMBIDR_EL1 traps it).
E2PB_TRAPPED = frozenset({"PMBLIMITR_EL1", "PMBPTR_EL1", "PMBSR_EL1"})
EL1_STAGE1 = ("TTBR0_EL1", "TTBR1_EL1", "TCR_EL1")
"""The EL1&0 regime's stage 1: the host's translation on nVHE, the guest's always (saved and restored by the switch)."""
EL12_NAME: Mapping[str, str] = {target: alias for alias, (_, target) in EL12_ALIASES.items()}
"""The *_EL12 name that reaches each EL1 register from EL2 when HCR_EL2.E2H = 1."""


def is_spe(name: str) -> bool:
    """Whether `name` (a register, or a *_EL12 alias) is an SPE register."""
    alias = EL12_ALIASES.get(name)
    return (alias[1] if alias else name) in SPE_REGISTERS


# ------------------------------------------------------------------ values that follow from the features


def id_aa64dfr0_el1(features: Features) -> int:
    """The ID_AA64DFR0_EL1 value a CPU with `features` reports (its fields from the table).

    Of the features `Features` does not hold, it reports no System register interface to a trace unit
    (TraceVer 0) but the FEAT_ETE trace unit that FEAT_TRBE needs (TraceVer 1), FEAT_DoubleLock
    (DoubleLock 0b0000 means implemented) and no FEAT_BRBE (BRBE 0).
    """
    return bits(
        "ID_AA64DFR0_EL1",
        DebugVer=DEBUGVER_V8P9 if features.debugv8p9 else DEBUGVER_V8,
        TraceVer=TRACEVER_SR if features.trbe else TRACEVER_NONE,
        PMUVer=int(features.pmu),
        PMSVer=int(features.spe),
        DoubleLock=DOUBLELOCK_IMPLEMENTED,
        TraceFilt=int(features.trf),
        TraceBuffer=int(features.trbe),
        MTPMU=int(features.mtpmu),
        BRBE=BRBE_NONE,
    )


# PMSIDR_EL1's IMPLEMENTATION DEFINED fields, as a typical implementation reports them.
PMSIDR_INTERVAL_256 = 0b0000  # PMSIDR_EL1.Interval [11:8]: a recommended minimum sampling interval of 256
PMSIDR_MAXSIZE_64 = 6  # PMSIDR_EL1.MaxSize [15:12]: records of at most 2^6 = 64 bytes, the model's record size
PMSIDR_COUNTSIZE_12_SAT = 0b0010  # PMSIDR_EL1.CountSize [19:16]: 12-bit saturating counters


def pmsidr_el1(features: Features) -> int:
    """The PMSIDR_EL1 value a CPU with `features` reports: filtering by event, type and latency (FE, FT, FL),
    and the optional filters exactly where the CPU has them: FnE [6] with FEAT_SPEv1p2 (PMSNEVFR_EL1),
    ERnd [5] with FEAT_SPE_ERnd, FDS [7] with FEAT_SPE_FDS (PMSDSFR_EL1); a driver or a switch that reads it
    to decide which filters to save sees what the CPU has. 0 without SPE, where reading it is UNDEFINED."""
    if not features.has_spe:
        return 0
    return bits(
        "PMSIDR_EL1",
        FE=1, FT=1, FL=1,
        FnE=int(features.spe >= SpeLevel.V1P2), ERND=int(features.spe_ernd), FDS=int(features.spe_fds),
        INTERVAL=PMSIDR_INTERVAL_256, MAXSIZE=PMSIDR_MAXSIZE_64, COUNTSIZE=PMSIDR_COUNTSIZE_12_SAT,
    )


# PMSCR_EL2 reset: E0HSPE [0] and E2SPE [1] are architecturally UNKNOWN (D24.7); the model takes 1.
PMSCR_EL2_RESET = PMSCR_EL2_E0HSPE | PMSCR_EL2_E2SPE


def reset_values(features: Features) -> dict[str, int]:
    """Every register's value when the model's CPU comes out of reset: the one source the CPU and the rules start from.

    Fields the Arm ARM leaves UNKNOWN at reset take the worst case where it matters
    (PMSCR_EL2.E0HSPE and E2SPE: 1, so EL2 is sampled until something writes them); the rest are 0.
    HDFGRTR_EL2 is 0 as well: UNKNOWN where EL3 is implemented (D24.2.67), but the boot code writes
    it before any EL1 code runs, as Linux's EL2 set-up does.
    """
    values = {r.name: 0 for r in REGISTERS}
    values["ID_AA64DFR0_EL1"] = id_aa64dfr0_el1(features)
    values["PMBIDR_EL1"] = PMBIDR_ALIGN_64
    values["PMSIDR_EL1"] = pmsidr_el1(features)
    if features.has_spe:
        values["PMSCR_EL2"] = PMSCR_EL2_RESET
    return values
