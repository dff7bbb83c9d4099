"""The generated sequences' cost as instructions per step, and the model's per event, which other
jobs on the machine do not move.

Run from anywhere, with the package installed and valgrind on the PATH (about 10 minutes: three
runs under valgrind's callgrind, each 20 to 50 times slower than without; with --model, about 3):

    python benchmarks/instructions.py [--model]

It counts the instructions of three processes that differ only in their last step, and subtracts:

- base: imports, then one warm-up run of each machine below;
- ours: base, then three runs of one rule's generated sequences (figure 2 of ratios.py: HOST-STATE,
  the suites' fast default) against the reference;
- trivial: base, then three runs of ratios.py's trivial hypothesis state machine (one bare round
  trip per step) under the same budget.

Hypothesis runs derandomized (a fixed seed) and Python's string hashing is fixed (PYTHONHASHSEED),
so every process draws the same sequences and the counts repeat exactly. It prints
instructions per step of each and their ratio (trivial / ours: the steps-per-second ratio of
ratios.py at equal instructions per cycle). CPU time on a shared machine moves by more than a
change to a strategy saves; this count does not. It prints figures and asserts nothing.

With --model it counts figure 1 of ratios.py instead: instructions per trace event of the model's
round trips (nVHE, VHE) and of the floor, each the difference between a process that does
MODEL_SYSTEMS systems of 50 round trips (for the floor, as many events) and one that stops after
the warm-up.
The ratio to the floor in instructions is lower than ratios.py's in CPU time: the floor's tight
loop runs more instructions per cycle than the model.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import ratios
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from pytest_spekvm import rules
from pytest_spekvm.session import SpekvmSession
from pytest_spekvm.space import FULL_SPACE
from pytest_spekvm.target import load

MODES = ("base", "ours", "trivial")
RUNS = 3  # runs of the measured machine per process: the difference from base is well above its noise
MODEL_MODES = ("floor", "nvhe", "vhe")
MODEL_SYSTEMS = 2  # systems of 50 round trips per process (each about 2,500 events nVHE, 1,900 VHE)


def _derandomized() -> settings:
    return settings(ratios._budget(), derandomize=True)


def run(mode: str) -> int:
    """Warm both machines up, then run `mode`'s machine RUNS times more; return their steps (0 for base)."""
    settings.register_profile("spekvm-instructions", derandomize=True, database=None)
    settings.load_profile("spekvm-instructions")  # the sequences' fast default builds on the loaded profile
    ratios.sequences_steps_per_s(0)  # one run
    run_state_machine_as_test(ratios.TrivialMachine, settings=_derandomized())
    steps = 0
    for _ in range(RUNS if mode != "base" else 0):
        if mode == "ours":
            session = SpekvmSession(target=load("reference"), space=FULL_SPACE, rules={r.id: r for r in rules.RULES})
            session.fast_default = True
            session.explore(ratios.SEQUENCE_RULE)
            steps += session.verdicts.steps
        else:
            ratios.TrivialMachine.steps = 0
            run_state_machine_as_test(ratios.TrivialMachine, settings=_derandomized())
            steps += ratios.TrivialMachine.steps
    return steps


def run_model(mode: str, systems: int) -> int:
    """One system of warm-up, then `systems` systems of round trips (nvhe, vhe), or the floor for as
    many events; return the events counted (the warm-up's are not)."""
    if mode == "floor":
        ratios.floor(2_500)
        return ratios.floor(systems * 2_500)
    ratios.round_trips(mode == "vhe")
    return sum(ratios.round_trips(mode == "vhe") for _ in range(systems))


def count(mode: str, *more: str) -> tuple[int, int]:
    """(steps or events, instructions) of one process running `mode` under callgrind."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__, "--run", mode, *more],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parent, env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    steps = int(re.search(r"^steps (\d+)$", done.stdout, re.MULTILINE).group(1))  # type: ignore[union-attr]
    collected = int(re.search(r"Collected : (\d+)", done.stderr).group(1))  # type: ignore[union-attr]
    return steps, collected


def main() -> None:
    """Count and print."""
    if len(sys.argv) == 4 and sys.argv[1] == "--run":
        print(f"steps {run_model(sys.argv[2], int(sys.argv[3]))}")
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--run":
        print(f"steps {run(sys.argv[2])}")
        return
    if sys.argv[1:] not in ([], ["--model"]):
        sys.exit(f"usage: python benchmarks/instructions.py [--model] (got {' '.join(sys.argv[1:])!r})")
    if shutil.which("valgrind") is None:
        sys.exit("instructions.py needs valgrind on the PATH")
    if sys.argv[1:] == ["--model"]:
        per_event = {}
        for mode in MODEL_MODES:
            (_, base), (events, measured) = count(mode, "0"), count(mode, str(MODEL_SYSTEMS))
            per_event[mode] = (measured - base) / events
        floor = per_event["floor"]
        print(f"model: {per_event['nvhe']:8,.0f} instructions/event nVHE, {per_event['vhe']:8,.0f} VHE; floor {floor:6,.0f}; "
              f"ratio {per_event['nvhe'] / floor:5.1f}x (nVHE), {per_event['vhe'] / floor:5.1f}x (VHE)")
        return
    (_, base), (ours_steps, ours), (trivial_steps, trivial) = (count(mode) for mode in MODES)
    print(f"instructions: base {base:,}, ours {ours:,} ({ours_steps} steps), trivial {trivial:,} ({trivial_steps} steps)")
    per_ours = (ours - base) / ours_steps
    per_trivial = (trivial - base) / trivial_steps
    print(f"sequences: {per_ours:12,.0f} instructions/step ({ours_steps} steps, {ratios.SEQUENCE_RULE}, fast default); "
          f"trivial machine {per_trivial:12,.0f} instructions/step ({trivial_steps} steps); ratio {per_trivial / per_ours:5.2f}x")


if __name__ == "__main__":
    main()
