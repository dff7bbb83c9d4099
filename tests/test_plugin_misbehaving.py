"""The plugin black-box: adapters that raise, hang or return garbage on some CPUs only, in the scripted cells
and in generated sequences, a factory that fails after its first run, and no time limit."""

from __future__ import annotations

import pytest
from plugin_harness import ON_VHE, assert_no_traceback

from pytest_spekvm.options import TARGET_OPTION, TIMEOUT_OPTION

# --------------------------------------------------------- adapters that misbehave on some CPUs


# Generated sequences are random: the misbehaviour they must meet is on every CPU with SPE (most
# generated CPUs, and the simplest one), while the configure-time smoke run's CPU has none.
ON_SPE = ON_VHE.replace("if cpu.features.vhe:", "if cpu.features.has_spe:")

MISBEHAVING = [
    pytest.param(
        "vcpu_run", "            raise KeyError('VHE is not wired up yet')", (),
        ["CONTRACT 'vcpu_run() returns normally' broken on features: VHE, FEAT_SPE (PMSVer=1), no PMUv3",
         "  vcpu_run() raised KeyError: 'VHE is not wired up yet' at */flaky.py:* in vcpu_run"],
        id="raises",
    ),
    pytest.param(
        "vcpu_run", "            while True:\n                pass", (f"{TIMEOUT_OPTION}=0.5",),
        ["CONTRACT 'vcpu_run() returns' broken on features: VHE, FEAT_SPE (PMSVer=1), no PMUv3",
         "  vcpu_run() did not return within 0.5s (--spekvm-timeout); it may loop forever"],
        id="hangs",
    ),
    pytest.param(
        "vcpu_run", "            super().vcpu_run(cpu, vcpu)\n            return 'fine'", (),
        ["CONTRACT 'vcpu_run returns the exit reason' broken on features: VHE, FEAT_SPE (PMSVer=1), no PMUv3",
         "  vcpu_run must return an ExitReason (the value cpu.run_guest gave) or None; it returned 'fine'"],
        id="returns-garbage",
    ),
    pytest.param(
        "vcpu_run", "            super().vcpu_run(cpu, vcpu)\n            cpu.run_guest(vcpu)\n            return None", (),
        ["CONTRACT 'vcpu_run enters the guest once' broken on features: VHE, *",
         "  vcpu_run must enter the guest exactly once (call cpu.run_guest(vcpu) once); it entered 2 times"],
        id="enters-twice",
    ),
    pytest.param(
        "setup_vcpu", "            vcpu.mdcr_el2 = 'TPMS|E2PB'\n            return None", (),
        ["CONTRACT 'setup_vcpu() sets vcpu.mdcr_el2 to a 64-bit value' broken on features: VHE, *",
         "  setup_vcpu() set vcpu.mdcr_el2 to 'TPMS|E2PB'; expected an int from 0 to 2**64-1 *"],
        id="garbage-mdcr",
    ),
    pytest.param(
        "setup_vcpu", "            super().setup_vcpu(cpu, vcpu, *args)\n            vcpu.sysregs = 5\n            return None", (),
        ["CONTRACT 'setup_vcpu() leaves vcpu.sysregs a dict' broken on features: VHE, *",
         "  setup_vcpu() set vcpu.sysregs to 5; expected a dict, register name -> value "
         "(setup_vcpu at */flaky.py:* in Switch.setup_vcpu)"],
        id="garbage-sysregs",
    ),
    pytest.param(
        "vcpu_run", "            raise SystemExit('cannot run VHE')", (),
        ["CONTRACT 'vcpu_run() returns normally' broken on features: VHE, FEAT_SPE (PMSVer=1), no PMUv3",
         "  vcpu_run() raised SystemExit: cannot run VHE (sys.exit() in an adapter is its failure, *) at */flaky.py:* in vcpu_run"],
        id="exits",
    ),
    pytest.param(
        "setup_vcpu", "            raise ValueError('no PMU on this board')", (),
        ["CONTRACT 'setup_vcpu() returns normally' broken on features: VHE, *",
         "  setup_vcpu() raised ValueError: no PMU on this board at */flaky.py:* in setup_vcpu"],
        id="setup-raises",
    ),
    pytest.param(
        "vcpu_run", "            cpu.msr('PMSCR_EL1', 1 << 64)", (),
        ["CONTRACT 'vcpu_run() uses only what the CPU model offers' broken on features: VHE, *",
         "  vcpu_run() asked the model for something that cannot exist: Cannot write 0x10000000000000000 to PMSCR_EL1 "
         "because it does not fit in 64 bits (at */flaky.py:* in vcpu_run)"],
        id="impossible-write",
    ),
]


