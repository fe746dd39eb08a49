"""Each format's own conventions (#14 item 7): OME-TIFF outputs, pixel sizes in TIFFs, axes a file names."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr
from io_contract import SYNC, Boom, failing, tile_digest

from convflow.cli import main
from convflow.errors import ArgumentError, InputFormatError
from convflow.io import describe, format_description, open_input, write_output

OME = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"


def ome_pixels(path: str | Path) -> dict[str, str]:
    """The attributes of the first OME-XML Pixels element of an OME-TIFF, as tifffile reads it."""
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        root = ET.fromstring(tif.ome_metadata)
    return dict(root.find(f"{OME}Image/{OME}Pixels").attrib)


# ---- (a) OME-TIFF outputs ----------------------------------------------------------------------------


@pytest.fixture
def ome_input(tmp_path, rng):
    """An OME-Zarr input with pixel sizes in micrometres."""
    data = (rng.random((3, 20, 40)) * 1000).astype(np.uint16)
    path = tmp_path / "in.ome.zarr"
    write_output(data, path, scale=(2.0, 0.5, 0.25), units=("micrometer",) * 3)
    return open_input(path, chunks=(1, 16, 16)), data


@pytest.mark.parametrize("suffix", [".ome.tif", ".ome.tiff"])
def test_an_ome_tiff_output_is_ome_xml_with_axes_sizes_and_the_record(tmp_path, ome_input, suffix):
    source, data = ome_input
    out = tmp_path / f"out{suffix}"
    report = write_output(source.array, out, inputs=[source], provenance={"config": {"a": 1}})
    assert report.status == "written"
    pixels = ome_pixels(out)
    assert (pixels["SizeZ"], pixels["SizeY"], pixels["SizeX"]) == ("3", "20", "40")
    assert float(pixels["PhysicalSizeZ"]) == 2.0
    assert (float(pixels["PhysicalSizeY"]), float(pixels["PhysicalSizeX"])) == (0.5, 0.25)
    assert pixels["PhysicalSizeXUnit"] == "µm"
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "ZYX"
        np.testing.assert_array_equal(tif.asarray(), data)
    back = open_input(out)
    assert back.format == "ome-tiff"
    assert back.axes == "zyx"
    assert back.scale == (2.0, 0.5, 0.25)
    assert back.units == ("micrometer",) * 3
    record = describe(out)["convflow"]
    assert record["config"] == {"a": 1}
    assert "incomplete" not in record
    assert not Path(f"{out}.convflow-partial.zarr").exists()


def test_an_ome_tiff_resumes_like_other_tiffs(tmp_path, rng):
    data = rng.random((4, 32, 32)).astype(np.float32)
    clean, out = tmp_path / "clean.ome.tif", tmp_path / "out.ome.tif"
    write_output(da.from_array(data, chunks=(2, 16, 16)), clean)
    with pytest.raises(Boom):
        write_output(failing(data, (2, 16, 16), (1, 1, 0)), out, compute_kwargs=SYNC)
    assert describe(out)["incomplete"] is True
    report = write_output(da.from_array(data, chunks=(2, 16, 16)), out, resume=True)
    assert report.status == "resumed"
    assert tile_digest(out) == tile_digest(clean)
    assert write_output(data, out, resume=True).status == "complete"
    np.testing.assert_array_equal(open_input(out).array.compute(**SYNC), data)


def test_axes_ome_cannot_name_are_refused_before_compute(tmp_path, exploding):
    with pytest.raises(ArgumentError, match=r"axes='byx' cannot be written as OME-TIFF.*plain \.tif"):
        write_output(exploding((2, 16, 16), chunks=8), tmp_path / "o.ome.tif", axes="byx")


def test_run_dry_run_and_validate_accept_an_ome_tiff_output(tmp_path, monkeypatch, capsys):
    zarr.create_array(str(tmp_path / "in.zarr"), data=np.arange(32 * 48, dtype=np.uint16).reshape(32, 48))
    (tmp_path / "p.yaml").write_text(
        "input: {path: in.zarr}\n"
        "kernels: {g: {type: gaussian, sigma: 1}}\n"
        "stages: [{name: s, steps: [{kernel: g}]}]\n"
        "outputs: [{stage: s, path: out.ome.tif, dtype: uint16}]\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "p.yaml"]) == 0
    assert main(["run", "--dry-run", "p.yaml"]) == 0
    assert not (tmp_path / "out.ome.tif").exists()
    assert main(["run", "-q", "p.yaml"]) == 0, capsys.readouterr().err
    assert main(["run", "-q", "--resume", "p.yaml"]) == 0
    assert describe(tmp_path / "out.ome.tif")["convflow"]["stage"] == "s"
    assert ome_pixels(tmp_path / "out.ome.tif")["Type"] == "uint16"


# ---- (b) pixel sizes in plain TIFF outputs -----------------------------------------------------------


def test_a_tiff_output_keeps_the_inputs_pixel_sizes(tmp_path, ome_input):
    source, _ = ome_input
    out = tmp_path / "out.tif"
    write_output(source.array, out, inputs=[source])
    with tifffile.TiffFile(out) as tif:
        tags = tif.pages[0].tags
        assert tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
        x, y = tags["XResolution"].value, tags["YResolution"].value
    assert x[0] / x[1] == pytest.approx(1e4 / 0.25)  # pixels per cm
    assert y[0] / y[1] == pytest.approx(1e4 / 0.5)
    back = open_input(out)
    assert back.scale == (2.0, 0.5, 0.25)
    assert back.units == ("micrometer",) * 3


# ---- (c) axes: what the file names, and guesses refused where they hurt -------------------------------


def test_every_axis_a_tiff_names_is_kept_and_samples_are_never_spatial(tmp_path):
    # skimage's data/multipage_rgb.tif: two RGB pages stored plane by plane, series axes QSYX
    path = tmp_path / "multipage_rgb.tif"
    data = np.arange(2 * 3 * 16 * 20, dtype=np.uint8).reshape(2, 3, 16, 20)
    tifffile.imwrite(path, data, photometric="rgb", planarconfig="separate")
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "QSYX"
    image = open_input(path)
    assert image.axes == "qsyx"
    assert image.spatial_axes == (2, 3)
    assert not image.axes_guessed
    interleaved = tmp_path / "rgb.tif"
    tifffile.imwrite(interleaved, data.transpose(0, 2, 3, 1), photometric="rgb", metadata=None)
    assert open_input(interleaved).axes == "iyxs"


def test_a_plain_page_stack_is_still_a_guessed_volume(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((5, 16, 16), np.uint8), metadata=None)
    image = open_input(path)
    assert image.axes == "zyx"
    assert image.axes_guessed


def test_a_guessed_colour_axis_is_refused_and_asks_for_axes(tmp_path):
    rgb = da.zeros((20, 24, 3), chunks=(10, 12, 3), dtype=np.uint8)
    path = str(tmp_path / "rgb.zarr")
    da.to_zarr(rgb, path)
    with pytest.raises(
        InputFormatError, match=r"rgb\.zarr: its last axis has 3 entries.*give input\.axes.*'yxc'"
    ):
        open_input(path)
    assert open_input(path, axes="yxc").spatial_axes == (0, 1)
    info = describe(path)
    assert info["axes"] == "zyx"
    assert info["axes_guessed"] is True
    assert "axes:   zyx (guessed: the file names no axes; set input.axes" in format_description(info)


# ---- (e) inspect: NGFF version and levels; --help ----------------------------------------------------


def test_inspect_shows_the_ngff_version_and_levels(tmp_path):
    out = tmp_path / "p.ome.zarr"
    write_output(np.zeros((2, 16, 20), np.float32), out, format="ome-zarr-v0.5", pyramid_levels=3, axes="cyx")
    info = describe(out)
    assert info["ngff"] == "0.5"
    assert info["levels"] == "0 (2, 16, 20), 1 (2, 8, 10), 2 (2, 4, 5)"
    assert "axes_guessed" not in info
    text = subprocess.run(
        [sys.executable, "-m", "convflow", "inspect", str(out)], capture_output=True, text=True, check=True
    ).stdout
    assert re.search(r"^ngff: +0\.5$", text, re.M)
    assert re.search(r"^levels: +0 \(2, 16, 20\), 1 \(2, 8, 10\), 2 \(2, 4, 5\)$", text, re.M)
