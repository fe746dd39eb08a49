"""Previews (convflow/preview/_views.py, convflow/preview/_figure.py): what they show, and what they read.

Issue #7: look at the results.  A preview must read only the chunks it
shows, and a stage previewed on a crop must equal the same crop of a full run.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import zarr
import zarr.storage
from matplotlib.image import imread

from convflow.config import load_config
from convflow.errors import ArgumentError
from convflow.io import open_input, write_output
from convflow.pipeline import make_plan
from convflow.preview import image_preview, plan_preview, preview_config, preview_path
from convflow.preview._figure import contrast_limits, figure_pixels, render

# A volume far too large to read in a test (16 GB of uint16) whose chunks are mostly
# never written: zarr's fill value stands in for them, so it costs nothing to create.
HUGE, CHUNK, SIDE = (2000, 2000, 2000), (100, 100, 100), 128
# With SIDE=128 the windows are [936, 1064) (chunks 9 and 10) of the middle slices
# z, y, x = 1000 (chunk 10): yx reads (10, *, *), zx (*, 10, *), zy (*, *, 10).
WINDOW_CHUNKS = {key for key in itertools.product((9, 10), repeat=3) if 10 in key}


def _read_png(path: Path) -> np.ndarray:
    assert path.is_file()
    return imread(path)


def _huge_zarr(store: Any) -> zarr.Array:
    """The huge mostly-empty volume, with a bright cube in its middle 2 x 2 x 2 chunks."""
    array = zarr.create_array(store, shape=HUGE, chunks=CHUNK, dtype="uint16", fill_value=0)
    array[950:1050, 950:1050, 950:1050] = 1000
    return array


class CountingStore(zarr.storage.MemoryStore):
    """An in-memory zarr store that records every chunk key read."""

    def __init__(self) -> None:
        super().__init__()
        self.chunk_reads: list[tuple[int, ...]] = []

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        if key.startswith("c/"):
            self.chunk_reads.append(tuple(int(i) for i in key.split("/")[1:]))
        return await super().get(key, prototype, byte_range)


def test_volume_preview_reads_only_the_chunks_under_its_windows() -> None:
    store = CountingStore()
    volume = _huge_zarr(store)
    store.chunk_reads.clear()
    preview = image_preview(volume, max_side=SIDE)
    assert set(store.chunk_reads) == WINDOW_CHUNKS
    assert len(store.chunk_reads) <= 12  # four chunks per view, at most
    assert [[panel.values.shape for panel in row] for row in preview.rows] == [[(SIDE, SIDE)] * 3]
    assert [panel.title.splitlines()[1] for panel in preview.rows[0]] == [
        "yx @ z=1000",
        "zx @ y=1000",
        "zy @ x=1000",
    ]
    for panel in preview.rows[0]:
        assert panel.values.max() == 1000
        assert panel.values.min() == 0


def test_preview_path_of_huge_zarr_never_touches_chunks_beside_its_windows(tmp_path: Path) -> None:
    path = tmp_path / "huge.zarr"
    _huge_zarr(str(path))
    # Every chunk around the windows, (9, 9, 9) included although it holds data, is
    # made unreadable: reading any of them fails the preview.
    for key in itertools.product(range(8, 12), repeat=3):
        if key not in WINDOW_CHUNKS:
            chunk = path.joinpath("c", *map(str, key))
            chunk.parent.mkdir(parents=True, exist_ok=True)
            chunk.write_bytes(b"not a zstd frame")
    with pytest.raises(Exception):  # noqa: B017, PT011  # whatever zarr's codec raises: a real read fails
        zarr.open_array(str(path), mode="r")[900, 900, 900]
    out = preview_path(path, tmp_path / "huge.png", max_side=SIDE)
    title = image_preview(open_input(path), max_side=SIDE).title
    pixels = _read_png(out)
    assert pixels.shape[:2] == figure_pixels(1, 3, title=title)
    assert pixels[..., :3].var() > 0


def test_image_preview_shows_the_middle_slices_of_the_first_items() -> None:
    data = np.random.default_rng(7).random((5, 6, 7, 8))  # t, z, y, x
    preview = image_preview(data, max_side=4, items=2)
    assert len(preview.rows) == 2
    for t, row in enumerate(preview.rows):
        yx, zx, zy = (panel.values for panel in row)
        np.testing.assert_array_equal(yx, data[t, 3, 1:5, 2:6])
        np.testing.assert_array_equal(zx, data[t, 1:5, 3, 2:6])
        np.testing.assert_array_equal(zy, data[t, 1:5, 1:5, 4])
        assert row[0].title == f"image\nt={t}  yx @ z=3"
        assert [panel.axes for panel in row] == ["yx", "zx", "zy"]
        for panel in row:
            np.testing.assert_array_equal(panel.values, data[panel.where])


def test_image_preview_of_a_small_image_shows_all_of_it() -> None:
    data = np.arange(30).reshape(5, 6)
    preview = image_preview(da.from_array(data, chunks=2), name="ramp")
    [[panel]] = preview.rows
    np.testing.assert_array_equal(panel.values, data)
    assert panel.title == "ramp\nyx"


@pytest.mark.parametrize(
    ("keyword", "value"), [("max_side", 0), ("items", -1), ("max_side", 2.5), ("items", True)]
)
def test_image_preview_refuses_a_size_that_is_not_a_positive_integer(keyword: str, value: object) -> None:
    with pytest.raises(ArgumentError, match=rf"{keyword}={value!r} must be a positive integer"):
        image_preview(np.zeros((4, 4)), **{keyword: value})


def test_image_preview_refuses_axes_without_a_spatial_axis() -> None:
    with pytest.raises(ArgumentError, match="axes='tc' has no spatial axis"):
        image_preview(np.zeros((4, 4)), axes="tc")


def _write_config(folder: Path, input_path: str, chunks: list[int] | None = None) -> Path:
    """A pipeline with a chain of two halo passes and a combine, like configs/edges_2d.yaml."""
    config = folder / "edges.yaml"
    config.write_text(
        f"input: {{path: {input_path}, axes: zyx{', chunks: ' + str(chunks) if chunks else ''}}}\n"
        "kernels:\n"
        "  smooth: {type: gaussian, sigma: 1.0}\n"
        "  gx: {type: sobel, axis: x}\n"
        "  gy: {type: sobel, axis: y}\n"
        "stages:\n"
        "  - {name: smoothed, steps: [{kernel: smooth}]}\n"
        "  - {name: edges_x, source: smoothed, steps: [{kernel: gx, op: correlate}]}\n"
        "  - {name: edges_y, source: smoothed, steps: [{kernel: gy, op: correlate, mode: nearest}]}\n"
        "  - name: edges\n"
        "    combine: {op: magnitude, sources: [edges_x, edges_y]}\n"
        "outputs:\n"
        "  - {stage: edges, path: out/edges.zarr}\n"
        "  - {stage: smoothed, path: out/smoothed.tif, dtype: uint8}\n"
    )
    return config


@pytest.fixture
def volume_config(tmp_path: Path) -> Path:
    """A config over a (30, 40, 50) uint8 volume in (8, 12, 16) chunks, none aligned with the middle."""
    data = np.random.default_rng(3).integers(0, 255, (30, 40, 50), dtype=np.uint8)
    zarr.create_array(str(tmp_path / "volume.zarr"), data=data, chunks=(8, 12, 16))
    return _write_config(tmp_path, "volume.zarr")


def test_crop_of_every_stage_equals_the_same_crop_of_the_full_result(volume_config: Path) -> None:
    plan = make_plan(load_config(volume_config), strict=False)
    preview = plan_preview(plan, crop=20)
    assert preview.shown == "crop"
    names = ["input", "smoothed", "edges_x", "edges_y", "edges"]
    full = {name: plan.arrays[name].compute(scheduler="synchronous") for name in names}
    assert len(preview.rows) == 3  # yx, zx, zy
    for row in preview.rows:
        assert [panel.title.split("\n")[0] for panel in row] == ["input volume.zarr", *names[1:]]
        for name, panel in zip(names, row, strict=True):
            assert panel.values.dtype == full[name].dtype
            # A crop: windows of 16 along z (twice its chunk), 20 along y and x.
            assert panel.values.shape in ((20, 20), (16, 20))
            np.testing.assert_array_equal(panel.values, full[name][panel.where])


def test_crop_preview_computes_only_the_blocks_under_the_crop(tmp_path: Path) -> None:
    path = tmp_path / "volume.zarr"
    volume = zarr.create_array(str(path), shape=(96, 96, 96), chunks=(8, 8, 8), dtype="uint8", fill_value=0)
    volume[24:72, 24:72, 24:72] = np.random.default_rng(5).integers(0, 255, (48, 48, 48), dtype=np.uint8)
    # The crop's windows cover chunks 5 and 6 of each axis (voxels 40-55); two halo passes
    # of at most 4 voxels reach chunks 3 to 8.  Every other chunk is unreadable.
    for key in itertools.product(range(12), repeat=3):
        if not all(3 <= k <= 8 for k in key):
            chunk = path.joinpath("c", *map(str, key))
            chunk.parent.mkdir(parents=True, exist_ok=True)
            chunk.write_bytes(b"not a zstd frame")
    plan = make_plan(load_config(_write_config(tmp_path, "volume.zarr")), strict=False)
    with pytest.raises(Exception):  # noqa: B017, PT011  # whatever zarr's codec raises: a real read fails
        plan.arrays["edges"][:, :, :8].compute()
    preview = plan_preview(plan, crop=128)
    assert preview.shown == "crop"
    assert {panel.values.shape for row in preview.rows for panel in row} == {(16, 16)}
    assert all(panel.values.any() for row in preview.rows for panel in row)


def test_config_preview_shows_the_outputs_once_they_are_written(volume_config: Path) -> None:
    plan = make_plan(load_config(volume_config), strict=False)
    with pytest.raises(ArgumentError, match=r"show='outputs': .*edges.zarr does not exist"):
        plan_preview(plan, show="outputs")
    for target in plan.outputs:
        write_output(target.array, target.path, **target.options)
    preview = plan_preview(make_plan(load_config(volume_config), strict=False), max_side=24)
    assert preview.shown == "outputs"
    titles = [panel.title.split("\n")[0] for panel in preview.rows[0]]
    assert titles == ["input volume.zarr", "edges -> edges.zarr", "smoothed -> smoothed.tif"]
    edges, smoothed = (plan.arrays[name].compute() for name in ("edges", "smoothed"))
    for row in preview.rows:
        _, edges_panel, smoothed_panel = row
        np.testing.assert_array_equal(edges_panel.values, edges[edges_panel.where])
        assert smoothed_panel.values.dtype == np.uint8
        expected = np.clip(np.rint(smoothed[smoothed_panel.where]), 0, 255)
        np.testing.assert_array_equal(smoothed_panel.values, expected)
    # The crop stays available after a run.
    assert plan_preview(plan, show="crop").shown == "crop"


def test_preview_config_writes_a_picture_with_one_column_per_array(volume_config: Path) -> None:
    out = preview_config(volume_config, volume_config.parent / "pictures" / "edges.png", crop=20)
    plan = make_plan(load_config(volume_config), strict=False)
    title = plan_preview(plan, crop=20).title
    pixels = _read_png(out)
    assert pixels.shape[:2] == figure_pixels(3, 5, title=title)
    assert pixels[..., :3].var() > 0


def test_preview_config_refuses_an_unknown_show(volume_config: Path) -> None:
    with pytest.raises(ArgumentError, match="show='everything' is not one of"):
        preview_config(volume_config, volume_config.parent / "p.png", show="everything")


def test_render_lays_out_rows_of_panels_with_blank_cells(tmp_path: Path) -> None:
    ramp = np.linspace(-1.0, 3.0, 200).reshape(10, 20)
    rows = [[("ramp", ramp), ("line", np.sin(np.arange(50.0)))], [("mask", ramp > 0)]]
    out = render(rows, tmp_path / "grid.png", title="three panels")
    pixels = _read_png(out)
    assert pixels.shape[:2] == figure_pixels(2, 2, title="three panels")
    height, width = figure_pixels(2, 2, title="three panels")
    blank = pixels[height - 300 :, width // 2 + 10 :, :3]  # the missing fourth panel
    assert blank.min() == 1.0
    assert pixels[..., :3].var() > 0


@pytest.mark.parametrize(
    ("rows", "name", "match"),
    [
        ([], "p.png", "render got no panels"),
        ([[("cube", np.zeros((2, 2, 2)))]], "p.png", "panel 'cube' holds a 3-d float64 array"),
        ([[("ramp", np.zeros((2, 2)))]], "p.docx", r"cannot write a picture to '.*p\.docx'"),
    ],
)
def test_render_refuses_what_it_cannot_draw(tmp_path: Path, rows: list[Any], name: str, match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        render(rows, tmp_path / name)
    assert not (tmp_path / name).exists()


def test_contrast_ignores_outliers_and_centres_signed_data() -> None:
    assert contrast_limits(np.r_[np.arange(1000.0), 1e9, np.nan]) == (10.0, 990.0, "gray")
    assert contrast_limits(np.linspace(-1, 3, 101)) == (pytest.approx(-2.96), pytest.approx(2.96), "RdBu_r")
    assert contrast_limits(np.full(5, np.nan)) == (0.0, 1.0, "gray")
    assert contrast_limits(np.full(5, 4)) == (3.5, 4.5, "gray")
