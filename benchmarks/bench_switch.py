"""How fast the reference model runs the reference world switch: round trips and events per second.

Run from anywhere, with the package installed:

    python benchmarks/bench_switch.py [--seconds 2] [--runs-per-system 200]

Each configuration boots fresh systems (a host profiling with SPE, two guests) and repeats: the
host runs sampled code, then one round trip through the switch (`System.run_vcpu`: entry, the
guest runs sampled-if-it-could code, exit), then the host handles a buffer interrupt if one is
pending. A system is replaced after `--runs-per-system` round trips, so the trace stays the size
a test's scenario has. A last line gives the cost of judging: all rules over one long trace, per
event. It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable

from pytest_spekvm import rules
from pytest_spekvm.reference.chooser import Chooser, RandomChooser, WorstCaseChooser
from pytest_spekvm.reference.features import Features
from pytest_spekvm.reference.switch import ReferenceSwitch
from pytest_spekvm.reference.system import System
from pytest_spekvm.reference.vcpu import GuestCode

HOST_SAMPLES = 4  # records the host collects between two runs
GUEST_PROGRAM = (GuestCode(2),)


def measure(
    features: Features, make_chooser: Callable[[int], Chooser], seconds: float, per_system: int,
) -> dict[str, float]:
    """Round trips for at least `seconds`: round trips/s (whole loop and switch only), events/s."""
    trips = events = 0
    switch_time = 0.0
    seed = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        s = System(features, ReferenceSwitch(), make_chooser(seed))
        seed += 1
        s.enable_profiling()
        for i in range(per_system):
            s.host_run(HOST_SAMPLES)
            t0 = time.perf_counter()
            s.run_vcpu(i % 2, GUEST_PROGRAM)
            switch_time += time.perf_counter() - t0
            s.handle_buffer_irq()
        s.finish()
        trips += per_system
        events += len(s.cpu.trace)
    elapsed = time.perf_counter() - start
    return {
        "trips_per_s": trips / elapsed,
        "switch_trips_per_s": trips / switch_time,
        "events_per_s": events / elapsed,
        "events_per_trip": events / trips,
    }


def judging_cost(seconds: float) -> tuple[float, int]:
    """Seconds per event that all rules take to judge one long nVHE trace, and the trace's length."""
    s = System(Features(), ReferenceSwitch(), WorstCaseChooser())
    s.enable_profiling()
    for i in range(50):
        s.host_run(HOST_SAMPLES)
        s.run_vcpu(i % 2, GUEST_PROGRAM)
        s.handle_buffer_irq()
    s.finish()
    trace = s.cpu.trace
    runs = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        rules.judge_all(trace, s.features)
        runs += 1
    return (time.perf_counter() - start) / runs / len(trace), len(trace)


def main(argv: list[str] | None = None) -> None:
    """Measure every configuration and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per configuration (default 2)")
    parser.add_argument("--runs-per-system", type=int, default=200,
                        help="round trips before a fresh system (default 200)")
    args = parser.parse_args(argv)
    choosers: list[tuple[str, Callable[[int], Chooser]]] = [
        ("WorstCaseChooser", lambda seed: WorstCaseChooser()),
        ("RandomChooser", RandomChooser),
    ]
    print(f"python {platform.python_version()} on {platform.machine()}, {args.seconds:g} s per line, "
          f"{args.runs_per_system} round trips per system, host samples {HOST_SAMPLES} per trip")
    header = (
        f"{'switch':<6} {'chooser':<17} {'round trips/s':>14} {'switch only/s':>14} "
        f"{'events/s':>11} {'events/trip':>12}"
    )
    print(header)
    print("-" * len(header))
    for vhe in (False, True):
        for name, make in choosers:
            r = measure(Features(vhe=vhe), make, args.seconds, args.runs_per_system)
            print(
                f"{'VHE' if vhe else 'nVHE':<6} {name:<17} {r['trips_per_s']:>14,.0f} "
                f"{r['switch_trips_per_s']:>14,.0f} {r['events_per_s']:>11,.0f} {r['events_per_trip']:>12.1f}"
            )
    per_event, events = judging_cost(args.seconds)
    print(f"judging: all rules, {per_event * 1e6:.2f} us per event over a {events}-event trace")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
