"""Every script in pipelines/, run as shipped: --help, results against scipy.ndimage, and its errors.

Results come from real subprocesses on small generated inputs in tmp_path,
chunked finer than the kernels' halos, and are compared with scipy.ndimage
on the whole float64 array within SPEC section 2's float32 tolerance.  Error
paths call each script's `main` in-process, which is the same code without
the interpreter start-up.
"""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile
import zarr

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"
SCRIPTS = sorted(PIPELINES.glob("*.py"))
# SPEC section 2: float32 compute is within 1e-5 * sum|k| * max|x| of the exact result.
FLOAT32_TOLERANCE = 1e-5


def run(script: str, *args: object) -> subprocess.CompletedProcess[str]:
    """Run pipelines/`script` with `args` in a fresh interpreter; fail on a non-zero exit."""
    result = subprocess.run(
        [sys.executable, str(PIPELINES / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{script} exited {result.returncode}:\n{result.stderr}"
    return result


def write_zarr(path: Path, data: np.ndarray, chunks: tuple[int, ...]) -> Path:
    """Store `data` as a zarr v3 array at `path` and return the path."""
    zarr.create_array(store=str(path), shape=data.shape, chunks=chunks, dtype=data.dtype)[...] = data
    return path


def assert_close(result: np.ndarray, expected: np.ndarray, sum_abs_kernel: float, data: np.ndarray) -> None:
    """Check shape and values against the float64 oracle within the float32 tolerance."""
    assert result.shape == expected.shape
    atol = FLOAT32_TOLERANCE * sum_abs_kernel * float(np.abs(data).max())
    error = np.abs(result.astype(np.float64) - expected)
    worst = np.unravel_index(int(np.argmax(error)), error.shape)
    assert error.max() <= atol, f"max error {error.max():.3g} > {atol:.3g} at {worst}"


def call_main(script: str, argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run pipelines/`script`'s main(argv) in-process; return its exit code, stdout and stderr."""
    main = runpy.run_path(str(PIPELINES / script))["main"]
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:  # argparse's --help and usage errors
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_pipeline_is_tested() -> None:
    # A new script must get a result test here, not only --help.
    tested = {"gradient_magnitude.py", "smooth_volume.py", "tiff_folder_to_zarr.py", "unsharp_mask.py"}
    assert {p.name for p in SCRIPTS} == tested


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_describes_the_pipeline_and_exits_0(script: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # In-process: the result tests below already run every script in a subprocess.
    code, out, _ = call_main(script.name, ["--help"], capsys)
    first_line = runpy.run_path(str(script))["__doc__"].splitlines()[0]
    assert code == 0
    assert out.startswith("usage:")
    assert first_line in out
    assert "python pipelines/" in out  # an example command to copy


def test_unsharp_mask_matches_scipy_with_per_axis_sigma(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.uniform(0, 1000, (14, 20, 22)).astype(np.float32)
    source = write_zarr(tmp_path / "in.zarr", data, chunks=(5, 7, 8))  # chunks smaller than the halo
    out = tmp_path / "sharp.zarr"

    run("unsharp_mask.py", source, out, "--sigma", 1, 2, 2.5, "--amount", 1.5, "--mode", "nearest")

    x = data.astype(np.float64)
    expected = x + 1.5 * (x - ndi.gaussian_filter(x, (1, 2, 2.5), mode="nearest"))
    result = zarr.open_array(str(out))
    assert result.dtype == np.float32  # the input's dtype
    assert_close(result[...], expected, 1 + 2 * 1.5, data)
    assert result.attrs["convflow"]["pipeline"] == "unsharp_mask"


def test_gradient_magnitude_matches_scipy_sobel_after_smoothing(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    data = rng.integers(0, 4000, (12, 18, 20), dtype=np.uint16)
    source = write_zarr(tmp_path / "in.zarr", data, chunks=(4, 5, 6))
    out = tmp_path / "gradient.zarr"

    run("gradient_magnitude.py", source, out, "--sigma", 1.0)

    smoothed = ndi.gaussian_filter(data.astype(np.float64), 1.0)
    expected = np.sqrt(sum(ndi.sobel(smoothed, axis=a) ** 2 for a in range(3)))
    result = zarr.open_array(str(out))
    assert result.dtype == np.float32  # the compute dtype of uint16
    # Each 3-D Sobel has sum|k| = 32; the magnitude of three adds at most sqrt(3).
    assert_close(result[...], expected, 32 * np.sqrt(3), data)


def test_tiff_folder_to_zarr_stacks_sorted_files_and_smooths_each_alone(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    images = {name: rng.integers(0, 60000, (20, 24), dtype=np.uint16) for name in ("b", "a", "c")}
    for name, image in images.items():
        tifffile.imwrite(folder / f"{name}.tif", image)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "stack.zarr"

    result = run("tiff_folder_to_zarr.py", folder, out, "--sigma", 1.5, "--dtype", "float32")

    assert "3 files" in result.stdout
    # Files in sorted order, each smoothed alone: the batch axis gets no halo.
    expected = np.stack([ndi.gaussian_filter(images[n].astype(np.float64), 1.5) for n in "abc"])
    stored = zarr.open_array(str(out))
    assert stored.dtype == np.float32
    assert stored.attrs["convflow"]["output"]["axes"] == "byx"
    assert_close(stored[...], expected, 1.0, np.stack(list(images.values())))


def test_smooth_volume_generates_a_sample_and_matches_scipy(tmp_path: Path) -> None:
    source, out = tmp_path / "sample.zarr", tmp_path / "smooth.zarr"

    run("smooth_volume.py", "--generate", source, out, "--size", 24, "--sigma", 1.5)

    data = zarr.open_array(str(source))[...]
    assert data.shape == (24, 24, 24)
    result = zarr.open_array(str(out))
    assert result.dtype == np.uint16  # the input's dtype, rounded half to even
    exact = ndi.gaussian_filter(data.astype(np.float64), 1.5)
    error = np.abs(result[...] - exact)
    assert error.max() <= 0.5 + FLOAT32_TOLERANCE * float(data.max())


# Error paths, in-process: the scripts' `main`, argv given, exit code returned or raised.


@pytest.mark.parametrize(
    "script",
    ["gradient_magnitude.py", "smooth_volume.py", "unsharp_mask.py"],
)
def test_missing_input_exits_2_and_names_it(
    script: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = call_main(script, [tmp_path / "absent.zarr", tmp_path / "out.zarr"], capsys)
    assert code == 2
    assert "error:" in err
    assert "absent.zarr" in err
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize(
    ("script", "argv", "message"),
    [
        ("tiff_folder_to_zarr.py", ["{tmp}/absent", "{tmp}/out.zarr"], "folder '.*absent' does not exist"),
        ("tiff_folder_to_zarr.py", ["{tmp}", "{tmp}/out.zarr"], r"matches no file"),
        ("tiff_folder_to_zarr.py", ["{tmp}", "{tmp}/out.tif"], r"end the name in \.zarr"),
        ("gradient_magnitude.py", ["{tmp}/in.zarr", "{tmp}/out.zarr", "--sigma", "-1"], "--sigma -1.0"),
        ("unsharp_mask.py", ["{tmp}/in.zarr", "{tmp}/out.zarr", "--mode", "bogus"], "mode='bogus'"),
        ("unsharp_mask.py", ["{tmp}/in.zarr", "{tmp}/in.zarr"], "in.zarr"),
        ("smooth_volume.py", ["{tmp}/absent.zarr", "{tmp}/out.zarr"], "pass --generate"),
        ("smooth_volume.py", ["{tmp}/in.zarr", "{tmp}/in.zarr"], "exists; .* --overwrite"),
    ],
)
def test_bad_usage_exits_2_with_a_clear_message(
    script: str,
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_zarr(tmp_path / "in.zarr", np.zeros((4, 6, 6), np.float32), chunks=(4, 6, 6))
    before = zarr.open_array(str(tmp_path / "in.zarr"))[...]
    code, _, err = call_main(script, [a.format(tmp=tmp_path) for a in argv], capsys)
    assert code == 2
    assert err.strip(), "no message on stderr"
    assert re.search(message, err), err
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "in.zarr"))[...], before)


def test_existing_output_is_refused_then_replaced_with_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_zarr(tmp_path / "in.zarr", np.ones((6, 6, 6), np.float32), chunks=(3, 3, 3))
    out = write_zarr(tmp_path / "out.zarr", np.zeros((2, 2), np.uint8), chunks=(2, 2))

    code, _, err = call_main("gradient_magnitude.py", [source, out], capsys)
    assert code == 2
    assert "already exists" in err
    assert zarr.open_array(str(out)).shape == (2, 2)

    code, _, err = call_main("gradient_magnitude.py", [source, out, "--overwrite"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(zarr.open_array(str(out))[...], np.zeros((6, 6, 6)))
