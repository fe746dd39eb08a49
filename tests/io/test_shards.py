"""Sharded zarr v3 outputs and inputs (#12 item 5): one file per shard, each written whole by one task,
byte for byte what zarr-python writes; resumed per shard; sharded inputs decoded once per wave."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
import zarr
import zarr.codecs
from io_contract import SYNC, Boom, CountingStore, counting, failing_at, local_client
from test_cli import is_one_error_line, run_all
from test_cli_kill import CHUNK, SHAPE, start_and_kill
from test_cli_kill import SLOW_YAML as KILL_YAML
from zarr.storage import LocalStore

import convflow
from convflow.config import load_config
from convflow.errors import ArgumentError, ConfigError
from convflow.io import describe, write_output, write_outputs
from convflow.io._chunks import read_array
from convflow.pipeline import make_plan

BOX = np.ones((3, 3, 3))  # integer weights on integer data: every result is exact, in any order of sums


@pytest.fixture
def volume() -> np.ndarray:
    """A small uint16 volume of distinct small values, whose box sums float32 holds exactly."""
    return (np.arange(10 * 13 * 7, dtype=np.uint16) * 7 % 1000).reshape(10, 13, 7)


def expected(data: np.ndarray) -> np.ndarray:
    """The oracle: scipy on the whole array."""
    return ndi.convolve(data.astype(np.float64), BOX, mode="reflect")


def zarr_python(path: Path, values: np.ndarray, chunks: tuple[int, ...], shards: tuple[int, ...]) -> Path:
    """Write `values` with zarr-python alone, configured as convflow's output: zstd 3, fill 0, every chunk."""
    array = zarr.create_array(
        str(path),
        shape=values.shape,
        dtype=values.dtype,
        chunks=chunks,
        shards=shards,
        compressors=zarr.codecs.ZstdCodec(level=3),
        fill_value=0,
        dimension_names=tuple("zyx"),
        config={"write_empty_chunks": True},
    )
    array[...] = values
    return path


def stored_files(path: Path) -> dict[str, str]:
    """The sha256 of every file under the array `path` but its metadata, by relative name."""
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != "zarr.json"
    }