@pytest.mark.parametrize(("method", "misbehave", "extra", "expected"), MISBEHAVING)
def test_adapter_misbehaving_on_vhe_only(
    spekvm_pytester: pytest.Pytester, method: str, misbehave: str, extra: tuple[str, ...], expected: list[str]
) -> None:
    """An adapter that raises, hangs or returns garbage on VHE only fails the VHE cells with the contract clause and
    the bad value; the nVHE cell passes, and the verdict counts the failure."""
    spekvm_pytester.makepyfile(flaky=ON_VHE.replace("{method}", method).replace("{misbehave}", misbehave))
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=flaky.py", *extra, "-k", "test_res0 and spe1-pmunone")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        *expected,
        "steps:",
        "  1. run vcpu 0: guest runs code (1 samples)",
        "replay: pytest --spekvm-target=flaky.py 'test_res0.py::test_res0[[]vhe-spe1-pmunone[]]'   (scripted, deterministic)",
        "RES0 * correctness  not judged (adapter failed on 1 of 2 checks) *",
        "ADAPTER CONTRACT broken: 1 failed test (once per cell and clause); 0 more checks of those cells not judged (skipped)",
    ])
    assert_no_traceback(result)


def test_hang_in_a_sequence_is_not_shrunk(spekvm_pytester: pytest.Pytester) -> None:
    """A generated sequence that hangs fails once, with the clause and a note on why it was not shrunk."""
    spekvm_pytester.makepyfile(
        flaky=ON_SPE.replace("{method}", "vcpu_run").replace("{misbehave}", "            while True:\n                pass")
    )
    result = spekvm_pytester.runpytest(
        f"{TARGET_OPTION}=flaky.py", f"{TIMEOUT_OPTION}=0.3", "--hypothesis-profile=default", "-k", "test_res0_sequences"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "CONTRACT 'vcpu_run() returns' broken on features: *SPE*",
        "  vcpu_run() did not return within 0.3s (--spekvm-timeout); it may loop forever",
        "steps:",
        "replay: *",
        "not shrunk: *",
        "replay anywhere: add --spekvm-reproduce=RES0@*:*",
    ])
    result.stdout.no_fnmatch_line("*@seed(*")  # hypothesis' hint to decorate a test the user does not own
    assert_no_traceback(result)


def test_contract_failure_in_a_sequence(spekvm_pytester: pytest.Pytester) -> None:
    """A generated sequence that makes the adapter raise fails with the clause, shrunk, and replayable anywhere."""
    spekvm_pytester.makepyfile(
        flaky=ON_SPE.replace("{method}", "vcpu_run").replace("{misbehave}", "            raise KeyError('SPE')")
    )
    result = spekvm_pytester.runpytest(
        f"{TARGET_OPTION}=flaky.py", "--hypothesis-profile=default", "-k", "test_res0_sequences"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "CONTRACT 'vcpu_run() returns normally' broken on features: *SPE*",
        "  vcpu_run() raised KeyError: 'SPE' at */flaky.py:* in vcpu_run",
        "replay anywhere: add --spekvm-reproduce=RES0@*:* to the command above",
    ])
    assert_no_traceback(result)


ONCE_IN_A_PROCESS = """
from pytest_spekvm.reference.switch import ReferenceSwitch

entries = []


class Once(ReferenceSwitch):
    def vcpu_run(self, cpu, vcpu):
        entries.append(1)
        if len(entries) == 5:  # once, well after the plugin's first run of the adapter
            raise RuntimeError("fifth entry of the process")
        return super().vcpu_run(cpu, vcpu)


spekvm_adapter = Once
"""


def test_contract_broken_once_is_reported_though_hypothesis_cannot_replay_it(spekvm_pytester: pytest.Pytester) -> None:
    """An adapter that breaks its contract only once in a process (hypothesis' replay of the case then passes, a
    flaky case to hypothesis) fails its sequences test with the clause and why it may not replay, not hypothesis' Flaky error."""
    spekvm_pytester.makepyfile(once=ONCE_IN_A_PROCESS)
    result = spekvm_pytester.runpytest_subprocess(f"{TARGET_OPTION}=once.py", "--hypothesis-profile=default", "-k", "test_res0_sequences")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "CONTRACT 'vcpu_run() returns normally' broken on features: *",
        "  vcpu_run() raised RuntimeError: fifth entry of the process at */once.py:* in vcpu_run",
        "(hypothesis ran the case again and the adapter did not do the same: *",
    ])
    assert "Flaky" not in result.stdout.str()
    assert_no_traceback(result)


