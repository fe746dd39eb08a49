"""Inputs and outputs at URLs, against real servers on 127.0.0.1 (#14 items 1-3).

An S3-compatible server (moto's, in a thread of this process) with
credentials checked: an IAM user's key is the only one it accepts, so a
wrong key is denied as on AWS.  A plain threaded HTTP server serves a local
OME-Zarr read-only.  Configs run end to end as ``convflow`` subprocesses;
the oracle is scipy.ndimage on the whole array, and every object written is
compared byte for byte with the chunk files of the same run on a local disk
(which are zarr-python's own bytes).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile
import zarr
from test_cli import is_one_error_line, run_all
from zarr.storage import FsspecStore

from convflow import io
from convflow.errors import (
    InputFormatError,
    InputNotFoundError,
    OutputError,
    OutputExistsError,
    OutputLockedError,
    OutputPathError,
)
from convflow.io import _lease, _stores

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")
moto_settings = pytest.importorskip("moto.settings")

REGION = "us-east-1"
SHAPE, CHUNKS = (16, 20, 24), (8, 10, 12)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class S3:
    """The running server: its endpoint, the one key it accepts, and a boto3 client."""

    def __init__(self, endpoint: str, key: str, secret: str) -> None:
        self.endpoint, self.key, self.secret = endpoint, key, secret
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )

    @property
    def options(self) -> dict[str, Any]:
        """storage_options that reach the server with the accepted key."""
        return {
            "endpoint_url": self.endpoint,
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"region_name": REGION},
        }

    def bucket(self, name: str, *, versioned: bool = False) -> str:
        self.client.create_bucket(Bucket=name)
        if versioned:
            self.client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object in `bucket`, key -> bytes."""
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                found[item["Key"]] = self.client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return found


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    """moto's S3 server on a free port of 127.0.0.1, accepting one IAM user's key only."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    before = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    try:
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="setup",
            aws_secret_access_key="x",
        )
        iam.create_user(UserName="convflow")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="convflow", PolicyName="all", PolicyDocument=json.dumps(policy))
        made = iam.create_access_key(UserName="convflow")["AccessKey"]
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # from now on every request is authenticated
        yield S3(endpoint, made["AccessKeyId"], made["SecretAccessKey"])
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = before
        server.stop()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def http_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A folder served read-only by a threaded HTTP server on 127.0.0.1: (folder, its base URL)."""
    folder = tmp_path_factory.mktemp("served")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return (np.random.default_rng(20261203).random(SHAPE) * 1000).astype(np.float32)


def _put_zarr(s3: S3, url: str, data: np.ndarray, zarr_format: int) -> None:
    """Write `data` to `url` with zarr-python itself."""
    store = FsspecStore.from_url(url, storage_options=s3.options)
    array = zarr.create_array(
        store, shape=data.shape, chunks=CHUNKS, dtype=data.dtype, zarr_format=zarr_format
    )
    array[...] = data


def _env(s3: S3) -> dict[str, str]:
    """The environment of a subprocess that finds the server and its key the usual way (AWS_*)."""
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": s3.key,
        "AWS_SECRET_ACCESS_KEY": s3.secret,
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "PYTHONWARNINGS": "error",
    }


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "convflow", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _yaml(input_path: str, outputs: list[dict[str, Any]], options: dict[str, Any] | None) -> str:
    """A config smoothing `input_path` with a gaussian, as JSON text (YAML reads JSON)."""
    source: dict[str, Any] = {"path": input_path}
    if options is not None:
        source["storage_options"] = options
    config = {
        "input": source,
        "kernels": {"smooth": {"type": "gaussian", "sigma": 1.0, "ndim": 3}},
        "stages": [{"name": "smoothed", "steps": [{"kernel": "smooth", "mode": "nearest"}]}],
        "outputs": outputs,
    }
    return json.dumps(config, indent=1)


