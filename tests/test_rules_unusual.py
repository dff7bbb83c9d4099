"""No false alarm: the reference passes every rule everywhere, and correct switches that do not follow the
review's exact shape fail no correctness rule on any CPU, under any adversary, in any scenario."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rules_harness import (
    CORRECTNESS,
    EXS,
    FDS,
    GRID,
    NO_SPE,
    NVHE,
    OWNED,
    SCENARIOS,
    SYNCHRONISING,
    VHE,
    VHE_EXS,
    failing,
    fill,
    judge,
    plain,
    run,
)

from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.chooser import (
    ADVERSARIES,
    Chooser,
    EagerChooser,
    RandomChooser,
    WorstCaseChooser,
)
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.features import Features, PmuLevel, SpeLevel
from pytest_spekvm.reference.registers import HDFGRTR_PMBIDR, PMBIDR_P, PMBLIMITR_E, PMBSR_S
from pytest_spekvm.reference.system import Choices
from pytest_spekvm.reference.trace import Kind
from pytest_spekvm.reference.vcpu import Vcpu

# ------------------------------------------------------------------ the reference passes


def _chooser(name: str, seed: int) -> Chooser:
    if name == "worst":
        return WorstCaseChooser()
    return EagerChooser() if name == "eager" else RandomChooser(seed)


@pytest.mark.parametrize("chooser", ["worst", "eager", "random"])
@pytest.mark.parametrize("features", GRID, ids=str)
def test_reference_passes_every_rule(features: Features, chooser: str) -> None:
    """The reference passes every rule on every CPU of the grid, in every scenario, under each chooser."""
    failures: dict[str, list[str]] = {}
    for seed, (name, scenario) in enumerate(SCENARIOS.items()):
        pick = _chooser(chooser, seed)
        for rid, j in judge(run(S.ReferenceSwitch(), features, scenario, pick)).items():
            if j.violations:
                failures[f"{name}/{rid}"] = [v.message for v in j.violations]
    assert {} == failures


@pytest.mark.parametrize("seed", range(8))
def test_reference_passes_under_random_timings(seed: int) -> None:
    """The reference passes every rule whatever a seeded random chooser decides, on the busiest CPUs."""
    for features in (NVHE, VHE):
        for scenario in SCENARIOS.values():
            assert set() == failing(run(S.ReferenceSwitch(), features, scenario, RandomChooser(seed)))


@pytest.mark.parametrize("features", [NVHE, VHE], ids=str)
def test_fill_scenario_fills_the_buffer_and_restarts_it(features: Features) -> None:
    """The fill scenario really stops the buffer (PMBSR_EL1.S by the PE) and the host really restarts it."""
    system = run(S.ReferenceSwitch(), features, fill, EagerChooser())
    trace = system.cpu.trace
    stops = [e for e in trace if e.kind is Kind.HW and e.register == "PMBSR_EL1"]
    restarts = [e for e in trace if e.kind is Kind.MSR and e.register == "PMBSR_EL1" and e.value == 0]
    windows = list(zip(trace.of(Kind.ENTRY), trace.of(Kind.RETURN), strict=True))
    in_window = [e.seq for e in stops if any(entry.seq < e.seq < back.seq for entry, back in windows)]
    assert (2, 3, True) == (len(stops), len(restarts), any(e.kind is Kind.FULL for e in trace))
    assert in_window, "HOST-STATE must see the PE stop the buffer inside a window"


# ------------------------------------------------------------------ correct but unusual switches


class PsbRightAfterEntry(S.ReferenceSwitch):
    """PSB and DSB straight after the entry into EL2, which synchronises (EIS = 1 or no FEAT_ExS): EL2 never
    samples the host's EL1-owned buffer, so no PMSCR write or ISB is needed first; PMSCR_EL1 is cleared
    later, before the ERET into the guest."""

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        cpu.psb_csync()
        cpu.dsb("nsh")
        cpu.msr("PMSCR_EL1", 0)


class SharedDsbAfterAllDrains(S.ReferenceSwitch):
    """One DSB for every drain, in the run loop, before the traps change (KVM since v6.4)."""

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        cpu.msr("PMSCR_EL1", 0)
        cpu.isb()
        cpu.psb_csync()

    def save_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        super().save_spe(cpu, vcpu)
        cpu.dsb("nsh")


class StrongerDsb(S.ReferenceSwitch):
    """The drain's DSB over a wider domain than NSH."""

    def __init__(self, domain: str) -> None:
        super().__init__()
        self.domain = domain

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        cpu.msr("PMSCR_EL1", 0)
        cpu.isb()
        cpu.psb_csync()
        cpu.dsb(self.domain)


