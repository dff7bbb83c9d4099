"""Tests of the rule catalogue: each rule catches a broken world switch; the reference passes them all.

Longer than 400 lines on purpose: the broken switches (BROKEN), the correct but unusual ones
(UNUSUAL) and the scenarios they run are each one table that every rule's tests share, and are read
best whole, next to the tests that use them.
"""

from __future__ import annotations

import importlib
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from pytest_spekvm import rules
from pytest_spekvm.reference import registers as R
from pytest_spekvm.reference import switch as S
from pytest_spekvm.reference.actors import BOOT, HOST, HYP, PE, Actor, guest
from pytest_spekvm.reference.chooser import (
    ADVERSARIES,
    Chooser,
    EagerChooser,
    HoldingChooser,
    RandomChooser,
    SplitChooser,
    WorstCaseChooser,
)
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.features import Features, PmuLevel, SpeLevel
from pytest_spekvm.reference.kvm import HCR_HOST_NVHE, HCR_HOST_VHE
from pytest_spekvm.reference.registers import PMBIDR_P, PMBLIMITR_E
from pytest_spekvm.reference.system import Choices, System
from pytest_spekvm.reference.trace import Dsb, Kind, Trace
from pytest_spekvm.reference.vcpu import ExitReason, GuestAccess, GuestCode, GuestExit, Vcpu

RULE_IDS = (
    "RES0",
    "TRAP-COND",
    "UNDEF",
    "DRAIN-ORDER",
    "RESTORE-ORDER",
    "HOST-STATE",
    "ISOLATION",
    "NO-LOSS",
    "LEAN",
)

# ------------------------------------------------------------------ CPUs

NVHE = Features()
VHE = Features(vhe=True)
NO_SPE = Features(spe=SpeLevel.NONE)
OWNED = Features(spe_owned_by_higher_el=True)
# FEAT_ExS: with SCTLR_EL2.EIS/EOS = 0 (the default choices) exception entry to and return from
# EL2 are not context synchronisation events.
EXS = Features(exs=True)
VHE_EXS = Features(vhe=True, exs=True)
# FEAT_SPE_FDS (the data source filter, PMSDSFR_EL1) needs FEAT_SPEv1p4.
FDS = Features(spe=SpeLevel.V1P4, spe_fds=True)
# FEAT_FGT: HDFGRTR_EL2 can trap the guest's PMBIDR_EL1 reads; with FEAT_ExS its write may not be in
# force at an ERET into the guest that does not synchronise.
FGT = Features(fgt=True)
FGT_EXS = Features(fgt=True, exs=True)
SYNCHRONISING = Choices(sctlr_el2_eis=True, sctlr_el2_eos=True)


def _cpu(vhe: bool, spe: SpeLevel, p: bool, pmu: PmuLevel) -> Features:
    return Features(
        vhe=vhe, spe=spe, spe_owned_by_higher_el=p, pmu=pmu, pmu_counters=0 if pmu == PmuLevel.NONE else 6
    )


# VHE/nVHE x SPE levels x PMBIDR_EL1.P (only with SPE) x PMU none/v3/v3p7.
GRID = [
    _cpu(vhe, spe, p, pmu)
    for vhe in (False, True)
    for spe in (SpeLevel.NONE, SpeLevel.SPE, SpeLevel.V1P2, SpeLevel.V1P4)
    for p in ((False,) if spe == SpeLevel.NONE else (False, True))
    for pmu in (PmuLevel.NONE, PmuLevel.V3, PmuLevel.V3P7)
] + [
    # FEAT_FGT (HDFGRTR_EL2 written at boot) and FEAT_SPE_FDS (PMSDSFR_EL1 programmed by the host).
    Features(vhe=vhe, spe=SpeLevel.V1P4, fgt=True, spe_fds=True, exs=exs) for vhe in (False, True) for exs in (False, True)
]

# ------------------------------------------------------------------ host scenarios

Scenario = Callable[[System], None]


def plain(s: System) -> None:
    """Profiling on: host code, runs of both vcpus, host user space in between."""
    s.enable_profiling()
    s.host_run(3)
    s.run_vcpu(0, [GuestCode(2)])
    s.host_run(2, el0=True)
    s.run_vcpu(1)
    s.run_vcpu(0, [GuestCode(1), GuestExit("hvc")])
    s.finish()


def kernel_after_return(s: System) -> None:
    """Profiling on; after each run the host kernel runs sampled code straight away, then enters again."""
    s.enable_profiling()
    s.host_run(2)
    s.run_vcpu(0, [GuestCode(1)])
    s.host_run(3)
    s.run_vcpu(1)
    s.host_run(1)
    s.finish()


def toggle(s: System) -> None:
    """Profiling off, on, paused, on again (user space only), off, on, between runs."""
    s.run_vcpu(0)
    s.enable_profiling()
    s.host_run(2)
    s.run_vcpu(1)
    s.pause_sampling()
    s.host_run(1)
    s.run_vcpu(0)
    s.enable_profiling(pmscr=0b01)
    s.host_run(2, el0=True)
    s.run_vcpu(0)
    s.disable_profiling()
    s.run_vcpu(1)
    s.enable_profiling()
    s.host_run(1)
    s.run_vcpu(0)
    s.finish()


def guest_access(s: System) -> None:
    """Guests try the sampling controls and the buffer registers, reading and writing."""
    s.enable_profiling()
    s.host_run(2)
    s.run_vcpu(0, [GuestCode(1), GuestAccess("PMSCR_EL1")])
    s.run_vcpu(0, [GuestAccess("PMBLIMITR_EL1", write=True, value=1)])
    s.run_vcpu(1, [GuestAccess("PMBIDR_EL1"), GuestAccess("PMSIDR_EL1")])
    s.run_vcpu(1, [GuestAccess("PMSCR_EL1", write=True, value=0b11), GuestCode(1)])
    s.finish()


def fill(s: System) -> None:
    """The host fills its buffer (64 records fit), takes the interrupt, and fills it again."""
    s.enable_profiling()
    s.host_run(300)
    s.run_vcpu(0)
    s.handle_buffer_irq()
    s.host_run(5)
    s.run_vcpu(1)
    s.host_run(260)
    s.run_vcpu(0)
    s.handle_buffer_irq()
    s.host_run(1)
    s.finish()


def idle(s: System) -> None:
    """Boot only: no window, no record, no guest."""


SCENARIOS: dict[str, Scenario] = {
    "plain": plain,
    "toggle": toggle,
    "guest_access": guest_access,
    "fill": fill,
    "kernel_after_return": kernel_after_return,
}


def _run(
    switch: S.ReferenceSwitch,
    features: Features,
    scenario: Scenario,
    chooser: Chooser | None = None,
    choices: Choices | None = None,
) -> System:
    system = System(features, switch, chooser if chooser is not None else WorstCaseChooser(), choices=choices)
    scenario(system)
    return system


def _judge(system: System) -> dict[str, rules.Judgement]:
    return rules.judge_all(system.cpu.trace, system.features)


def _failing(system: System) -> set[str]:
    return {rid for rid, j in _judge(system).items() if not j.passed}


# ------------------------------------------------------------------ broken switches, built from steps

Step = Callable[[CPU, Vcpu, int], None]


def _step(fn: Callable[[CPU, Vcpu], None]) -> Step:
    """A reference step that does not need the host's MDCR_EL2."""
    return lambda cpu, vcpu, host: fn(cpu, vcpu)


def _nvhe(fn: Step) -> Step:
    """Run `fn` only on nVHE, as the reference does with its SPE save and restore."""
    return lambda cpu, vcpu, host: None if cpu.features.vhe else fn(cpu, vcpu, host)