def _expected(data: np.ndarray) -> np.ndarray:
    return ndi.gaussian_filter(data.astype(np.float32), 1.0, mode="nearest")


def test_zarr_v2_and_v3_arrays_read_from_s3_equal_scipy(s3, data):
    bucket = s3.bucket("read-both")
    for zarr_format in (2, 3):
        url = f"s3://{bucket}/v{zarr_format}.zarr"
        _put_zarr(s3, url, data, zarr_format)
        image = io.open_input(url, storage_options=s3.options)
        assert image.format == ("zarr" if zarr_format == 3 else "zarr-v2")
        assert image.shape == SHAPE
        assert image.storage_chunks == CHUNKS
        assert "secret" not in repr(image)
        np.testing.assert_array_equal(image.array.compute(scheduler="synchronous"), data)


def test_config_from_s3_to_s3_writes_zarr_v2_v3_and_ome_zarr_equal_to_a_local_run(s3, data, tmp_path):
    bucket = s3.bucket("round-trip")
    _put_zarr(s3, f"s3://{bucket}/in.zarr", data, 3)
    formats = [
        ("zarr", "a.zarr"),
        ("zarr-v2", "b.zarr"),
        ("ome-zarr", "c.ome.zarr"),
        ("ome-zarr-v0.5", "d.zarr"),
    ]
    remote = [
        {
            "stage": "smoothed",
            "path": f"s3://{bucket}/out/{name}",
            "format": fmt,
            "storage_options": s3.options,
        }
        for fmt, name in formats
    ]
    local = [{"stage": "smoothed", "path": f"local/{name}", "format": fmt} for fmt, name in formats]
    for written in (remote, local):  # an OME-Zarr pyramid, level 1 written from the stored level 0
        written[2]["pyramid"] = {"levels": 2}
    # What a run killed while probing would leave: the next run's probe removes it.
    s3.client.put_object(Bucket=bucket, Key=f"out/a.zarr.convflow-probe-{'0' * 32}", Body=b"")
    (tmp_path / "remote.yaml").write_text(_yaml(f"s3://{bucket}/in.zarr", remote, s3.options))
    (tmp_path / "local.yaml").write_text(_yaml(f"s3://{bucket}/in.zarr", local, s3.options))
    runs = run_all([["run", "remote.yaml"], ["run", "local.yaml", "-q"]], tmp_path)
    for result in runs:
        assert result.returncode == 0, result.stderr
    objects = s3.objects(bucket)
    for _, name in formats:
        prefix = f"out/{name}/"
        written = {key[len(prefix) :]: value for key, value in objects.items() if key.startswith(prefix)}
        folder = tmp_path / "local" / name
        chunk_files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file() and p.name not in (".zattrs", "zarr.json", ".zarray", ".zgroup")
        }
        chunks = {
            k: v
            for k, v in written.items()
            if k.rsplit("/", 1)[-1] not in (".zattrs", "zarr.json", ".zarray", ".zgroup")
        }
        assert chunks == chunk_files, name  # the bytes zarr-python writes, object for file
        node = zarr.open(
            store=FsspecStore.from_url(
                f"s3://{bucket}/out/{name}", storage_options=s3.options, read_only=True
            ),
            mode="r",
        )
        array = node if isinstance(node, zarr.Array) else node["0"]
        np.testing.assert_allclose(array[...], _expected(data), rtol=1e-5, atol=1e-3)
        assert node.attrs["convflow"].get("incomplete") is not True
    leftovers = [k for k in objects if "convflow-lease" in k or "convflow-waves" in k or "probe" in k]
    assert leftovers == []


