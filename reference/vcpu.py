"""A vcpu, the guest program of its next run, and how a run ends."""

from __future__ import annotations

import attrs


@attrs.frozen
class GuestCode:
    """The guest runs code at EL1 (or its user space, `el0`); if sampling reaches it, `samples` records are collected."""

    samples: int = 1
    el0: bool = False


@attrs.frozen
class GuestAccess:
    """The guest reads (or writes `value` to) `register`: an SPE register, normally trapped."""

    register: str
    write: bool = False
    value: int = 0


@attrs.frozen
class GuestExit:
    """The guest exits to EL2 for `reason` (an HVC, an interrupt, a page fault)."""

    reason: str = "hvc"


GuestAction = GuestCode | GuestAccess | GuestExit


@attrs.frozen
class ExitReason:
    """Why a run of a vcpu ended: an exit reason and, for a trap, the register accessed."""

    reason: str
    register: str = ""


class ContractError(Exception):
    """An implementation broke the adapter contract; `clause` names the clause broken."""

    def __init__(self, clause: str, message: str) -> None:
        super().__init__(message)
        self.clause = clause

    def __str__(self) -> str:
        return f"[{self.clause}] {self.args[0]}"


@attrs.define
class Vcpu:
    """A vcpu: the state KVM keeps for it, and the guest program of its next run.

    `mdcr_el2` is what `setup_vcpu` computes (kvm_arm_setup_debug); `host_debug_state` is the
    implementation's own save area (vcpu->arch.host_debug_state); `sysregs` the guest's EL1
    context; `host_ctxt` the host's EL1 context saved on entry.
    """

    index: int
    vm: int
    mdcr_el2: int = 0
    vttbr_el2: int = 0
    sysregs: dict[str, int] = attrs.field(factory=dict)
    host_ctxt: dict[str, int] = attrs.field(factory=dict)
    host_debug_state: dict[str, int] = attrs.field(factory=dict)
    program: list[GuestAction] = attrs.field(factory=list)
    runs: int = 0
    prepared: bool = False