SAVE_HOST = _step(S.save_host_sysregs)
SAVE_SPE = _nvhe(_step(S.debug_save_spe_nvhe))
ACTIVATE = _step(S.activate_traps)
ACTIVATE_VM = _step(S.activate_vm)
GUEST_SYSREGS = _step(S.restore_guest_sysregs)
SAVE_GUEST = _step(S.save_guest_sysregs)
DEACTIVATE: Step = S.deactivate_traps
DEACTIVATE_VM = _step(S.deactivate_vm)
HOST_SYSREGS = _step(S.restore_host_sysregs)
RESTORE_SPE = _nvhe(_step(S.debug_restore_spe))
SYNC_GUEST = _step(S.synchronise_guest_context)
SYNC_HOST = _step(S.synchronise_host_context)
REF_ENTRY = (SAVE_HOST, SAVE_SPE, ACTIVATE, ACTIVATE_VM, GUEST_SYSREGS, SYNC_GUEST)
REF_EXIT = (SAVE_GUEST, DEACTIVATE, DEACTIVATE_VM, HOST_SYSREGS, RESTORE_SPE, SYNC_HOST)


class Composed(S.ReferenceSwitch):
    """A world switch made of steps: `entry` before the guest runs, `exit` after it."""

    def __init__(
        self,
        entry: Sequence[Step] = REF_ENTRY,
        exit_: Sequence[Step] = REF_EXIT,
        setup: Callable[[CPU, Vcpu, int], None] = S.setup_debug,
    ) -> None:
        super().__init__()
        self.entry, self.exit, self.setup = entry, exit_, setup

    def setup_vcpu(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """The vcpu's MDCR_EL2, by `setup`."""
        self._host_mdcr_el2 = host_mdcr_el2
        self.setup(cpu, vcpu, host_mdcr_el2)

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> ExitReason:
        """The entry steps, the guest, the exit steps."""
        for step in self.entry:
            step(cpu, vcpu, self._host_mdcr_el2)
        reason = cpu.run_guest(vcpu)
        for step in self.exit:
            step(cpu, vcpu, self._host_mdcr_el2)
        return reason


def _replace(steps: Sequence[Step], old: Step, *new: Step) -> tuple[Step, ...]:
    out: list[Step] = []
    for step in steps:
        out.extend(new if step is old else (step,))
    return tuple(out)


def _setup_with(extra: int, drop: int = 0) -> Callable[[CPU, Vcpu, int], None]:
    """kvm_arm_setup_debug, then OR in `extra` and clear `drop` in the vcpu's MDCR_EL2."""

    def setup(cpu: CPU, vcpu: Vcpu, host: int) -> None:
        S.setup_debug(cpu, vcpu, host)
        vcpu.mdcr_el2 = (vcpu.mdcr_el2 | extra) & ~drop

    return setup


def _deactivate_rfc_nvhe(cpu: CPU, vcpu: Vcpu, host: int) -> None:
    """The RFC's __deactivate_traps_nvhe: HPMN kept, E2PB = 0b11 whether or not SPE exists."""
    cpu.msr("HCR_EL2", HCR_HOST_NVHE)
    cpu.msr("MDCR_EL2", cpu.mrs("MDCR_EL2") & S.MDCR_HPMN_MASK | S.MDCR_E2PB_MASK)


def _deactivate_pre_patch(cpu: CPU, vcpu: Vcpu, host: int) -> None:
    """Before the RFC: the host's MDCR_EL2 is rebuilt from HPMN alone, dropping its E2PB."""
    cpu.msr("HCR_EL2", HCR_HOST_VHE if cpu.features.vhe else HCR_HOST_NVHE)
    cpu.msr("MDCR_EL2", cpu.mrs("MDCR_EL2") & S.MDCR_HPMN_MASK)


LIVE_CHECKS = ("spe", "p", "e")


def _drain(
    order: str, checks: Sequence[str] = LIVE_CHECKS, save_area: bool = True, vhe_too: bool = False
) -> Step:
    """The nVHE save: the liveness `checks` it makes, then its links in `order`.

    Checks: 'spe' (ID_AA64DFR0_EL1.PMSVer), 'p' (PMBIDR_EL1.P), 'e' (PMBLIMITR_EL1.E). Links:
    'msr', 'isb', 'psb', 'dsb[:domain]', 'reenable' (PMSCR_EL1 back), 'disable' (PMBLIMITR_EL1 off).
    """

    def save(cpu: CPU, vcpu: Vcpu, host: int) -> None:
        if save_area:
            vcpu.host_debug_state["pmscr_el1"] = 0
        if "spe" in checks and not S.has_spe(cpu):
            return
        if "p" in checks and cpu.mrs("PMBIDR_EL1") & PMBIDR_P:
            return
        if "e" in checks and not cpu.mrs("PMBLIMITR_EL1") & PMBLIMITR_E:
            return
        pmscr = cpu.mrs("PMSCR_EL1")
        vcpu.host_debug_state["pmscr_el1"] = pmscr
        for link in order.split():
            name, _, domain = link.partition(":")
            if name == "msr":
                cpu.msr("PMSCR_EL1", 0)
            elif name == "reenable":
                cpu.msr("PMSCR_EL1", pmscr)
            elif name == "isb":
                cpu.isb()
            elif name == "psb":
                cpu.psb_csync()
            elif name == "dsb":
                cpu.dsb(domain or "nsh")
            elif name == "disable":
                vcpu.host_debug_state["pmblimitr_el1"] = cpu.mrs("PMBLIMITR_EL1")
                cpu.msr("PMBLIMITR_EL1", 0)
            elif name == "squeeze":
                # "Stops" the buffer by pulling its limit down to the write pointer: E stays 1.
                vcpu.host_debug_state["pmblimitr_el1"] = cpu.mrs("PMBLIMITR_EL1")
                cpu.msr("PMBLIMITR_EL1", (cpu.mrs("PMBPTR_EL1") & ~0xFFF) | PMBLIMITR_E)
            elif name == "interval":
                cpu.msr("PMSIRR_EL1", 0x100)  # programs its own sampling interval, never gives it back
            elif name == "dsfr":
                cpu.msr("PMSDSFR_EL1", 0)  # clears the host's data source filter, never gives it back

    return save if vhe_too else _nvhe(save)


def _restore(sync: bool = True, always: bool = False, vhe_too: bool = False) -> Step:
    """__debug_restore_spe: `sync` issues the ISB, `always` writes even an unchanged PMSCR_EL1."""

    def restore(cpu: CPU, vcpu: Vcpu, host: int) -> None:
        limit = vcpu.host_debug_state.pop("pmblimitr_el1", None)
        if limit is not None:
            cpu.msr("PMBLIMITR_EL1", limit)
        pmscr = vcpu.host_debug_state.get("pmscr_el1", 0)
        if not pmscr and not always:
            return
        if sync:
            cpu.isb()
        cpu.msr("PMSCR_EL1", pmscr)

    return restore if vhe_too else _nvhe(restore)


HDFGRTR_PMBIDR = R.bits("HDFGRTR_EL2", PMBIDR_EL1=1)


def _fgt_pmbidr(on: bool) -> Step:
    """Set (`on`) or clear HDFGRTR_EL2.PMBIDR_EL1, where the CPU has FEAT_FGT and FEAT_SPE."""

    def step(cpu: CPU, vcpu: Vcpu, host: int) -> None:
        if cpu.features.fgt and S.has_spe(cpu):
            value = cpu.mrs("HDFGRTR_EL2")
            cpu.msr("HDFGRTR_EL2", value | HDFGRTR_PMBIDR if on else value & ~HDFGRTR_PMBIDR)

    return step


TRAP_PMBIDR, UNTRAP_PMBIDR = _fgt_pmbidr(True), _fgt_pmbidr(False)


def _paused_run(s: System) -> None:
    """The host pauses sampling but leaves its buffer enabled, then runs a vcpu."""
    s.enable_profiling()
    s.host_run(2)
    s.pause_sampling()
    s.run_vcpu(0)
    s.finish()


def _off_then_on(s: System) -> None:
    """A run with profiling on, then one with it off: a stale save area shows on the second."""
    s.enable_profiling()
    s.host_run(1)
    s.run_vcpu(0)
    s.disable_profiling()
    s.run_vcpu(0)


def _profiling_off(s: System) -> None:
    """Runs with the host's buffer never enabled."""
    s.run_vcpu(0)
    s.run_vcpu(1)


class _HostPmscrInGuestContext(S.ReferenceSwitch):
    """Keeps the host's PMSCR_EL1 in the vcpu's saved guest context (vcpu.sysregs) instead of its own
    save area: the restore works, but KVM shows that context to the guest and to userspace."""

    def save_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's save, into vcpu.sysregs."""
        if S.has_vhe(cpu):
            return
        vcpu.sysregs["PMSCR_EL1"] = 0
        if self.buffer_live(cpu):
            vcpu.sysregs["PMSCR_EL1"] = cpu.mrs("PMSCR_EL1")
            self.drain(cpu, vcpu)

    def restore_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """The reference's restore, from vcpu.sysregs."""
        pmscr = vcpu.sysregs.get("PMSCR_EL1", 0)
        if not S.has_vhe(cpu) and pmscr:
            cpu.isb()
            cpu.msr("PMSCR_EL1", pmscr)


# The SPE registers a switch might keep in a guest's saved context.
GUEST_SPE_CONTEXT = (
    "PMSCR_EL1", "PMSICR_EL1", "PMSIRR_EL1", "PMSFCR_EL1", "PMSEVFR_EL1", "PMSLATFR_EL1",
    "PMBLIMITR_EL1", "PMBPTR_EL1", "PMBSR_EL1",
)


def _zero_guest_spe_context(cpu: CPU, vcpu: Vcpu, host: int) -> None:
    """The guest's SPE context, kept as zeros: the guest never owns the buffer, so it has nothing else."""
    vcpu.sysregs.update(dict.fromkeys(GUEST_SPE_CONTEXT, 0))


TPMS = R.bits("MDCR_EL2", TPMS=1)
E2PB_EL1 = R.bits("MDCR_EL2", E2PB=0b11)
MDCR_BIT16 = 1 << 16  # MDCR_EL2 bit 16: RES0 on every CPU (the Arm ARM's MDCR_EL2 field list)

# id: (switch, CPU, scenario, chooser, the rules that fail: exactly these)
BROKEN: dict[str, tuple[Callable[[], S.ReferenceSwitch], Features, Scenario, Chooser, set[str]]] = {
    # The review's finding: TPMS set whether or not the CPU has SPE.
    "tpms-without-spe": (
        lambda: Composed(setup=_setup_with(TPMS)),
        NO_SPE,
        plain,
        WorstCaseChooser(),
        {"RES0", "TRAP-COND"},
    ),
    # The RFC's __deactivate_traps_nvhe: E2PB written on a CPU without SPE, and kept as host state.
    "rfc-deactivate-e2pb": (
        lambda: Composed(exit_=_replace(REF_EXIT, DEACTIVATE, _deactivate_rfc_nvhe)),
        NO_SPE,
        plain,
        WorstCaseChooser(),
        {"RES0", "TRAP-COND", "HOST-STATE"},
    ),
    # MDCR_EL2.E2PB = 0b01 is reserved: it may act as any allocated value (here, as the worst case
    # picks, 0b11: the guest owns the buffer and its accesses do not trap).
    "reserved-e2pb": (
        lambda: Composed(setup=_setup_with(R.bits("MDCR_EL2", E2PB=0b01))),
        NVHE,
        guest_access,
        WorstCaseChooser(),
        {"TRAP-COND", "ISOLATION", "HOST-STATE"},
    ),
    # The switch asks for the guest's PMBIDR_EL1 reads to trap, but after its ISB: on a FEAT_ExS CPU
    # whose ERET into the guest does not synchronise, the trap is not in force and the read completes.
    "fgt-pmbidr-trap-not-synchronised": (
        lambda: Composed(
            entry=(*REF_ENTRY, TRAP_PMBIDR),
            exit_=_replace(REF_EXIT, SYNC_HOST, UNTRAP_PMBIDR, SYNC_HOST),
        ),
        FGT_EXS,
        guest_access,
        WorstCaseChooser(),
        {"TRAP-COND"},
    ),
    # The switch traps the guest's PMBIDR_EL1 reads and leaves the trap set for the host.
    "fgt-pmbidr-trap-left-for-the-host": (
        lambda: Composed(entry=_replace(REF_ENTRY, SYNC_GUEST, TRAP_PMBIDR, SYNC_GUEST)),
        FGT,
        guest_access,
        WorstCaseChooser(),
        {"HOST-STATE"},
    ),
    # The host's PMSCR_EL1 saved in the guest's context, where the guest and userspace can read it.
    "host-pmscr-in-guest-context": (
        _HostPmscrInGuestContext,
        NVHE,
        plain,
        WorstCaseChooser(),
        {"ISOLATION"},
    ),
    "always-res0-bit": (
        lambda: Composed(setup=_setup_with(MDCR_BIT16)),
        NVHE,
        plain,
        WorstCaseChooser(),
        {"RES0"},
    ),
    "guest-without-tpms": (
        lambda: Composed(setup=_setup_with(0, drop=TPMS)),
        NVHE,
        guest_access,
        WorstCaseChooser(),
        {"TRAP-COND", "ISOLATION"},
    ),
    "guest-owns-buffer": (
        lambda: Composed(setup=_setup_with(E2PB_EL1)),
        VHE,
        guest_access,
        WorstCaseChooser(),
        {"TRAP-COND", "ISOLATION", "HOST-STATE"},  # the guest's write to PMBLIMITR_EL1 lands
    ),
    "save-without-spe-check": (
        lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb psb dsb", checks=("p", "e")))),
        NO_SPE,
        plain,
        WorstCaseChooser(),
        {"UNDEF"},
    ),
    "save-ignores-pmbidr-p": (
        lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb psb dsb", checks=("spe", "e")))),
        OWNED,
        plain,
        WorstCaseChooser(),
        {"UNDEF"},
    ),
    # Undrained host records are written under the guest's E2PB = 0b00: the nVHE EL2 regime has no
    # upper VA range, so the first faults and stops the buffer (PMBSR_EL1 changed, records lost).
    "no-drain": (
        lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE)),
        NVHE,
        plain,
        WorstCaseChooser(),
        {"DRAIN-ORDER", "HOST-STATE", "NO-LOSS"},
    ),
    # No ISB before the PSB, on a FEAT_ExS CPU whose entry to EL2 does not synchronise: the PSB
    # does not synchronise the host's records, which are lost under the guest's regime.
    "drain-without-isb-on-exs": (
        lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr psb dsb"))),
        EXS,
        plain,
        WorstCaseChooser(),
        {"DRAIN-ORDER", "HOST-STATE", "NO-LOSS", "LEAN"},
    ),
    # D17.9: the DSB after the PSB must apply to loads and stores. With a store-only one, the
    # buffer disabled after the drain (as Linux does since 2026) discards the unfinished writes.
    "drain-with-store-dsb-then-disable": (
        lambda: Composed(
            entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb psb dsb:ishst disable isb")),
            exit_=_replace(REF_EXIT, RESTORE_SPE, _restore()),
        ),
        NVHE,
        plain,
        WorstCaseChooser(),
        {"DRAIN-ORDER", "NO-LOSS"},
    ),
    # The buffer "stopped" by pulling its limit down: the host's records meet a full buffer that is
    # not the host's doing, and PMBSR_EL1 comes back changed.
    "squeezes-the-limit-instead-of-draining": (
        lambda: Composed(
            entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb squeeze")),
            exit_=_replace(REF_EXIT, RESTORE_SPE, _restore()),
        ),
        NVHE,
        plain,
        WorstCaseChooser(),
        {"DRAIN-ORDER", "HOST-STATE", "NO-LOSS", "LEAN"},
    ),
    # The switch programs its own sampling interval and leaves it to the host.
    "leaves-its-sampling-interval": (
        lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb psb dsb interval"))),
        NVHE,
        plain,
        WorstCaseChooser(),
        {"HOST-STATE"},
    ),
    # The switch clears the host's data source filter (FEAT_SPE_FDS) and never puts it back.
    "clears-the-data-source-filter": (
        lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb psb dsb dsfr"))),
        FDS,
        plain,
        WorstCaseChooser(),
        {"HOST-STATE"},
    ),
    "drain-with-load-dsb": (
        lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb psb dsb:nshld"))),
        NVHE,
        plain,
        WorstCaseChooser(),
        {"DRAIN-ORDER"},
    ),
    "drain-after-traps": (
        # The drain's own ISB puts the guest's E2PB in force before its PSB CSYNC translates: the
        # EL2 regime faults the host's records, and the buffer stops.
        lambda: Composed(entry=(SAVE_HOST, ACTIVATE, SAVE_SPE, ACTIVATE_VM, GUEST_SYSREGS, SYNC_GUEST)),
        NVHE,
        plain,
        WorstCaseChooser(),
        {"DRAIN-ORDER", "HOST-STATE", "NO-LOSS"},
    ),
    "sampling-back-on-before-eret": (
        # The guest's EL1 is sampled under E2PB = 0b00: its records fault in the EL2 regime.
        lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb psb dsb reenable"))),
        NVHE,
        plain,
        WorstCaseChooser(),
        {"DRAIN-ORDER", "HOST-STATE", "LEAN"},
    ),
    # On a FEAT_ExS CPU whose return to the host does not synchronise, sampling comes back before
    # the host's MDCR_EL2 and tables are in force (the split adversary shows the outcome).
    "restore-before-host-tables-on-exs": (
        lambda: Composed(exit_=(SAVE_GUEST, DEACTIVATE, DEACTIVATE_VM, RESTORE_SPE, HOST_SYSREGS)),
        EXS,
        kernel_after_return,
        WorstCaseChooser(),
        {"RESTORE-ORDER"},
    ),
    "restore-without-isb-on-exs": (
        lambda: Composed(exit_=_replace(_replace(REF_EXIT, SYNC_HOST), RESTORE_SPE, _restore(sync=False))),
        EXS,
        plain,
        WorstCaseChooser(),
        {"RESTORE-ORDER", "UNDEF"},
    ),
    "forgets-restore": (
        lambda: Composed(exit_=_replace(REF_EXIT, RESTORE_SPE)),
        NVHE,
        plain,
        WorstCaseChooser(),
        {"HOST-STATE"},
    ),
    # The host gets E2PB = 0b00 back: its own buffer accesses trap to EL2, and its sampling goes
    # through the EL2 regime, which faults it.
    "pre-patch-mdcr": (
        lambda: Composed(exit_=_replace(REF_EXIT, DEACTIVATE, _deactivate_pre_patch)),
        NVHE,
        plain,
        WorstCaseChooser(),
        {"HOST-STATE", "RESTORE-ORDER", "UNDEF", "NO-LOSS"},
    ),
    # The RFC's save returns early without clearing its save area: the next restore is stale.
    "stale-save-area": (
        lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb psb dsb", save_area=False))),
        NVHE,
        _off_then_on,
        WorstCaseChooser(),
        {"HOST-STATE", "LEAN"},
    ),
    "disables-buffer-instead-of-draining": (
        lambda: Composed(
            entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb disable isb psb dsb")),
            exit_=_replace(REF_EXIT, RESTORE_SPE, _restore()),
        ),
        NVHE,
        plain,
        WorstCaseChooser(),
        {"DRAIN-ORDER", "NO-LOSS"},
    ),
    "vhe-runs-the-nvhe-save": (
        lambda: Composed(
            entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb psb dsb", vhe_too=True)),
            exit_=_replace(REF_EXIT, RESTORE_SPE, _restore(vhe_too=True)),
        ),
        VHE,
        plain,
        WorstCaseChooser(),
        {"LEAN"},
    ),
    "drains-an-idle-buffer": (
        lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb psb dsb", checks=("spe", "p")))),
        NVHE,
        _profiling_off,
        WorstCaseChooser(),
        {"LEAN"},
    ),
    "restores-an-unchanged-pmscr": (
        lambda: Composed(exit_=_replace(REF_EXIT, RESTORE_SPE, _restore(always=True))),
        NVHE,
        _paused_run,
        WorstCaseChooser(),
        {"LEAN"},
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_switch_fails_exactly_its_rules(case: str) -> None:
    """Each broken world switch fails the rules its defect breaks, and no others."""
    make, features, scenario, chooser, expected = BROKEN[case]
    assert expected == _failing(_run(make(), features, scenario, chooser))


# Mistakes whose outcome only another adversary shows: (case, adversary, the rules that fail).
OTHER_ADVERSARIES = [
    # Sampling comes back while the guest's tables are still what the PE may use: the split
    # adversary writes the host's records through them, into memory that is not the buffer.
    ("restore-before-host-tables-on-exs", SplitChooser, {"RESTORE-ORDER", "HOST-STATE", "ISOLATION"}),
    # Holding records makes the missing drain harmless (they leave the PE only at the host's own
    # PSB): the shape rule alone reports it, on the "software must" of D17.9 it enforces.
    ("no-drain", HoldingChooser, {"DRAIN-ORDER"}),
    # The same store-only DSB: the split adversary writes the records at once, before the disable.
    ("drain-with-store-dsb-then-disable", SplitChooser, {"DRAIN-ORDER"}),
    ("guest-without-tpms", SplitChooser, {"TRAP-COND", "ISOLATION", "HOST-STATE"}),
]


@pytest.mark.parametrize(("case", "adversary", "expected"), OTHER_ADVERSARIES, ids=[c for c, _, _ in OTHER_ADVERSARIES])
def test_other_adversaries_expose_other_outcomes(case: str, adversary: type[Chooser], expected: set[str]) -> None:
    """Each fixed adversary shows the outcomes its timing choices lead to, which the worst case may not."""
    make, features, scenario, _, _ = BROKEN[case]
    assert expected == _failing(_run(make(), features, scenario, adversary()))


# Correct switches that do not follow the review's exact shape: (switch, choices they declare).
# Each must pass every correctness rule on every CPU below, under every adversary.
UNUSUAL: dict[str, tuple[Callable[[], S.ReferenceSwitch], Choices | None]] = {
    # PSB and DSB straight after the entry into EL2, which synchronises (EIS = 1 or no FEAT_ExS):
    # EL2 never samples the host's EL1-owned buffer, so no PMSCR write or ISB is needed first;
    # PMSCR_EL1 is cleared later, before the ERET into the guest.
    "psb-right-after-entry": (
        lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE, _drain("psb dsb msr"))),
        SYNCHRONISING,
    ),
    # One DSB for every drain, in the run loop, before the traps change (KVM since v6.4).
    "shared-dsb-after-all-drains": (
        lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb psb"), _step(lambda cpu, vcpu: cpu.dsb("nsh")))),
        None,
    ),
    # Stronger DSBs than NSH.
    "dsb-ish": (lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb psb dsb:ish"))), None),
    "dsb-sy": (lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb psb dsb:sy"))), None),
    # Linux since 2026: the buffer is disabled after the drain and restored before PMSCR.
    "buffer-off-while-the-guest-runs": (
        lambda: Composed(
            entry=_replace(REF_ENTRY, SAVE_SPE, _drain("msr isb psb dsb disable isb")),
            exit_=_replace(REF_EXIT, RESTORE_SPE, _restore()),
        ),
        None,
    ),
    # Extra ISBs everywhere.
    "extra-isbs": (
        lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE, _drain("isb msr isb isb psb isb dsb isb"))),
        None,
    ),
    # The restore relies on the return to the host (a context synchronisation event) instead of an ISB.
    "restore-relies-on-the-eret": (
        lambda: Composed(exit_=_replace(REF_EXIT, RESTORE_SPE, _restore(sync=False))),
        SYNCHRONISING,
    ),
    # The restore writes PMSCR_EL1 before the host's tables: PMSCR_EL1 does nothing at EL2, and the
    # return to the host synchronises everything together.
    "restore-before-host-tables": (
        lambda: Composed(exit_=(SAVE_GUEST, DEACTIVATE, DEACTIVATE_VM, RESTORE_SPE, HOST_SYSREGS, SYNC_HOST)),
        SYNCHRONISING,
    ),
}


