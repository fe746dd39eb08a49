"""HDF5 inputs (convflow/io/_hdf5.py): files written by h5py, read lazily, filtered exactly like scipy."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import dask.array as da
import h5py
import numpy as np
import pytest
from _oracle import assert_matches_scipy, scipy_reference
from io_contract import SYNC, ReaderContract, local_client

import convflow
from convflow.errors import InputFormatError
from convflow.io import describe, format_description, open_input


def write_h5(path: Path, name: str, data: np.ndarray, **options: object) -> str:
    """Write `data` as dataset `name` of the HDF5 file `path` with h5py (`options`: create_dataset's)."""
    with h5py.File(path, "a") as file:
        file.create_dataset(name, data=data, **options)
    return str(path)


class TestHDF5(ReaderContract):
    suffix = ".h5"

    def write_native(self, folder: Path, data: np.ndarray) -> str:
        return write_h5(folder / "native.h5", "/volumes/raw", data, chunks=(1, 10, 12), compression="gzip")

    def test_storage_chunks_and_codec_are_the_datasets(self, tmp_path: Path, data: np.ndarray) -> None:
        image = open_input(self.write_native(tmp_path, data))
        assert image.format == "hdf5"
        assert image.dataset == "/volumes/raw"
        assert image.storage_chunks == (1, 10, 12)
        assert image.codec == "gzip(level=4)"
        # Working chunks are whole HDF5 chunks, about 32 MiB: here the whole small volume.
        assert image.array.chunksize == data.shape

    def test_graph_pickles_without_the_data_or_a_file_handle(self, tmp_path: Path, data: np.ndarray) -> None:
        image = open_input(self.write_native(tmp_path, data), chunks=(1, 10, 12))
        image.array.sum().compute(**SYNC)  # opens the file in this process
        pickled = pickle.dumps(image.array)
        assert data.tobytes() not in pickled
        np.testing.assert_array_equal(pickle.loads(pickled).compute(**SYNC), data)

    def test_threads_read_one_file_concurrently(self, tmp_path: Path) -> None:
        values = np.random.default_rng(1).integers(0, 2**16, (64, 32, 32), dtype=np.uint16)
        path = write_h5(
            tmp_path / "many.h5", "v", values, chunks=(1, 16, 16), compression="gzip", shuffle=True
        )
        image = open_input(path, chunks=(1, 16, 16))
        np.testing.assert_array_equal(image.array.compute(scheduler="threads", num_workers=8), values)


# ---- exact filtering of 2-D, 3-D and 4-D datasets ----------------------------------------------------

CASES = {
    # id: (shape, chunks on disk, attributes, axes convflow should read, working chunks)
    "2d-no-attributes": ((23, 30), (8, 8), {}, "yx", (5, 7)),
    "2d-chunks-smaller-than-the-halo": ((17, 19), (4, 4), {}, "yx", (2, 3)),
    "3d-axes-attribute": ((6, 19, 22), (2, 8, 8), {"axes": "zyx"}, "zyx", (3, 6, 9)),
    "3d-batch-by-axes-attribute": ((3, 19, 22), (1, 8, 8), {"axes": "tyx"}, "tyx", (1, 10, 22)),
    "4d-no-attributes": ((2, 5, 12, 13), (1, 2, 6, 6), {}, "tzyx", (1, 2, 5, 13)),
    "4d-word-axes": (
        (2, 5, 12, 13),
        (1, 5, 12, 13),
        {"axes": ["channel", "z", "y", "x"]},
        "czyx",
        (1, 3, 4, 4),
    ),
}


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_filtered_hdf5_equals_scipy_on_the_whole_array(tmp_path, rng, case, dtype):
    shape, storage, attributes, axes, working = CASES[case]
    data = (rng.random(shape) * 1000).astype(dtype)
    path = tmp_path / "in.h5"
    with h5py.File(path, "w") as file:
        node = file.create_dataset(
            "/volumes/raw", data=data, chunks=storage, compression="gzip", shuffle=True
        )
        node.attrs.update(attributes)
        file.create_dataset("/volumes/labels", data=np.zeros(shape, np.uint8))
    image = open_input(path, dataset="/volumes/raw", chunks=working)
    assert image.axes == axes
    spatial = image.spatial_axes
    kernel = convflow.kernels.get("gaussian", sigma=1.2, ndim=len(spatial))
    for mode in ("reflect", "constant", "wrap"):
        result = convflow.convolve(image.array, kernel, mode=mode, axes=spatial)
        expected = scipy_reference("convolve", data, kernel, mode=mode, axes=spatial)
        assert_matches_scipy(
            result, expected, kernel=kernel, image=image.array, cval=0.0, compute_dtype=np.float32
        )


def test_even_kernel_across_hdf5_chunks_and_an_integer_result(tmp_path, rng):
    data = (rng.random((21, 26)) * 255).astype(np.uint8)
    path = write_h5(tmp_path / "e.hdf5", "img", data, chunks=(5, 5), compression="gzip")
    image = open_input(path, chunks=(4, 6))
    kernel = rng.random((4, 2))
    result = convflow.correlate(image.array, kernel, mode="nearest", dtype=np.uint8)
    expected = scipy_reference("correlate", data, kernel, mode="nearest")
    assert_matches_scipy(
        result, expected, kernel=kernel, image=image.array, cval=0.0, compute_dtype=np.float64, dtype=np.uint8
    )


# ---- schedulers: no handle crosses a process ---------------------------------------------------------


@pytest.fixture
def volume(tmp_path, rng):
    """A gzip-compressed 3-D dataset in a file with two datasets, and scipy's smoothed result."""
    data = (rng.random((8, 24, 20)) * 1000).astype(np.uint16)
    path = tmp_path / "v.h5"
    write_h5(path, "/a/raw", data, chunks=(2, 8, 8), compression="gzip")
    write_h5(path, "/a/other", data[:2])
    kernel = convflow.kernels.get("gaussian", sigma=1.0, ndim=3)
    return str(path), kernel, scipy_reference("convolve", data, kernel)


def _smoothed(path: str, kernel: convflow.kernels.Kernel) -> da.Array:
    return convflow.convolve(open_input(path, dataset="a/raw", chunks=(3, 8, 8)).array, kernel)


def test_the_threaded_scheduler_shares_one_handle_under_h5pys_lock(volume):
    path, kernel, expected = volume
    result = _smoothed(path, kernel).compute(scheduler="threads", num_workers=4)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-3)


