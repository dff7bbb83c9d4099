"""The C compiler: which one (`find_compiler`), and running its commands in parallel with errors a person can act on."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sysconfig
from collections.abc import Sequence
from pathlib import Path

import attrs

from .spec import BuildSpec, CBuildError


def find_compiler() -> list[str]:
    """The C compiler command: ``$CC`` if set, else the one Python was built with, else cc, gcc or clang.

    :raises CBuildError: when the compiler named by ``$CC``, or any compiler at all, cannot be found.
    """
    configured = os.environ.get("CC", "").strip()
    if configured:
        argv = shlex.split(configured)
        found = shutil.which(argv[0])
        if found is None:
            msg = f"Cannot build the C target because the C compiler CC={configured!r} (from the environment) was not found (install it, point CC at a compiler that exists, or unset CC to use gcc, cc or clang from PATH)"
            raise CBuildError(msg)
        return [found, *argv[1:]]
    python_cc = shlex.split(str(sysconfig.get_config_var("CC") or "")) or ["cc"]
    for argv in (python_cc, ["cc"], ["gcc"], ["clang"]):
        found = shutil.which(argv[0])
        if found is not None:
            return [found, *argv[1:]]
    msg = "Cannot build the C target because no C compiler was found on PATH (looked for $CC, the compiler Python was built with, cc, gcc and clang; install gcc or clang, e.g. `apt-get install gcc`, or set CC)"
    raise CBuildError(msg)


@attrs.frozen
class Job:
    """One compiler command and what it is for."""

    what: str  # the file it compiles, as the error message names it
    argv: list[str]
    depfile: Path | None = None


def run_jobs(jobs: Sequence[Job], log: list[str]) -> list[tuple[Job, str]]:
    """Run the compiler commands in parallel; (job, output) of each that failed, in order."""
    started: list[tuple[Job, subprocess.Popen[str]]] = []
    try:
        for job in jobs:
            proc = subprocess.Popen(
                job.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            )
            started.append((job, proc))
    except OSError as exc:
        for _, proc in started:
            proc.kill()
            proc.wait()
        msg = f"Cannot build the C target because the C compiler {jobs[0].argv[0]} cannot be run ({exc}); install gcc or clang, or point CC at a working compiler"
        raise CBuildError(msg) from None
    failed = []
    for job, proc in started:
        output, _ = proc.communicate()
        log.append(f"$ {shlex.join(job.argv)}\n{output}")
        if proc.returncode != 0:
            failed.append((job, output))
    return failed


def compile_error(spec: BuildSpec, failed: list[tuple[Job, str]]) -> CBuildError:
    job, output = failed[0]
    shown = "\n".join(f"    {line}" for line in output.rstrip().splitlines()) or "    (the compiler printed nothing)"
    hint = "fix it and run again; a failed build is not cached"
    if "spekvm_entry.h" in output:
        hint = (
            f"spekvm_entry.h is the kit's declaration of the entry points: setup is `void {spec.setup}(struct spekvm_vcpu *vcpu, u64 host_mdcr_el2)`, "
            f"run is `u64 {spec.run}(struct spekvm_vcpu *vcpu)`, neither static; {hint}"
        )
    if re.search(r"\b(Python|pyconfig)\.h\b", output):
        hint = "the Python development headers are missing: install python3-dev, or your system's package for Python.h"
    msg = (
        f"Cannot build the C target ({spec.describe()}) because the C compiler ({job.argv[0]}) reported errors in {job.what}:\n"
        f"{shown}\n"
        f"  ({hint})"
    )
    return CBuildError(msg)


def depfile_paths(depfile: Path) -> list[Path]:
    """The files a make-style dependency file (gcc/clang -MMD) lists, resolved (the compiler ran in our cwd)."""
    _, _, deps = depfile.read_text().replace("\\\n", " ").partition(":")
    tokens = re.split(r"(?<!\\)\s+", deps.strip())
    return [Path(token.replace("\\ ", " ")).resolve() for token in tokens if token]
