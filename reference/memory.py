"""Physical memory with an owner for every page, and the stage 1 / stage 2 tables that map it."""

from __future__ import annotations

import enum
from typing import NamedTuple

import attrs

PAGE_SHIFT = 12  # 4KB translation granule
PAGE_SIZE = 1 << PAGE_SHIFT
RECORD_SIZE = 64  # bytes a profiling record takes in the buffer (the model's choice)



class Region(enum.Enum):
    """Whose memory a physical page is."""

    HOST_KERNEL = "host kernel"
    HOST_BUFFER = "host buffer"  # the host's profiling buffer: the one place a record may land
    HYP = "hypervisor"
    GUEST = "guest"  # a guest's memory, one per VM

    __hash__ = object.__hash__  # singletons: hashed by identity, in C (an owner's hash is its region's and VM's)


# The guest region as a module name: every record written renders its owner (CONTRIBUTING.md, Speed: Python 3.11's slow enum member lookup).
_GUEST = Region.GUEST


@attrs.frozen(eq=False)
class Owner:
    """The owner of a physical page: its region, and for a guest's memory the VM (`vm`, -1 for the others).

    A record that lands anywhere but the host buffer is corruption (docs/rules.md#isolation). Owners
    compare with owners only: comparing one with a string raises TypeError (compare with
    `HOST_BUFFER`, `guest_owner(vm)`, ...).
    """

    region: Region
    vm: int = -1

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Owner):
            return self.region is other.region and self.vm == other.vm
        if isinstance(other, str):
            msg = (
                f"Cannot compare the owner {self} with the string {other!r} because owners are values: compare "
                "with pytest_spekvm.reference.memory.HOST_BUFFER, HOST_KERNEL, HYPERVISOR or guest_owner(vm)"
            )
            raise TypeError(msg)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.region, self.vm))

    def __str__(self) -> str:
        return f"guest {self.vm}" if self.region is _GUEST else self.region.value


HOST_KERNEL = Owner(Region.HOST_KERNEL)
HOST_BUFFER = Owner(Region.HOST_BUFFER)
HYPERVISOR = Owner(Region.HYP)


def guest_owner(vm: int) -> Owner:
    """The owner of guest `vm`'s pages."""
    return Owner(Region.GUEST, vm)


class Fault(enum.Enum):
    """The stage of translation at which a write faulted."""

    STAGE1 = "stage 1"
    STAGE2 = "stage 2"


# The model's address map. Table bases stand for translation tables: a TTBR or VTTBR holds one.
BUFFER_VA = 0xFFFF_8000_1000_0000  # the host's profiling buffer, a kernel (TTBR1) address
BUFFER_PAGES = 1  # 64 records: small enough that a short scenario fills it
BUFFER_PA = 0x0008_0000_0000  # host buffer pages
GUEST_IPA = 0x0000_4000_0000  # where a guest's stage 1 maps the same VAs (an IPA)
GUEST_PA = 0x0010_0000_0000  # guest n's pages start at GUEST_PA + n * GUEST_PA_STRIDE
GUEST_PA_STRIDE = 0x0001_0000_0000
HYP_PA = 0x0020_0000_0000  # hypervisor pages
HOST_TTBR1 = 0x0001_0000  # host kernel tables
HOST_TTBR0 = 0x0002_0000  # host user tables
HYP_TTBR0 = 0x0003_0000  # hypervisor (nVHE EL2) tables
GUEST_TTBR_BASE = 0x0100_0000  # guest n's stage 1 at GUEST_TTBR_BASE + n * 0x1_0000 (+0x8000 for TTBR0)
VTTBR_BASE = 0x0200_0000  # guest n's stage 2 at VTTBR_BASE + n * 0x1_0000
TTBR_BADDR_MASK = 0x0000_FFFF_FFFF_FFFE  # TTBRn_ELx.BADDR [47:1]; ASID/VMID bits [63:48] ignored


def guest_ttbr1(vm: int) -> int:
    """Guest `vm`'s kernel stage 1 table base."""
    return GUEST_TTBR_BASE + vm * 0x1_0000


def guest_ttbr0(vm: int) -> int:
    """Guest `vm`'s user stage 1 table base."""
    return GUEST_TTBR_BASE + vm * 0x1_0000 + 0x8000


def vttbr(vm: int) -> int:
    """Guest `vm`'s stage 2 base, with its VMID (VTTBR_EL2.VMID [63:48]) set to vm + 1."""
    return (vm + 1) << 48 | (VTTBR_BASE + vm * 0x1_0000)


