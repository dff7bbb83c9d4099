"""Hook specifications: the extension points of pytest-spekvm, loaded with `pytest_addhooks`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import pytest

    from .rules import Rule
    from .space import FeatureSpace
    from .target import Target

hookspec = pluggy.HookspecMarker("pytest")


@hookspec(firstresult=True)
def pytest_spekvm_make_target(config: pytest.Config, spec: str) -> Target | None:
    """Load the implementation under test named by `--spekvm-target`.

    The plugin's own implementation (``trylast``) understands ``reference``, entry-point names,
    dotted module names and paths to ``.py`` files; a conftest or plugin may claim other forms.
    Stops at first non-None result.

    :param config: the pytest config.
    :param spec: the value of ``--spekvm-target`` (or its ini/environment twin).
    """


@hookspec
def pytest_spekvm_narrow_features(config: pytest.Config, space: FeatureSpace) -> FeatureSpace | None:
    """Narrow the CPU feature space the suites generate from.

    Every non-None result is intersected with the space the target declares; return None to
    leave it as it is.

    :param config: the pytest config.
    :param space: the space after the target's own declaration.
    """


@hookspec
def pytest_spekvm_add_rules(config: pytest.Config) -> Iterable[Rule] | None:
    """Add project-specific rules, judged like the built-in ones and listed in the verdict table.

    :param config: the pytest config.
    """
