"""How quickly the suite catches each mutant of examples/mutants/: test cases and seconds to the first failure.

Run from the repository root, with the package installed:

    python benchmarks/mutants.py [--seeds 5] [MUTANT ...]

For each mutant and each rule its CAUGHT_BY names, it runs the rule's scripted cells (the
worst-case chooser on every discrete cell of the feature space) and says how many fail; then it
runs the rule's generated-sequence check (`pytest --spekvm-target=MUTANT
test_FAMILY.py::test_RULE_sequences`) in this process, once per seed (`--hypothesis-seed=0..N-1`),
with the suites' fast default (40 examples of 12 steps) and, where that missed for some seed,
with the budget of the 'spekvm-thorough' profile (400 examples of 40 steps); each is changed only to stop at the
first failure: no shrinking and no example database. Hypothesis plans its generation by the
number of examples it may run, so a budget changes which examples come first: each budget is
measured as it is.

It counts the test cases hypothesis ran up to and including the first failing one (one fresh
adapter per test case, counted by wrapping the target through the pytest_spekvm_make_target
hook), and the seconds from the start of the test until that test case had failed. Hypothesis'
budget counts valid examples of its generate phase only: test cases it discards, and those of its
target phase (which steers towards runs that exercise the rule) come on top, so a default run
can run far more than 40. It prints a markdown table and asserts nothing.

With `--target`, each generated sequence ends by calling `hypothesis.target()` with whether it
exercised the rule, as the suite's sequences once did: hypothesis then keeps a Pareto front of the
sequences that scored best and mutates them in its target phase. The suite keeps `target()` only
if this finds the mutants sooner for the same time.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import hypothesis
import pytest
from hypothesis import Phase, settings

from pytest_spekvm import session as session_module
from pytest_spekvm.failure_report import SpekvmFailure
from pytest_spekvm.rules import BY_ID, Rule
from pytest_spekvm.session import FAST_EXAMPLES, STEPS_PER_EXAMPLE, SpekvmSession
from pytest_spekvm.target import Target, load

MUTANTS_DIR = Path(__file__).resolve().parent.parent / "examples" / "mutants"
BUDGETS = {
    # name: (examples, steps per example), as the suites' fast default and the 'spekvm-thorough' profile
    "default": (FAST_EXAMPLES, STEPS_PER_EXAMPLE),
    "thorough": (400, 40),
}


def mutant_paths(names: list[str]) -> list[Path]:
    """The mutant files named (all of them when none is)."""
    paths = sorted(p for p in MUTANTS_DIR.glob("*.py") if not p.name.startswith("_"))
    if names:
        paths = [p for p in paths if p.stem in names]
    return paths


def caught_by(path: Path) -> tuple[str, ...]:
    """The rule ids the mutant's CAUGHT_BY names."""
    spec = importlib.util.spec_from_file_location(f"mutant_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    value = module.CAUGHT_BY
    return (value,) if isinstance(value, str) else tuple(value)


def node_id(rule: Rule, sequences: bool) -> str:
    """The suite test that checks `rule`, as a run prints its node id."""
    name = "test_" + rule.id.lower().replace("-", "_")
    return f"test_{rule.family}.py::{name}{'_sequences' if sequences else ''}"


def scripted_cells(target: Target, rule: Rule) -> tuple[int, int]:
    """(cells whose scripted scenario breaks `rule`, cells), as the suite's cell checks judge them:
    under every fixed adversary the session runs."""
    session = SpekvmSession(target=target, space=target.space, rules={rule.id: rule})
    failed = total = 0
    for cell in target.space.cells():
        total += 1
        try:
            session.check_cell(rule.id, cell)
        except SpekvmFailure:
            failed += 1
    return failed, total


class Probe:
    """A pytest plugin: wraps the target so each fresh adapter (one per example) is counted and timed."""

    def __init__(self) -> None:
        self.made: list[float] = []
        self.started = 0.0
        self.failed = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_spekvm_make_target(self, config: pytest.Config, spec: str) -> Target:
        """The target as the plugin would load it, with its factory counted."""
        target = load(spec)

        def factory() -> Any:
            self.made.append(time.perf_counter())
            return target.factory()

        return attrs.evolve(target, factory=factory)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        """Count from the start of the test, not from the plugin's smoke run at configure time."""
        self.made.clear()
        self.started = time.perf_counter()
        try:
            return (yield)
        except BaseException:
            self.failed = True
            raise


def first_failure(path: Path, rule: Rule, seed: int, budget: str) -> tuple[int, float] | None:
    """(test cases, seconds) to the first failure of `rule`'s sequences on `path` with `seed`, or None."""
    probe = Probe()
    args = [
        f"--spekvm-target={path}", node_id(rule, sequences=True), "-p", "no:cacheprovider", "-q",
        f"--hypothesis-seed={seed}", f"--hypothesis-profile=spekvm-first-failure-{budget}",
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main(args, plugins=[probe])
    if not probe.failed:
        return None
    # Without shrinking, hypothesis stops at the first failing test case and replays it once to
    # report it: the last adapter made is that replay, the one before it the failing test case.
    cases = len(probe.made) - 1
    return cases, probe.made[-1] - probe.started


def register_profiles() -> None:
    """One hypothesis profile per budget, stopping at the first failure."""
    for name, (examples, steps) in BUDGETS.items():
        settings.register_profile(
            f"spekvm-first-failure-{name}", max_examples=examples, stateful_step_count=steps, deadline=None,
            database=None, phases=[Phase.generate, Phase.target],
        )


def steer_with_target() -> None:
    """From now on, each generated sequence ends with `hypothesis.target(exercised)` (see --target)."""
    plain = session_module.machine_for

    def machine_for(session: SpekvmSession, checked: Rule, seen: dict[str, bool], replay: str) -> Any:
        machine = plain(session, checked, seen, replay)
        teardown = machine.teardown

        def targeted_teardown(self: Any) -> None:
            teardown(self)  # judges the sequence; a failure ends the test case before any target
            hypothesis.target(float(self.exercised), label=f"{checked.id} exercised")

        machine.teardown = targeted_teardown
        return machine

    session_module.machine_for = machine_for  # type: ignore[assignment]


def summary(found: list[tuple[int, float]], seeds: int) -> str:
    """'4 of 5 seeds; 6.5 (3-10) cases, 0.09 s' for the seeds that found a failure."""
    if not found:
        return f"0 of {seeds} seeds"
    cases = [n for n, _ in found]
    seconds = statistics.median(s for _, s in found)
    spread = f" ({min(cases)}-{max(cases)})" if len(found) > 1 else ""
    return f"{len(found)} of {seeds} seeds; {statistics.median(cases):g}{spread} cases, {seconds:.2f} s"


def main(argv: list[str] | None = None) -> None:
    """Measure every (mutant, rule) pair and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="hypothesis seeds 0..N-1 per check (default 5)")
    parser.add_argument("--target", action="store_true", help="end each sequence with hypothesis.target(exercised)")
    parser.add_argument("mutants", nargs="*", help="mutant names (default: every file in examples/mutants)")
    args = parser.parse_args(argv)
    register_profiles()
    if args.target:
        steer_with_target()
    budgets = ", ".join(f"{name} {n} examples of {k} steps" for name, (n, k) in BUDGETS.items())
    steering = "; sequences end with hypothesis.target(exercised)" if args.target else ""
    print(f"python {platform.python_version()} on {platform.machine()}; seeds 0..{args.seeds - 1}; {budgets}{steering}")
    print()
    print("| mutant | rule | scripted cells | default run: seeds that fail; test cases to the first failure, "
          "median (min-max); median seconds to it | thorough (where the default missed): the same |")
    print("| --- | --- | --- | --- | --- |")
    for path in mutant_paths(args.mutants):
        target = load(str(path))
        for rule_id in caught_by(path):
            rule = BY_ID[rule_id]
            failed, total = scripted_cells(target, rule)
            cells = f"{failed} of {total} fail" if failed else f"missed (0 of {total})"
            row = [path.stem, rule_id, cells]
            for budget in BUDGETS:
                runs = [first_failure(path, rule, seed, budget) for seed in range(args.seeds)]
                found = [r for r in runs if r is not None]
                row.append(summary(found, args.seeds))
                if len(found) == args.seeds:
                    row.extend("-" for _ in range(len(BUDGETS) - len(row) + 3))
                    break
            print("| " + " | ".join(row) + " |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