class Landing(NamedTuple):
    """Where a translated write went: a physical address and its owner, or a fault (no owner).

    A named tuple: every record written makes one, and the rules never read its fields (a named
    tuple's field reads slower than a slotted attribute on Python 3.11, CONTRIBUTING.md, Speed).
    """

    pa: int
    owner: Owner | None
    fault: Fault | None = None  # the stage that faulted, when the translation did
    regime: str = ""  # the regime and tables used, for the reader

    def __str__(self) -> str:
        if self.fault is not None:
            return f"{self.fault.value} translation fault via {self.regime}"
        return f"{self.owner} (PA {self.pa:#x}) via {self.regime}"


@attrs.define
class Memory:
    """Page owners and translation tables. Tables map page numbers to page numbers."""

    owners: dict[int, Owner] = attrs.field(factory=dict)  # PA page number -> owner
    stage1: dict[int, dict[int, int]] = attrs.field(factory=dict)  # table base -> VA page -> OA page
    stage2: dict[int, dict[int, int]] = attrs.field(factory=dict)  # table base -> IPA page -> PA page
    contents: dict[Owner, int] = attrs.field(factory=dict)  # owner -> profiling bytes written there

    @classmethod
    def standard(cls, vms: int = 2) -> Memory:
        """The model's address map with `vms` guests: who owns what and who maps it where.

        The hypervisor's tables (TTBR0_EL2 without E2H) have one, lower, VA range: the buffer's
        kernel addresses cannot be mapped there, and the CPU faults them before any walk.
        """
        mem = cls()
        va = BUFFER_VA >> PAGE_SHIFT
        host_tables: dict[int, int] = {}
        hyp_tables: dict[int, int] = {}
        for i in range(BUFFER_PAGES):
            host_tables[va + i] = (BUFFER_PA >> PAGE_SHIFT) + i
            mem.owners[(BUFFER_PA >> PAGE_SHIFT) + i] = HOST_BUFFER
            mem.owners[(HYP_PA >> PAGE_SHIFT) + i] = HYPERVISOR
            # Without stage 2 a guest's IPAs are host physical addresses of host kernel memory.
            mem.owners[(GUEST_IPA >> PAGE_SHIFT) + i] = HOST_KERNEL
        mem.stage1[HOST_TTBR1] = host_tables
        mem.stage1[HOST_TTBR0] = {}
        mem.stage1[HYP_TTBR0] = hyp_tables
        for vm in range(vms):
            mem.add_guest(vm)
        return mem

    def add_guest(self, vm: int) -> None:
        """Tables and pages for guest `vm`: its stage 1 maps the buffer's VAs to its own IPAs."""
        va = BUFFER_VA >> PAGE_SHIFT
        s1: dict[int, int] = {}
        s2: dict[int, int] = {}
        for i in range(BUFFER_PAGES):
            ipa = (GUEST_IPA >> PAGE_SHIFT) + i
            pa = ((GUEST_PA + vm * GUEST_PA_STRIDE) >> PAGE_SHIFT) + i
            s1[va + i] = ipa
            s2[ipa] = pa
            self.owners[pa] = guest_owner(vm)
        self.stage1[guest_ttbr1(vm)] = s1
        self.stage1[guest_ttbr0(vm)] = {}
        self.stage2[vttbr(vm) & TTBR_BADDR_MASK] = s2

    def walk(self, va: int, ttbr: int, vttbr_value: int | None, regime: str) -> Landing:
        """Translate `va` through the stage 1 table at `ttbr`, then stage 2 at `vttbr_value` if given."""
        offset = va & (PAGE_SIZE - 1)
        table = self.stage1.get(ttbr & TTBR_BADDR_MASK, {})
        out = table.get(va >> PAGE_SHIFT)
        if out is None:
            return Landing(0, None, Fault.STAGE1, regime)
        if vttbr_value is not None:
            s2 = self.stage2.get(vttbr_value & TTBR_BADDR_MASK, {})
            pa_page = s2.get(out)
            if pa_page is None:
                return Landing(0, None, Fault.STAGE2, regime)
            out = pa_page
        pa = out << PAGE_SHIFT | offset
        return Landing(pa, self.owners.get(out, HOST_KERNEL), None, regime)

    def store(self, landing: Landing, size: int) -> None:
        """Account `size` bytes of profiling data written at `landing` (a landing that faulted stores nothing)."""
        if landing.owner is not None:
            self.contents[landing.owner] = self.contents.get(landing.owner, 0) + size
