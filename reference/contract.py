"""The adapter contract: what an implementation of the world switch provides."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .cpu import CPU
from .vcpu import ExitReason, Vcpu


@runtime_checkable
class WorldSwitch(Protocol):
    """An implementation of the world switch under test.

    It talks to the CPU only through the model's operations (`cpu.mrs`, `cpu.msr`, `cpu.isb`,
    `cpu.dsb`, `cpu.psb_csync`, `cpu.run_guest`), so everything it does is in the trace; it does so
    only during its own calls and from the thread that called it, and a call leaves no thread it
    started running when it returns.
    """

    def setup_vcpu(self, cpu: CPU, vcpu: Vcpu, host_mdcr_el2: int) -> None:
        """Prepare `vcpu` before a run, in the host (the job of kvm_arm_setup_debug).

        Sets `vcpu.mdcr_el2`, the MDCR_EL2 the guest will run with. `host_mdcr_el2` is the value
        the host configured at boot (KVM's per-cpu `mdcr_el2`).
        """
        ...

    def vcpu_run(self, cpu: CPU, vcpu: Vcpu) -> ExitReason | None:
        """One run of `vcpu`, at EL2 (the job of __kvm_vcpu_run).

        Saves what the host needs, enters the guest with `cpu.run_guest(vcpu)` exactly once, puts
        the host back, and returns the exit reason `run_guest` gave.
        """
        ...