def _skip_drain_if_stopped(cpu: CPU, vcpu: Vcpu, host: int) -> None:
    """The save, skipping the drain when PMBSR_EL1.S says the buffer is already stopped (it collects nothing)."""
    vcpu.host_debug_state["pmscr_el1"] = 0
    if cpu.features.vhe or not S.host_buffer_live(cpu) or cpu.mrs("PMBSR_EL1") & (1 << 17):  # PMBSR_EL1.S
        return
    pmscr = cpu.mrs("PMSCR_EL1")
    vcpu.host_debug_state["pmscr_el1"] = pmscr
    if pmscr:  # no PMSCR write when it already reads 0
        cpu.msr("PMSCR_EL1", 0)
    cpu.isb()
    cpu.psb_csync()
    cpu.dsb("nsh")


class _CachedCaps(S.ReferenceSwitch):
    """SPE capabilities read once, at setup, as a hypervisor caches them in a per-CPU flag."""

    def setup_vcpu(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        super().setup_vcpu(cpu, vcpu, host_mdcr_el2)
        self.spe = S.has_spe(cpu)

    def buffer_live(self, cpu: CPU) -> bool:
        """The cached SPE check, then the ownership and enable checks."""
        return self.spe and not cpu.mrs("PMBIDR_EL1") & PMBIDR_P and bool(cpu.mrs("PMBLIMITR_EL1") & PMBLIMITR_E)


UNUSUAL["skips-a-stopped-buffer-and-an-idle-pmscr"] = (
    lambda: Composed(entry=_replace(REF_ENTRY, SAVE_SPE, _skip_drain_if_stopped)), None,
)
UNUSUAL["spe-capability-cached-at-setup"] = (_CachedCaps, None)
# The guest's PMBIDR_EL1 reads trapped by HDFGRTR_EL2 where the CPU has FEAT_FGT, synchronised before
# the ERET into the guest, and the host's value back before the return.
UNUSUAL["traps-pmbidr-with-fgt"] = (
    lambda: Composed(
        entry=_replace(REF_ENTRY, SYNC_GUEST, TRAP_PMBIDR, SYNC_GUEST),
        exit_=_replace(REF_EXIT, SYNC_HOST, UNTRAP_PMBIDR, SYNC_HOST),
    ),
    None,
)

# A guest SPE context kept in vcpu.sysregs, all zeros, written on entry and on exit.
UNUSUAL["keeps-an-all-zero-guest-spe-context"] = (
    lambda: Composed(entry=(_zero_guest_spe_context, *REF_ENTRY), exit_=(_zero_guest_spe_context, *REF_EXIT)),
    None,
)

UNUSUAL_CPUS = [
    NVHE, VHE, NO_SPE, OWNED, EXS, VHE_EXS, Features(spe=SpeLevel.V1P2, fgt=True),
    Features(spe=SpeLevel.V1P4, pmu=PmuLevel.V3P9, exs=True, el3=False, fgt=True, spe_fds=True),
]
CORRECTNESS = [r.id for r in rules.RULES if r.severity is rules.Severity.CORRECTNESS]


@pytest.mark.no_cover
@pytest.mark.parametrize("case", list(UNUSUAL))
def test_correct_but_unusual_switch_passes_every_correctness_rule(case: str) -> None:
    """A switch that does what the architecture asks in another shape than the review's fails no correctness rule, anywhere."""
    make, choices = UNUSUAL[case]
    failures = []
    for features in UNUSUAL_CPUS:
        for adversary in ADVERSARIES:
            for name, scenario in SCENARIOS.items():
                failing = _failing(_run(make(), features, scenario, adversary(), choices)) & set(CORRECTNESS)
                if failing:
                    failures.append(f"{features.describe()} / {adversary.name} / {name}: {sorted(failing)}")
    assert [] == failures


def test_every_rule_is_caught_by_some_broken_switch() -> None:
    """Every rule of the catalogue has at least one broken switch above that fails it."""
    caught = set().union(*(expected for *_, expected in BROKEN.values()))
    assert set(RULE_IDS) == caught


@pytest.mark.parametrize("case", list(BROKEN))
def test_violations_point_inside_the_trace_and_are_exercised(case: str) -> None:
    """A violation names its rule and an event of the trace, and a rule that found one counts as exercised."""
    make, features, scenario, chooser, _ = BROKEN[case]
    system = _run(make(), features, scenario, chooser)
    n = len(system.cpu.trace)
    for rid, judgement in _judge(system).items():
        for v in judgement.violations:
            assert (rid, True) == (v.rule, 0 <= v.event < n)
            assert judgement.exercised
            assert v.message


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
        for rid, j in _judge(_run(S.ReferenceSwitch(), features, scenario, pick)).items():
            if j.violations:
                failures[f"{name}/{rid}"] = [v.message for v in j.violations]
    assert {} == failures


@pytest.mark.parametrize("seed", range(8))
def test_reference_passes_under_random_timings(seed: int) -> None:
    """The reference passes every rule whatever a seeded random chooser decides, on the busiest CPUs."""
    for features in (NVHE, VHE):
        for scenario in SCENARIOS.values():
            assert set() == _failing(_run(S.ReferenceSwitch(), features, scenario, RandomChooser(seed)))


@pytest.mark.parametrize("features", [NVHE, VHE], ids=str)
def test_fill_scenario_fills_the_buffer_and_restarts_it(features: Features) -> None:
    """The fill scenario really stops the buffer (PMBSR_EL1.S by the PE) and the host really restarts it."""
    system = _run(S.ReferenceSwitch(), features, fill, EagerChooser())
    trace = system.cpu.trace
    stops = [e for e in trace if e.kind is Kind.HW and e.register == "PMBSR_EL1"]
    restarts = [e for e in trace if e.kind is Kind.MSR and e.register == "PMBSR_EL1" and e.value == 0]
    windows = list(zip(trace.of(Kind.ENTRY), trace.of(Kind.RETURN), strict=True))
    in_window = [e.seq for e in stops if any(entry.seq < e.seq < back.seq for entry, back in windows)]
    assert (2, 3, True) == (len(stops), len(restarts), any(e.kind is Kind.FULL for e in trace))
    assert in_window, "HOST-STATE must see the PE stop the buffer inside a window"


# ------------------------------------------------------------------ exercised, honestly

EXERCISING: dict[str, tuple[Features, Scenario]] = {
    "RES0": (NVHE, plain),
    "TRAP-COND": (NVHE, guest_access),
    "UNDEF": (NO_SPE, plain),
    "DRAIN-ORDER": (NVHE, plain),
    "RESTORE-ORDER": (NVHE, plain),
    "HOST-STATE": (VHE, plain),
    "ISOLATION": (VHE, plain),
    "NO-LOSS": (VHE, plain),
    "LEAN": (NVHE, _profiling_off),
}


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_is_exercised_by_a_scenario_made_for_it(rule_id: str) -> None:
    """Each rule reports itself exercised, and passed, on a reference run that meets its precondition."""
    features, scenario = EXERCISING[rule_id]
    judgement = rules.BY_ID[rule_id].judge(_run(S.ReferenceSwitch(), features, scenario).cpu.trace, features)
    assert (rule_id, True, True) == (judgement.rule, judgement.exercised, judgement.passed)


@pytest.mark.parametrize("rule_id", RULE_IDS)
@pytest.mark.parametrize("features", [NVHE, VHE, NO_SPE, OWNED], ids=str)
def test_rule_is_never_exercised_by_boot_alone(rule_id: str, features: Features) -> None:
    """On a trace of the boot alone, every rule says it was never exercised rather than passing silently."""
    trace = _run(S.ReferenceSwitch(), features, idle).cpu.trace
    assert rules.Judgement(rule_id, False, ()) == rules.BY_ID[rule_id].judge(trace, features)


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_is_never_exercised_by_an_empty_trace(rule_id: str) -> None:
    """An empty trace exercises no rule."""
    assert rules.Judgement(rule_id, False, ()) == rules.BY_ID[rule_id].judge(Trace(), NVHE)


@pytest.mark.parametrize(
    ("rule_id", "features", "scenario"),
    [
        ("DRAIN-ORDER", VHE, plain),  # the VHE host's buffer never changes translation
        ("DRAIN-ORDER", NVHE, _profiling_off),  # no live buffer to drain
        ("DRAIN-ORDER", OWNED, plain),  # the buffer is EL3's
        ("RESTORE-ORDER", VHE, plain),
        ("RESTORE-ORDER", NVHE, _paused_run),  # sampling was off: nothing to turn back on
        ("TRAP-COND", NVHE, plain),  # the guest never tried an SPE register
        ("UNDEF", NVHE, plain),  # every SPE access is defined on this CPU
        ("NO-LOSS", NVHE, _profiling_off),  # the host produced no record
        ("NO-LOSS", NO_SPE, plain),
        ("ISOLATION", NO_SPE, plain),  # no record and no guest SPE access
    ],
    ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", None),
)
def test_rule_is_not_exercised_without_its_precondition(
    rule_id: str, features: Features, scenario: Scenario
) -> None:
    """A rule whose precondition never occurs on a run says so, even though the run has windows."""
    trace = _run(S.ReferenceSwitch(), features, scenario).cpu.trace
    assert rules.Judgement(rule_id, False, ()) == rules.BY_ID[rule_id].judge(trace, features)


# ------------------------------------------------------------------ messages


def _messages(case: str, rule_id: str) -> list[str]:
    make, features, scenario, chooser, _ = BROKEN[case]
    system = _run(make(), features, scenario, chooser)
    return [v.message for v in rules.BY_ID[rule_id].judge(system.cpu.trace, features).violations]


def test_res0_message_names_the_field_and_the_feature() -> None:
    """RES0 names the bit, its field and the feature it needs (docs/rules.md#res0)."""
    assert (
        "msr MDCR_EL2 <- 0x4c66 by hyp: bit 14 (TPMS) is RES0 without FEAT_SPE (expected 0xc66, got 0x4c66)"
        == (_messages("tpms-without-spe", "RES0")[0])
    )


def test_res0_message_names_always_res0_bits() -> None:
    """A bit no feature brings is named as RES0 on every CPU."""
    assert (
        "msr MDCR_EL2 <- 0x14c66 by hyp: bit 16 is RES0 on every CPU (expected 0x4c66, got 0x14c66)"
        == (_messages("always-res0-bit", "RES0")[0])
    )


def test_rfc_findings_show_under_res0_and_trap_cond() -> None:
    """The review's TPMS finding is reported by both RES0 and TRAP-COND, at the same MSR."""
    make, features, scenario, chooser, _ = BROKEN["tpms-without-spe"]
    trace = _run(make(), features, scenario, chooser).cpu.trace
    res0 = rules.BY_ID["RES0"].judge(trace, features).violations
    trap = rules.BY_ID["TRAP-COND"].judge(trace, features).violations
    assert [v.event for v in res0] == [v.event for v in trap]
    assert (
        "sets SPE trap controls on a CPU without FEAT_SPE (expected TPMS=0, E2PB=0b00, got TPMS=1, E2PB=0b00)"
        in (trap[0].message)
    )


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("no-drain", "no PSB CSYNC after the exception entry at #"),
        ("drain-without-isb-on-exs", "no context synchronisation event at EL2 (the exception entry where it is one, else an ISB) before a PSB CSYNC"),
        ("no-drain", "before the msr HCR_EL2 <- 0x8008003b (VM 0 -> 1) at #"),
        ("drain-with-load-dsb", "does not wait for the buffer's writes: D17.9 asks for one that applies to loads and stores"),
        ("drain-with-store-dsb-then-disable", "before the msr PMBLIMITR_EL1 <- 0x0 (disables the buffer) at #"),
        ("drain-after-traps", "no PSB CSYNC after the exception entry at #"),
        ("sampling-back-on-before-eret", "with the guest's EL1/EL0 profiling possibly on: PMSCR_EL1 0x3"),
    ],
)
def test_drain_order_message_names_the_missing_link(case: str, fragment: str) -> None:
    """DRAIN-ORDER says which link of the chain is missing, and before which translation change."""
    messages = _messages(case, "DRAIN-ORDER")
    assert any(fragment in m for m in messages), messages


