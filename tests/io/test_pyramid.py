"""OME-Zarr pyramids (io/_ome.py downsample, io/_write.py): mean and gaussian levels, from Python and configs.

Every output is read back with ome-zarr-py's own reader and validated with
ome-zarr-models, both written independently of convflow.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
import zarr
from io_contract import SYNC, Boom, chunk_digest, failing

import convflow
from convflow.cli import main
from convflow.config import load_config
from convflow.engine import block_graph, cast_result, from_dask
from convflow.engine._blocks import DaskSource
from convflow.errors import ArgumentError, ConfigError, ResumeError
from convflow.io import _ome, _write, open_input, write_output
from convflow.io._chunks import read_array
from convflow.io._waves import tile_waves
from convflow.pipeline import make_plan

ome_reader = pytest.importorskip("ome_zarr.reader")
ome_io = pytest.importorskip("ome_zarr.io")
models_04 = pytest.importorskip("ome_zarr_models.v04.image")
models_05 = pytest.importorskip("ome_zarr_models.v05.image")


def read_with_ome_zarr(path: str | Path) -> tuple[list[np.ndarray], dict]:
    """Return every level and the metadata of the image at `path`, as ome-zarr-py reads them."""
    (node, *_) = list(ome_reader.Reader(ome_io.parse_url(str(path)))())
    return [np.asarray(level) for level in node.data], node.metadata


def validate(path: str | Path, version: str) -> None:
    """Raise unless ome-zarr-models accepts `path` as an NGFF `version` image."""
    model = models_04.Image if version == "0.4" else models_05.Image
    model.from_zarr(zarr.open_group(str(path), mode="r"))


def gaussian_level(previous: np.ndarray, axes: str, dtype: np.dtype) -> np.ndarray:
    """scipy's gaussian-then-subsample of one level: sigma 2/3 on the spatial axes, every 2nd pixel."""
    sigma = [2 / 3 if a in "zyx" and n > 1 else 0.0 for a, n in zip(axes, previous.shape, strict=True)]
    smooth = ndi.gaussian_filter(previous.astype(np.float64), sigma, mode="reflect", truncate=4.0)
    keep = tuple(
        slice(0, n // 2 * 2, 2) if s else slice(None) for s, n in zip(sigma, previous.shape, strict=True)
    )
    return smooth[keep].astype(dtype)


@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-zarr-v0.5"])
@pytest.mark.parametrize(
    "chunks", [(3, 2, 3), (2, 7, 8), (3, 20, 22)], ids=["smaller-than-halo", "mid", "whole"]
)
def test_gaussian_levels_equal_scipy_on_the_level_before(tmp_path, rng, fmt, chunks):
    data = rng.random((3, 20, 22)).astype(np.float32)
    out = tmp_path / "g.ome.zarr"
    write_output(
        da.from_array(data, chunks=chunks),
        out,
        format=fmt,
        axes="cyx",
        pyramid_levels=4,
        pyramid_method="gaussian",
        scale=(1.0, 0.5, 0.25),
        units=(None, "micrometer", "micrometer"),
        compute_kwargs=SYNC,
    )
    version = "0.4" if fmt == "ome-zarr" else "0.5"
    validate(out, version)
    levels, metadata = read_with_ome_zarr(out)
    assert [level.shape for level in levels] == [(3, 20, 22), (3, 10, 11), (3, 5, 5), (3, 2, 2)]
    np.testing.assert_array_equal(levels[0], data)
    for previous, level in itertools.pairwise(levels):
        np.testing.assert_allclose(level, gaussian_level(previous, "cyx", np.float32), rtol=1e-5, atol=1e-6)
    # A kept pixel sits where it was: no half-pixel shift, unlike a mean.
    transforms = metadata["coordinateTransformations"]
    assert transforms[2] == [{"type": "scale", "scale": [1.0, 2.0, 1.0]}]
    assert [a.get("unit") for a in metadata["axes"]] == [None, "micrometer", "micrometer"]
    group = zarr.open_group(str(out), mode="r")
    multiscale = (group.attrs["multiscales"] if version == "0.4" else group.attrs["ome"]["multiscales"])[0]
    assert multiscale["type"] == "gaussian"


def test_gaussian_levels_of_an_integer_output_are_rounded_and_clipped(tmp_path, rng):
    data = (rng.random((4, 18, 18)) * 65535).astype(np.uint16)
    out = tmp_path / "u.ome.zarr"
    write_output(da.from_array(data, chunks=5), out, pyramid_levels=3, pyramid_method="gaussian")
    validate(out, "0.4")
    levels, _ = read_with_ome_zarr(out)
    for previous, level in itertools.pairwise(levels):
        assert level.dtype == np.uint16
        expected = np.clip(np.rint(gaussian_level(previous, "zyx", np.float64)), 0, 65535)
        # float32 compute: a value within rounding of a .5 may round either way
        assert np.abs(level.astype(np.float64) - expected).max() <= 1


def test_mean_levels_read_back_with_ome_zarr_py(tmp_path, rng):
    data = rng.random((8, 12, 16))
    out = tmp_path / "m.ome.zarr"
    write_output(da.from_array(data, chunks=(3, 5, 7)), out, format="ome-zarr-v0.5", pyramid_levels=3)
    validate(out, "0.5")
    levels, metadata = read_with_ome_zarr(out)
    np.testing.assert_allclose(levels[1], data.reshape(4, 2, 6, 2, 8, 2).mean(axis=(1, 3, 5)), rtol=1e-12)
    assert metadata["coordinateTransformations"][1][1] == {"type": "translation", "translation": [0.5] * 3}


def test_each_level_is_written_wave_by_wave(tmp_path, rng, monkeypatch):
    data = rng.random((16, 32, 32)).astype(np.float32)
    computed: list[int] = []
    real = _write.compute_graphs

    def counting(graphs, compute_kwargs, *args, **kwargs):
        graphs = list(graphs)
        computed.append(len(graphs))
        return real(graphs, compute_kwargs, *args, **kwargs)

    monkeypatch.setattr(_write, "compute_graphs", counting)
    monkeypatch.setattr("convflow.io._waves.WAVE_BYTES", 4 * 8 * 8 * 8)  # about one level-1 block a wave
    out = tmp_path / "w.ome.zarr"
    write_output(da.from_array(data, chunks=8), out, pyramid_levels=3, compute_kwargs=SYNC)
    _, level1, level2 = computed
    assert level1 > 1  # 8 blocks of level 1, in several waves
    assert level2 >= 1
    np.testing.assert_allclose(
        open_input(out, dataset="1").array.compute(**SYNC),
        data.reshape(8, 2, 16, 2, 16, 2).mean(axis=(1, 3, 5)),
        rtol=1e-6,
    )


def test_a_resumed_gaussian_pyramid_is_identical_to_a_clean_one(tmp_path, rng):
    data = rng.random((4, 20, 24)).astype(np.float32)
    options = {"format": "ome-zarr", "pyramid_levels": 3, "pyramid_method": "gaussian"}
    clean, out = tmp_path / "clean.ome.zarr", tmp_path / "out.ome.zarr"
    write_output(da.from_array(data, chunks=(2, 10, 12)), clean, **options)
    with pytest.raises(Boom):
        write_output(failing(data, (2, 10, 12), (1, 1, 0)), out, compute_kwargs=SYNC, **options)
    with pytest.raises(ResumeError, match=r"pyramid_method: stored \"gaussian\", this run \"mean\""):
        write_output(
            da.from_array(data, chunks=(2, 10, 12)), out, resume=True, format="ome-zarr", pyramid_levels=3
        )
    report = write_output(da.from_array(data, chunks=(2, 10, 12)), out, resume=True, **options)
    assert report.status == "resumed"
    assert chunk_digest(out) == chunk_digest(clean)


def dask_level(previous: zarr.Array, factors: tuple[int, ...], method: str) -> np.ndarray:
    """A level as main computed it before #12's block levels: one dask graph over the level before."""
    level = da.from_zarr(previous)
    dtype = previous.dtype
    if method == "mean":
        smaller = da.coarsen(np.mean, level, dict(enumerate(factors)), trim_excess=True)
    else:
        smaller = level
        for axis, factor in enumerate(factors):
            if factor > 1:
                weights = _ome.gaussian_weights(2 * factor / 6)
                smaller = convflow.correlate(smaller, weights, mode="reflect", axes=(axis,))
        smaller = smaller[tuple(slice(0, n // f * f, f) for n, f in zip(level.shape, factors, strict=True))]
    return smaller.map_blocks(cast_result, dtype, dtype=dtype).compute(**SYNC)


@pytest.mark.parametrize("method", ["mean", "gaussian"])
@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-zarr-v0.5"])
@pytest.mark.parametrize(
    ("shape", "chunks", "dtype"),
    [
        ((6, 20, 22), (3, 7, 9), np.float32),
        ((5, 33, 18), (5, 8, 4), np.uint16),
        ((9, 16, 16), (2, 3, 5), np.float64),
    ],
    ids=["odd-chunks", "uint16", "small-chunks"],
)
def test_levels_are_the_bytes_zarr_python_writes_of_the_whole_level_graph(
    tmp_path, rng, method, fmt, shape, chunks, dtype
):
    # #12: levels >= 1 are made block by block from the stored level before; their chunks are the
    # bytes zarr-python writes of what one dask graph over that level computed before.
    data = (rng.random(shape) * 1000).astype(dtype)
    out = tmp_path / "p.ome.zarr"
    write_output(
        da.from_array(data, chunks=chunks),
        out,
        format=fmt,
        chunks=chunks,
        pyramid_levels=4,
        pyramid_method=method,
        compute_kwargs=SYNC,
    )
    reference = tmp_path / "reference.ome.zarr"
    shutil.copytree(out, reference)
    for level in (1, 2, 3):
        previous = zarr.open_array(str(out / str(level - 1)), mode="r")
        factors = tuple(2 if n > 1 else 1 for n in previous.shape)
        expected = dask_level(previous, factors, method)
        for chunk in (reference / str(level)).rglob("*"):
            if chunk.is_file() and chunk.name not in {"zarr.json", ".zarray", ".zattrs"}:
                chunk.unlink()
        zarr.open_array(str(reference / str(level)), mode="r+")[...] = expected
    assert chunk_digest(out) == chunk_digest(reference)


def test_a_level_makes_tasks_only_for_the_blocks_of_its_wave(tmp_path):
    # A level of a 65536^3 volume: made from block coordinates, one wave's tasks as for 16384^3.
    graphs = {}
    for side in (16384, 65536):
        stored = zarr.create_array(
            str(tmp_path / f"{side}.zarr"), shape=(side,) * 3, chunks=(128,) * 3, dtype=np.uint16
        )
        previous = from_dask(read_array(stored, stored.chunks))
        for method in _ome.PYRAMID_METHODS:
            level = _ome.downsample(previous, (2, 2, 2), np.dtype(np.uint16), method, (128,) * 3)
            assert not any(isinstance(a, DaskSource) for a in _all_inputs(level))
            wave = next(tile_waves([level]))
            graph, keys = block_graph([(level, blocks) for _, blocks in wave])
            graphs[side, method] = (len(keys), len(graph))
    for method in _ome.PYRAMID_METHODS:
        assert graphs[65536, method] == graphs[16384, method]


def _all_inputs(array):
    """`array` and every block array it reads, directly or not."""
    found, pending = [], [array]
    while pending:
        found.append(pending.pop())
        pending.extend(found[-1].inputs())
    return found


def test_a_bad_pyramid_method_is_named(tmp_path):
    with pytest.raises(ArgumentError, match=r"pyramid_method='median' is not a way.*'mean', 'gaussian'"):
        write_output(np.zeros((4, 4)), tmp_path / "x.ome.zarr", pyramid_levels=2, pyramid_method="median")


# ---- from a config ---------------------------------------------------------------------------------


CONFIG = """\
input: {path: in.ome.zarr}
kernels: {g: {type: gaussian, sigma: 1}}
stages: [{name: s, steps: [{kernel: g}]}]
outputs:
  - stage: s
    path: out.ome.zarr
    format: ome-zarr-v0.5
    pyramid: {levels: 3, method: gaussian}
  - stage: s
    path: plain.ome.zarr
    units: [nanometer, nanometer, nanometer]
    scale: [4.0, 2.0, 2.0]
"""


@pytest.fixture
def project(tmp_path, rng):
    """An NGFF 0.4 input with pixel sizes (written with ome-zarr-py) and the config above as p.yaml."""
    writer = pytest.importorskip("ome_zarr.writer")
    data = (rng.random((6, 16, 20)) * 1000).astype(np.uint16)
    group = zarr.open_group(str(tmp_path / "in.ome.zarr"), mode="w", zarr_format=2)
    writer.write_image(
        data,
        group,
        axes="zyx",
        scale={"z": 1.0, "y": 0.5, "x": 0.5},
        axes_units=dict.fromkeys("zyx", "micrometer"),
        scale_factors=None,
        storage_options={"chunks": (3, 8, 8)},
    )
    (tmp_path / "p.yaml").write_text(CONFIG)
    return tmp_path, data


def test_a_config_writes_a_pyramid_scale_and_units(project, monkeypatch, capsys):
    folder, data = project
    monkeypatch.chdir(folder)
    assert main(["run", "-q", "p.yaml"]) == 0, capsys.readouterr().err
    validate(folder / "out.ome.zarr", "0.5")
    levels, metadata = read_with_ome_zarr(folder / "out.ome.zarr")
    smoothed = ndi.gaussian_filter(data.astype(np.float64), 1.0, truncate=4.0)
    np.testing.assert_allclose(levels[0], smoothed, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(levels[1], gaussian_level(levels[0], "zyx", np.float32), rtol=1e-5, atol=1e-4)
    assert len(levels) == 3
    # scale and units carried from the input by default
    assert metadata["coordinateTransformations"][0] == [{"type": "scale", "scale": [1.0, 0.5, 0.5]}]
    assert [a["unit"] for a in metadata["axes"]] == ["micrometer"] * 3
    validate(folder / "plain.ome.zarr", "0.4")
    levels, metadata = read_with_ome_zarr(folder / "plain.ome.zarr")
    assert len(levels) == 1
    assert metadata["coordinateTransformations"][0] == [{"type": "scale", "scale": [4.0, 2.0, 2.0]}]
    assert [a["unit"] for a in metadata["axes"]] == ["nanometer"] * 3


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "path: plain.ome.zarr",
            "path: plain.zarr",
            r"line 12, outputs\[1\]\.scale: scale applies to OME-Zarr outputs, and 'plain\.zarr' is written "
            r"as zarr; remove scale, or write a \.ome\.zarr",
        ),
        ("method: gaussian", "method: median", r"outputs\[0\]\.pyramid\.method: 'median' is not a pyramid"),
        ("levels: 3", "levels: 0", r"outputs\[0\]\.pyramid\.levels"),
        (
            "scale: [4.0, 2.0, 2.0]",
            "scale: [4.0, 2.0]",
            r"line 12, outputs\[1\]\.scale: scale=\(4\.0, 2\.0\) needs one positive number per axis "
            r"\(3 axes\)",
        ),
        ("format: ome-zarr-v0.5", "format: ome-zarr-v0.6", r"'ome-zarr-v0\.6' is not an output format"),
    ],
    ids=["scale-on-zarr", "method", "levels", "scale-length", "format"],
)
def test_config_mistakes_name_the_key(project, old, new, expected):
    folder, _ = project
    (folder / "bad.yaml").write_text(CONFIG.replace(old, new))
    with pytest.raises(ConfigError, match=expected):
        make_plan(load_config(folder / "bad.yaml"))


@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-zarr-v0.5"])
def test_a_run_stopped_while_creating_the_levels_resumes_to_a_clean_pyramid(tmp_path, rng, monkeypatch, fmt):
    # A SIGKILL after level "0" was created but before "1": --resume failed with KeyError: '1'
    # (found by tests/faults, #15 item 5). An output is now created whole, then renamed into place.
    data = rng.random((4, 20, 24)).astype(np.float32)
    options = {"format": fmt, "pyramid_levels": 3}
    clean, out = tmp_path / "clean.ome.zarr", tmp_path / "out.ome.zarr"
    write_output(da.from_array(data, chunks=(2, 10, 12)), clean, **options)
    create = _write._zarr.create_array

    def stop_at_level_1(store, name, **kwargs):
        if name == "1":
            raise KeyboardInterrupt
        return create(store, name, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(_write._zarr, "create_array", stop_at_level_1)
        with pytest.raises(KeyboardInterrupt):
            write_output(da.from_array(data, chunks=(2, 10, 12)), out, **options)
    assert not out.exists()
    report = write_output(da.from_array(data, chunks=(2, 10, 12)), out, resume=True, **options)
    assert report.status == "written"  # nothing was there to resume
    assert chunk_digest(out) == chunk_digest(clean)
    validate(out, "0.4" if fmt == "ome-zarr" else "0.5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.ome.zarr", "out.ome.zarr"]