class BufferOffWhileTheGuestRuns(S.ReferenceSwitch):
    """Linux since 2026: the buffer is disabled after the drain, and restored before PMSCR_EL1."""

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        super().drain(cpu, vcpu)
        vcpu.host_debug_state["pmblimitr_el1"] = cpu.mrs("PMBLIMITR_EL1")
        cpu.msr("PMBLIMITR_EL1", 0)
        cpu.isb()

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        limit = vcpu.host_debug_state.pop("pmblimitr_el1", None)
        if limit is not None:
            cpu.msr("PMBLIMITR_EL1", limit)
        super().restore_spe(cpu, vcpu)


class ExtraIsbs(S.ReferenceSwitch):
    """Extra ISBs everywhere in the drain."""

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        cpu.isb()
        cpu.msr("PMSCR_EL1", 0)
        cpu.isb()
        cpu.isb()
        cpu.psb_csync()
        cpu.isb()
        cpu.dsb("nsh")
        cpu.isb()


class RestoreReliesOnTheEret(S.ReferenceSwitch):
    """The restore relies on the return to the host (a context synchronisation event) instead of an ISB."""

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        pmscr = vcpu.host_debug_state.get("pmscr_el1", 0)
        if not S.has_vhe(cpu) and pmscr:
            cpu.msr("PMSCR_EL1", pmscr)


class RestoreBeforeHostTables(S.ReferenceSwitch):
    """PMSCR_EL1 written before the host's tables: it does nothing at EL2, and the return to the host
    synchronises everything together."""

    def exit_guest(self, cpu: CPU, vcpu: Vcpu) -> None:
        self.save_guest_sysregs(cpu, vcpu)
        self.deactivate_traps(cpu, vcpu)
        self.deactivate_vm(cpu, vcpu)
        self.restore_spe(cpu, vcpu)
        self.restore_host_sysregs(cpu, vcpu)
        self.synchronise_host_context(cpu, vcpu)


class SkipsAStoppedBufferAndAnIdlePmscr(S.ReferenceSwitch):
    """The save skips the drain when PMBSR_EL1.S says the buffer already stopped (it collects nothing), and
    the PMSCR_EL1 write when it already reads 0; the liveness check does not look at PMBSR_EL1."""

    def buffer_live(self, cpu: CPU) -> bool:
        return S.has_spe(cpu) and not cpu.mrs("PMBIDR_EL1") & PMBIDR_P and bool(cpu.mrs("PMBLIMITR_EL1") & PMBLIMITR_E)

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        if cpu.mrs("PMBSR_EL1") & PMBSR_S:
            vcpu.host_debug_state["pmscr_el1"] = 0
            return
        if vcpu.host_debug_state["pmscr_el1"]:
            cpu.msr("PMSCR_EL1", 0)
        cpu.isb()
        cpu.psb_csync()
        cpu.dsb("nsh")


