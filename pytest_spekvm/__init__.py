"""pytest-spekvm: property-based conformance checks for arm64 world switches and SPE."""

from __future__ import annotations

__version__ = "0.1.0"