def shard_keys(shape: tuple[int, ...], shards: tuple[int, ...]) -> set[str]:
    """zarr v3's key of every shard of an array: one file each, and no other."""
    counts = [-(-n // s) for n, s in zip(shape, shards, strict=True)]
    return {"c/" + "/".join(map(str, index)) for index in np.ndindex(*counts)}


def metadata(path: Path) -> dict[str, Any]:
    """An array's zarr.json without its attributes (convflow's provenance, whose times differ)."""
    document = json.loads((path / "zarr.json").read_text())
    document.pop("attributes", None)
    return document


# ---- bytes: what zarr-python writes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("blocks", "chunks", "shards"),
    [
        ((3, 4, 7), (2, 3, 4), (4, 6, 8)),  # blocks smaller than a shard, not aligned: regridded
        ((8, 12, 8), (2, 3, 4), (4, 6, 8)),  # a block of several shards
        ((4, 6, 8), (2, 3, 4), (4, 6, 8)),  # a block per shard; every edge shard partial
        ((10, 13, 7), (5, 13, 7), (10, 13, 7)),  # one shard of one chunk per axis but z
    ],
)
def test_each_shard_is_one_file_with_the_bytes_zarr_python_writes(tmp_path, volume, blocks, chunks, shards):
    result = convflow.convolve(da.from_array(volume, chunks=blocks), BOX, mode="reflect")
    out = tmp_path / "out.zarr"
    report = write_output(result, out, dtype="uint16", chunks=chunks, shards=shards, axes="zyx")
    assert report.status == "written"
    assert report.blocks_total == report.blocks_written
    reference = zarr_python(tmp_path / "ref.zarr", expected(volume).astype(np.uint16), chunks, shards)
    files = stored_files(out)
    assert set(files) == shard_keys(volume.shape, shards)  # one file per shard, no chunk files
    assert files == stored_files(reference)
    assert metadata(out) == metadata(reference)
    assert zarr.open_array(out).shards == shards


@pytest.mark.parametrize("scheduler", ["threads", "synchronous", "processes"])
def test_every_scheduler_writes_the_same_shards(tmp_path, volume, scheduler):
    result = convflow.convolve(da.from_array(volume, chunks=(3, 4, 7)), BOX, mode="reflect")
    out = tmp_path / "out.zarr"
    kwargs: dict[str, Any] = {"scheduler": scheduler}
    if scheduler == "processes":
        kwargs["num_workers"] = 2
    write_outputs(
        [(result, out, {"dtype": "uint16", "chunks": (2, 3, 4), "shards": (4, 6, 8), "axes": "zyx"})],
        compute_kwargs=kwargs,
        wave_bytes=4 * 13 * 7 * 4,  # several waves
    )
    reference = zarr_python(tmp_path / "ref.zarr", expected(volume).astype(np.uint16), (2, 3, 4), (4, 6, 8))
    assert stored_files(out) == stored_files(reference)


@pytest.mark.distributed
def test_a_distributed_cluster_writes_the_same_shards(tmp_path, volume):
    result = convflow.convolve(da.from_array(volume, chunks=(3, 4, 7)), BOX, mode="reflect")
    out = tmp_path / "out.zarr"
    with local_client(workers=2, threads=1) as client:
        write_output(
            result,
            out,
            dtype="uint16",
            chunks=(2, 3, 4),
            shards=(4, 6, 8),
            axes="zyx",
            compute_kwargs={"scheduler": client},
        )
    reference = zarr_python(tmp_path / "ref.zarr", expected(volume).astype(np.uint16), (2, 3, 4), (4, 6, 8))
    assert stored_files(out) == stored_files(reference)


def test_a_sharded_output_reads_back_with_zarr_and_dask(tmp_path, volume):
    out = tmp_path / "out.zarr"
    write_output(da.from_array(volume, chunks=5), out, chunks=(2, 3, 4), shards=(4, 6, 4))
    array = zarr.open_array(out, mode="r")
    assert (array.chunks, array.shards) == ((2, 3, 4), (4, 6, 4))
    np.testing.assert_array_equal(array[...], volume)
    np.testing.assert_array_equal(da.from_zarr(str(out)).compute(**SYNC), volume)
    summary = describe(str(out))
    assert summary["incomplete"] is False
    assert summary["chunks"] == (4, 6, 4)  # what a reader reads a block at a time: a shard
    assert summary["codec"] == "zstd(level=3, checksum=False); shards (4, 6, 4) of chunks (2, 3, 4)"


def test_shards_of_minus_one_span_the_axis_in_whole_chunks(tmp_path, volume):
    out = tmp_path / "out.zarr"
    write_output(volume, out, chunks=(2, 3, 4), shards=(4, -1, -1))
    assert zarr.open_array(out).shards == (4, 15, 8)
    assert set(stored_files(out)) == shard_keys(volume.shape, (4, 15, 8))


# ---- resume per shard ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler", ["threads", pytest.param("distributed", marks=pytest.mark.distributed)])
def test_an_interrupted_sharded_output_resumes_computing_only_missing_shards(tmp_path, volume, scheduler):
    options = {"chunks": (2, 3, 4), "shards": (4, 6, 8), "dtype": "uint16"}
    clean, out = tmp_path / "clean.zarr", tmp_path / "out.zarr"
    data = volume.astype(np.float32)
    write_output(da.from_array(data, chunks=(4, 6, 8)), clean, **options)
    with pytest.raises(Boom):
        write_output(
            failing_at(da.from_array(data, chunks=(4, 6, 8)), (1, 1, 0)), out, compute_kwargs=SYNC, **options
        )
    assert describe(str(out))["incomplete"] is True
    stored = set(stored_files(out))
    assert 0 < len(stored) < 9
    before = {key: os.stat(out / key).st_ino for key in stored}
    seen: list[tuple[int, ...]] = []
    resumed = counting(data, (4, 6, 8), seen)
    with contextlib.ExitStack() as stack:
        if scheduler == "distributed":
            kwargs = {"scheduler": stack.enter_context(local_client(workers=2, threads=1))}
        else:
            kwargs = {"scheduler": scheduler}
        report = write_output(resumed, out, resume=True, compute_kwargs=kwargs, **options)
    assert report.status == "resumed"
    assert report.blocks_written == 9 - len(stored)
    if scheduler != "distributed":  # a Client ships a copy of the block function: `seen` stays here empty
        assert len(seen) == report.blocks_written
    assert all(os.stat(out / key).st_ino == inode for key, inode in before.items())  # kept, not rewritten
    assert stored_files(out) == stored_files(clean)
    assert describe(str(out))["incomplete"] is False


# test_cli_kill's slow run, its blocks of CHUNK^3 each stored as one shard of 2^3 chunks.
SHARD = CHUNK
SHARDS = (SHAPE[0] // SHARD) ** 3
SLOW_YAML = KILL_YAML.replace(
    f"chunks: [{CHUNK}, {CHUNK}, {CHUNK}]", f"chunks: [2, 2, 2], shards: [{SHARD}, {SHARD}, {SHARD}]"
)


@pytest.mark.slow
def test_a_sharded_run_killed_with_sigkill_resumes_per_shard_to_the_clean_bytes(tmp_path, rng):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    data = (rng.random(SHAPE) * 60000).astype(np.uint16)
    for folder in (killed, clean):
        folder.mkdir()
        zarr.create_array(str(folder / "in.zarr"), data=data, chunks=(SHARD,) * 3)
        (folder / "p.yaml").write_text(SLOW_YAML)
    assert "shards: [4, 4, 4]" in SLOW_YAML
    output = killed / "out" / "smoothed.zarr"

    before = start_and_kill(killed, output, kill_after=32)  # shard files: one per block here
    assert 32 <= len(before) < SHARDS
    assert zarr.open_array(str(output)).attrs["convflow"]["incomplete"] is True

    (plain,) = run_all([["run", "p.yaml"]], killed)
    (reference,) = run_all([["run", "p.yaml", "-q"]], clean)
    assert plain.returncode == 2
    assert is_one_error_line(plain), plain.stderr
    assert "--resume" in plain.stderr
    assert reference.returncode == 0, reference.stderr

    (resumed,) = run_all([["run", "p.yaml", "--resume"]], killed)
    assert resumed.returncode == 0, resumed.stderr
    after = stored_files(output)
    kept = {key for key in before if os.stat(output / key).st_ino == before[key][0]}
    assert kept == set(before)  # no shard the killed run finished was written again
    assert set(after) == shard_keys(SHAPE, (SHARD,) * 3)
    assert f"({SHARDS - len(before)}/{SHARDS} blocks)" in resumed.stdout
    assert after == stored_files(clean / "out" / "smoothed.zarr")
    assert zarr.open_array(str(output)).attrs["convflow"].get("incomplete") is not True


# ---- OME-Zarr 0.5 -------------------------------------------------------------------------------


def test_ome_zarr_05_levels_are_sharded_and_level_0_has_zarr_pythons_bytes(tmp_path, volume):
    result = convflow.convolve(da.from_array(volume, chunks=(3, 4, 7)), BOX, mode="reflect")
    out, plain = tmp_path / "out.ome.zarr", tmp_path / "plain.ome.zarr"
    common = {"format": "ome-zarr-v0.5", "dtype": "uint16", "chunks": (2, 3, 4), "pyramid_levels": 3}
    write_output(result, out, shards=(4, 6, 8), **common)
    write_output(result, plain, **common)
    reference = zarr_python(tmp_path / "ref.zarr", expected(volume).astype(np.uint16), (2, 3, 4), (4, 6, 8))
    assert stored_files(out / "0") == stored_files(reference)
    for level in ("0", "1", "2"):
        array = zarr.open_array(out / level, mode="r")
        assert array.shards is not None
        assert set(stored_files(out / level)) == shard_keys(array.shape, array.shards)
        np.testing.assert_array_equal(array[...], zarr.open_array(plain / level, mode="r")[...])
    assert zarr.open_array(out / "2").shape == (2, 3, 1)  # each level halves, rounding down


# ---- sharded inputs ------------------------------------------------------------------------------


@pytest.fixture
def sharded_input(tmp_path) -> tuple[np.ndarray, str]:
    """A (16, 16, 16) float32 volume in (2, 4, 4) chunks, sharded (4, 8, 8): 16 shards, 4 rows of 4."""
    data = np.random.default_rng(5).random((16, 16, 16), dtype=np.float32)
    path = str(tmp_path / "in.zarr")
    array = zarr.create_array(path, shape=data.shape, chunks=(2, 4, 4), shards=(4, 8, 8), dtype=data.dtype)
    array[...] = data
    return data, path


@pytest.mark.parametrize("scheduler", ["threads", "synchronous"])
def test_a_sharded_input_is_read_a_whole_shard_once_across_waves(tmp_path, sharded_input, scheduler):
    data, path = sharded_input
    store = CountingStore(LocalStore(path, read_only=True))
    node = zarr.open_array(store=store, mode="r")
    image = read_array(node, node.shards)  # as open_input reads it: a block per shard
    result = convflow.correlate(image, BOX, mode="mirror")
    out = tmp_path / "out.zarr"
    write_outputs([(result, out, {})], compute_kwargs={"scheduler": scheduler}, wave_bytes=4 * 16 * 16 * 4)
    assert store.reads == dict.fromkeys(shard_keys(data.shape, (4, 8, 8)), 1)  # four waves, halos shared
    assert not store.ranges  # each read whole
    want = ndi.correlate(data.astype(np.float64), BOX, mode="mirror")
    np.testing.assert_allclose(zarr.open_array(out)[...], want, rtol=1e-5)


def test_working_chunks_inside_a_shard_read_each_inner_chunk_once(tmp_path, sharded_input):
    data, path = sharded_input
    store = CountingStore(LocalStore(path, read_only=True))
    image = read_array(zarr.open_array(store=store, mode="r"), (2, 8, 8))  # two blocks per shard
    write_outputs([(convflow.correlate(image, BOX), tmp_path / "out.zarr", {})], compute_kwargs=SYNC)
    assert store.ranges == store.reads  # no shard decoded whole, let alone twice
    inner = math.prod((4 // 2, 8 // 4, 8 // 4))
    # Per block: the shard's index, then its inner chunks; each inner chunk once in all.
    assert store.ranges == dict.fromkeys(shard_keys(data.shape, (4, 8, 8)), 2 + inner)


def test_open_input_reads_a_sharded_input_in_blocks_of_whole_shards(tmp_path, sharded_input):
    data, path = sharded_input
    image = convflow.io.open_input(path)
    assert image.storage_chunks == (4, 8, 8)
    assert tuple(max(c) for c in image.array.chunks) == (4, 8, 8)
    ome = tmp_path / "in.ome.zarr"
    write_output(data, ome, format="ome-zarr-v0.5", chunks=(2, 4, 4), shards=(4, 8, 8))
    assert tuple(max(c) for c in convflow.io.open_input(str(ome)).array.chunks) == (4, 8, 8)


def test_a_large_shard_is_read_in_blocks_of_whole_inner_chunks(tmp_path):
    path = str(tmp_path / "big.zarr")  # metadata only: a 512 MiB shard of 32 x 128 x 128 chunks
    zarr.create_array(
        path, shape=(256, 1024, 1024), chunks=(32, 128, 128), shards=(256, 1024, 1024), dtype="u2"
    )
    image = convflow.io.open_input(path)
    assert image.storage_chunks == (256, 1024, 1024)
    # 64 MiB blocks (SHARD_BLOCK_BYTES), each a slab of whole inner chunks, eight to a shard.
    assert image.array.chunks == ((32,) * 8, (1024,), (1024,))


# ---- mistakes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunks": (2, 3, 4), "shards": (5, 6, 8)}, r"shards=\(5, 6, 8\): a shard holds whole chunks.*"),
        ({"chunks": (2, 3, 4), "shards": (4, 6)}, r"shards=\(4, 6\) needs one entry per axis"),
        ({"shards": (4, 6, 8), "format": "zarr-v2"}, r"shards=\(4, 6, 8\): only zarr v3 stores shards"),
        ({"shards": 4, "format": "ome-zarr"}, r"shards=4: only zarr v3.*written as ome-zarr"),
        ({"chunks": (2, 3, 4), "shards": (4, 0, 8)}, r"shards=\(4, 0, 8\): 0 is not a chunk length"),
    ],
)
def test_bad_shards_are_refused_before_anything_is_written(tmp_path, volume, exploding, kwargs, message):
    out = tmp_path / ("out.ome.zarr" if kwargs.get("format") == "ome-zarr" else "out.zarr")
    with pytest.raises(ArgumentError, match=message):
        write_output(exploding(volume.shape, chunks=4), out, **kwargs)
    assert not out.exists()


def test_shards_on_a_tiff_output_are_refused(tmp_path, volume):
    with pytest.raises(ArgumentError, match=r"shards=\(4, 6, 8\): only zarr v3.*written as tiff"):
        write_output(volume, tmp_path / "out.tif", shards=(4, 6, 8))


CONFIG = """\
input: {path: in.zarr}
kernels: {box: {type: box}}
stages: [{name: smooth, steps: [{kernel: box}]}]
outputs:
  - {stage: smooth, path: OUTPUT}
"""


def config_with(folder: Path, output: str) -> Path:
    zarr.create_array(str(folder / "in.zarr"), data=np.zeros((6, 8, 8), np.uint16), chunks=(2, 4, 4))
    path = folder / "p.yaml"
    path.write_text(CONFIG.replace("{stage: smooth, path: OUTPUT}", output))
    return path


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (
            "{stage: smooth, path: o.zarr, chunks: [2, 4, 4], shards: [2, 6, 4]}",
            r"p.yaml line 5, outputs\[0\].shards: shards \[2, 6, 4\] is not a whole number of chunks "
            r"\[2, 4, 4\] along every axis; a shard holds whole chunks, e.g. shards: \[2, 8, 4\]",
        ),
        (
            "{stage: smooth, path: o.zarr, chunks: [2, 4, 4], shards: [4, 4]}",
            r"outputs\[0\].shards: shards has 2 entries but chunks has 3",
        ),
        (
            "{stage: smooth, path: o.tif, shards: [2, 8, 8]}",
            r"outputs\[0\].shards: shards applies to zarr v3 outputs, and this output is written as tiff",
        ),
        (
            "{stage: smooth, path: o.zarr, format: zarr-v2, shards: [2, 8, 8]}",
            r"outputs\[0\].shards: .*written as zarr-v2; remove shards, or write zarr v3",
        ),
        (
            "{stage: smooth, path: o.ome.zarr, shards: [2, 8, 8]}",
            r"outputs\[0\].shards: .*written as ome-zarr; remove shards, or write format: ome-zarr-v0.5",
        ),
    ],
)
def test_config_shards_mistakes_name_the_key_and_the_fix(tmp_path, output, message):
    with pytest.raises(ConfigError, match=message):
        load_config(config_with(tmp_path, output))