def test_drain_order_points_at_the_translation_change() -> None:
    """The violation's event is the translation change that came too early."""
    make, features, scenario, chooser, _ = BROKEN["drain-after-traps"]
    trace = _run(make(), features, scenario, chooser).cpu.trace
    event = trace[rules.BY_ID["DRAIN-ORDER"].judge(trace, features).violations[0].event]
    assert (Kind.MSR, "HCR_EL2") == (event.kind, event.register)


def test_drain_order_names_the_psb_that_came_too_early() -> None:
    """Without a synchronising entry, a PSB before any ISB is named as too early for the chain."""
    make, features, scenario, chooser, _ = BROKEN["drain-without-isb-on-exs"]
    trace = _run(make(), features, scenario, chooser).cpu.trace
    message = rules.BY_ID["DRAIN-ORDER"].judge(trace, features).violations[0].message
    psb = next(e for e in trace if e.kind is Kind.PSB and e.actor == HYP)
    assert f"(the PSB CSYNC at #{psb.seq} came before the CSE)" in message


def test_restore_order_message_names_the_unsynchronised_write() -> None:
    """RESTORE-ORDER names the restoring write no ISB followed, and why the return does not make up for it."""
    message = _messages("restore-before-host-tables-on-exs", "RESTORE-ORDER")[0]
    assert message.startswith("no ISB between the msr TCR_EL1 <- 0x32b5103510 at #")
    assert "which is not a context synchronisation event (FEAT_ExS with SCTLR_EL2.EIS/EOS=0)" in message


