"""The pytest plugin's entry point: the hooks' specifications, the target and the session of a run.

The other jobs are plugins of their own, listed in `pytest_plugins`: the options (options.py), the
suites' collection (collection.py), the report header (header.py), the verdict table
(verdict_table.py), the hypothesis budget, the failure text and the xdist scheduling; and, in a run
with a target, the JSON report, the ledger and the gates (`TARGET_PLUGINS`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pytest

from . import hookspecs
from .options import (
    NO_SHRINK_OPTION,
    REPRODUCE_OPTION,
    TARGET_OPTION,
    option_switch,
    reproduce_of,
    target_given,
    target_spec,
    timeout_of,
)

# This module is imported in every pytest run of an environment where the package is installed,
# whether or not a target is given, and so are the modules it lists in `pytest_plugins`: they import
# nothing beyond pytest and the standard library. The model, the rules and hypothesis are imported
# when a target is (or a suite file is collected).
if TYPE_CHECKING:
    from .rules import Rule
    from .session import SpekvmSession
    from .space import FeatureSpace
    from .target import Target

pytest_plugins = [
    "pytest_spekvm.options",
    "pytest_spekvm.collection",
    "pytest_spekvm.header",
    "pytest_spekvm.verdict_table",
    "pytest_spekvm.budget",
    "pytest_spekvm.failures",
    "pytest_spekvm.xdist_cells",
]

# Plugins that only a run with a target needs (they import hypothesis and the model): registered
# by pytest_configure once the target is loaded, so that a run without one stays free of them.
# The C coverage plugin comes first: it must instrument the C builds before the target loads.
TARGET_PLUGINS = ("pytest_spekvm.report", "pytest_spekvm.ledger", "pytest_spekvm.gates")

SESSION_KEY = pytest.StashKey["SpekvmSession"]()
# What the gates decided at the session's end (gates.py): each rule's final verdict and the coverage.
FINISHED_KEY = pytest.StashKey[dict[str, Any]]()


def _register(config: pytest.Config, name: str) -> None:
    """Register one of the plugin's own modules as a plugin; its pytest_configure runs now (a historic hook).

    Imported directly rather than through ``import_plugin``: these modules are part of an installed
    plugin, not test code, and an earlier in-process run (pytester) may already have imported them,
    which ``import_plugin`` would report as a module it cannot rewrite.
    """
    if config.pluginmanager.get_plugin(name) is None:
        config.pluginmanager.register(importlib.import_module(name), name)


def session_of(config: pytest.Config) -> SpekvmSession | None:
    """The spekvm session of this run, if a target was given."""
    return config.stash.get(SESSION_KEY, None)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Make the spekvm hookspecs known."""
    pluginmanager.add_hookspecs(hookspecs)


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """--spekvm-list-targets: print the targets and exit."""
    if not config.getoption("spekvm_list_targets", False):
        return None
    from .target import entry_points

    print("spekvm targets:")
    print("  reference            the built-in reference switch (pytest_spekvm.reference.switch)")
    for name, ep in sorted(entry_points().items()):
        if name != "reference":
            dist = ep.dist.name if ep.dist is not None else "?"
            print(f"  {name:<20} {ep.value} (from {dist})")
    print("or a dotted module name, or a path to a .py file that defines spekvm_adapter")
    return 0


@pytest.hookimpl(trylast=True)
def pytest_spekvm_make_target(config: pytest.Config, spec: str) -> Target:
    """The default target factory: 'reference', an entry point, a dotted module or a .py path."""
    from .target import load

    return load(spec, timeout_of(config))


def _extra_rules(config: pytest.Config) -> list[Rule]:
    from .rules import RULES, Rule

    extra: list[Rule] = []
    known = {r.id for r in RULES}
    for result in config.hook.pytest_spekvm_add_rules(config=config):
        for rule in result or ():
            if not isinstance(rule, Rule):
                msg = f"pytest_spekvm_add_rules returned {rule!r}, not a pytest_spekvm.Rule (build one with Rule(id=..., title=..., rationale=..., severity=..., family=..., check=...))"
                raise pytest.UsageError(msg)
            if rule.id in known:
                msg = f"pytest_spekvm_add_rules returned a rule with id {rule.id!r}, which is already taken (ids: {', '.join(sorted(known))})"
                raise pytest.UsageError(msg)
            known.add(rule.id)
            extra.append(rule)
    return extra