def test_config_shards_against_the_inputs_chunks_name_the_key_on_the_command_line(tmp_path):
    config_with(tmp_path, "{stage: smooth, path: o.zarr, shards: [3, 8, 8]}")
    (plan,) = run_all([["plan", "p.yaml"]], tmp_path)
    assert plan.returncode == 2
    assert is_one_error_line(plan), plan.stderr
    assert "outputs[0].shards: shards=(3, 8, 8): a shard holds whole chunks" in plan.stderr
    assert "no chunks were given; give chunks too" in plan.stderr
    assert not (tmp_path / "o.zarr").exists()


def test_plan_shows_the_shard_shape_and_run_writes_it(tmp_path):
    config_with(tmp_path, "{stage: smooth, path: o.zarr, chunks: [2, 4, 4], shards: [6, 8, 8]}")
    plan, run = run_all([["plan", "p.yaml"]], tmp_path) + run_all([["run", "p.yaml", "-q"]], tmp_path)
    assert plan.returncode == 0, plan.stderr
    shown = "chunks (2, 4, 4) in shards (6, 8, 8) (one file each, 1.5 KiB a task holds per shard)"
    assert shown in plan.stdout  # float32 blocks: 6 x 8 x 8 x 4 bytes per shard
    assert run.returncode == 0, run.stderr
    assert set(stored_files(tmp_path / "o.zarr")) == {"c/0/0/0"}


def test_a_plan_counts_the_blocks_and_waves_a_sharded_run_computes(tmp_path):
    config_with(tmp_path, "{stage: smooth, path: o.zarr, chunks: [2, 4, 4], shards: [2, 8, 8]}")
    plan = make_plan(load_config(tmp_path / "p.yaml"))
    (target,) = plan.outputs
    assert target.array.numblocks == (3, 1, 1)  # (2, 4, 4) stage blocks, written a (2, 8, 8) shard each
    assert plan.waves(wave_bytes=2 * 8 * 8 * 4) == 3  # one shard per wave: each the blocks of a shard
    (run,) = run_all([["run", "p.yaml"]], tmp_path)
    assert run.returncode == 0, run.stderr
    assert "(3/3 blocks)" in run.stdout
