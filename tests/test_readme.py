"""The README's examples run as written: its ``>>>`` lines are doctests (#13)."""

from __future__ import annotations

import doctest
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_examples_give_the_results_shown():
    failures, tried = doctest.testfile(
        str(README), module_relative=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert tried > 0, "README.md has no >>> examples"
    assert failures == 0, f"{failures} of {tried} README examples differ (doctest's report is above)"
