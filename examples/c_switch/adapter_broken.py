"""switch_late_drain.c, the drain after __activate_traps(): DRAIN-ORDER, NO-LOSS and HOST-STATE fail.

    pytest --spekvm-target=examples/c_switch/adapter_broken.py --pyargs pytest_spekvm.suites
"""

from __future__ import annotations

from pytest_spekvm.ckit import c_adapter

spekvm_adapter = c_adapter(
    sources=["switch_late_drain.c"], setup="kvm_arm_setup_debug", run="__kvm_vcpu_run_late_drain",
)
