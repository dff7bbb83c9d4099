"""A catalogue of bad adapters and bad options: none makes the plugin print a traceback of its own, lose a
result or report a broken contract as a rule verdict; each is named, once per cell, and the verdict table's
counts agree with the test outcomes."""

from __future__ import annotations

import re

import hypothesis
import pytest
from plugin_harness import ON_VHE, TWO_CELLS

from pytest_spekvm.options import TARGET_OPTION, TIMEOUT_OPTION

RUN, SETUP = "vcpu_run", "setup_vcpu"
FAST = (f"{TIMEOUT_OPTION}=0.3",)


def row(method: str, code: str, clause: str, extra: tuple[str, ...] = (), id: str = "") -> object:
    """One bad adapter: `code` runs in `method` on VHE cells; the VHE cell fails naming `clause`."""
    body = "\n".join(f"            {line}" for line in code.splitlines())
    # A row under a 0.3 s limit races the alarm against the adapter's own code; on a loaded machine
    # (CI's shared cores) the race was lost once in a few hundred runs: such a row gets two reruns.
    marks = [pytest.mark.flaky(reruns=2)] if extra == FAST else []
    return pytest.param(ON_VHE.replace("{method}", method).replace("{misbehave}", body), extra, 1, clause, id=id, marks=marks)


