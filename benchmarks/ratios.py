"""The suite's speed as ratios to floors measured in the same process, the same minute.

Run from anywhere, with the package installed (the test extra is not needed):

    python benchmarks/ratios.py [--rounds 3] [--seconds 1.0] [--no-default-run] [--collector-share] [--without-events]

Absolute times on a shared machine say little; each figure here is set against a floor measured in
this process, with the repetitions of the measurements interleaved (floor, model, floor, model...)
and the median of each kept. Every time is the process's CPU time, so the time other processes
take the cores from this one does not count:

1. model cost per event: reference round trips (`System.run_vcpu` with the host profiling) against
   a bare-Python floor that, per event, writes one dict entry and appends one tuple; beside it, the
   cost of making and appending one `Event` through `Trace.add` (what every event costs at least);
   with --collector-share, also the share of the model's time, and of `Trace.add`'s alone, spent
   in CPython's cyclic garbage collector, its collections timed as they run (the floor's tuples,
   of ints and strings only, are untracked at the first collection; the model's events are
   traversed at every collection of their generation); with --without-events, also the same
   round trips with a trace that keeps a place for each event but makes none (`Trace.add` called
   as ever, doing nothing else): what the rest of the model costs, a bound below any way of
   making its events;
2. generated sequences: steps per second of one rule's sequences (the suites' fast default
   budget, run again and again for twice --seconds) against a trivial hypothesis stateful machine
   that does one bare round trip per step under the same budget, for as long;
3. judging cost per event of all rules over traces of 12, 40, 100 and 200 steps (flat if judging
   is linear in the trace);
4. the default run's CPU time (`pytest --spekvm-target=reference` on the suites, in a fresh
   folder, one process).

It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from pytest_spekvm import rules
from pytest_spekvm.reference.actors import HOST
from pytest_spekvm.reference.chooser import WorstCaseChooser
from pytest_spekvm.reference.features import Features
from pytest_spekvm.reference.switch import ReferenceSwitch
from pytest_spekvm.reference.system import System
from pytest_spekvm.reference.trace import Kind, Trace
from pytest_spekvm.reference.vcpu import GuestCode
from pytest_spekvm.session import FAST_EXAMPLES, STEPS_PER_EXAMPLE, SpekvmSession
from pytest_spekvm.space import FULL_SPACE
from pytest_spekvm.target import load

GUEST_PROGRAM = (GuestCode(2),)
HOST_SAMPLES = 4
SEQUENCE_RULE = "HOST-STATE"  # a rule every reference sequence exercises, passing (no shrinking)


def _median_interleaved(rounds: int, *measures: Callable[[], float]) -> list[float]:
    """Run each measure `rounds` times, interleaved, and return the median of each."""
    samples: list[list[float]] = [[] for _ in measures]
    for _ in range(rounds):
        for i, measure in enumerate(measures):
            samples[i].append(measure())
    return [statistics.median(s) for s in samples]


# ----------------------------------------------------------------------------- 1. the model


def _system(features: Features) -> System:
    s = System(features, ReferenceSwitch(), WorstCaseChooser())
    s.enable_profiling()
    return s


class NoEvents(Trace):
    """A trace that keeps a place for each event (the CPU numbers records by the trace's length) but
    makes no event: the model without its events, for a measurement only (no rule can judge it)."""

    def add(  # type: ignore[override]  # noqa: PLR0917 - Trace.add's parameters, as the model passes them
        self, actor: object, el: int, kind: Kind, register: str = "", name: str = "", value: int = 0,
        old: int = 0, res0: int = 0, record: int = -1, where: str = "", vcpu: int = -1, owner: object = None,
        by: object = None, update: object = None, dsb: object = None, cse: bool = True,
        into_guest: bool = False, guest_exit: bool = False, landing: object = None,
    ) -> None:
        self.events.append(None)  # type: ignore[arg-type]


def round_trips(vhe: bool, events: bool = True) -> int:
    """A fresh system with the host profiling, then 50 round trips; return its trace's events (with
    `events` False, the round trips' go to a `NoEvents` trace: the boot's, made before, count as ever)."""
    s = _system(Features(vhe=vhe))
    booted = 0
    if not events:
        booted, s.cpu.trace = len(s.cpu.trace), NoEvents()
    for i in range(50):
        s.host_run(HOST_SAMPLES)
        s.run_vcpu(i % 2, GUEST_PROGRAM)
        s.handle_buffer_irq()
    return booted + len(s.cpu.trace)


def floor(events: int) -> int:
    """The floor's work for `events` events: one dict entry written and one tuple appended each."""
    registers: dict[str, int] = {}
    trace: list[tuple[int, str, int, int]] = []
    for seq in range(events):
        registers["PMSCR_EL1"] = seq
        trace.append((seq, "PMSCR_EL1", seq, 1))
    return events