def test_restore_order_names_a_translation_that_is_not_the_hosts() -> None:
    """A return to the host with sampling on and the guest's stage 1 still installed names the register."""
    trace = _run(Composed(exit_=(SAVE_GUEST, DEACTIVATE, DEACTIVATE_VM, RESTORE_SPE)), NVHE, plain).cpu.trace
    message = rules.BY_ID["RESTORE-ORDER"].judge(trace, NVHE).violations[0].message
    assert "under a translation that is not the host's: TTBR0_EL1=0x1008000 (expected the host's 0x20000)" in message


def test_host_state_message_names_register_values_and_last_write() -> None:
    """HOST-STATE names the register, expected and actual values, and the last software write to it."""
    message = _messages("forgets-restore", "HOST-STATE")[0]
    assert (True, True) == (
        "PMSCR_EL1 expected 0x3 (its value at entry #" in message,
        "got 0x0; last software write: msr PMSCR_EL1 <- 0x0 by hyp at #" in message,
    )


def test_isolation_message_names_record_origin_and_regime() -> None:
    """ISOLATION says which record, who was sampled, where it landed and through which tables."""
    trace = _run(MissingDrainGuestOwns(), NVHE, plain).cpu.trace
    message = rules.BY_ID["ISOLATION"].judge(trace, NVHE).violations[0].message
    assert "while host ran) was written at #" in message
    assert "to guest 0 (PA 0x1000000000) via EL1&0 stage 1 (TTBR1_EL1=0x1000000) + stage 2" in message


