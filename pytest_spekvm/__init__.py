"""pytest-spekvm: property-based conformance checks for arm64 world switches and SPE."""

from __future__ import annotations

from .reference.contract import WorldSwitch
from .reference.cpu import CPU
from .reference.features import Features, PmuLevel, SpeLevel
from .reference.system import Choices
from .reference.vcpu import ExitReason, GuestAccess, GuestCode, GuestExit, Vcpu
from .rules import RULES, Judgement, Rule, Severity, Violation
from .session import SpekvmSession
from .space import FeatureSpace

__version__ = "0.1.0"

__all__ = [
    "CPU",
    "RULES",
    "Choices",
    "ExitReason",
    "FeatureSpace",
    "Features",
    "GuestAccess",
    "GuestCode",
    "GuestExit",
    "Judgement",
    "PmuLevel",
    "Rule",
    "Severity",
    "SpeLevel",
    "SpekvmSession",
    "Vcpu",
    "Violation",
    "WorldSwitch",
    "__version__",
]