def model_ns_per_event(seconds: float, vhe: bool = False, made: bool = True) -> float:
    """Nanoseconds per trace event of reference round trips with the host profiling (with `made`
    False, per place a `NoEvents` trace kept)."""
    events = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        events += round_trips(vhe, made)
    return (time.process_time() - start) * 1e9 / events


def collector_share(measure: Callable[[], object]) -> float:
    """The share of `measure`'s CPU time spent in CPython's cyclic garbage collector, its
    collections timed as they run."""
    spent = began = 0.0

    def timer(phase: str, info: dict[str, int]) -> None:
        nonlocal spent, began
        if phase == "start":
            began = time.process_time()
        else:
            spent += time.process_time() - began

    gc.callbacks.append(timer)
    try:
        start = time.process_time()
        measure()
        return spent / (time.process_time() - start)
    finally:
        gc.callbacks.remove(timer)


def floor_ns_per_event(seconds: float) -> float:
    """Nanoseconds per event of the floor."""
    events = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        events += floor(10_000)
    return (time.process_time() - start) * 1e9 / events


def event_ns(seconds: float) -> float:
    """Nanoseconds to add one MSR event to a trace: the least the model does per event."""
    events = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        trace = Trace()
        for seq in range(10_000):
            trace.add(HOST, 1, Kind.MSR, register="PMSCR_EL1", name="PMSCR_EL1", value=seq, old=seq, vcpu=-1)
        events += 10_000
    return (time.process_time() - start) * 1e9 / events


# ----------------------------------------------------------------------- 2. the sequences


def _budget() -> settings:
    return settings(max_examples=FAST_EXAMPLES, stateful_step_count=STEPS_PER_EXAMPLE, deadline=None, database=None)


def sequences_steps_per_s(seconds: float) -> float:
    """Steps per second of one rule's generated sequences against the reference (fast default),
    over as many runs of the budget as fit in `seconds` (one run is a fraction of a second, and the
    number of steps hypothesis gives its examples varies from run to run)."""
    steps, spent = 0, 0.0
    while not steps or spent < seconds:
        session = SpekvmSession(target=load("reference"), space=FULL_SPACE, rules={r.id: r for r in rules.RULES})
        session.fast_default = True
        start = time.process_time()  # the runs alone, as for the trivial machine
        session.explore(SEQUENCE_RULE)
        spent += time.process_time() - start
        steps += session.verdicts.steps
    return steps / spent


class TrivialMachine(RuleBasedStateMachine):
    """One bare round trip per step: the floor for the sequences."""

    steps = 0

    def __init__(self) -> None:
        super().__init__()
        self.system = _system(Features())

    @rule(vcpu=st.integers(0, 1).map(int))
    def round_trip(self, vcpu: int) -> None:
        """Enter a vcpu and come back."""
        self.system.run_vcpu(vcpu, GUEST_PROGRAM)
        TrivialMachine.steps += 1


def trivial_steps_per_s(seconds: float) -> float:
    """Steps per second of the trivial machine under the same budget, over as many runs as fit in `seconds`."""
    TrivialMachine.steps = 0
    start = time.process_time()
    while not TrivialMachine.steps or time.process_time() - start < seconds:
        run_state_machine_as_test(TrivialMachine, settings=_budget())
    return TrivialMachine.steps / (time.process_time() - start)


# --------------------------------------------------------------------------- 3. judging


