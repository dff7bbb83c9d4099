"""What the C kit's tests share: a C switch that passes, writing it, and making a target and a system of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_spekvm.ckit import CTarget, c_adapter
from pytest_spekvm.reference.chooser import WorstCaseChooser
from pytest_spekvm.reference.features import Features
from pytest_spekvm.reference.system import System

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "c_switch"

GOOD_C = """\
#include <spekvm_shim.h>

void setup(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2)
{
	vcpu->mdcr_el2 = host_mdcr_el2 & GENMASK(4, 0);
}

u64 run(struct spekvm_vcpu *vcpu)
{
	return spekvm_run_guest(vcpu);
}
"""


def write(path: Path, text: str) -> Path:
    """Write `text` to `path`, making its folder, and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def target_for(tmp_path: Path, code: str = GOOD_C, **kw: Any) -> CTarget:
    """A C target for `code` written to tmp_path/src/switch.c, built under tmp_path/build unless told otherwise."""
    source = write(tmp_path / "src" / "switch.c", code)
    kw.setdefault("setup", "setup")
    kw.setdefault("run", "run")
    kw.setdefault("build_dir", tmp_path / "build")
    return c_adapter(sources=[source], **kw)


def system_for(target: CTarget, features: Features | None = None) -> System:
    """A booted system running a fresh adapter of `target` with the worst-case chooser."""
    return System(features if features is not None else Features(), target(), WorstCaseChooser())


def usage_error(result: pytest.RunResult) -> str:
    """The text of a run that ended in a usage error, checked to carry no traceback."""
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text
    return text
