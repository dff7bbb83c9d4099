"""Executable model of an arm64 CPU's SPE, its profiling buffer and the KVM world switch."""

from __future__ import annotations

if __name__ != "pytest_spekvm.reference":  # pragma: no cover - guards a packaging mistake
    msg = (
        f"Cannot import the reference model as {__name__!r} because it is only importable as "
        "'pytest_spekvm.reference' (two names would load its classes twice; do "
        "'from pytest_spekvm import reference' instead)"
    )
    raise ImportError(msg)