def judging_ns_per_event(steps: int, seconds: float) -> float:
    """Nanoseconds per event of all rules judging a trace of `steps` scenario steps."""
    s = _system(Features())
    for i in range(steps // 2):
        s.host_run(HOST_SAMPLES)
        s.run_vcpu(i % 2, GUEST_PROGRAM)
    s.finish()
    trace, runs = s.cpu.trace, 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        rules.judge_all(trace, s.features)
        runs += 1
    return (time.process_time() - start) * 1e9 / runs / len(trace)


# ------------------------------------------------------------------------ 4. the default run


def default_run_cpu_s() -> float:
    """CPU seconds (user + system) of the default run against the reference, in a fresh folder."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--spekvm-target=reference",
             "--pyargs", "pytest_spekvm.suites"],
            cwd=folder, check=True, stdout=subprocess.DEVNULL,
            # hypothesis loads its `ci` profile wherever CI is set, even empty: the default run is without it
            env={k: v for k, v in os.environ.items() if k != "CI"},
        )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of each measure (median kept)")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="time per repetition of the model and judging measures (twice it for the sequences')")
    parser.add_argument("--no-default-run", action="store_true", help="leave out the default run's CPU time")
    parser.add_argument("--collector-share", action="store_true",
                        help="also print the share of the model's time, and of Trace.add's, spent in CPython's "
                             "cyclic garbage collector")
    parser.add_argument("--without-events", action="store_true",
                        help="also print the model's cost per event with a trace that makes no event (Trace.add "
                             "a no-op): what the rest of the model costs")
    args = parser.parse_args(argv)
    os.chdir(tempfile.mkdtemp(prefix="spekvm-ratios-"))  # hypothesis' example database goes there
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
          f"{args.rounds} interleaved rounds, medians")

    measures = [
        lambda: floor_ns_per_event(args.seconds),
        lambda: model_ns_per_event(args.seconds),
        lambda: model_ns_per_event(args.seconds, vhe=True),
        lambda: event_ns(args.seconds / 2),
    ]
    if args.without_events:  # in the same rounds, against the same floor
        measures += [
            lambda: model_ns_per_event(args.seconds, made=False),
            lambda: model_ns_per_event(args.seconds, vhe=True, made=False),
        ]
    floor, model, model_vhe, event, *bare = _median_interleaved(args.rounds, *measures)
    print(f"model:     {model:8.0f} ns/event nVHE, {model_vhe:8.0f} ns/event VHE; floor {floor:5.0f} ns/event; "
          f"ratio {model / floor:5.1f}x (nVHE), {model_vhe / floor:5.1f}x (VHE); "
          f"Trace.add alone {event:5.0f} ns, {event / floor:4.1f}x")
    if bare:
        print(f"no events: {bare[0]:8.0f} ns/event nVHE, {bare[1]:8.0f} ns/event VHE; "
              f"ratio {bare[0] / floor:5.1f}x (nVHE), {bare[1] / floor:5.1f}x (VHE): the same round trips with "
              "Trace.add a no-op")
    if args.collector_share:
        share, share_vhe, share_event = _median_interleaved(
            args.rounds,
            lambda: collector_share(lambda: model_ns_per_event(args.seconds)),
            lambda: collector_share(lambda: model_ns_per_event(args.seconds, vhe=True)),
            lambda: collector_share(lambda: event_ns(args.seconds / 2)),
        )
        print(f"collector: {share:8.0%} of the model's time nVHE, {share_vhe:4.0%} VHE, {share_event:4.0%} of "
              "Trace.add's alone in CPython's cyclic garbage collector")

    ours, trivial = _median_interleaved(
        args.rounds, lambda: sequences_steps_per_s(args.seconds * 2), lambda: trivial_steps_per_s(args.seconds * 2),
    )
    print(f"sequences: {ours:8.0f} steps/s ({SEQUENCE_RULE}, fast default); trivial machine {trivial:8.0f} steps/s; "
          f"ratio {ours / trivial:5.2f}x")

    lengths = (12, 40, 100, 200)
    costs = _median_interleaved(args.rounds, *(lambda n=n: judging_ns_per_event(n, args.seconds / 2) for n in lengths))
    curve = ", ".join(f"{n} steps {c:6.0f}" for n, c in zip(lengths, costs, strict=True))
    print(f"judging:   ns/event at {curve}; 200 steps / 12 steps = {costs[-1] / costs[0]:4.2f}x")

    if not args.no_default_run:
        print(f"default run: {default_run_cpu_s():6.1f} s of CPU (one run)")


if __name__ == "__main__":
    main()