@pytest.mark.slow
def test_the_processes_scheduler_opens_the_file_in_each_process(volume):
    path, kernel, expected = volume
    array = _smoothed(path, kernel)
    array.sum().compute(scheduler="threads")  # an open handle in this process must not travel
    result = array.compute(scheduler="processes", num_workers=2)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-3)


@pytest.mark.slow
@pytest.mark.distributed
def test_distributed_worker_processes_read_hdf5(volume):
    path, kernel, expected = volume
    with local_client(workers=2, threads=2, processes=True) as client:
        result = client.compute(_smoothed(path, kernel)).result()
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-3)


# ---- axes and pixel sizes from attributes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "axes"),
    [
        ({"axes": "CYX"}, "cyx"),
        ({"axes": np.array([b"t", b"y", b"x"])}, "tyx"),
        ({"dimension_labels": ["z", "y", "x"]}, "zyx"),
        ({"axistags": json.dumps({"axes": [{"key": "y"}, {"key": "x"}, {"key": "c"}]})}, "yxc"),
        ({"axes": "yx"}, "zyx"),  # the wrong length: not a naming, so the default
        ({"axes": ["time", "foo", "x"]}, "zyx"),  # a word convflow does not know: the default
    ],
    ids=["letters", "bytes-list", "dimension_labels", "ilastik-axistags", "wrong-length", "unknown-word"],
)
def test_axes_come_from_the_datasets_attributes(tmp_path, attributes, axes):
    path = write_h5(tmp_path / "a.h5", "d", np.zeros((3, 4, 5), np.float32))
    with h5py.File(path, "a") as file:
        file["d"].attrs.update(attributes)
    assert open_input(path).axes == axes


