"""Replaying a failure: the printed commands are shell commands that work as printed (a path with a space too),
--spekvm-reproduce replays a generated failure or hang anywhere, replays only its own test, and says so when
the recorded case passes after the fix."""

from __future__ import annotations

import shlex
import shutil

import hypothesis
import pytest
from mutant_catalogue import source

from pytest_spekvm.options import NO_SHRINK_OPTION, TARGET_OPTION, TIMEOUT_OPTION

NODRAIN = source("no_spe_save")  # the mutant without the nVHE save: the host's buffer is never drained

RES0_BIT = source("mdcr_res0_bit")  # the mutant that sets MDCR_EL2 bit 16, RES0 on every CPU

FIXED = "from pytest_spekvm.reference.switch import ReferenceSwitch\n\n\nclass Fixed(ReferenceSwitch):\n    pass\n\n\nspekvm_adapter = Fixed\n"

HANGS_WITH_SPE = """
from pytest_spekvm.reference.switch import ReferenceSwitch


class Switch(ReferenceSwitch):
    def vcpu_run(self, cpu, vcpu):
        if cpu.features.has_spe:
            while True:
                pass
        return super().vcpu_run(cpu, vcpu)


spekvm_adapter = Switch
"""


# A switch that sets MDCR_EL2 bit 16 (RES0 on every CPU) from its 13th guest entry on: no sequence of the fast
# default's 12 steps can reach it, a sequence of a longer profile can.
LATE_RES0 = """
from pytest_spekvm.reference.switch import ReferenceSwitch


class Late(ReferenceSwitch):
    entries = 0

    def vcpu_run(self, cpu, vcpu):
        self.entries += 1
        if self.entries >= 13:
            vcpu.mdcr_el2 |= 1 << 16
        return super().vcpu_run(cpu, vcpu)


spekvm_adapter = Late
"""

LONG_PROFILE = """
from hypothesis import settings

settings.register_profile("long", max_examples=300, stateful_step_count=40, database=None)
"""


def printed(result: pytest.RunResult, prefix: str) -> str:
    """The first output line starting with `prefix`, without it."""
    return next(line for line in result.stdout.lines if line.startswith(prefix)).removeprefix(prefix)


def ran(result: pytest.RunResult) -> dict[str, int]:
    """The outcome counts of the summary line, without the deselected tests."""
    return {k: v for k, v in result.parseoutcomes().items() if k != "deselected"}


def replay_args(result: pytest.RunResult) -> list[str]:
    """The arguments of the 'replay: pytest ...' line, parsed as a shell would."""
    command = shlex.split(printed(result, "replay: ").split("   (")[0])
    assert "pytest" == command[0]
    return command[1:]


def reproduce_option(result: pytest.RunResult) -> str:
    """The --spekvm-reproduce=... argument of the 'replay anywhere' line, parsed as a shell would."""
    (option,) = shlex.split(printed(result, "replay anywhere: add ").removesuffix(" to the command above"))
    return option


def test_replay_of_a_target_path_with_a_space(spekvm_pytester: pytest.Pytester) -> None:
    """A target whose path has a space gives a quoted replay command that, run as printed, fails the same way."""
    folder = spekvm_pytester.path / "my switches"
    folder.mkdir()
    (folder / "no drain.py").write_text(NODRAIN)
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=my switches/no drain.py", "-k", "test_drain_order and nvhe-spe1-pmunone")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["replay: pytest '--spekvm-target=my switches/no drain.py' *"])
    again = spekvm_pytester.runpytest(*replay_args(result))
    assert {"failed": 1} == ran(again)


def test_reproduce_confirms_the_fix_and_replays_only_its_own_test(spekvm_pytester: pytest.Pytester) -> None:
    """--spekvm-reproduce replays the failure (here found and not shrunk: --spekvm-no-shrink) in a fresh database; with
    the switch fixed it says the recorded case now passes (exit 0); next to other sequences tests it leaves them to their own generation."""
    spekvm_pytester.makepyfile(nodrain=NODRAIN)
    first = spekvm_pytester.runpytest(
        f"{TARGET_OPTION}=nodrain.py", "--hypothesis-profile=default", NO_SHRINK_OPTION, "-k", "test_drain_order_sequences"
    )
    first.assert_outcomes(failed=1)
    option = reproduce_option(first)
    assert option.startswith("--spekvm-reproduce=DRAIN-ORDER@nodrain:")

    shutil.rmtree(spekvm_pytester.path / ".hypothesis")
    again = spekvm_pytester.runpytest(*replay_args(first), option)
    assert {"failed": 1} == ran(again)
    again.stdout.fnmatch_lines(["RULE DRAIN-ORDER violated on features: *"])

    others = spekvm_pytester.runpytest(f"{TARGET_OPTION}=nodrain.py", option, "-k", "sequences and (drain_order or res0 or lean or trap)")
    others.assert_outcomes(failed=1, passed=4)  # the replay; RES0, LEAN, and test_traps.py: TRAP-COND and UNDEF

    spekvm_pytester.makepyfile(nodrain=FIXED)
    fixed = spekvm_pytester.runpytest_subprocess(*replay_args(first), option)  # a fresh process imports the fixed file
    assert 0 == fixed.ret
    assert {"passed": 1} == ran(fixed)
    fixed.stdout.fnmatch_lines([
        "spekvm --spekvm-reproduce: the recorded case of DRAIN-ORDER (test_ordering.py::test_drain_order_sequences) now passes against nodrain (nodrain.py)*",
    ])
    assert "Traceback" not in fixed.stdout.str()


