"""The machine around the CPU: host kernel, SPE driver, vcpus, guests, and calls into a world switch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

from . import memory as M
from . import registers as R
from .actors import BOOT, HOST, HYP
from .chooser import Chooser
from .cpu import CPU
from .errors import ModelError
from .features import Features
from .kvm import HCR_HOST_NVHE, HCR_HOST_VHE, PMSCR_EL2_BOOT, hdfgrtr_el2_boot, host_mdcr_el2
from .trace import Kind
from .vcpu import ContractError, ExitReason, GuestAction, GuestCode, Vcpu

if TYPE_CHECKING:
    from .contract import WorldSwitch


# The host's boot values of the registers that are opaque to the model.
TCR_HOST = 0x0000_0032_B510_3510  # an opaque TCR_EL1 value: the model uses TCR only as a dependency
TCR_GUEST = 0x0000_0032_B510_3511
# What the host's SPE driver programs when it starts a session, as arm_spe_pmu does: a sampling
# interval with jitter, filters, an event filter and a latency threshold (all non-zero, so a switch
# that loses or overwrites them shows).
HOST_SAMPLING_CONFIG: dict[str, int] = {
    "PMSIRR_EL1": R.bits("PMSIRR_EL1", INTERVAL=0x400, RND=1),  # PMSIRR_EL1.INTERVAL [31:8], RND [0]
    "PMSFCR_EL1": R.bits("PMSFCR_EL1", FE=1, FL=1),  # PMSFCR_EL1.FE [0], FL [2]
    "PMSEVFR_EL1": 0x2,  # PMSEVFR_EL1.E[1]: retired operations
    "PMSLATFR_EL1": R.bits("PMSLATFR_EL1", MINLAT=0x40),  # PMSLATFR_EL1.MINLAT [15:0]
    "PMSICR_EL1": 0,  # PMSICR_EL1: the sample counter starts from 0
}
# The filters of the newer extensions, programmed only where the CPU has them (a driver learns that
# from PMSIDR_EL1.FnE [6] and FDS [7]): non-zero masks, so a switch that loses or leaks them shows.
HOST_OPTIONAL_CONFIG: dict[str, int] = {
    "PMSNEVFR_EL1": 0x80,  # PMSNEVFR_EL1 (FEAT_SPE_FnE): an inverted event filter mask
    "PMSDSFR_EL1": 0xF0,  # PMSDSFR_EL1.S [63:0] (FEAT_SPE_FDS): a data source filter mask
}


def _a_bool(_: object, attribute: attrs.Attribute[bool], value: object) -> None:
    """A choice is True or False; the message names the choice and the value (attrs' own validator
    shows its internals: the whole attribute definition)."""
    if not isinstance(value, bool):
        msg = f"Choices.{attribute.name} is {value!r}; expected a bool (True or False)"
        raise TypeError(msg)


@attrs.frozen
class Choices:
    """Implementation-defined decisions of the hypervisor under test that change what can be observed.

    An adapter declares them (`choices = {"sctlr_el2_eis": True, "sctlr_el2_eos": True}`); the
    defaults are what the model assumes when it is told nothing.
    """

    # SCTLR_EL2.EIS [22] and EOS [11] as the hypervisor leaves them (only meaningful with FEAT_ExS,
    # where they reset UNKNOWN): 1 makes exception entry to, and return from, EL2 context
    # synchronising. The default, 0, is the worst case the architecture allows; VHE Linux sets both.
    sctlr_el2_eis: bool = attrs.field(default=False, validator=_a_bool)
    sctlr_el2_eos: bool = attrs.field(default=False, validator=_a_bool)
    # Whether the hypervisor's boot writes PMSCR_EL2 (Linux: PCT|PA, E2SPE = E0HSPE = 0, when
    # PMBIDR_EL1.P reads 0 at EL2). False leaves E2SPE/E0HSPE at their UNKNOWN reset value, taken
    # as 1: EL2 code is sampled whenever EL2 owns an enabled buffer.
    boot_writes_pmscr_el2: bool = attrs.field(default=True, validator=_a_bool)


class System:
    """A host, its SPE driver, `vms` guests with one vcpu each, and a world switch under test."""

    def __init__(
        self, features: Features, switch: WorldSwitch, chooser: Chooser, vms: int = 2, choices: Choices | None = None
    ) -> None:
        self.features = features
        self.switch = switch
        self.choices = choices if choices is not None else Choices()
        self.cpu = CPU(
            features, chooser, M.Memory.standard(vms),
            eis=self.choices.sctlr_el2_eis, eos=self.choices.sctlr_el2_eos,
        )
        self.vcpus = [self._new_vcpu(i) for i in range(vms)]
        self.host_mdcr_el2 = host_mdcr_el2(features)
        self.profiling = False
        self.boot()

    @property
    def host_el(self) -> int:
        """The EL the host kernel runs at: EL2 with VHE, EL1 without."""
        return 2 if self.features.vhe else 1

    @property
    def spe_usable(self) -> bool:
        """Whether the host's SPE driver can use the buffer (FEAT_SPE, PMBIDR_EL1.P = 0)."""
        return self.features.has_spe and not self.features.spe_owned_by_higher_el

    @staticmethod
    def _new_vcpu(vm: int) -> Vcpu:
        return Vcpu(
            index=vm,
            vm=vm,
            vttbr_el2=M.vttbr(vm),
            sysregs=dict(zip(R.EL1_STAGE1, (M.guest_ttbr0(vm), M.guest_ttbr1(vm), TCR_GUEST), strict=True)),
        )

    def boot(self) -> None:
        """EL2 set-up at boot, then the host kernel takes over at its EL."""
        cpu = self.cpu
        cpu.el, cpu.actor = 2, BOOT
        if self.features.vhe:
            cpu.msr("HCR_EL2", HCR_HOST_VHE)
            cpu.isb()
            cpu.msr("TTBR1_EL2", M.HOST_TTBR1)
            cpu.msr("TTBR0_EL2", M.HOST_TTBR0)
            cpu.msr("TCR_EL2", TCR_HOST)
        else:
            cpu.msr("HCR_EL2", HCR_HOST_NVHE)
            cpu.msr("TTBR0_EL2", M.HYP_TTBR0)
            cpu.msr("TTBR1_EL1", M.HOST_TTBR1)
            cpu.msr("TTBR0_EL1", M.HOST_TTBR0)
            cpu.msr("TCR_EL1", TCR_HOST)
        cpu.msr("MDCR_EL2", self.host_mdcr_el2)
        if self.features.fgt:
            cpu.msr("HDFGRTR_EL2", hdfgrtr_el2_boot(self.features))
        if self.spe_usable and self.choices.boot_writes_pmscr_el2:
            cpu.msr("PMSCR_EL2", PMSCR_EL2_BOOT)
        cpu.isb()
        if self.features.vhe:
            cpu.actor = HOST
        else:
            cpu.eret(1, HOST, "to host kernel")

    # ------------------------------------------------------------------ the host's SPE driver

    def enable_profiling(self, pmscr: int = 0b11) -> None:
        """The host's SPE driver starts profiling: buffer first, then sampling (PMSCR E0SPE|E1SPE)."""
        self._in_host()
        if not self.spe_usable:
            return
        cpu = self.cpu
        if not cpu.peek("PMBLIMITR_EL1") & R.PMBLIMITR_E:
            for register, value in HOST_SAMPLING_CONFIG.items():
                cpu.msr(register, value)
            for register, value in HOST_OPTIONAL_CONFIG.items():
                if R.BY_NAME[register].implemented(self.features):
                    cpu.msr(register, value)
            cpu.msr("PMBPTR_EL1", M.BUFFER_VA)
            cpu.msr("PMBSR_EL1", 0)
            limit = M.BUFFER_VA + M.BUFFER_PAGES * M.PAGE_SIZE
            cpu.msr("PMBLIMITR_EL1", limit | R.bits("PMBLIMITR_EL1", E=1))
        # Under VHE the host at EL2 names PMSCR_EL1 and reaches PMSCR_EL2 (E0HSPE/E2SPE at the same bits).
        cpu.msr("PMSCR_EL1", pmscr & R.PMSCR_EL1_SPE)
        cpu.isb()
        self.profiling = True

    def disable_profiling(self) -> None:
        """The host's SPE driver stops: sampling off, ISB, PSB CSYNC, DSB, buffer off, ISB."""
        self._in_host()
        if not self.spe_usable:
            return
        cpu = self.cpu
        cpu.msr("PMSCR_EL1", 0)
        cpu.isb()
        cpu.psb_csync()
        cpu.dsb("nsh")
        cpu.msr("PMBLIMITR_EL1", 0)
        cpu.isb()
        self.profiling = False

    def pause_sampling(self) -> None:
        """The host leaves the buffer enabled but turns sampling off (PMSCR = 0)."""
        self._in_host()
        if self.spe_usable:
            self.cpu.msr("PMSCR_EL1", 0)
            self.cpu.isb()

    def handle_buffer_irq(self) -> bool:
        """The host's buffer interrupt handler: if PMBSR_EL1.S, consume the data and restart."""
        self._in_host()
        if not self.spe_usable or not self.cpu.buffer_irq:
            return False
        cpu = self.cpu
        self.cpu.buffer_irq = False
        status = cpu.mrs("PMBSR_EL1")
        if not status & R.PMBSR_S:
            return False
        cpu.msr("PMBPTR_EL1", M.BUFFER_VA)
        cpu.msr("PMBSR_EL1", 0)
        cpu.isb()
        return True

    def host_run(self, samples: int = 1, el0: bool = False) -> None:
        """Host code runs (kernel, or user space with `el0`) and is sampled if profiling is on."""
        self._in_host()
        cpu = self.cpu
        if el0:
            cpu.eret(0, HOST, "to host user space")
            cpu.run_code(samples, "host user code")
            cpu.take_exception(self.host_el, HOST, "irq from host user space")
        else:
            cpu.run_code(samples, "host kernel code")

    def _in_host(self) -> None:
        if self.cpu.actor != HOST:
            msg = f"Cannot run host code because the CPU is running {self.cpu.actor} at EL{self.cpu.el}"
            raise ModelError(msg)

    # ------------------------------------------------------------------------- vcpus

    def setup_vcpu(self, index: int) -> None:
        """The host prepares vcpu `index` for its next run (kvm_arm_setup_debug)."""
        self._in_host()
        vcpu = self._vcpu(index)
        self.cpu.vcpu = index
        self.cpu.mark(Kind.NOTE, f"setup vcpu {index}")
        self.switch.setup_vcpu(self.cpu, vcpu, self.host_mdcr_el2)
        decoded = R.BY_NAME["MDCR_EL2"].decode(vcpu.mdcr_el2)
        self.cpu.note(f"vcpu{index}.mdcr_el2 = {decoded} ({vcpu.mdcr_el2:#x})")
        self.cpu.vcpu = -1
        vcpu.prepared = True

    def run_vcpu(self, index: int, program: Iterable[GuestAction] = (GuestCode(1),)) -> ExitReason:
        """One run of vcpu `index`: host calls the switch, the guest runs `program`, control comes back."""
        self._in_host()
        vcpu = self._vcpu(index)
        if not vcpu.prepared:
            self.setup_vcpu(index)
        cpu = self.cpu
        vcpu.program = list(program)
        cpu.vcpu = index
        cpu.mark(Kind.ENTRY, f"run vcpu {index}")
        entries_before = cpu.guest_entries
        if self.features.vhe:
            cpu.actor = HYP
        else:
            cpu.take_exception(2, HYP, "hvc from host: __kvm_vcpu_run")
        result = self.switch.vcpu_run(cpu, vcpu)
        # Counted by the model's run_guest: nothing else the adapter does stands in for an entry.
        entered = cpu.guest_entries - entries_before
        if entered != 1:
            msg = (
                "vcpu_run must enter the guest exactly once (call cpu.run_guest(vcpu) once); "
                f"it entered {entered} times"
            )
            raise ContractError("vcpu_run enters the guest once", msg)
        if cpu.el != 2 or cpu.actor != HYP:
            msg = f"vcpu_run must return at EL2 as the hypervisor; it returned at EL{cpu.el} as {cpu.actor}"
            raise ContractError("vcpu_run returns at EL2", msg)
        # What userspace and the guest's next run can see of the saved guest context from now on.
        cpu.record_guest_context(vcpu, "at the return to the host")
        if self.features.vhe:
            cpu.actor = HOST
        else:
            cpu.eret(1, HOST, "return to host")
        cpu.mark(Kind.RETURN, f"vcpu {index} back in host")
        cpu.vcpu = -1
        vcpu.runs += 1
        if result is None:
            result = ExitReason("unknown")
        if not isinstance(result, ExitReason):
            msg = (
                "vcpu_run must return an ExitReason (the value cpu.run_guest gave) or None; "
                f"it returned {result!r}"
            )
            raise ContractError("vcpu_run returns the exit reason", msg)
        return result

    def _vcpu(self, index: int) -> Vcpu:
        if not 0 <= index < len(self.vcpus):
            msg = f"Cannot use vcpu {index} because this system has vcpus 0..{len(self.vcpus) - 1}"
            raise ModelError(msg)
        return self.vcpus[index]

    def finish(self) -> None:
        """End of the scenario: the host stops profiling, draining whatever is still collected."""
        if self.cpu.actor == HOST and self.profiling:
            self.disable_profiling()
