"""The model's own error: input that cannot exist."""

from __future__ import annotations


class ModelError(ValueError):
    """The model was driven with input that cannot exist (bad register, value or EL)."""