def test_dimension_scale_labels_give_axes(tmp_path):
    path = write_h5(tmp_path / "a.h5", "d", np.zeros((3, 4, 5), np.float32))
    with h5py.File(path, "a") as file:
        for dim, label in zip(file["d"].dims, "tyx", strict=True):
            dim.label = label
    assert open_input(path).axes == "tyx"
    assert open_input(path, axes="zyx").axes == "zyx"  # input.axes wins


def test_element_size_um_gives_pixel_sizes(tmp_path):
    path = write_h5(tmp_path / "a.h5", "d", np.zeros((2, 3, 4, 5), np.float32))
    with h5py.File(path, "a") as file:
        file["d"].attrs.update({"axes": "czyx", "element_size_um": [2.0, 0.5, 0.25]})
    image = open_input(path)
    assert image.scale == (1.0, 2.0, 0.5, 0.25)
    assert image.units == (None, "micrometer", "micrometer", "micrometer")


# ---- datasets: listing, picking, errors --------------------------------------------------------------


def test_a_file_of_several_datasets_is_listed_and_needs_one_named(tmp_path):
    path = write_h5(tmp_path / "f.h5", "/volumes/raw", np.zeros((4, 6, 8), np.uint8), chunks=(2, 3, 4))
    write_h5(tmp_path / "f.h5", "/volumes/labels", np.zeros((4, 6, 8), np.uint64))
    info = describe(path)
    assert info["datasets"] == {
        "/volumes/labels": {"shape": (4, 6, 8), "dtype": "uint64", "chunks": None},
        "/volumes/raw": {"shape": (4, 6, 8), "dtype": "uint8", "chunks": (2, 3, 4)},
    }
    text = format_description(info)
    assert "/volumes/raw: shape (4, 6, 8), uint8, chunks (2, 3, 4)" in text
    assert "/volumes/labels: shape (4, 6, 8), uint64, chunks none (contiguous)" in text
    with pytest.raises(InputFormatError, match=r"f\.h5: is an HDF5 file; name the dataset.*/volumes/labels"):
        open_input(path)
    with pytest.raises(
        InputFormatError, match=r"dataset 'volumes/ra' is not in it\. Did you mean '/volumes/raw'"
    ):
        open_input(path, dataset="volumes/ra")
    with pytest.raises(InputFormatError, match=r"dataset 'volumes' is a group, not a dataset.*/volumes/raw"):
        open_input(path, dataset="volumes")
    assert describe(path, dataset="volumes/raw")["chunks"] == (2, 3, 4)


def test_a_contiguous_dataset_is_read_in_working_chunks(tmp_path, rng):
    data = rng.random((40, 30))
    path = write_h5(tmp_path / "c.hdf", "c", data)
    image = open_input(path, chunks=(7, 30))
    assert image.storage_chunks is None
    assert image.codec == "none"
    np.testing.assert_array_equal(image.array.compute(**SYNC), data)


