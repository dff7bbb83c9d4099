"""pytest-spekvm: property-based conformance checks for arm64 world switches and SPE."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .reference.lazy import lazy_names

# The names below are imported when first used: pytest imports this package (for its plugin) in
# every run of an environment where it is installed, and only a run with a target needs the model,
# the rules and hypothesis.
if TYPE_CHECKING:
    from .reference.contract import WorldSwitch
    from .reference.cpu import CPU
    from .reference.features import Features, PmuLevel, SpeLevel
    from .reference.switch import ReferenceSwitch
    from .reference.system import Choices
    from .reference.trace import Event, Kind, Trace
    from .reference.vcpu import ExitReason, GuestAccess, GuestCode, GuestExit, Vcpu
    from .rules import RULES, Breach, Found, Judgement, Rule, Severity, Violation, Walk
    from .session import SpekvmSession
    from .space import FeatureSpace
    from .target import Target

__version__ = "0.1.0"

_WHERE = {
    "WorldSwitch": ".reference.contract",
    "CPU": ".reference.cpu",
    "Features": ".reference.features",
    "PmuLevel": ".reference.features",
    "SpeLevel": ".reference.features",
    "ReferenceSwitch": ".reference.switch",
    "Choices": ".reference.system",
    "Event": ".reference.trace",
    "Kind": ".reference.trace",
    "Trace": ".reference.trace",
    "ExitReason": ".reference.vcpu",
    "GuestAccess": ".reference.vcpu",
    "GuestCode": ".reference.vcpu",
    "GuestExit": ".reference.vcpu",
    "Vcpu": ".reference.vcpu",
    "RULES": ".rules",
    "Breach": ".rules",
    "Found": ".rules",
    "Judgement": ".rules",
    "Rule": ".rules",
    "Severity": ".rules",
    "Violation": ".rules",
    "Walk": ".rules",
    "SpekvmSession": ".session",
    "FeatureSpace": ".space",
    "Target": ".target",
}


__getattr__ = lazy_names(__name__, globals(), _WHERE)

__all__ = [
    "CPU",
    "RULES",
    "Breach",
    "Choices",
    "Event",
    "ExitReason",
    "FeatureSpace",
    "Features",
    "Found",
    "GuestAccess",
    "GuestCode",
    "GuestExit",
    "Judgement",
    "Kind",
    "PmuLevel",
    "ReferenceSwitch",
    "Rule",
    "Severity",
    "SpeLevel",
    "SpekvmSession",
    "Target",
    "Trace",
    "Vcpu",
    "Violation",
    "Walk",
    "WorldSwitch",
    "__version__",
]