def _space(config: pytest.Config, target: Target) -> FeatureSpace:
    from .space import FeatureSpace

    space = target.space
    # pluggy leaves out the None results (hookspec: "return None to leave it as it is").
    for narrowed in config.hook.pytest_spekvm_narrow_features(config=config, space=space):
        if not isinstance(narrowed, FeatureSpace):
            msg = f"pytest_spekvm_narrow_features returned {narrowed!r}, not a pytest_spekvm.FeatureSpace"
            raise pytest.UsageError(msg)
        try:
            space = space.intersect(narrowed)
        except ValueError as exc:
            msg = f"pytest_spekvm_narrow_features left no CPU to test: {exc}"
            raise pytest.UsageError(msg) from exc
    return space


def _smoke(target: Target, space: FeatureSpace, timeout: float) -> None:
    """One setup and one run on the first cell: an adapter that cannot do even that is misused, not tested."""
    from .reference.chooser import WorstCaseChooser
    from .scenario import SCRIPT, AdapterFailure, Run

    cell = next(iter(space.cells()))
    try:
        run = Run.start(target, cell, WorstCaseChooser(), timeout)
        run.do(SCRIPT[0])
    except AdapterFailure as failure:
        msg = f"{TARGET_OPTION}={target.spec}: the adapter breaks the contract clause {failure.clause!r} on the first run ({cell.describe()}): {failure}"
        raise pytest.UsageError(msg) from None


def _judge_on_reference(rules: list[Rule], space: FeatureSpace, target: Target) -> None:
    """Each added rule judged once, on the reference switch's scripted run on the first cell: a rule whose
    checker cannot judge even that is misused, not tested (one that fails on other traces only is
    reported where it does)."""
    from .failure_report import rule_error_text
    from .gates import reached_by
    from .rules import RuleError

    cell = next(iter(space.cells()))
    for rule in rules:
        reached = reached_by(cell, target.choices, rule)
        if isinstance(reached, RuleError):
            msg = f"pytest_spekvm_add_rules returned the rule {rule.id!r}, whose check cannot judge the reference switch's scripted run ({cell.describe()}): {rule_error_text(reached)}"
            raise pytest.UsageError(msg)


def pytest_configure(config: pytest.Config) -> None:
    """Load and validate the target once, make the run's session and register the plugins a run with a target needs."""
    if not target_given(config):
        return
    from .budget import budget_of
    from .rules import RULES
    from .session import SpekvmSession
    from .target import Target, TargetError

    spec = target_spec(config)
    timeout = timeout_of(config)
    _register(config, "pytest_spekvm.ccoverage")
    try:
        target = config.hook.pytest_spekvm_make_target(config=config, spec=spec)
    except TargetError as exc:
        raise pytest.UsageError(str(exc)) from None
    if not isinstance(target, Target):
        msg = f"{TARGET_OPTION}={spec}: pytest_spekvm_make_target returned {target!r}, not a pytest_spekvm target (return pytest_spekvm.target.load(spec) or from_factory(...), or None to leave {spec!r} to the next implementation)"
        raise pytest.UsageError(msg)
    reproduce = reproduce_of(config)
    extra = _extra_rules(config)
    rules = {r.id: r for r in (*RULES, *extra)}
    if reproduce is not None and reproduce[0] and reproduce[0] not in rules:
        msg = f"{REPRODUCE_OPTION} names the rule {reproduce[0]!r}, which this run does not have (rules: {', '.join(rules)}); copy the value from the failure report"
        raise pytest.UsageError(msg)
    if reproduce is not None and reproduce[1] and reproduce[1] != target.name:
        msg = f"{REPRODUCE_OPTION} was recorded against the target {reproduce[1]!r}, and this run's target is {target.name!r} ({spec}): a recorded case replays only against the target it came from (give that target's {TARGET_OPTION}, or run the test again to find the failure anew)"
        raise pytest.UsageError(msg)
    space = _space(config, target)
    _smoke(target, space, timeout)
    fast_default, explain = budget_of(config)
    config.stash[SESSION_KEY] = SpekvmSession(
        target=target, space=space, rules=rules, timeout=timeout,
        reproduce=None if reproduce is None else reproduce[2:], reproduce_rule="" if reproduce is None else reproduce[0],
        fast_default=fast_default, explain=explain, shrink=not option_switch(config, NO_SHRINK_OPTION),
    )
    for name in TARGET_PLUGINS:
        _register(config, name)
    _judge_on_reference(extra, space, target)  # the gates' reachability pass: imported once the plugins it uses are registered