LATER_FAILURE = """
from pytest_spekvm.reference.switch import ReferenceSwitch

calls = []


def spekvm_adapter():
    calls.append(1)
    if len(calls) > 2:  # loading the target and the first run still work
{fail}
    return ReferenceSwitch()
"""


@pytest.mark.parametrize(
    ("fail", "extra", "expected"),
    [
        ("        raise OSError('out of file descriptors')", (),
         ["CONTRACT 'spekvm_adapter() returns an adapter' broken on features: nVHE, FEAT_SPE (PMSVer=1), PMUv3p1 *",
          "  spekvm_adapter() raised OSError: out of file descriptors at */later.py:* in spekvm_adapter"]),
        ("        while True:\n            pass", (f"{TIMEOUT_OPTION}=0.3",),
         ["CONTRACT 'spekvm_adapter() returns promptly' broken on features: nVHE, FEAT_SPE (PMSVer=1), PMUv3p1 *",
          "  making a fresh adapter took more than 0.3s (--spekvm-timeout)"]),
    ],
    ids=["raises", "hangs"],
)
def test_factory_failing_after_the_first_run(
    spekvm_pytester: pytest.Pytester, fail: str, extra: tuple[str, ...], expected: list[str]
) -> None:
    """A factory that stops making adapters after the first run fails the cells that need one, naming the clause."""
    spekvm_pytester.makepyfile(later=LATER_FAILURE.replace("{fail}", fail))
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=later.py", *extra, "-k", "test_res0 and nvhe-spe1-pmuv3p1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([*expected, "replay: *"])
    result.stdout.no_fnmatch_line("steps:")
    assert_no_traceback(result)


def test_no_time_limit(spekvm_pytester: pytest.Pytester) -> None:
    """--spekvm-timeout=0 runs the adapter without a time limit."""
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", f"{TIMEOUT_OPTION}=0", "-k", "test_res0 and nvhe-spe1-pmuv3p1")
    result.assert_outcomes(passed=1)


THREADS = """
import threading, time
from pytest_spekvm.reference.switch import ReferenceSwitch

log = []


class Switch(ReferenceSwitch):
    def vcpu_run(self, cpu, vcpu):
        threading.Thread(target=log.append, args=(vcpu.index,)).start()  # bookkeeping, never joined
        threading.Thread(target=time.sleep, args=(0.001,), daemon=True).start()
        helper = threading.Thread(target=log.append, args=("joined",))
        helper.start()
        helper.join()
        return super().vcpu_run(cpu, vcpu)


spekvm_adapter = Switch
"""


def test_threads_that_leave_the_cpu_alone_are_not_a_failure(spekvm_pytester: pytest.Pytester) -> None:
    """An adapter whose calls start threads that never touch the CPU, joined or not, passes every check and sequence."""
    spekvm_pytester.makepyfile(threads=THREADS)
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=threads.py", "-k", "nvhe-spe1-pmuv3p1 or res0_sequences", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes, result.stdout.str()
    assert outcomes["passed"] > 9
    result.stdout.no_fnmatch_line("*warnings*")
    assert_no_traceback(result)


LATE_THREAD = """
import threading, time
from pytest_spekvm.reference.switch import ReferenceSwitch


class Switch(ReferenceSwitch):
    def vcpu_run(self, cpu, vcpu):
        if cpu.features.vhe:
            def late():
                time.sleep(0.01)
                cpu.msr("PMSCR_EL1", 0)

            threading.Thread(target=late).start()
        return super().vcpu_run(cpu, vcpu)


spekvm_adapter = Switch
"""


def test_a_late_thread_in_a_sequence_fails_that_sequence_without_a_thread_warning(spekvm_pytester: pytest.Pytester) -> None:
    """A thread an adapter leaves behind that acts on the CPU later fails the sequence whose call started it,
    with the clause and the thread's line, and pytest reports no unhandled thread exception."""
    spekvm_pytester.makepyfile(late=LATE_THREAD)
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=late.py", "-k", "test_res0_sequences", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        # after its call returned, or during it if the machine is slow: the thread's line either way
        "CONTRACT 'the adapter acts only *' broken on features: VHE*",
        "  cpu.msr was called *(at */late.py:* in late)",
    ])
    result.stdout.no_fnmatch_line("*warnings*")
    assert_no_traceback(result)
