"""How long one call into the adapter may take: the default of --spekvm-timeout, defined once."""

from __future__ import annotations

DEFAULT_TIMEOUT = 10.0
"""Seconds one adapter call (making it, setup_vcpu, vcpu_run) may take before it is reported as hanging."""
