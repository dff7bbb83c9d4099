"""What the model's hand-driven tests share: register values written out from the Arm ARM, a scripted chooser, and a CPU booted by hand."""

from __future__ import annotations

import attrs

from pytest_spekvm.reference import memory as M
from pytest_spekvm.reference.actors import HOST
from pytest_spekvm.reference.chooser import (
    Chooser,
    Moment,
    WorstCaseChooser,
)
from pytest_spekvm.reference.cpu import CPU
from pytest_spekvm.reference.features import Features
from pytest_spekvm.reference.trace import Kind

# Values written out from the Arm ARM field positions, not taken from the model's constants.
HCR_RW = 1 << 31  # HCR_EL2.RW
HCR_VM = 1 << 0  # HCR_EL2.VM
HCR_VHE_HOST = 1 << 34 | 1 << 31 | 1 << 27  # HCR_EL2.E2H | RW | TGE
MDCR_TPMS = 1 << 14  # MDCR_EL2.TPMS


def mdcr_e2pb(e2pb: int) -> int:
    """MDCR_EL2 with E2PB [13:12] = `e2pb`."""
    return e2pb << 12


E2PB_EL1 = mdcr_e2pb(0b11)  # host kernel at EL1 owns the buffer, no traps
PMBLIMITR_E = 1 << 0  # PMBLIMITR_EL1.E
PMBSR_S = 1 << 17  # PMBSR_EL1.S
PMSCR_E0_E1 = 0b11  # PMSCR_EL1.E0SPE | E1SPE (E0HSPE | E2SPE in PMSCR_EL2)
BUFFER_LIMIT = M.BUFFER_VA + M.BUFFER_PAGES * M.PAGE_SIZE

SAMPLING_REGISTERS = ["PMSCR_EL1", "PMSICR_EL1", "PMSIRR_EL1", "PMSFCR_EL1", "PMSEVFR_EL1",
                      "PMSLATFR_EL1", "PMSIDR_EL1"]
BUFFER_REGISTERS = ["PMBLIMITR_EL1", "PMBPTR_EL1", "PMBSR_EL1", "PMBIDR_EL1"]


@attrs.define
class Scripted:
    """A chooser that gives fixed answers and remembers every question."""

    visible: bool = False
    write: int = 0
    visibility_questions: list[tuple[str, int, int]] = attrs.field(factory=list)
    write_questions: list[tuple[int, str]] = attrs.field(factory=list)

    def write_visible(self, register: str, old: int, new: int) -> bool:
        """The fixed visibility answer."""
        self.visibility_questions.append((register, old, new))
        return self.visible

    def records_to_write(self, pending: int, moment: Moment, detail: str) -> int:
        """The fixed number of records."""
        self.write_questions.append((pending, detail))
        return self.write

    def reserved_as(self, register: str, field: str, allowed: tuple[int, ...]) -> int:
        """The last allocated value."""
        return allowed[-1]


def boot(
    features: Features | None = None,
    chooser: Chooser | None = None,
    mdcr: int | None = None,
) -> CPU:
    """A CPU with its host running as a kernel would leave it at boot, set up by hand.

    nVHE: host kernel at EL1 with its stage 1 in TTBR1_EL1, the hypervisor's in TTBR0_EL2.
    VHE: host at EL2 with E2H and TGE, its stage 1 in TTBR1_EL2.
    """
    features = features if features is not None else Features()
    cpu = CPU(features, chooser if chooser is not None else WorstCaseChooser())
    if features.vhe:
        cpu.msr("HCR_EL2", HCR_VHE_HOST)
        cpu.isb()
        cpu.msr("TTBR1_EL2", M.HOST_TTBR1)
        cpu.msr("MDCR_EL2", MDCR_TPMS if mdcr is None else mdcr)
        cpu.isb()
        cpu.actor = HOST
    else:
        cpu.msr("HCR_EL2", HCR_RW)
        cpu.msr("TTBR0_EL2", M.HYP_TTBR0)
        cpu.msr("TTBR1_EL1", M.HOST_TTBR1)
        cpu.msr("MDCR_EL2", (E2PB_EL1 if features.has_spe else 0) if mdcr is None else mdcr)
        cpu.eret(1, HOST, "to host kernel")
    return cpu


def start_buffer(cpu: CPU, room: int | None = None, pmscr: int = PMSCR_E0_E1) -> None:
    """The host turns its buffer and sampling on, then synchronises.

    With `room`, the write pointer starts that many bytes below the limit (LIMIT is a page
    address, PMBLIMITR_EL1.LIMIT [63:12], so a small buffer is made by moving the pointer).
    """
    limit = BUFFER_LIMIT
    cpu.msr("PMBPTR_EL1", M.BUFFER_VA if room is None else limit - room)
    cpu.msr("PMBLIMITR_EL1", limit | PMBLIMITR_E)
    cpu.msr("PMSCR_EL1", pmscr)
    cpu.isb()


def kinds(cpu: CPU, since: int = 0) -> list[Kind]:
    """The kinds of the events from `since` on."""
    return [e.kind for e in cpu.trace.events[since:]]
