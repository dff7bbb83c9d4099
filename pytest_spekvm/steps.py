"""What a scenario's step does: one operation of the model's `System`, named by value."""

from __future__ import annotations

import enum


class Op(enum.StrEnum):
    """An operation of `pytest_spekvm.reference.system.System` a step performs; the value is the method's name."""

    ENABLE_PROFILING = "enable_profiling"  # the host's SPE driver starts profiling
    DISABLE_PROFILING = "disable_profiling"  # it stops, draining the buffer
    PAUSE_SAMPLING = "pause_sampling"  # it turns sampling off, the buffer left enabled
    HOST_RUN = "host_run"  # host code runs (and is sampled)
    HANDLE_BUFFER_IRQ = "handle_buffer_irq"  # the host's buffer interrupt handler
    SETUP_VCPU = "setup_vcpu"  # the host prepares a vcpu (the adapter's setup_vcpu)
    RUN_VCPU = "run_vcpu"  # one run of a vcpu through the world switch (setup_vcpu, then vcpu_run)