def test_a_hang_in_a_sequence_reproduces_from_what_was_printed(spekvm_pytester: pytest.Pytester) -> None:
    """A generated sequence that hangs prints a --spekvm-reproduce line that replays the hang in a fresh database."""
    spekvm_pytester.makepyfile(hangs=HANGS_WITH_SPE)
    args = (f"{TARGET_OPTION}=hangs.py", f"{TIMEOUT_OPTION}=0.2", "--hypothesis-profile=default", "-k", "test_res0_sequences")
    first = spekvm_pytester.runpytest(*args)
    first.assert_outcomes(failed=1)
    option = reproduce_option(first)
    shutil.rmtree(spekvm_pytester.path / ".hypothesis")
    again = spekvm_pytester.runpytest(*args, option)
    again.assert_outcomes(failed=1)
    again.stdout.fnmatch_lines(["CONTRACT 'vcpu_run() returns' broken on features: *SPE*", "  vcpu_run() did not return within 0.2s*"])


def test_reproduce_says_the_recorded_case_now_passes(spekvm_pytester: pytest.Pytester) -> None:
    """After a fix that leaves the scenario's shape as it was, the replay says the recorded case now passes, exit 0."""
    spekvm_pytester.makepyfile(res0bit=RES0_BIT)
    first = spekvm_pytester.runpytest(f"{TARGET_OPTION}=res0bit.py", "--hypothesis-profile=default", "-k", "test_res0_sequences")
    first.assert_outcomes(failed=1)
    option = reproduce_option(first)
    spekvm_pytester.makepyfile(res0bit=FIXED)
    shutil.rmtree(spekvm_pytester.path / ".hypothesis")
    fixed = spekvm_pytester.runpytest_subprocess(*replay_args(first), option)
    assert 0 == fixed.ret
    fixed.stdout.fnmatch_lines([
        "spekvm --spekvm-reproduce: the recorded case of RES0 (test_res0.py::test_res0_sequences) now passes against res0bit (res0bit.py)",
    ])


def test_a_failure_found_under_a_longer_profile_replays_under_the_fast_default(spekvm_pytester: pytest.Pytester) -> None:
    """A failure recorded under a profile of longer sequences and no database prints a replay command naming that
    profile, and --spekvm-reproduce replays it even under the fast default, whose 12 steps would cut it short."""
    spekvm_pytester.makepyfile(late=LATE_RES0)
    spekvm_pytester.makeconftest(LONG_PROFILE)
    first = spekvm_pytester.runpytest(f"{TARGET_OPTION}=late.py", "--hypothesis-profile=long", "-k", "test_res0_sequences")
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines([
        "replay: pytest --spekvm-target=late.py --hypothesis-profile=long *test_res0_sequences   (no example database under this profile: *",
    ])
    fast = (f"{TARGET_OPTION}=late.py", "--hypothesis-profile=default", "-k", "test_res0_sequences")  # named: the run before loaded `long`
    again = spekvm_pytester.runpytest(*fast, reproduce_option(first))
    assert {"failed": 1} == ran(again)
    again.stdout.fnmatch_lines(["RULE RES0 violated on features: *"])


def test_reproduce_of_a_test_not_selected_is_a_usage_error_under_xdist(spekvm_pytester: pytest.Pytester) -> None:
    """Under xdist (-n 2), a --spekvm-reproduce value whose sequences test the run does not select stops it with
    the usage error a run in one process gives, before any test runs."""
    option = f"--spekvm-reproduce=DRAIN-ORDER@reference:{hypothesis.__version__}:AXicY2BgYAAAAAQAAQ=="
    result = spekvm_pytester.runpytest(f"{TARGET_OPTION}=reference", option, "-k", "test_res0", "-n", "2", "-p", "no:cacheprovider")
    assert pytest.ExitCode.USAGE_ERROR == result.ret
    result.stderr.fnmatch_lines([
        "ERROR: --spekvm-reproduce replays a sequence of DRAIN-ORDER's sequences test, and this run selects no such test (*",
    ])
    assert "passed" not in result.stdout.str()
