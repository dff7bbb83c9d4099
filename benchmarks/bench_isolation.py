"""What crash isolation costs a C target: the scripted cells run in process and in forked children.

Run from anywhere, with the package installed and a C compiler (the example builds on first use):

    python benchmarks/bench_isolation.py [--cells 24] [--rounds 3] [--target examples/c_switch/adapter.py]

For the first `--cells` cells of the target's feature space, each round runs every cell's scripted
scenario under each adversary and judges every rule on it, as a suite's checks do: once in this
process (`SpekvmSession.run_cell`, what a Python target does) and once in a forked child per cell
(`isolation.run_cell_isolated`, what a C target does). It prints the milliseconds per cell of
each (the best round, and the median), and the difference. It asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

from pytest_spekvm import isolation
from pytest_spekvm.reference.features import Features
from pytest_spekvm.rules import RULES
from pytest_spekvm.session import SpekvmSession
from pytest_spekvm.target import load

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "c_switch" / "adapter.py"


def in_process(session: SpekvmSession, cells: list[Features]) -> None:
    """Each cell's scripted runs and every rule's judgement, here."""
    for cell in cells:
        outcomes = session.run_cell(cell)
        for rule in session.rules.values():
            session.judge(rule, cell, outcomes)


def isolated(session: SpekvmSession, cells: list[Features]) -> None:
    """The same, each cell in a forked child."""
    for cell in cells:
        isolation.run_cell_isolated(session, cell)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--target", default=str(EXAMPLE))
    args = parser.parse_args()
    target = load(args.target)
    session = SpekvmSession(target=target, space=target.space, rules={r.id: r for r in RULES})
    cells = list(target.space.cells())[: args.cells]
    in_process(session, cells[:1])  # the build, and the imports, before any clock starts
    print(f"{target.name} ({args.target}), {len(cells)} cells, {args.rounds} rounds; python {platform.python_version()} on {sys.platform}")
    results = {}
    for name, run in (("in process", in_process), ("isolated", isolated)):
        times = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            run(session, cells)
            times.append((time.perf_counter() - started) / len(cells) * 1000)
        results[name] = times
        print(f"{name:<11} {min(times):6.1f} ms per cell (best round), {statistics.median(times):6.1f} ms (median)")
    extra = min(results["isolated"]) - min(results["in process"])
    print(f"isolation adds {extra:.1f} ms per cell (best rounds)")


if __name__ == "__main__":
    main()