def test_credentials_in_storage_options_leave_no_trace_in_any_output_byte_or_printed_line(
    s3, data, tmp_path, monkeypatch
):
    bucket = s3.bucket("secrets")
    _put_zarr(s3, f"s3://{bucket}/in.zarr", data, 2)
    outputs = [
        {"stage": "smoothed", "path": f"s3://{bucket}/out.ome.zarr", "storage_options": s3.options},
        {"stage": "smoothed", "path": "out/local.zarr"},
        {"stage": "smoothed", "path": "out/local.tif"},
    ]
    (tmp_path / "p.yaml").write_text(_yaml(f"s3://{bucket}/in.zarr", outputs, s3.options))
    printed = run_all(
        [["validate", "p.yaml"], ["plan", "p.yaml"], ["preview", "p.yaml", "-o", "before.png"]], tmp_path
    )
    printed.append(_run(["run", "p.yaml", "--verbose"], tmp_path))
    for name, value in _env(s3).items():  # inspect finds the store the usual way, from the environment
        monkeypatch.setenv(name, value)
    printed += run_all(
        [["run", "p.yaml"], ["inspect", f"s3://{bucket}/out.ome.zarr"]], tmp_path
    )  # refused: exists
    assert [r.returncode for r in printed] == [0, 0, 0, 0, 2, 0], [r.stderr for r in printed]
    assert f"s3://{bucket}/out.ome.zarr" in printed[1].stdout  # plan names the URL
    secrets = [s3.secret.encode(), s3.key.encode()]
    every = [r.stdout.encode() + r.stderr.encode() for r in printed]
    every += list(s3.objects(bucket).values())
    every += [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != "p.yaml"]
    assert (tmp_path / "before.png").stat().st_size > 0
    for blob in every:
        for secret in secrets:
            assert secret not in blob
    record = zarr.open_array(str(tmp_path / "out" / "local.zarr")).attrs["convflow"]
    assert record["config"]["input"]["storage_options"]["secret"] == _stores.REDACTED
    assert record["config"]["input"]["storage_options"]["endpoint_url"] == s3.endpoint
    assert record["inputs"][0]["path"] == f"s3://{bucket}/in.zarr"
    with tifffile.TiffFile(tmp_path / "out" / "local.tif") as tif:
        np.testing.assert_allclose(tif.asarray(), _expected(data), rtol=1e-5, atol=1e-3)


def test_ome_zarr_served_over_http_is_read_end_to_end(http_folder, data, tmp_path):
    folder, base = http_folder
    io.write_output(data, str(folder / "img.ome.zarr"), chunks=CHUNKS, axes="zyx", scale=(2.0, 0.5, 0.5))
    url = f"{base}/img.ome.zarr"
    image = io.open_input(url)
    assert image.format == "ome-zarr"
    assert image.scale == (2.0, 0.5, 0.5)
    (tmp_path / "p.yaml").write_text(_yaml(url, [{"stage": "smoothed", "path": "out.ome.zarr"}], None))
    runs = run_all([["run", "p.yaml", "-q"], ["inspect", url], ["preview", url, "-o", "url.png"]], tmp_path)
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    assert (tmp_path / "url.png").stat().st_size > 0
    assert "ome-zarr" in runs[1].stdout
    assert "ngff" in runs[1].stdout
    result = zarr.open_group(str(tmp_path / "out.ome.zarr"))
    np.testing.assert_allclose(result["0"][...], _expected(data), rtol=1e-5, atol=1e-3)
    with pytest.raises(OutputError, match="read-only"):
        io.check_output(f"{base}/out.zarr", data)


