"""Executable model of an arm64 CPU's SPE, its profiling buffer and the KVM world switch.

The model imports neither pytest nor hypothesis, and this package imports nothing until a name is
used: `from pytest_spekvm.reference import CPU, Features, System` loads only what those need.
Every name below is also importable from its module (`pytest_spekvm.reference.cpu.CPU`, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_names

if __name__ != "pytest_spekvm.reference":  # pragma: no cover - guards a packaging mistake
    msg = (
        f"Cannot import the reference model as {__name__!r} because it is only importable as "
        "'pytest_spekvm.reference' (two names would load its classes twice; do "
        "'from pytest_spekvm import reference' instead)"
    )
    raise ImportError(msg)

if TYPE_CHECKING:
    from .actors import BOOT, HOST, HYP, PE, Actor, Role, guest
    from .chooser import (
        ADVERSARIES,
        Chooser,
        EagerChooser,
        HoldingChooser,
        Moment,
        RandomChooser,
        SplitChooser,
        WorstCaseChooser,
    )
    from .contract import WorldSwitch
    from .cpu import CPU, Access, Outcome
    from .errors import ModelError
    from .features import FeatureError, Features, PmuLevel, SpeLevel
    from .memory import Landing, Memory, Owner, Region
    from .profiling import Fate, Record
    from .switch import ReferenceSwitch
    from .system import Choices, System
    from .trace import Dsb, Event, Kind, PeUpdate, Trace
    from .vcpu import ContractError, ExitReason, GuestAccess, GuestCode, GuestExit, Vcpu

_WHERE = {
    **dict.fromkeys(("BOOT", "HOST", "HYP", "PE", "Actor", "Role", "guest"), ".actors"),
    **dict.fromkeys(
        ("ADVERSARIES", "Chooser", "EagerChooser", "HoldingChooser", "Moment", "RandomChooser", "SplitChooser",
         "WorstCaseChooser"),
        ".chooser",
    ),
    "WorldSwitch": ".contract",
    **dict.fromkeys(("CPU", "Access", "Outcome"), ".cpu"),
    "ModelError": ".errors",
    **dict.fromkeys(("FeatureError", "Features", "PmuLevel", "SpeLevel"), ".features"),
    **dict.fromkeys(("Landing", "Memory", "Owner", "Region"), ".memory"),
    **dict.fromkeys(("Fate", "Record"), ".profiling"),
    "ReferenceSwitch": ".switch",
    **dict.fromkeys(("Choices", "System"), ".system"),
    **dict.fromkeys(("Dsb", "Event", "Kind", "PeUpdate", "Trace"), ".trace"),
    **dict.fromkeys(("ContractError", "ExitReason", "GuestAccess", "GuestCode", "GuestExit", "Vcpu"), ".vcpu"),
}


__getattr__ = lazy_names(__name__, globals(), _WHERE)

__all__ = [
    "ADVERSARIES",
    "BOOT",
    "CPU",
    "HOST",
    "HYP",
    "PE",
    "Access",
    "Actor",
    "Choices",
    "Chooser",
    "ContractError",
    "Dsb",
    "EagerChooser",
    "Event",
    "ExitReason",
    "Fate",
    "FeatureError",
    "Features",
    "GuestAccess",
    "GuestCode",
    "GuestExit",
    "HoldingChooser",
    "Kind",
    "Landing",
    "Memory",
    "ModelError",
    "Moment",
    "Outcome",
    "Owner",
    "PeUpdate",
    "PmuLevel",
    "RandomChooser",
    "Record",
    "ReferenceSwitch",
    "Region",
    "Role",
    "SpeLevel",
    "SplitChooser",
    "System",
    "Trace",
    "Vcpu",
    "WorldSwitch",
    "WorstCaseChooser",
    "guest",
]
