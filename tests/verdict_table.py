"""Reading a run's verdict table, for tests that pin which rules a target fails."""

from __future__ import annotations

import re
from collections.abc import Sequence

VERDICT = re.compile(r"(?P<rule>[A-Z][A-Z0-9-]*) +(?:correctness|lean) +(?P<verdict>FAILED|passed|NEVER EXERCISED|not judged|not run|known deviation|not applicable)")


def verdicts(lines: Sequence[str]) -> dict[str, str]:
    """Rule id -> 'FAILED', 'passed', 'NEVER EXERCISED', 'not judged', 'not run', 'known deviation' or 'not
    applicable', from a run's verdict table."""
    start = next(i for i, line in enumerate(lines) if "spekvm verdicts for" in line)
    found = {}
    for line in lines[start + 1 :]:
        match = VERDICT.match(line)
        if match:
            found[match["rule"]] = match["verdict"]
    return found