ADAPTERS = [
    row(RUN, "raise KeyError('VHE')", "*vcpu_run() raised KeyError: 'VHE' at */bad.py:*", id="raises"),
    row(RUN, "raise Weird('odd')", "*vcpu_run() raised Weird: odd at */bad.py:*", id="custom-baseexception"),
    row(RUN, "raise KeyboardInterrupt", "*KeyboardInterrupt*not a Ctrl-C from the user*", id="own-keyboardinterrupt"),
    row(RUN, "pytest.skip('no VHE yet')", "*Skipped: no VHE yet (pytest.skip() in an adapter cannot skip a cell*", id="pytest-skip"),
    row(RUN, "pytest.fail('nope')", "*Failed: nope (pytest.fail() in an adapter*", id="pytest-fail"),
    row(RUN, "pytest.exit('bye')", "*Exit: bye (pytest.exit() in an adapter cannot end the run)*", id="pytest-exit"),
    row(RUN, "pytest.xfail('later')", "*XFailed: later*", id="pytest-xfail"),
    row(RUN, "sys.exit(3)", "*SystemExit: 3 (sys.exit() in an adapter*", id="sys-exit"),
    row(RUN, "raise GeneratorExit", "*vcpu_run() raised GeneratorExit*", id="generatorexit"),
    row(RUN, "raise BadStr()", "*vcpu_run() raised BadStr: <BadStr whose str() raised RuntimeError>*", id="str-raises"),
    row(SETUP, "raise BadStr()", "*setup_vcpu() raised BadStr: <BadStr whose str() raised RuntimeError>*", id="setup-str-raises"),
    row(RUN, "while True:\n    pass", "*vcpu_run() did not return within 0.3s*", FAST, id="hangs"),
    row(RUN, "while True:\n    try:\n        while True:\n            cpu.mrs('PMSCR_EL1')\n    except:\n        pass",
        "*vcpu_run() did not return within 0.3s*", FAST, id="hang-bare-except-model-calls"),
    row(RUN, "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass",
        "*vcpu_run() did not return within 0.3s*", FAST, id="hang-except-baseexception-busy"),
    # A finalizer cannot raise: the timeout that meets it is dropped, not printed as "Exception ignored".
    row(RUN, "class Busy:\n    def __del__(self):\n        while True:\n            pass\nBusy()",
        "*vcpu_run() did not return within 0.3s*", FAST, id="hang-in-a-finalizer"),
    row(RUN, "try:\n    time.sleep(5)\nexcept BaseException:\n    pass",
        "*vcpu_run() did not return within 0.3s*", FAST, id="swallows-timeout"),
    row(RUN, "try:\n    time.sleep(5)\nexcept BaseException:\n    pass\nreturn None",
        "*vcpu_run() did not return within 0.3s*", FAST, id="swallows-timeout-returns"),
    row(SETUP, "while True:\n    try:\n        time.sleep(1)\n    except BaseException:\n        pass",
        "*setup_vcpu() did not return within 0.3s*", FAST, id="setup-hang-swallowed"),
    row(RUN, "super().vcpu_run(cpu, vcpu)\nreturn 'fine'", "*it returned 'fine'*", id="returns-str"),
    row(RUN, "super().vcpu_run(cpu, vcpu)\nreturn 7", "*it returned 7*", id="returns-int"),
    row(RUN, "super().vcpu_run(cpu, vcpu)\ncpu.run_guest(vcpu)\nreturn None", "*it entered 2 times*", id="enters-twice"),
    row(RUN, "return None", "*it entered 0 times*", id="never-enters"),
    row(RUN, "async def later():\n    pass\nsuper().vcpu_run(cpu, vcpu)\nreturn later()",
        "*vcpu_run() returned <coroutine*without running*", id="returns-coroutine"),
    row(SETUP, "vcpu.mdcr_el2 = 'TPMS'\nreturn None", "*set vcpu.mdcr_el2 to 'TPMS'*(setup_vcpu at */bad.py:*", id="mdcr-str"),
    row(SETUP, "vcpu.mdcr_el2 = -1\nreturn None", "*set vcpu.mdcr_el2 to -1*(setup_vcpu at */bad.py:*", id="mdcr-negative"),
    row(SETUP, "vcpu.mdcr_el2 = 1 << 64\nreturn None", "*set vcpu.mdcr_el2 to 18446744073709551616*", id="mdcr-too-big"),
    row(SETUP, "vcpu.mdcr_el2 = True\nreturn None", "*set vcpu.mdcr_el2 to True*", id="mdcr-bool"),
    row(SETUP, "super().setup_vcpu(cpu, vcpu, *args)\nvcpu.host_debug_state = None\nreturn None",
        "*setup_vcpu() set vcpu.host_debug_state to None; expected a dict*(setup_vcpu at */bad.py:*", id="host-debug-state-none"),
    row(SETUP, "super().setup_vcpu(cpu, vcpu, *args)\nvcpu.host_ctxt = 'saved'\nreturn None",
        "*setup_vcpu() set vcpu.host_ctxt to 'saved'; expected a dict*", id="host-ctxt-str"),
    row(RUN, "reason = super().vcpu_run(cpu, vcpu)\nvcpu.sysregs = [reason]\nreturn reason",
        "*vcpu_run() set vcpu.sysregs to [[]ExitReason(*)[]]; expected a dict*(vcpu_run at */bad.py:*", id="run-replaces-sysregs"),
    row(SETUP, "cpu.run_guest(vcpu)", "*setup_vcpu() called cpu.run_guest(vcpu)*(at */bad.py:*", id="setup-enters-guest"),
    row(SETUP, "raise ValueError('no PMU')", "*setup_vcpu() raised ValueError: no PMU at */bad.py:*", id="setup-raises"),
    row(RUN, "cpu.msr('PMSCR_EL1', None)", "*Cannot write None to PMSCR_EL1*(at */bad.py:*", id="msr-none"),
    row(RUN, "cpu.msr('PMSCR_EL1', 1 << 64)", "*does not fit in 64 bits (at */bad.py:*", id="msr-too-big"),
    row(RUN, "cpu.msr('PMSCR_EL1', 'x')", "*Cannot write 'x' to PMSCR_EL1*", id="msr-str"),
    row(RUN, "cpu.mrs('BOGUS_EL1')", "*asked the model for something that cannot exist*BOGUS_EL1*", id="unknown-register"),
    row(RUN, "cpu.dsb('bogus')", "*not a DSB option*", id="bad-dsb"),
    row(RUN, "cpu.trace = Trace()", "*assigned cpu.trace = *(at */bad.py:*", id="replaces-trace"),
    row(RUN, "cpu.features = None", "*assigned cpu.features = None*", id="replaces-features"),
    row(RUN, "cpu.chooser = None", "*assigned cpu.chooser = None*", id="replaces-chooser"),
    row(RUN, "try:\n    cpu.trace = Trace()\nexcept Exception:\n    pass", "*assigned cpu.trace = *", id="replaces-trace-swallowed"),
    row(RUN, "cpu.trace.events.clear()", "*read cpu.trace, which is the model's own state*", id="reads-trace"),
    row(RUN, "cpu._regs['PMSCR_EL1'] = 0", "*read cpu._regs*", id="reads-private"),
    row(RUN, "def work():\n    try:\n        cpu.msr('PMSCR_EL1', 0)\n    except Exception:\n        pass\nt = threading.Thread(target=work)\nt.start()\nt.join()",
        "*cpu.msr was called from thread*", id="other-thread"),
    row(RUN, "def late():\n    time.sleep(0.05)\n    cpu.msr('PMSCR_EL1', 0)\nthreading.Thread(target=late).start()",
        # After its call returned, or during it on a slow machine: a broken clause with the thread's line either way.
        "*cpu.msr was called * the adapter acts on the CPU only *(at */bad.py:* in late)", id="late-thread"),
    row(SETUP, "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()",
        "*setup_vcpu() returned, leaving running thread 'Thread-* (sleep)' (running <built-in function sleep>) that it started*", FAST,
        id="thread-left-running"),
    row(SETUP, "threading.Thread(target=time.sleep, args=(3,)).start()",
        "*setup_vcpu() returned, leaving running thread*expired;*no thread of theirs running (a thread that is not a daemon keeps pytest from exiting until it ends)", FAST,
        id="non-daemon-thread-left-running"),
    row(RUN, "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\nwhile True:\n    pass",
        "*vcpu_run() did not return within 0.3s*", FAST, id="hangs-with-a-thread-running"),
    row(RUN, "def late():\n    time.sleep(0.01)\n    cpu.isb()\nthreading.Thread(target=late, daemon=True).start()\nthreading.Thread(target=time.sleep, args=(5,), daemon=True).start()",
        "*cpu.isb was called *(at */bad.py:* in late); and vcpu_run() returned, leaving running thread*(sleep)*", FAST,
        id="late-thread-and-one-left-running"),
    row(RUN, "cpu.__dict__['trace'] = Trace()", "*read cpu.__dict__*", id="dict-backdoor"),
    row(RUN, "cpu.mark(Kind.GUEST, 'a guest entry')\nreturn None", "*vcpu_run() read cpu.mark, which is the model's own state*", id="forges-guest-entry"),
    row(RUN, "cpu.eret(1, 'guest', 'into the guest', into_guest=True)", "*vcpu_run() read cpu.eret, which is the model's own state*", id="erets-by-itself"),
    row(RUN, "if cpu.el == 2:\n    pass", "*vcpu_run() read cpu.el, which is the model's own state*", id="reads-el"),
]

