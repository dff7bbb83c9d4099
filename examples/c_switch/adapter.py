"""The C world switch in switch.c, built with cffi and run through pytest_spekvm.ckit: passes every rule.

    pytest --spekvm-target=examples/c_switch/adapter.py --pyargs pytest_spekvm.suites
"""

from __future__ import annotations

from pytest_spekvm.ckit import c_adapter

spekvm_adapter = c_adapter(sources=["switch.c"], setup="kvm_arm_setup_debug", run="__kvm_vcpu_run")
