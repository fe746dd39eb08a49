"""Every example config in configs/ runs through the real command line, as shipped (issue #4).

The configs folder is copied whole into tmp_path, so the files are the
shipped ones byte for byte, relative paths resolve exactly as they do in
the repository, and the outputs land in the copy's out/ folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile
import zarr

from convflow.config import load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
FILES = sorted(p.name for p in CONFIGS.iterdir() if p.suffix in {".yaml", ".yml", ".toml", ".json"})


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    copy = tmp_path / "configs"
    shutil.copytree(CONFIGS, copy, ignore=shutil.ignore_patterns("out"))
    return copy


def run(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "convflow", "run", str(config), "--quiet"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", FILES)
def test_config_runs_as_shipped_and_writes_every_output(shipped: Path, name: str) -> None:
    assert (shipped / name).read_bytes() == (CONFIGS / name).read_bytes()
    done = run(shipped / name)
    assert done.returncode == 0, done.stderr
    for output in load_config(shipped / name).outputs:
        if "{stem}" in output.path.name:
            written = list(output.path.parent.glob(output.path.name.replace("{stem}", "*")))
            assert len(written) == len(list((shipped / "data" / "scans").glob("*.tif")))
        else:
            assert output.path.exists(), f"{name}: {output.path} was not written"


@pytest.mark.slow
def test_edge_demo_matches_scipy_on_the_whole_image(shipped: Path) -> None:
    assert run(shipped / "edges_2d.yaml").returncode == 0
    image = tifffile.imread(shipped / "data" / "shapes.tif").astype(np.float64)
    smoothed = ndi.gaussian_filter(image, 1.5)
    expected = np.hypot(ndi.sobel(smoothed, axis=1), ndi.sobel(smoothed, axis=0))
    edges = zarr.open_array(shipped / "out" / "edges.zarr")[...]
    # float32 work: the spec's tolerance, 1e-5 * sum|k| * max|x| per step.
    np.testing.assert_allclose(edges, expected, atol=1e-5 * 8 * 2 * 255)
    smooth_tif = tifffile.imread(shipped / "out" / "shapes_smooth.tif")
    assert smooth_tif.dtype == np.uint8
    assert np.abs(smooth_tif.astype(np.float64) - smoothed).max() <= 0.5 + 1e-3


def test_volume_example_plans_its_3d_unsharp_step_as_shared_separable_passes(shipped: Path) -> None:
    # Issue #17: the unsharp mask carries its terms (the identity and a Gaussian), so the
    # plan runs it as three 1-D passes instead of an FFT of its dense 17^3 weights.
    done = subprocess.run(
        [sys.executable, "-m", "convflow", "plan", str(shipped / "volume_smooth_sharpen.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (step,) = [line for line in done.stdout.splitlines() if "convolve sharpen (17, 17, 17)" in line]
    assert "mode nearest: separable (cheapest estimate per block: separable (2 terms, 3 passes)" in step