def test_existing_output_is_refused_without_overwrite_and_the_input_is_never_an_output(s3, data, tmp_path):
    bucket = s3.bucket("safety")
    _put_zarr(s3, f"s3://{bucket}/in.zarr", data, 3)
    io.write_output(data, f"s3://{bucket}/out.zarr", storage_options=s3.options)
    before = s3.objects(bucket)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        io.write_output(2 * data, f"s3://{bucket}/out.zarr", storage_options=s3.options)
    assert s3.objects(bucket) == before
    image = io.open_input(f"s3://{bucket}/in.zarr", storage_options=s3.options)
    for same in (f"S3://{bucket}//in.zarr/", f"s3://{bucket}/./in.zarr", f"s3://{bucket}/in.zarr/c.zarr"):
        with pytest.raises(OutputPathError, match="never writes over its input"):
            io.check_output(same, image.array, inputs=[image], storage_options=s3.options)
    report = io.write_output(2 * data, f"s3://{bucket}/out.zarr", storage_options=s3.options, overwrite=True)
    assert report.status == "written"
    again = io.open_input(f"s3://{bucket}/out.zarr", storage_options=s3.options)
    np.testing.assert_array_equal(again.array.compute(), 2 * data)
    with pytest.raises(OutputPathError, match="TIFF outputs are written to local paths"):
        io.check_output(f"s3://{bucket}/out.tif", data, storage_options=s3.options)


def test_wrong_credentials_missing_bucket_and_unreachable_port_are_one_error_line_naming_the_url(
    s3, data, tmp_path
):
    bucket = s3.bucket("errors")
    _put_zarr(s3, f"s3://{bucket}/in.zarr", data, 3)
    wrong = {**s3.options, "secret": "not-the-secret-0123456789"}
    closed = {**s3.options, "endpoint_url": f"http://127.0.0.1:{_free_port()}"}
    cases = {
        "wrong-in": (f"s3://{bucket}/in.zarr", wrong, "out.zarr", None, "access denied"),
        "missing-in": ("s3://no-such-bucket/in.zarr", s3.options, "out.zarr", None, "no-such-bucket"),
        "closed-in": (f"s3://{bucket}/in.zarr", closed, "out.zarr", None, "cannot reach"),
        "wrong-out": (f"s3://{bucket}/in.zarr", s3.options, f"s3://{bucket}/o.zarr", wrong, "access denied"),
        "missing-out": (
            f"s3://{bucket}/in.zarr",
            s3.options,
            "s3://no-such-bucket/o.zarr",
            s3.options,
            "not found",
        ),
        "closed-out": (f"s3://{bucket}/in.zarr", s3.options, f"s3://{bucket}/o.zarr", closed, "cannot reach"),
    }
    commands = []
    for name, (source, options, out, out_options, _) in cases.items():
        output: dict[str, Any] = {"stage": "smoothed", "path": out}
        if out_options is not None:
            output["storage_options"] = out_options
        (tmp_path / f"{name}.yaml").write_text(_yaml(source, [output], options))
        commands.append(["run", f"{name}.yaml"])
    results = run_all(commands, tmp_path)
    for (name, (source, _, out, _, words)), result in zip(cases.items(), results, strict=True):
        assert result.returncode == 2, (name, result.stderr)
        assert is_one_error_line(result), (name, result.stderr)
        assert words in result.stderr, (name, result.stderr)
        named = source if name.endswith("-in") else out
        assert named.split("://")[1].split("/")[0] in result.stderr, (name, result.stderr)
        assert "not-the-secret" not in result.stderr
        assert s3.secret not in result.stderr
    assert not (tmp_path / "out.zarr").exists()
    assert not [k for k in s3.objects(bucket) if k.startswith("o.zarr")]
    with pytest.raises(InputFormatError, match="access denied"):
        io.open_input(f"s3://{bucket}/in.zarr", storage_options=wrong)
    with pytest.raises(InputNotFoundError, match="no-such-bucket"):
        io.open_input("s3://no-such-bucket/in.zarr", storage_options=s3.options)


SLOW_SHAPE, SLOW_CHUNK = (16, 16, 16), 4