LOAD_ERRORS = [
    pytest.param(ON_VHE.replace("    def {method}", "    async def vcpu_run(self, cpu, vcpu):\n        pass\n\n    def {method}")
                 .replace("{method}", "x").replace("{misbehave}", "            pass"),
                 (), 4, "*vcpu_run() is an `async def` or a generator*", id="async-vcpu-run"),
    pytest.param(ON_VHE.replace("    def {method}", "    def setup_vcpu(self, cpu, vcpu, host):\n        yield\n\n    def {method}")
                 .replace("{method}", "x").replace("{misbehave}", "            pass"),
                 (), 4, "*setup_vcpu() is an `async def` or a generator*", id="generator-setup"),
    pytest.param(ON_VHE.replace("if cpu.features.vhe:", "if True:").replace("{method}", RUN)
                 .replace("{misbehave}", "            raise KeyError('always')"),
                 (), 4, "*breaks the contract clause 'vcpu_run() returns normally' on the first run*", id="fails-everywhere"),
]

OPTIONS = [
    pytest.param(None, (f"{TARGET_OPTION}=",), 4, "*--spekvm-target (from --spekvm-target) is empty*", id="empty-target"),
    pytest.param(None, (f"{TARGET_OPTION}=reference", "--hypothesis-profile=thorogh"), 4,
                 "*--hypothesis-profile='thorogh' is not a registered hypothesis profile*", id="misspelt-profile"),
    pytest.param(None, (f"{TARGET_OPTION}=reference", f"{TIMEOUT_OPTION}=soon"), 4, "*--spekvm-timeout*'soon'*", id="timeout-text"),
    pytest.param(None, (f"{TARGET_OPTION}=reference", f"{TIMEOUT_OPTION}=-1"), 4, "*--spekvm-timeout*'-1'*", id="timeout-negative"),
    pytest.param(None, (f"{TARGET_OPTION}=reference", "--spekvm-reproduce=garbage"), 4, "*is not RULE@TARGET:VERSION:BLOB*", id="reproduce-garbage"),
    pytest.param(None, (f"{TARGET_OPTION}=reference", "--spekvm-reproduce=RES0:1.0.0:AXicY2BgYAAAAAQAAQ=="), 4,
                 "*recorded with hypothesis 1.0.0, and this is hypothesis *", id="reproduce-other-version"),
    pytest.param(None, (f"{TARGET_OPTION}=reference", "--spekvm-reproduce=NOPE:{version}:AXicY2BgYAAAAAQAAQ=="), 4,
                 "*names the rule 'NOPE', which this run does not have*", id="reproduce-unknown-rule"),
    pytest.param(None, (f"{TARGET_OPTION}=reference", "--spekvm-reproduce=DRAIN-ORDER@reference:{version}:AXicY2BgYAAAAAQAAQ==", "-k", "res0_sequences"), 4,
                 "*replays a sequence of DRAIN-ORDER's sequences test, and this run selects no such test*", id="reproduce-other-test"),
    pytest.param(None, (f"{TARGET_OPTION}=reference", "--spekvm-reproduce=RES0@nodrain:{version}:AXicY2BgYAAAAAQAAQ=="), 4,
                 "*recorded against the target 'nodrain', and this run's target is 'reference' (reference)*", id="reproduce-other-target"),
    pytest.param(None, (f"{TARGET_OPTION}=missing.py",), 4, "*there is no file at*", id="missing-target"),
    pytest.param(None, (f"{TARGET_OPTION}=reference", "-o", "spekvm_no_shrink=sometimes"), 4,
                 "*--spekvm-no-shrink (from spekvm_no_shrink, given with -o) is 'sometimes', not yes or no*", id="no-shrink-not-yes-or-no"),
]


