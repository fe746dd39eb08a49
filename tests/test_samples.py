"""Tests for convflow.samples: the sample generators, their command line and the shipped data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

import convflow.io
from convflow import samples

DATA = Path(__file__).resolve().parent.parent / "configs" / "data"


def test_shapes_is_uint8_seeded_and_has_edges_and_texture() -> None:
    image = samples.shapes(64, seed=3)
    assert image.shape == (64, 64)
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, samples.shapes(64, seed=3))
    assert not np.array_equal(image, samples.shapes(64, seed=4))
    # Shapes stand out from the background (about 40-70) by far more than the noise.
    assert image.max() - np.median(image) > 50


def test_blobs_are_brighter_than_the_background_in_both_dtypes() -> None:
    for dtype, background in (("uint16", 1000), ("uint8", 20)):
        volume = samples.blobs((16, 24, 24), dtype=dtype, seed=1)
        assert volume.shape == (16, 24, 24)
        assert volume.dtype == dtype
        assert abs(float(np.median(volume)) - background) < 0.2 * background
        assert volume.max() > 2 * background


def test_write_volume_equals_blobs_whatever_the_chunks(tmp_path: Path) -> None:
    # The noise is drawn per z-slice, so the chunking used to write cannot change it.
    expected = samples.blobs((10, 12, 14), dtype="uint8", seed=5)
    for chunks in (4, (3, 12, 5)):
        path = tmp_path / f"v{chunks}.zarr"
        array = samples.write_volume(path, (10, 12, 14), chunks=chunks, dtype="uint8", seed=5)
        stored = zarr.open_array(str(path))
        assert stored.metadata.zarr_format == 3
        assert stored.chunks == array.chunks
        np.testing.assert_array_equal(stored[...], expected)


def test_write_tiffs_writes_numbered_images_or_stacks(tmp_path: Path) -> None:
    flat = samples.write_tiffs(tmp_path / "flat", count=3, size=20, seed=7)
    assert [p.name for p in flat] == ["scan_000.tif", "scan_001.tif", "scan_002.tif"]
    np.testing.assert_array_equal(tifffile.imread(flat[1]), samples.shapes(20, seed=8))
    stacks = samples.write_tiffs(tmp_path / "stacks", count=2, size=16, depth=5)
    assert tifffile.imread(stacks[0]).shape == (5, 16, 16)
    assert tifffile.imread(stacks[0]).dtype == np.uint16


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: samples.shapes(8), "size=8: give an integer of at least 16"),
        (lambda: samples.blobs((4, 8)), r"shape=\(4, 8\): give one edge or three"),
        (lambda: samples.blobs(8, dtype="float32"), "dtype='float32': give uint8 or uint16"),
        (lambda: samples.write_tiffs("unused", count=0), "count=0"),
    ],
)
def test_bad_parameters_raise_value_error_naming_them(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_command_line_writes_a_volume_and_refuses_to_replace_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "v.zarr"
    assert samples.main(["volume", str(path), "--size", "8", "12", "16", "--chunks", "4"]) == 0
    assert zarr.open_array(str(path)).shape == (8, 12, 16)
    assert "wrote" in capsys.readouterr().out

    assert samples.main(["volume", str(path), "--size", "8"]) == 2
    assert "exists" in capsys.readouterr().err
    assert zarr.open_array(str(path)).shape == (8, 12, 16)

    assert samples.main(["volume", str(path), "--size", "8", "--overwrite"]) == 0
    assert zarr.open_array(str(path)).shape == (8, 8, 8)


def test_command_line_never_deletes_a_folder_that_is_not_a_zarr_array(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keep.txt").write_text("precious")
    assert samples.main(["volume", str(tmp_path), "--size", "8", "--overwrite"]) == 2
    assert "is not a zarr array" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_command_line_checks_arguments_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert samples.main(["shapes", str(tmp_path / "s.tif"), "--size", "4"]) == 2
    assert "--size=4" in capsys.readouterr().err
    assert not (tmp_path / "s.tif").exists()


def test_tiffs_command_writes_into_an_existing_folder_without_replacing_scans(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert samples.main(["tiffs", str(tmp_path), "--count", "2", "--size", "16"]) == 0
    assert samples.main(["tiffs", str(tmp_path), "--count", "2", "--size", "16"]) == 2
    assert "scan_000.tif exists" in capsys.readouterr().err


def test_module_runs_with_python_dash_m(tmp_path: Path) -> None:
    path = tmp_path / "shapes.tif"
    result = subprocess.run(
        [sys.executable, "-m", "convflow.samples", "shapes", str(path), "--size", "32"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert tifffile.imread(path).shape == (32, 32)


def test_shipped_data_is_small_and_reads_with_convflow_io() -> None:
    # The quickstart runs on these files with no generating step: they must stay in the repository.
    files = [p for p in DATA.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 400_000
    shapes = convflow.io.open_input(DATA / "shapes.tif")
    assert (shapes.shape, shapes.dtype, shapes.axes) == ((256, 256), np.uint8, "yx")
    volume = convflow.io.open_input(DATA / "volume.zarr")
    assert (volume.shape, volume.dtype, volume.axes) == ((64, 64, 64), np.uint8, "zyx")
    scans = convflow.io.open_input(DATA / "scans" / "*.tif")
    assert (scans.shape, scans.dtype, scans.axes) == ((4, 96, 96), np.uint8, "byx")
