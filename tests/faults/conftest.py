"""The fault-injection suite's tally: every test records the faults it injected and what became of them.

`pytest -m faults` prints the counts at the end (`pytest_terminal_summary`),
so RELIABILITY.md is filled from a real run: faults injected, survived (the
output finished byte-identical to an uninterrupted run, or the run failed as
it must and then finished so), and bytes differing (0, or the suite fails).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

# The helpers of tests/pipeline/test_cluster.py (a volume config, a free port, stopping a process by
# pid) are reused; pytest puts that folder on sys.path only once it collects it, after this one.
sys.path.insert(0, str(Path(__file__).parents[1] / "pipeline"))


class Tally:
    """Faults injected and survived, by kind, and the bytes that differed from the clean outputs."""

    def __init__(self) -> None:
        self.injected: Counter[str] = Counter()
        self.survived: Counter[str] = Counter()
        self.differing = 0

    def inject(self, kind: str, count: int = 1) -> None:
        """Count `count` faults of `kind` injected."""
        self.injected[kind] += count

    def survive(self, kind: str, count: int = 1) -> None:
        """Count `count` faults of `kind` survived."""
        self.survived[kind] += count

    def lines(self) -> list[str]:
        """The summary, one line per kind and one for all."""
        lines = [
            f"{kind}: {self.injected[kind]} injected, {self.survived[kind]} survived"
            for kind in sorted(self.injected)
        ]
        total, survived = sum(self.injected.values()), sum(self.survived.values())
        lines.append(f"faults injected: {total}, survived: {survived}, bytes differing: {self.differing}")
        return lines


TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Tally:
    """The suite's one `Tally`."""
    return TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY.injected:
        terminalreporter.write_sep("=", "fault injection")
        for line in TALLY.lines():
            terminalreporter.write_line(line)