def table_counts(lines: list[str]) -> tuple[int, int, int]:
    """(failed, skipped, passed) tests as the verdict table accounts for them."""
    failed = not_judged = checks = contract = 0
    for line in lines:
        for pattern, fields in (
            (r"FAILED \((\d+) of (\d+) checks(?:; (\d+) not judged)?", ("f", "n", "j")),
            (r"not judged \(adapter failed on (\d+) of (\d+)", ("j", "n")),
            (r"(?:passed|NEVER EXERCISED|not applicable) \((\d+) checks", ("n",)),
        ):
            found = re.search(r"(?:correctness|lean) +" + pattern, line)
            if found:
                values = dict(zip(fields, (int(g or 0) for g in found.groups()), strict=True))
                failed += values.get("f", 0)
                not_judged += values.get("j", 0)
                checks += values["n"]
                break
        broken = re.match(r"ADAPTER CONTRACT broken: (\d+) failed test", line)
        if broken:
            contract = int(broken[1])
    return failed + contract, not_judged - contract, checks - failed - not_judged


@pytest.mark.parametrize(("adapter", "args", "code", "message"), ADAPTERS + LOAD_ERRORS + OPTIONS)
def test_catalogue(spekvm_pytester: pytest.Pytester, adapter: str | None, args: tuple[str, ...], code: int, message: str) -> None:
    """A bad adapter or option gives the expected exit code and a message naming the clause or option, no
    traceback from the plugin, and (for a run) a verdict table and summary whose counts match the outcomes."""
    spekvm_pytester.makeconftest(TWO_CELLS)
    if adapter is not None:
        spekvm_pytester.makepyfile(bad=adapter)
        args = (f"{TARGET_OPTION}=bad.py", *args)
    args = tuple(a.replace("{version}", hypothesis.__version__) for a in args)
    result = spekvm_pytester.runpytest(*args, "-k", "not sequences", "-p", "no:cacheprovider")
    output = result.stdout.str() + result.stderr.str()
    assert code == result.ret, output
    assert "Traceback" not in output, output
    assert "INTERNALERROR" not in output, output
    assert re.search(r"pytest_spekvm/(?!reference)\S+\.py", output) is None, output
    (result.stdout if code != 4 else result.stderr).fnmatch_lines([message])
    if code == 4:
        return
    result.stdout.fnmatch_lines(["*spekvm verdicts for*", "ADAPTER CONTRACT broken: 1 failed test*", "*scenario steps:*"])
    outcomes = result.parseoutcomes()
    assert table_counts(result.stdout.lines) == (outcomes.get("failed", 0), outcomes.get("skipped", 0), outcomes.get("passed", 0))
    result.stdout.no_fnmatch_line("* FAILED (*")  # no rule is blamed for the adapter's failure
    assert 1 == outcomes.get("failed", 0)  # once per cell, not once per rule


def test_empty_target_from_the_environment(spekvm_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEKVM_TARGET set to nothing is a usage error too, not a run that silently tests nothing."""
    monkeypatch.setenv("SPEKVM_TARGET", "")
    result = spekvm_pytester.runpytest()
    assert 4 == result.ret
    result.stderr.fnmatch_lines(["*--spekvm-target (from SPEKVM_TARGET) is empty*"])


def test_catalogue_size() -> None:
    """The catalogue has at least 40 rows."""
    assert 40 <= len(ADAPTERS) + len(LOAD_ERRORS) + len(OPTIONS) + 1
