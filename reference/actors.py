"""Who acts on the CPU: the boot code, the host, the hypervisor, a guest, or the PE itself.

Every event of the trace and every record carries an `Actor`, a value the rules compare; its text
("host", "hyp", "guest0", ...) is only for the reader.
"""

from __future__ import annotations

import enum
import functools

import attrs


class Role(enum.Enum):
    """What kind of code (or hardware) an actor is."""

    BOOT = "boot"  # the harness's EL2 set-up at boot, before the host runs
    HOST = "host"  # the host kernel and its user space
    HYP = "hyp"  # the hypervisor: the world switch under test runs as this actor
    GUEST = "guest"  # a guest (its EL1 and EL0), one per VM
    PE = "pe"  # the processing element acting by itself (writing records, updating PMBSR_EL1, ...)

    __hash__ = object.__hash__  # singletons: hashed by identity, in C (an actor's hash is its role's and VM's)


# The guest role as a module name: the rules ask every event's actor whether it is a guest (CONTRIBUTING.md, Speed: Python 3.11's slow enum member lookup).
_GUEST = Role.GUEST


@attrs.frozen(eq=False)
class Actor:
    """An actor: its role, and for a guest the VM it is (`vm`, -1 for the others).

    Actors compare with actors only: comparing one with a string ("hyp") raises TypeError, so code
    written for the text cannot silently stop matching; compare with `HOST`, `HYP`, `guest(vm)`, ...
    """

    role: Role
    vm: int = -1

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Actor):
            return self.role is other.role and self.vm == other.vm
        if isinstance(other, str):
            msg = (
                f"Cannot compare the actor {self} with the string {other!r} because actors are values: compare "
                "with pytest_spekvm.reference.actors.HOST, HYP, BOOT, PE or guest(vm), or test actor.role"
            )
            raise TypeError(msg)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.role, self.vm))

    @property
    def is_guest(self) -> bool:
        """Whether this actor is a guest."""
        return self.role is _GUEST

    def __str__(self) -> str:
        return f"guest{self.vm}" if self.role is _GUEST else self.role.value

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


BOOT = Actor(Role.BOOT)
HOST = Actor(Role.HOST)
HYP = Actor(Role.HYP)
PE = Actor(Role.PE)


@functools.cache
def guest(vm: int) -> Actor:
    """The actor of guest `vm`."""
    return Actor(Role.GUEST, vm)


SOFTWARE: frozenset[Actor] = frozenset({HOST, HYP})
"""The code under test and the code it serves: the host and the hypervisor (boot is the harness's set-up)."""
