"""Two ``convflow run``s onto one output, started a seeded fraction of a second apart (#15 item 5).

Exactly one writes; the other exits 2 in one line naming the holder; the
output is byte for byte the winner's uninterrupted run.  Once onto a new
output, once with ``--overwrite`` onto an existing one.  The pipeline is
test_cli_lease's slow one (seconds of compute), so the two runs overlap.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
from faultkit import differing_bytes, first_differences, output_files
from test_cli_lease import slow_run, start

pytestmark = pytest.mark.faults

SEED = int(os.environ.get("CONVFLOW_FAULT_SEED", "20261203"))


def test_two_runs_started_a_moment_apart_let_exactly_one_write(tmp_path, tally):
    output = slow_run(tmp_path)
    out = output.parent
    expected = {}
    for config in ("p.yaml", "other.yaml"):  # each config's uninterrupted output, where the runs write
        clean = start(tmp_path, config)
        _, err = clean.communicate(timeout=300)
        assert clean.returncode == 0, err
        expected[config] = output_files(out)
        shutil.rmtree(out)
    rng = np.random.default_rng(SEED + 5)
    for flags in [(), ("--overwrite",)]:
        apart = float(rng.random()) * 0.5
        why = f"seed {SEED + 5}: runs {' '.join(flags) or 'onto a new output'}, {apart:.2f} s apart"
        first = start(tmp_path, "p.yaml", *flags)
        time.sleep(apart)
        second = start(tmp_path, "other.yaml", *flags)
        tally.inject("a second run onto an output being written")
        results = {
            config: (run, *run.communicate(timeout=300))
            for config, run in (("p.yaml", first), ("other.yaml", second))
        }
        codes = sorted(run.returncode for run, _, _ in results.values())
        assert codes == [0, 2], f"{why}: {[err for _, _, err in results.values()]}"
        (winner, (won, _, _)), (_, (_, _, refused)) = sorted(
            results.items(), key=lambda item: item[1][0].returncode
        )
        assert refused.count("\n") == 1, f"{why}: {refused}"
        assert refused.startswith("error: "), f"{why}: {refused}"
        assert f"another run is writing it: convflow run pid {won.pid} on host" in refused, (
            f"{why}: {refused}"
        )
        got = output_files(out)
        differing = differing_bytes(got, expected[winner])
        tally.differing += differing
        assert differing == 0, (
            f"{why}: {differing} bytes differ, in {first_differences(got, expected[winner])}"
        )
        tally.survive("a second run onto an output being written")