class SpeCapabilityCachedAtSetup(S.ReferenceSwitch):
    """SPE capabilities read once, at setup, as a hypervisor caches them in a per-CPU flag."""

    def setup_vcpu(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        super().setup_vcpu(cpu, vcpu, host_mdcr_el2)
        self.spe = S.has_spe(cpu)

    def buffer_live(self, cpu: CPU) -> bool:
        return self.spe and not cpu.mrs("PMBIDR_EL1") & PMBIDR_P and bool(cpu.mrs("PMBLIMITR_EL1") & PMBLIMITR_E)


class GuestFgtTraps(S.ReferenceSwitch):
    """HDFGRTR_EL2's `bits` set for the guest where the CPU has FEAT_FGT, synchronised before the ERET into the
    guest, and taken back before the return (the subclasses say which bits)."""

    def bits(self, cpu: CPU) -> int:
        """The HDFGRTR_EL2 bits this switch sets for the guest on this CPU."""
        raise NotImplementedError

    def trap(self, cpu: CPU, on: bool) -> None:
        if cpu.features.fgt and (bits := self.bits(cpu)):
            value = cpu.mrs("HDFGRTR_EL2")
            cpu.msr("HDFGRTR_EL2", value | bits if on else value & ~bits)

    def synchronise_guest_context(self, cpu: CPU, vcpu: Vcpu) -> None:
        self.trap(cpu, True)
        super().synchronise_guest_context(cpu, vcpu)

    def synchronise_host_context(self, cpu: CPU, vcpu: Vcpu) -> None:
        self.trap(cpu, False)
        super().synchronise_host_context(cpu, vcpu)


class TrapsPmbidrWithFgt(GuestFgtTraps):
    """The guest's PMBIDR_EL1 reads trapped by HDFGRTR_EL2 where the CPU has FEAT_FGT (and SPE), synchronised
    before the ERET into the guest, and the host's value back before the return."""

    def bits(self, cpu: CPU) -> int:
        return HDFGRTR_PMBIDR if S.has_spe(cpu) else 0


class GuestTrapsSetBeforeTheDrain(S.ReferenceSwitch):
    """nVHE: the guest's buffer stays EL1's with its accesses trapped (E2PB = 0b10), and the vcpu's MDCR_EL2 is
    written first, before the drain: the host's 0b11 and the guest's 0b10 both leave the buffer to the EL1&0
    regime (only the trap differs), so the write changes no record's translation."""

    def setup_debug(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        super().setup_debug(cpu, vcpu, host_mdcr_el2)
        if S.has_spe(cpu) and not S.has_vhe(cpu):
            vcpu.mdcr_el2 |= R.MDCR_E2PB.put(R.E2PB_EL1_TRAP)

    def save_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        if not S.has_vhe(cpu):
            cpu.msr("MDCR_EL2", vcpu.mdcr_el2)
        super().save_spe(cpu, vcpu)


class OwnerHandedToEl2BeforeTheDrain(GuestTrapsSetBeforeTheDrain):
    """The same early write with the reference's guest E2PB = 0b00: it hands the buffer to EL2 before the drain
    (not a correct switch)."""

    def setup_debug(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        S.ReferenceSwitch.setup_debug(self, cpu, vcpu, host_mdcr_el2)


class HostControlsWrittenAgainAfterTheIsb(S.ReferenceSwitch):
    """After the exit's ISB, HCR_EL2 and MDCR_EL2 are written again with the values already in force (a host
    flag applied once more), and the return to the host may not synchronise: the PE may use the old value or
    the new one, and they are the same."""

    def synchronise_host_context(self, cpu: CPU, vcpu: Vcpu) -> None:
        super().synchronise_host_context(cpu, vcpu)
        if not S.has_vhe(cpu):
            cpu.msr("HCR_EL2", cpu.mrs("HCR_EL2"))
            cpu.msr("MDCR_EL2", cpu.mrs("MDCR_EL2"))


class HostControlsRestoredAfterTheIsb(S.ReferenceSwitch):
    """The host's HCR_EL2 and MDCR_EL2 written back only after the exit's ISB, before a return to the host that
    may not synchronise: the guest's VM and E2PB may still be in force (not a correct switch)."""

    def exit_guest(self, cpu: CPU, vcpu: Vcpu) -> None:
        self.save_guest_sysregs(cpu, vcpu)
        self.deactivate_vm(cpu, vcpu)
        self.restore_host_sysregs(cpu, vcpu)
        self.restore_spe(cpu, vcpu)
        self.synchronise_host_context(cpu, vcpu)
        self.deactivate_traps(cpu, vcpu)


class StopsTheBufferAfterTheDrain(S.ReferenceSwitch):
    """The drain, then the host's buffer stopped with PMBSR_EL1.S = 1 while the guest runs, and PMBSR_EL1 put
    back before the host samples again: nothing is left to write when it stops."""

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        super().drain(cpu, vcpu)
        vcpu.host_debug_state["pmbsr_el1"] = cpu.mrs("PMBSR_EL1")
        cpu.msr("PMBSR_EL1", PMBSR_S)
        cpu.isb()

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        status = vcpu.host_debug_state.pop("pmbsr_el1", None)
        if status is not None:
            cpu.msr("PMBSR_EL1", status)
        super().restore_spe(cpu, vcpu)


class StopsTheBufferBeforeTheDrain(StopsTheBufferAfterTheDrain):
    """The same stop before the drain: the host's records not yet written are turned away (not a correct switch)."""

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        vcpu.host_debug_state["pmbsr_el1"] = cpu.mrs("PMBSR_EL1")
        cpu.msr("PMBSR_EL1", PMBSR_S)
        S.ReferenceSwitch.drain(self, cpu, vcpu)


class KeepsTheGuestsFgtOnVhe(TrapsPmbidrWithFgt):
    """The guest's PMBIDR_EL1 read trap set at every entry, taken back at the exit on nVHE only: on VHE the host
    runs at EL2 and at EL0 under TGE, where HDFGRTR_EL2 traps nothing, so the guest's value may stay."""

    def synchronise_host_context(self, cpu: CPU, vcpu: Vcpu) -> None:
        if S.has_vhe(cpu):
            S.ReferenceSwitch.synchronise_host_context(self, cpu, vcpu)
        else:
            super().synchronise_host_context(cpu, vcpu)


class KeepsTheGuestsFgtOnNvhe(TrapsPmbidrWithFgt):
    """The same trap never taken back, on nVHE too, where the host's own EL1 reads of PMBIDR_EL1 then trap (not a correct switch)."""

    def synchronise_host_context(self, cpu: CPU, vcpu: Vcpu) -> None:
        S.ReferenceSwitch.synchronise_host_context(self, cpu, vcpu)


# HDFGRTR_EL2.TRBIDR_EL1 [51] (FEAT_TRBE), and bit 49, which no field covers (Arm ARM D24.2.67).
HDFGRTR_TRBIDR = R.field_mask("HDFGRTR_EL2", "TRBIDR_EL1")
HDFGRTR_BIT_49 = 1 << 49
ID_TRACEBUFFER = R.BY_NAME["ID_AA64DFR0_EL1"].field("TraceBuffer")


class TrapsTrbidrWhereTheCpuHasTrbe(GuestFgtTraps):
    """The guest's TRBIDR_EL1 reads trapped by HDFGRTR_EL2 where FEAT_FGT exists and ID_AA64DFR0_EL1.TraceBuffer says
    the CPU has FEAT_TRBE, set before the entry's ISB and taken back before the return: a bit beyond SPE, written
    only where it exists."""

    def bits(self, cpu: CPU) -> int:
        return HDFGRTR_TRBIDR if ID_TRACEBUFFER.get(cpu.mrs("ID_AA64DFR0_EL1")) else 0


class TrapsTrbidrBlindly(TrapsTrbidrWhereTheCpuHasTrbe):
    """The same trap on every FEAT_FGT CPU, without asking ID_AA64DFR0_EL1: RES0 wherever FEAT_TRBE is absent (not a correct switch)."""

    def bits(self, cpu: CPU) -> int:
        return HDFGRTR_TRBIDR


class SetsAReservedFgtBit(TrapsTrbidrWhereTheCpuHasTrbe):
    """HDFGRTR_EL2 bit 49 set for the guest: no field covers it, so it is RES0 on every CPU (not a correct switch)."""

    def bits(self, cpu: CPU) -> int:
        return HDFGRTR_BIT_49


# PMSIDR_EL1.FnE [6] and FDS [7]: the CPU implements PMSNEVFR_EL1 (FEAT_SPEv1p2) and PMSDSFR_EL1 (FEAT_SPE_FDS).
PMSIDR_FILTERS = ((R.field_mask("PMSIDR_EL1", "FnE"), "PMSNEVFR_EL1"), (R.field_mask("PMSIDR_EL1", "FDS"), "PMSDSFR_EL1"))


class SavesTheFiltersPmsidrReports(S.ReferenceSwitch):
    """Beyond the drain, the host's newer filters are saved and cleared while the guest runs, then restored
    before sampling is back on: PMSNEVFR_EL1 and PMSDSFR_EL1, each only where PMSIDR_EL1 says the CPU has it
    (FnE, FDS), as a driver that reads the ID register decides. Extra work, but correct."""

    def filters(self, cpu: CPU) -> list[str]:
        """The optional filters this CPU implements, from PMSIDR_EL1."""
        idr = cpu.mrs("PMSIDR_EL1")
        return [name for mask, name in PMSIDR_FILTERS if idr & mask]

    def drain(self, cpu: CPU, vcpu: Vcpu) -> None:
        super().drain(cpu, vcpu)
        for name in self.filters(cpu):
            vcpu.host_debug_state[name] = cpu.mrs(name)
            cpu.msr(name, 0)

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        for _, name in PMSIDR_FILTERS:
            value = vcpu.host_debug_state.pop(name, None)
            if value is not None:
                cpu.msr(name, value)
        super().restore_spe(cpu, vcpu)


class SavesTheFiltersBlindly(SavesTheFiltersPmsidrReports):
    """The same save without reading PMSIDR_EL1: it touches both filters on every CPU (not a correct switch)."""

    def filters(self, cpu: CPU) -> list[str]:
        return [name for _, name in PMSIDR_FILTERS]


# The SPE registers a switch might keep in a guest's saved context.
GUEST_SPE_CONTEXT = (
    "PMSCR_EL1", "PMSICR_EL1", "PMSIRR_EL1", "PMSFCR_EL1", "PMSEVFR_EL1", "PMSLATFR_EL1",
    "PMBLIMITR_EL1", "PMBPTR_EL1", "PMBSR_EL1",
)


class KeepsAnAllZeroGuestSpeContext(S.ReferenceSwitch):
    """A guest SPE context kept in vcpu.sysregs, all zeros (the guest never owns the buffer, so it has nothing
    else), written on entry and on exit."""

    def enter_guest(self, cpu: CPU, vcpu: Vcpu) -> None:
        vcpu.sysregs.update(dict.fromkeys(GUEST_SPE_CONTEXT, 0))
        super().enter_guest(cpu, vcpu)

    def exit_guest(self, cpu: CPU, vcpu: Vcpu) -> None:
        vcpu.sysregs.update(dict.fromkeys(GUEST_SPE_CONTEXT, 0))
        super().exit_guest(cpu, vcpu)


# name: (switch, the choices it declares). Each must pass every correctness rule on every CPU below,
# under every adversary.
UNUSUAL: dict[str, tuple[Callable[[], S.ReferenceSwitch], Choices | None]] = {
    "psb-right-after-entry": (PsbRightAfterEntry, SYNCHRONISING),
    "shared-dsb-after-all-drains": (SharedDsbAfterAllDrains, None),
    "dsb-ish": (lambda: StrongerDsb("ish"), None),
    "dsb-sy": (lambda: StrongerDsb("sy"), None),
    "buffer-off-while-the-guest-runs": (BufferOffWhileTheGuestRuns, None),
    "extra-isbs": (ExtraIsbs, None),
    "restore-relies-on-the-eret": (RestoreReliesOnTheEret, SYNCHRONISING),
    "restore-before-host-tables": (RestoreBeforeHostTables, SYNCHRONISING),
    "skips-a-stopped-buffer-and-an-idle-pmscr": (SkipsAStoppedBufferAndAnIdlePmscr, None),
    "spe-capability-cached-at-setup": (SpeCapabilityCachedAtSetup, None),
    "traps-pmbidr-with-fgt": (TrapsPmbidrWithFgt, None),
    "keeps-an-all-zero-guest-spe-context": (KeepsAnAllZeroGuestSpeContext, None),
    "saves-the-filters-pmsidr-reports": (SavesTheFiltersPmsidrReports, None),
    "guest-traps-set-before-the-drain": (GuestTrapsSetBeforeTheDrain, None),
    "host-controls-written-again-after-the-isb": (HostControlsWrittenAgainAfterTheIsb, None),
    "stops-the-buffer-after-the-drain": (StopsTheBufferAfterTheDrain, None),
    "keeps-the-guests-fgt-on-vhe": (KeepsTheGuestsFgtOnVhe, None),
    "traps-trbidr-where-the-cpu-has-trbe": (TrapsTrbidrWhereTheCpuHasTrbe, None),
}

UNUSUAL_CPUS = [
    NVHE, VHE, NO_SPE, OWNED, EXS, VHE_EXS, Features(spe=SpeLevel.V1P2, fgt=True), Features(vhe=True, fgt=True),
    Features(spe=SpeLevel.V1P4, pmu=PmuLevel.V3P9, exs=True, el3=False, fgt=True, spe_fds=True),
    Features(fgt=True, trf=True, trbe=True),
]


@pytest.mark.no_cover
@pytest.mark.parametrize("case", list(UNUSUAL))
def test_correct_but_unusual_switch_passes_every_correctness_rule(case: str) -> None:
    """A switch that does what the architecture asks in another shape than the review's fails no correctness rule, anywhere."""
    make, choices = UNUSUAL[case]
    failures = []
    for features in UNUSUAL_CPUS:
        for adversary in ADVERSARIES:
            for name, scenario in SCENARIOS.items():
                failed = failing(run(make(), features, scenario, adversary(), choices)) & set(CORRECTNESS)
                if failed:
                    failures.append(f"{features.describe()} / {adversary.name} / {name}: {sorted(failed)}")
    assert [] == failures


@pytest.mark.parametrize(
    ("features", "failed"),
    [(NVHE, {"UNDEF"}), (Features(spe=SpeLevel.V1P2), {"UNDEF"}), (FDS, set())],
    ids=["spev1p1", "spev1p2", "spev1p4-fds"],
)
def test_filters_saved_without_reading_pmsidr_fail_undef_where_one_is_missing(features: Features, failed: set[str]) -> None:
    """The filter save that ignores PMSIDR_EL1 fails UNDEF exactly on the CPUs missing a filter: what makes its unusual twin correct is the read."""
    assert failed == failing(run(SavesTheFiltersBlindly(), features, plain, WorstCaseChooser()))


@pytest.mark.parametrize(
    ("switch", "features", "rule"),
    [
        (OwnerHandedToEl2BeforeTheDrain, NVHE, "DRAIN-ORDER"),
        (HostControlsRestoredAfterTheIsb, EXS, "RESTORE-ORDER"),
        (StopsTheBufferBeforeTheDrain, NVHE, "DRAIN-ORDER"),
        (StopsTheBufferBeforeTheDrain, NVHE, "NO-LOSS"),
        (KeepsTheGuestsFgtOnNvhe, Features(fgt=True), "HOST-STATE"),
    ],
    ids=[
        "owner-handed-to-el2-before-the-drain", "host-controls-restored-after-the-isb", "stop-before-drain-order",
        "stop-before-drain-no-loss", "guests-fgt-kept-on-nvhe",
    ],
)
def test_twins_that_change_what_matters_still_fail(switch: Callable[[], S.ReferenceSwitch], features: Features, rule: str) -> None:
    """The broken twins of the early-trap, late-write, buffer-stop and kept-trap switches (the buffer's owner, stage 2, its stop or the trap on the wrong side) still fail their rule."""
    assert rule in failing(run(switch(), features, plain, WorstCaseChooser()))


@pytest.mark.parametrize(
    ("switch", "features", "named"),
    [
        (TrapsTrbidrBlindly, Features(fgt=True), "bit 51 (TRBIDR_EL1) is RES0 without FEAT_TRBE"),
        (TrapsTrbidrBlindly, Features(vhe=True, fgt=True, trf=True), "bit 51 (TRBIDR_EL1) is RES0 without FEAT_TRBE"),
        (SetsAReservedFgtBit, Features(fgt=True, trf=True, trbe=True), "bit 49 is RES0 on every CPU"),
    ],
    ids=["trbidr-without-trbe", "trbidr-with-trf-only-vhe", "reserved-bit-49"],
)
def test_hdfgrtr_el2_bit_res0_on_the_cpu_fails_res0(switch: Callable[[], S.ReferenceSwitch], features: Features, named: str) -> None:
    """An HDFGRTR_EL2 write with a bit beyond the SPE fields that is RES0 on the CPU fails RES0, and only RES0, naming the bit."""
    system = run(switch(), features, plain, WorstCaseChooser())
    messages = [v.message for v in judge(system)["RES0"].violations]
    assert ({"RES0"}, True) == (failing(system) & set(CORRECTNESS), bool(messages) and all(named in m for m in messages))


def test_trbidr_trap_is_written_where_the_cpu_has_trbe() -> None:
    """The correct twin really writes HDFGRTR_EL2.TRBIDR_EL1 on a FEAT_TRBE CPU, and never on one without."""
    def written(features: Features) -> bool:
        trace = run(TrapsTrbidrWhereTheCpuHasTrbe(), features, plain, WorstCaseChooser()).cpu.trace
        return any(e.kind is Kind.MSR and e.register == "HDFGRTR_EL2" and e.value & HDFGRTR_TRBIDR for e in trace)

    assert (True, False) == (written(Features(fgt=True, trf=True, trbe=True)), written(Features(fgt=True, trf=True)))


class HostGetsItsBufferTrapped(S.ReferenceSwitch):
    """The exit gives the host MDCR_EL2.E2PB = 0b10, not its own 0b11: the buffer stays EL1's, under the host's
    regime, but the host's own buffer accesses now trap to EL2 (not a correct switch)."""

    def deactivate_traps(self, cpu: CPU, vcpu: Vcpu) -> None:
        super().deactivate_traps(cpu, vcpu)
        if S.has_spe(cpu) and not S.has_vhe(cpu):
            cpu.msr("MDCR_EL2", R.MDCR_E2PB.put(R.E2PB_EL1_TRAP) | cpu.mrs("MDCR_EL2") & ~R.MDCR_E2PB.mask)


def test_a_host_left_trapped_fails_for_its_traps_not_for_its_translation() -> None:
    """E2PB = 0b10 for an nVHE host fails HOST-STATE (its MDCR_EL2) and UNDEF (its own buffer accesses trap),
    not RESTORE-ORDER: the buffer's owner, and so the regime its records are translated by, is the host's."""
    assert {"HOST-STATE", "UNDEF"} == failing(run(HostGetsItsBufferTrapped(), NVHE, plain, WorstCaseChooser())) & set(CORRECTNESS)