def test_run_writing_to_s3_killed_mid_run_resumes_writing_only_missing_objects_byte_identical(s3, tmp_path):
    bucket = s3.bucket("killed", versioned=True)
    data = (np.random.default_rng(5).random(SLOW_SHAPE) * 60000).astype(np.uint16)
    source = zarr.create_array(
        str(tmp_path / "in.zarr"), shape=SLOW_SHAPE, chunks=(SLOW_CHUNK,) * 3, dtype=data.dtype
    )
    source[...] = data
    chunk = [SLOW_CHUNK] * 3
    outputs = [
        {
            "stage": "smoothed",
            "path": f"s3://{bucket}/out.zarr",
            "dtype": "uint16",
            "chunks": chunk,
            "storage_options": s3.options,
        }
    ]
    (tmp_path / "p.yaml").write_text(_yaml("in.zarr", outputs, None))
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "in.zarr").symlink_to(tmp_path / "in.zarr")
    (clean / "p.yaml").write_text(_yaml("in.zarr", [{**outputs[0], "path": "out.zarr"}], None))
    total = (SLOW_SHAPE[0] // SLOW_CHUNK) ** 3

    def stored() -> list[str]:
        answer = s3.client.list_objects_v2(Bucket=bucket, Prefix="out.zarr/c/")
        return [item["Key"] for item in answer.get("Contents", [])]

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
        lease = s3.client.get_object(Bucket=bucket, Key="out.zarr.convflow-lease")["Body"].read()
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert json.loads(lease)["pid"] == process.pid
    left = s3.objects(bucket)
    assert "out.zarr.convflow-lease" in left
    for blob in left.values():  # the lease, the record of waves, metadata, chunks: no credentials
        assert s3.secret.encode() not in blob
        assert s3.key.encode() not in blob
    before = set(stored())
    assert 8 <= len(before) < total
    killed = FsspecStore.from_url(f"s3://{bucket}/out.zarr", storage_options=s3.options, read_only=True)
    assert zarr.open_array(killed).attrs["convflow"]["incomplete"] is True
    plain = _run(["run", "p.yaml"], tmp_path)
    reference = _run(["run", "p.yaml", "-q"], clean)
    assert plain.returncode == 2, plain.stderr
    assert is_one_error_line(plain), plain.stderr
    assert "--resume" in plain.stderr
    assert reference.returncode == 0, reference.stderr
    resumed = _run(["run", "p.yaml", "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({total - len(before)}/{total} blocks)" in resumed.stdout
    versions = s3.client.list_object_versions(Bucket=bucket, Prefix="out.zarr/c/")["Versions"]
    keys = [v["Key"] for v in versions]
    assert len(keys) == len(set(keys)) == total  # every chunk object put once: none written twice
    objects = s3.objects(bucket)
    for key in keys:
        assert objects[key] == (clean / key).read_bytes(), key
    assert "out.zarr.convflow-lease" not in objects
    record = zarr.open_array(
        store=FsspecStore.from_url(f"s3://{bucket}/out.zarr", storage_options=s3.options, read_only=True)
    ).attrs["convflow"]
    assert record.get("incomplete") is not True
    assert len(record["resumed"]) == 1


def assert_second_writer_refused(url: str, options: dict[str, Any]) -> None:
    """While a lease on `url` is held, another thread's check and another take are refused."""
    found = {}

    def second() -> None:
        try:
            _lease.check_free(url, options)
        except OutputLockedError as err:
            found["error"] = str(err)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join()
    assert "another run is writing it" in found["error"]
    with pytest.raises(OutputLockedError, match="another run is writing it"):
        _lease.take({url: {"config": 2}}, {url: options})


def test_the_lease_object_refuses_a_second_writer_and_is_taken_over_once_stale(s3, monkeypatch):
    bucket = s3.bucket("lease")
    url = f"s3://{bucket}/out.zarr"
    held = _lease.take({url: {"config": 1}}, {url: s3.options})
    try:
        assert_second_writer_refused(url, s3.options)
        # Another host's lease that stopped being renewed goes stale after EXPIRY seconds.
        body = json.loads(s3.client.get_object(Bucket=bucket, Key="out.zarr.convflow-lease")["Body"].read())
        s3.client.put_object(
            Bucket=bucket,
            Key="out.zarr.convflow-lease",
            Body=json.dumps({**body, "host": "elsewhere", "token": "x"}),
        )
        with pytest.raises(OutputLockedError, match="elsewhere"):
            _lease.take({url: {"config": 2}}, {url: s3.options})
        monkeypatch.setattr(_lease, "EXPIRY", 0.0)
        time.sleep(1.1)  # LastModified has whole seconds
        taken = _lease.take({url: {"config": 2}}, {url: s3.options})
        taken.release()
    finally:
        held.release()
    assert "Contents" not in s3.client.list_objects_v2(Bucket=bucket)


def test_sharded_output_at_a_url_holds_the_shards_written_on_a_disk(s3, data, tmp_path):
    bucket = s3.bucket("shards")
    options = {"chunks": CHUNKS, "shards": (16, 20, 24), "dtype": "uint16"}
    io.write_output(data, f"s3://{bucket}/s.zarr", storage_options=s3.options, **options)
    io.write_output(data, str(tmp_path / "s.zarr"), **options)
    objects = {k[len("s.zarr/") :]: v for k, v in s3.objects(bucket).items() if k.startswith("s.zarr/c/")}
    files = {
        p.relative_to(tmp_path / "s.zarr").as_posix(): p.read_bytes()
        for p in (tmp_path / "s.zarr" / "c").rglob("*")
        if p.is_file()
    }
    assert objects == files
    assert len(objects) == 1


def test_file_urls_are_the_local_paths_they_name(data, tmp_path):
    report = io.write_output(data, (tmp_path / "a b.zarr").as_uri(), chunks=CHUNKS)
    assert report.path == str(tmp_path / "a b.zarr")
    image = io.open_input((tmp_path / "a b.zarr").as_uri())
    np.testing.assert_array_equal(image.array.compute(), data)
    with pytest.raises(OutputPathError, match="never writes over its input"):
        io.check_output((tmp_path / "a b.zarr").as_uri(), image.array, inputs=[image], overwrite=True)


def test_a_live_holder_renews_its_lease_object_so_other_hosts_see_it_alive(s3, monkeypatch):
    bucket = s3.bucket("heartbeat")
    url = f"s3://{bucket}/out.zarr"
    monkeypatch.setattr(_lease, "HEARTBEAT", 0.3)
    held = _lease.take({url: None}, {url: s3.options})
    try:
        first = s3.client.head_object(Bucket=bucket, Key="out.zarr.convflow-lease")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # LastModified has whole seconds
            time.sleep(0.3)
            now = s3.client.head_object(Bucket=bucket, Key="out.zarr.convflow-lease")
            if now["LastModified"] > first["LastModified"]:
                break
        assert now["LastModified"] > first["LastModified"]
        held.check(url)  # renewed by its own conditional put: still ours
    finally:
        held.release()
    assert "Contents" not in s3.client.list_objects_v2(Bucket=bucket)


def test_redact_hides_userinfo_signatures_and_secret_options():
    url = "https://user:hunter2@host/a.zarr?X-Amz-Credential=AKIA&X-Amz-Signature=f00&v=1"
    shown = _stores.redact_text(f"error: {url} failed")
    assert "hunter2" not in shown
    assert "AKIA" not in shown
    assert "f00" not in shown
    assert "v=1" in shown
    options = {
        "key": "AKIA",
        "secret": "s",
        "token": "t",
        "client_kwargs": {"aws_session_token": "z"},
        "anon": False,
    }
    assert "AKIA" not in json.dumps(_stores.redact(options, options=True))
    assert '"z"' not in json.dumps(_stores.redact({"storage_options": options}))
    assert _stores.normalise("s3://B/x//y/") == "s3://b/x/y"
    with contextlib.suppress(ImportError):
        import gcsfs  # noqa: F401

        return
    with pytest.raises(Exception, match="pip install gcsfs"):
        io.open_input("gs://bucket/a.zarr")