def test_unreadable_files_and_non_numeric_datasets_are_named(tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(InputFormatError, match=r"garbage\.h5: not a readable HDF5 file"):
        open_input(garbage)
    path = write_h5(tmp_path / "s.h5", "names", np.array([b"a", b"b"]))
    with pytest.raises(InputFormatError, match=r"dataset '/names' holds 1-d \|S1 data"):
        open_input(path)


# ---- filters from plugins ----------------------------------------------------------------------------


@pytest.fixture
def zstd_file(tmp_path, rng):
    """A dataset compressed with the zstd filter (id 32015), which only an HDF5 plugin decodes."""
    hdf5plugin = pytest.importorskip("hdf5plugin")
    data = (rng.random((6, 16, 16)) * 1000).astype(np.uint16)
    path = write_h5(tmp_path / "z.h5", "/raw", data, chunks=(2, 8, 8), **hdf5plugin.Zstd())
    return path, data


def test_a_plugin_filter_opens_when_hdf5plugin_is_installed(zstd_file):
    path, data = zstd_file
    image = open_input(path, chunks=(3, 8, 16))
    assert image.codec == "zstd"
    # spawned worker processes import hdf5plugin themselves before they read
    np.testing.assert_array_equal(image.array.compute(scheduler="processes", num_workers=2), data)


def test_without_the_plugin_the_error_names_the_filter_and_the_package(zstd_file, tmp_path):
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "hdf5plugin.py").write_text("raise ImportError('hdf5plugin hidden by the test')\n")
    (tmp_path / "p.yaml").write_text(
        "input: {path: z.h5, dataset: /raw}\n"
        "kernels: {g: {type: gaussian, sigma: 1, ndim: 3}}\n"
        "stages: [{name: s, steps: [{kernel: g}]}]\n"
        "outputs: [{stage: s, path: out.zarr}]\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{hidden}{os.pathsep}{root}", "HDF5_PLUGIN_PATH": str(hidden)}
    result = _convflow("run", "p.yaml", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "z.h5: dataset '/raw' is compressed with zstd (HDF5 filter id 32015)" in lines[0]
    assert "pip install hdf5plugin" in lines[0]
    assert not (tmp_path / "out.zarr").exists()


# ---- the command line --------------------------------------------------------------------------------


def _convflow(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m convflow ARGS`` in `cwd` (this worktree's convflow first on the path)."""
    root = Path(__file__).resolve().parents[2]
    env = env or {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, "-m", "convflow", *args],
        cwd=cwd,
        env={**env, "PYTHONWARNINGS": "error"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_config_runs_on_an_hdf5_dataset_and_inspect_lists_the_file(tmp_path, rng):
    data = (rng.random((2, 14, 18)) * 1000).astype(np.uint16)
    with h5py.File(tmp_path / "scan.h5", "w") as file:
        node = file.create_dataset("/volumes/raw", data=data, chunks=(1, 8, 8), compression="gzip")
        node.attrs["axes"] = "cyx"
        file.create_dataset("/volumes/mask", data=data > 500)
    (tmp_path / "p.yaml").write_text(
        "input: {path: scan.h5, dataset: /volumes/raw, chunks: [1, 5, 7]}\n"
        "kernels: {g: {type: gaussian, sigma: 1.5}}\n"
        "stages: [{name: s, steps: [{kernel: g, mode: nearest}]}]\n"
        "outputs: [{stage: s, path: out.zarr}]\n"
    )
    (tmp_path / "bad.yaml").write_text((tmp_path / "p.yaml").read_text().replace("/volumes/raw", "raw"))
    ran = _convflow("run", "-q", "p.yaml", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    out = open_input(tmp_path / "out.zarr")
    assert out.axes == "cyx"  # carried from the dataset's attribute: the kernel ran over y and x only
    kernel = convflow.kernels.get("gaussian", sigma=1.5)
    expected = scipy_reference("convolve", data, kernel, mode="nearest", axes=(1, 2))
    np.testing.assert_allclose(out.array.compute(**SYNC), expected, rtol=1e-5, atol=1e-3)
    assert out.provenance["inputs"][0]["path"].endswith("scan.h5")

    listed = _convflow("inspect", "scan.h5", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "/volumes/raw: shape (2, 14, 18), uint16, chunks (1, 8, 8)" in listed.stdout
    assert "/volumes/mask: shape (2, 14, 18), bool, chunks none (contiguous)" in listed.stdout
    one = _convflow("inspect", "scan.h5", "--dataset", "volumes/raw", cwd=tmp_path)
    assert "axes:    cyx" in one.stdout
    assert "codec:   gzip(level=4)" in one.stdout

    bad = _convflow("validate", "bad.yaml", cwd=tmp_path)
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1, bad.stderr
    assert "dataset 'raw' is not in it. Did you mean '/volumes/raw'?" in lines[0]
    assert "Datasets in this file: /volumes/mask, /volumes/raw" in lines[0]