class MissingDrainGuestOwns(S.ReferenceSwitch):
    """No drain, and the guest owns the buffer (E2PB = 0b10): its tables translate the host's records."""

    def save_spe(self, cpu: CPU, vcpu: Vcpu) -> None:
        """Nothing."""

    def setup_debug(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """The reference's, with E2PB = 0b10."""
        super().setup_debug(cpu, vcpu, host_mdcr_el2)
        vcpu.mdcr_el2 |= R.bits("MDCR_EL2", E2PB=0b10)


def test_isolation_message_names_the_leaked_context_value_and_its_origin() -> None:
    """ISOLATION names the vcpu, the register the guest context holds, its value and where the host had it."""
    messages = _messages("host-pmscr-in-guest-context", "ISOLATION")
    assert messages[0].startswith("the saved guest context of vcpu 0 holds PMSCR_EL1=0x3 while the guest ran (#")
    assert "a value the host had (written to PMSCR_EL1 by the host at #" in messages[0]


@pytest.mark.parametrize(("value", "leaks"), [(0, False), (0x3, True), (0x2, False)])
def test_isolation_takes_only_values_the_host_had_from_the_guest_context(value: int, leaks: bool) -> None:
    """A guest context value counts as the host's only if it is non-zero and the host had it in that register."""
    trace = _trace(
        (HOST, 1, Kind.MSR, {"register": "PMSCR_EL1", "value": 0x3}),
        (HYP, 2, Kind.CONTEXT, {"register": "PMSCR_EL1", "value": value, "vcpu": 0, "where": "at the return"}),
        (HYP, 2, Kind.CONTEXT, {"register": "PMSIRR_EL1", "value": 0x3, "vcpu": 0, "where": "at the return"}),
    )
    judgement = rules.BY_ID["ISOLATION"].judge(trace, NVHE)
    assert (True, [1] if leaks else []) == (judgement.exercised, [v.event for v in judgement.violations])


def test_isolation_sees_a_host_value_in_the_guest_context_only_once_the_host_had_it() -> None:
    """A context value the host programs only later is no leak at the time it is recorded (the rule is causal)."""
    trace = _trace(
        (HYP, 2, Kind.CONTEXT, {"register": "PMSIRR_EL1", "value": 0x40001, "vcpu": 1, "where": "then"}),
        (HOST, 1, Kind.MSR, {"register": "PMSIRR_EL1", "value": 0x40001}),
        (HYP, 2, Kind.CONTEXT, {"register": "PMSIRR_EL1", "value": 0x40001, "vcpu": 1, "where": "now"}),
    )
    assert [2] == [v.event for v in rules.BY_ID["ISOLATION"].judge(trace, NVHE).violations]


def test_no_loss_message_names_who_disabled_the_buffer() -> None:
    """NO-LOSS says the record was discarded because the hypervisor, not the host, disabled the buffer."""
    message = _messages("disables-buffer-instead-of-draining", "NO-LOSS")[0]
    assert "collected while the host ran" in message
    assert "discarded (buffer disabled by hyp)" in message


# ------------------------------------------------------------------ hand-made traces for edge cases


def _trace(*events: tuple[Actor, int, Kind, dict[str, object]]) -> Trace:
    trace = Trace()
    for actor, el, kind, kw in events:
        trace.add(actor, el, kind, **kw)
    return trace


def test_no_loss_allows_full_buffer_and_host_disable() -> None:
    """A host record meeting a full buffer, or discarded because the host disabled its buffer, is no loss."""
    trace = _trace(
        (HOST, 1, Kind.RECORD, {"record": 0}),
        (HOST, 1, Kind.RECORD, {"record": 1}),
        (PE, 1, Kind.FULL, {"record": 0, "where": "buffer full"}),
        (PE, 1, Kind.DISCARD, {"record": 1, "where": "buffer disabled by host", "by": HOST}),
    )
    assert rules.Judgement("NO-LOSS", True, ()) == rules.BY_ID["NO-LOSS"].judge(trace, NVHE)


def test_no_loss_reports_a_fault() -> None:
    """A host record whose write faults is lost."""
    trace = _trace(
        (HOST, 1, Kind.RECORD, {"record": 0}),
        (PE, 1, Kind.FAULT, {"record": 0, "where": "stage 2 translation fault via EL1&0"}),
    )
    assert [1] == [v.event for v in rules.BY_ID["NO-LOSS"].judge(trace, NVHE).violations]


def test_drain_order_accepts_other_instructions_between_links_and_one_wide_dsb() -> None:
    """Links may have other events between them, and a DSB SY serves as well as a DSB NSH."""
    trace = _trace(
        (BOOT, 2, Kind.MSR, {"register": "PMBLIMITR_EL1", "value": 1}),
        (HOST, 1, Kind.ENTRY, {}),
        (HYP, 2, Kind.MSR, {"register": "PMSCR_EL1", "value": 0}),
        (HYP, 2, Kind.MRS, {"register": "TTBR0_EL1"}),
        (HYP, 2, Kind.ISB, {}),
        (HYP, 2, Kind.ISB, {}),
        (HYP, 2, Kind.PSB, {}),
        (HYP, 2, Kind.MSR, {"register": "HCR_EL2", "value": 0}),  # VM unchanged: no translation change
        (HYP, 2, Kind.DSB, {"dsb": Dsb.SY}),
        (HYP, 2, Kind.MSR, {"register": "VTTBR_EL2", "value": 5}),
    )
    assert rules.Judgement("DRAIN-ORDER", True, ()) == rules.BY_ID["DRAIN-ORDER"].judge(trace, NVHE)


def test_drain_order_accepts_an_isb_before_the_pmscr_write() -> None:
    """At EL2 the host's EL1-owned buffer is not sampled: an ISB there is the synchronising point, whatever PMSCR_EL1 holds."""
    trace = _trace(
        (BOOT, 2, Kind.MSR, {"register": "PMBLIMITR_EL1", "value": 1}),
        (HOST, 1, Kind.ENTRY, {}),
        (HYP, 2, Kind.EXCEPTION, {"where": "hvc", "cse": False}),
        (HYP, 2, Kind.ISB, {}),
        (HYP, 2, Kind.MSR, {"register": "PMSCR_EL1", "value": 0}),
        (HYP, 2, Kind.PSB, {}),
        (HYP, 2, Kind.DSB, {"dsb": Dsb.NSH}),
        (HYP, 2, Kind.ERET, {"where": "into guest 0", "into_guest": True}),
    )
    assert rules.Judgement("DRAIN-ORDER", True, ()) == rules.BY_ID["DRAIN-ORDER"].judge(trace, NVHE)


def test_drain_order_rejects_a_psb_with_no_synchronising_point_before_it() -> None:
    """With an entry that does not synchronise and no ISB, the PSB synchronises nothing: the message says so."""
    trace = _trace(
        (BOOT, 2, Kind.MSR, {"register": "PMBLIMITR_EL1", "value": 1}),
        (HOST, 1, Kind.ENTRY, {}),
        (HYP, 2, Kind.EXCEPTION, {"where": "hvc", "cse": False}),
        (HYP, 2, Kind.MSR, {"register": "PMSCR_EL1", "value": 0}),
        (HYP, 2, Kind.PSB, {}),
        (HYP, 2, Kind.DSB, {"dsb": Dsb.NSH}),
        (HYP, 2, Kind.ERET, {"where": "into guest 0", "into_guest": True}),
    )
    (violation,) = rules.BY_ID["DRAIN-ORDER"].judge(trace, NVHE).violations
    assert 6 == violation.event
    assert violation.message.startswith(
        "no context synchronisation event at EL2 (the exception entry where it is one, else an ISB) before a PSB CSYNC"
    )


@pytest.mark.parametrize(("hdfgrtr", "violations"), [(0, []), (1 << 63, [1])])
def test_trap_cond_asks_for_the_pmbidr_trap_only_where_the_switch_set_it(hdfgrtr: int, violations: list[int]) -> None:
    """A guest's PMBIDR_EL1 read may complete, unless the switch set HDFGRTR_EL2.PMBIDR_EL1 [63]: then it had to trap."""
    trace = _trace(
        (HYP, 2, Kind.MSR, {"register": "HDFGRTR_EL2", "value": hdfgrtr}),
        (guest(0), 1, Kind.MRS, {"register": "PMBIDR_EL1", "value": 0x16}),
    )
    judgement = rules.BY_ID["TRAP-COND"].judge(trace, FGT)
    assert violations == [v.event for v in judgement.violations]


def test_trap_cond_names_the_fine_grained_trap_that_was_not_in_force() -> None:
    """The violation names the HDFGRTR_EL2 write that asked for the trap, and the missing synchronisation."""
    message = _messages("fgt-pmbidr-trap-not-synchronised", "TRAP-COND")[0]
    assert "read PMBIDR_EL1 at #" in message
    assert "set HDFGRTR_EL2.PMBIDR_EL1 (expected the read to trap to EL2" in message


def test_undef_reports_accesses_that_trap_to_el3_and_host_accesses_trapped_to_el2() -> None:
    """UNDEF reports a hypervisor access that trapped to EL3 and a host access that trapped to EL2, not a guest's trap."""
    trace = _trace(
        (HYP, 2, Kind.TRAP_EL3, {"register": "PMSCR_EL1", "where": "MDCR_EL3.NSPB"}),
        (HYP, 2, Kind.MRS, {"register": "PMBIDR_EL1"}),
        (HOST, 1, Kind.TRAP, {"register": "PMBPTR_EL1", "where": "MDCR_EL2.E2PB=0b00"}),
        (guest(0), 1, Kind.TRAP, {"register": "PMBPTR_EL1", "where": "MDCR_EL2.E2PB=0b00"}),
    )
    assert [0, 2] == [v.event for v in rules.BY_ID["UNDEF"].judge(trace, OWNED).violations]


# ------------------------------------------------------------------ register replay


@pytest.mark.parametrize(
    "features", [NVHE, VHE, NO_SPE, OWNED, Features(spe=SpeLevel.V1P4, vhe=True)], ids=str
)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_replay_ends_where_the_cpu_does(features: Features, name: str) -> None:
    """Replaying a trace's events gives every register the value the CPU holds at the end."""
    cpu = _run(S.ReferenceSwitch(), features, SCENARIOS[name], EagerChooser()).cpu
    final = rules.registers_after(cpu.trace, features, len(cpu.trace) - 1)
    assert {r.name: cpu.peek(r.name) for r in R.REGISTERS} == final


def test_replay_yields_the_state_after_each_event() -> None:
    """`replay` gives, at each event, what `registers_after` gives for that event's seq."""
    trace = _run(S.ReferenceSwitch(), NVHE, plain).cpu.trace
    for event, values in rules.replay(trace, NVHE):
        if event.kind in (Kind.ENTRY, Kind.RETURN):
            assert rules.registers_after(trace, NVHE, event.seq) == dict(values)


@pytest.mark.parametrize("features", GRID[::5], ids=str)
def test_res0_judged_from_the_table_agrees_with_the_model(features: Features) -> None:
    """The RES0 bits the rule computes from the register table are the ones the model recorded on each MSR."""
    make = BROKEN["tpms-without-spe"][0]
    trace = _run(make(), features, guest_access).cpu.trace
    masks = {r.name: r.res0_mask(features) for r in R.REGISTERS}
    assert [e.res0 for e in trace if e.kind is Kind.MSR] == [
        e.value & masks[e.register] for e in trace if e.kind is Kind.MSR
    ]


# ------------------------------------------------------------------ the catalogue


def test_catalogue_ids_and_order() -> None:
    """The catalogue holds the nine rules docs/rules.md documents, by their stable ids, in order."""
    assert RULE_IDS == tuple(rule.id for rule in rules.RULES)
    assert list(RULE_IDS) == list(rules.BY_ID)


def test_catalogue_families_cover_every_rule_once() -> None:
    """Each rule belongs to exactly one suite family, and the families are the suite's files."""
    assert ("res0", "traps", "ordering", "host_state", "records", "lean") == rules.FAMILIES
    assert sorted(RULE_IDS) == sorted(r.id for f in rules.FAMILIES for r in rules.rules_of_family(f))
    assert ("DRAIN-ORDER", "RESTORE-ORDER") == tuple(r.id for r in rules.rules_of_family("ordering"))


def test_unknown_family_is_refused_with_the_known_ones() -> None:
    """Asking for a family that does not exist names the families that do."""
    with pytest.raises(ValueError, match=r"no such family \(one of res0, traps, ordering"):
        rules.rules_of_family("ordring")


def test_only_lean_is_lean() -> None:
    """LEAN is the one rule of severity LEAN; the others are correctness rules."""
    assert {"LEAN"} == {r.id for r in rules.RULES if r.severity is rules.Severity.LEAN}


@pytest.mark.parametrize("rule", rules.RULES, ids=lambda r: r.id)
def test_rule_texts_are_one_line_and_sourced(rule: rules.Rule) -> None:
    """Every rule has a one-line title and a rationale that quotes the review or names an Arm fact."""
    assert (False, True) == ("\n" in rule.title, rule.rationale.startswith(("Review:", "Patch", "Arm ARM")))


def test_judgement_passed_means_no_violation() -> None:
    """A judgement passes exactly when it holds no violation."""
    bad = rules.Judgement("LEAN", True, (rules.Violation("LEAN", 3, "expected none, got one"),))
    assert (True, False) == (rules.Judgement("LEAN", True).passed, bad.passed)


def test_rules_compare_without_their_checkers() -> None:
    """Two rules with the same texts are equal whatever their check functions are (check is eq=False)."""
    rule = rules.BY_ID["LEAN"]
    twin = rules.Rule(
        rule.id,
        rule.title,
        rule.rationale,
        rule.severity,
        rule.family,
        lambda t, f: rules.Judgement("LEAN", False),
    )
    assert rule == twin


def test_judge_stamps_the_rule_id_on_what_its_checker_found() -> None:
    """A checker returns breaches without naming its rule: the judgement and each violation carry the rule's id."""
    rule = rules.Rule("PROJ-X", "t", "r", rules.Severity.LEAN, "lean", lambda t, f: rules.Found(True, [rules.Breach(2, "m")]))
    assert rules.Judgement("PROJ-X", True, (rules.Violation("PROJ-X", 2, "m"),)) == rule.judge(Trace(), NVHE)


def test_judge_stamps_the_rule_id_on_a_judgement_its_checker_returned() -> None:
    """A checker that returns a whole Judgement (as project rules may) gets the rule's own id on it and its violations."""
    made = rules.Judgement("OTHER", True, (rules.Violation("OTHER", 0, "m"),))
    rule = rules.Rule("PROJ-Y", "t", "r", rules.Severity.LEAN, "lean", lambda t, f: made)
    assert rules.Judgement("PROJ-Y", True, (rules.Violation("PROJ-Y", 0, "m"),)) == rule.judge(Trace(), NVHE)


def test_walk_docstring_example_is_a_working_project_rule() -> None:
    """The project rule the window walk's documentation shows runs as written and finds the exit window's PMSCR_EL1 writes."""
    doc = rules.walk.__doc__ or ""
    code = textwrap.dedent(doc.split("::\n", 1)[1].split("\nThe terms", 1)[0])
    namespace: dict[str, object] = {}
    exec(compile(code, "walk-example", "exec"), namespace)
    rule = rules.Rule("PROJ-EXIT-PMSCR", "t", "r", rules.Severity.LEAN, "lean", namespace["check"])  # type: ignore[arg-type]
    system = _run(Composed(exit_=_replace(REF_EXIT, RESTORE_SPE, _restore(always=True))), NVHE, plain)
    writes = [e.seq for e in system.cpu.trace if e.kind is Kind.MSR and e.register == "PMSCR_EL1" and e.actor == HYP]
    judgement = rule.judge(system.cpu.trace, NVHE)
    assert (True, True) == (judgement.exercised, bool(judgement.violations))
    assert {v.event for v in judgement.violations} < set(writes)


SUITES = Path(__file__).resolve().parent.parent / "suites"


def test_rule_modules_mirror_the_suite_files() -> None:
    """The rules package has one module per family, named as the suite file of that family, and each holds its family's rules."""
    suite_families = sorted(p.stem.removeprefix("test_") for p in SUITES.glob("test_*.py") if p.stem != "test_project_rules")
    holders = {f: importlib.import_module(f"pytest_spekvm.rules.{f}").RULES for f in rules.FAMILIES}
    assert (suite_families, {f: rules.rules_of_family(f) for f in rules.FAMILIES}) == (sorted(rules.FAMILIES), holders)


# ------------------------------------------------------------------ the rules' documentation

DOCS = Path(__file__).resolve().parent.parent / "docs" / "rules.md"


def test_every_rule_has_its_section_in_the_documentation() -> None:
    """docs/rules.md has a section headed by each rule id, and each rationale points at it."""
    headings = {line[3:].strip() for line in DOCS.read_text().splitlines() if line.startswith("## ")}
    missing = [r.id for r in rules.RULES if r.id not in headings]
    unpointed = [r.id for r in rules.RULES if f"docs/rules.md#{r.id.lower()}" not in r.rationale]
    assert ([], []) == (missing, unpointed)
