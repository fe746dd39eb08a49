"""W1 read from and written to an S3-compatible server with latency: convflow against dask (#14 item 4).

W1's volume (512^3 float32, 128^3 chunks; ``--scale`` shrinks every axis)
is put into an S3 server started on 127.0.0.1 in a process of its own
(``--server``: moto's server mode, from PyPI, the default; or s3rver, a
Node.js S3 server from npm that answers several times faster than moto on
two cores, so the server is less of the bottleneck), and reached through a
small delaying TCP proxy (also a process of its own) that holds back the
first bytes of every request by ``--latency`` seconds (default 0.020), as a
distant object store would.  Three contenders, each in a fresh process,
repeated ``--repeats`` times (median):

- ``convflow-s3``: ``convflow.io.open_input("s3://...")`` -> ``convolve``
  (gaussian sigma 2) -> ``convflow.io.write_output("s3://...")``;
- ``dask-s3``: ``dask.array.from_zarr`` -> dask-image's ``gaussian_filter``
  -> ``dask.array.to_zarr``, on the same store through the same proxy;
- ``convflow-local``: convflow on a local disk, no latency.

Prints the read+write throughput (input MiB per second) of each, and the
ratios against the targets: convflow-s3 at least 2x dask-s3, and within 20%
of convflow-local.

    python benchmarks/bench_remote.py                  # the full volume: run on a quiet machine
    python benchmarks/bench_remote.py --scale 0.25     # a quick check that it works
    npm install s3rver@3 && python benchmarks/bench_remote.py --server s3rver
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_engine import gaussian_kernel, workload

BUCKET = "bench"
# Each server's credentials: moto takes any, s3rver knows only its own.
KEYS = {"moto": "bench", "s3rver": "S3RVER"}
TARGET_VS_DASK, TARGET_VS_LOCAL = 2.0, 0.8
CONTENDERS = ("convflow-s3", "dask-s3", "convflow-local")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


# --- the delaying proxy --------------------------------------------------------------------------


def proxy(listen: int, upstream: int, latency: float) -> None:
    """Forward 127.0.0.1:`listen` to 127.0.0.1:`upstream`, holding each request back `latency` s.

    A request is what the client sends after the server last answered, so
    every request/response turn on a kept-alive connection pays once.
    """
    server = socket.create_server(("127.0.0.1", listen), backlog=256)
    while True:
        client, _ = server.accept()
        threading.Thread(target=_pipe_pair, args=(client, upstream, latency), daemon=True).start()


def _pipe_pair(client: socket.socket, upstream: int, latency: float) -> None:
    with client, socket.create_connection(("127.0.0.1", upstream)) as server:
        answered = True  # the next bytes from the client begin a request
        while True:
            ready, _, _ = select.select([client, server], [], [])
            if client in ready:
                data = client.recv(1 << 20)
                if not data:
                    return
                if answered:
                    time.sleep(latency)
                    answered = False
                server.sendall(data)
            if server in ready:
                data = server.recv(1 << 20)
                if not data:
                    return
                answered = True
                client.sendall(data)


def s3_options(endpoint: str) -> dict[str, Any]:
    """fsspec's storage options for the server at `endpoint`, with the credentials the driver set."""
    return {
        "endpoint_url": endpoint,
        "key": os.environ["AWS_ACCESS_KEY_ID"],
        "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
    }


def start_server(server: str, port: int, folder: Path) -> subprocess.Popen:
    """Start the S3 server on 127.0.0.1:`port`: moto (Python, in memory) or s3rver (Node.js, on disk)."""
    if server == "moto":
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    else:
        found = shutil.which("s3rver") or str(Path("node_modules/.bin/s3rver").resolve())
        if not os.path.exists(found):
            raise SystemExit("s3rver not found: `npm install s3rver@3` here, or put it on PATH")
        command = [found, "-d", str(folder / "s3rver"), "-a", "127.0.0.1", "-p", str(port), "-s"]
        command += ["--configure-bucket", BUCKET]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- one contender, in a fresh process -----------------------------------------------------------


def run_contender(contender: str, endpoint: str, local: Path, name: str) -> float:
    """Compute W1 once as `contender`; return the wall seconds from opening the input to the last write."""
    import dask.array as da
    import zarr
    from zarr.storage import FsspecStore

    import convflow
    from convflow.io import open_input, write_output

    options = s3_options(endpoint) | {"client_kwargs": {"region_name": "us-east-1"}}
    chunks = tuple(zarr.open_array(str(local / "in.zarr"), mode="r").chunks)  # every output stored as dask's
    started = time.perf_counter()
    if contender == "convflow-local":
        image = open_input(local / "in.zarr")
        result = convflow.convolve(image.array, gaussian_kernel())
        write_output(result, local / f"{name}.zarr", chunks=chunks, overwrite=True)
    elif contender == "convflow-s3":
        image = open_input(f"s3://{BUCKET}/in.zarr", storage_options=options)
        result = convflow.convolve(image.array, gaussian_kernel())
        write_output(
            result, f"s3://{BUCKET}/{name}.zarr", chunks=chunks, storage_options=options, overwrite=True
        )
    else:
        from dask_image import ndfilters

        source = zarr.open_array(
            FsspecStore.from_url(f"s3://{BUCKET}/in.zarr", storage_options=options, read_only=True)
        )
        result = ndfilters.gaussian_filter(da.from_zarr(source), 2.0)
        target = FsspecStore.from_url(f"s3://{BUCKET}/{name}.zarr", storage_options=options)
        da.to_zarr(result, target, overwrite=True)
    return time.perf_counter() - started


# --- the driver ----------------------------------------------------------------------------------


def put_input(w: Any, endpoint: str, local: Path) -> np.ndarray:
    """W1's input volume written locally and to the bucket, by zarr-python, straight to the server."""
    import boto3
    import zarr
    from zarr.storage import FsspecStore

    rng = np.random.default_rng(0)
    data = rng.random(w.shape, dtype=np.float32)
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    if BUCKET not in {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BUCKET)
    options = s3_options(endpoint)
    for store in (
        str(local / "in.zarr"),
        FsspecStore.from_url(f"s3://{BUCKET}/in.zarr", storage_options=options),
    ):
        array = zarr.create_array(store, shape=w.shape, chunks=w.chunks, dtype=w.dtype)
        array[...] = data
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="every axis of W1 times this")
    parser.add_argument("--latency", type=float, default=0.020, help="seconds added per request")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--server", choices=tuple(KEYS), default="moto", help="the S3 server (s3rver: npm install s3rver@3)"
    )
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    parser.add_argument("--proxy", nargs=3, type=float, help=argparse.SUPPRESS)  # listen upstream latency
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)  # contender endpoint folder name
    args = parser.parse_args(argv)
    if args.proxy:
        proxy(int(args.proxy[0]), int(args.proxy[1]), args.proxy[2])
        return 0
    if args.child:
        contender, endpoint, folder, name = args.child
        print(json.dumps({"seconds": run_contender(contender, endpoint, Path(folder), name)}))
        return 0

    w = workload("W1", args.scale)
    mib = w.voxels * 4 / 2**20
    server_port, proxy_port = free_port(), free_port()
    key = KEYS[args.server]
    os.environ |= {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": key}
    env = dict(os.environ)
    local = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    servers = [
        start_server(args.server, server_port, local),
        subprocess.Popen(
            [sys.executable, __file__, "--proxy", str(proxy_port), str(server_port), str(args.latency)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        wait_for(server_port)
        wait_for(proxy_port)
        direct, delayed = f"http://127.0.0.1:{server_port}", f"http://127.0.0.1:{proxy_port}"
        data = put_input(w, direct, local)
        print(
            f"W1 {w.shape} {w.dtype} in {w.chunks} chunks ({mib:.0f} MiB), {os.cpu_count()} cores, "
            f"{args.latency * 1e3:.0f} ms per request through the proxy to {args.server}, "
            f"{args.repeats} repeats"
        )
        medians = {}
        for contender in args.contenders:
            endpoint = direct if contender == "convflow-local" else delayed
            times = []
            for _ in range(args.repeats):
                name = f"out-{contender}"
                done = subprocess.run(
                    [sys.executable, __file__, "--child", contender, endpoint, str(local), name],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode != 0:
                    raise SystemExit(f"{contender} failed:\n{done.stderr}")
                times.append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
            medians[contender] = statistics.median(times)
            rounds = ", ".join(f"{t:.2f}" for t in times)
            rate = mib / medians[contender]
            print(f"  {contender:15s} {medians[contender]:7.2f} s  {rate:7.1f} MiB/s  ({rounds})")
        check_results(data, direct, local, args.contenders)
        if "convflow-s3" in medians and "dask-s3" in medians:
            ratio = medians["dask-s3"] / medians["convflow-s3"]
            met = "met" if ratio >= TARGET_VS_DASK else "NOT met"
            print(f"convflow-s3 vs dask-s3: {ratio:.2f}x (target >= {TARGET_VS_DASK:.0f}x: {met})")
        if "convflow-s3" in medians and "convflow-local" in medians:
            share = medians["convflow-local"] / medians["convflow-s3"]
            met = "met" if share >= TARGET_VS_LOCAL else "NOT met"
            print(
                f"convflow-s3 throughput / convflow-local: {share:.2f} (target >= {TARGET_VS_LOCAL}: {met})"
            )
    finally:
        for server in servers:
            server.terminate()
            server.wait()
        shutil.rmtree(local, ignore_errors=True)
    return 0


def check_results(data: np.ndarray, endpoint: str, local: Path, contenders: list[str]) -> None:
    """Every contender's output against scipy on the whole array (float32 tolerance)."""
    import scipy.ndimage as ndi
    import zarr
    from zarr.storage import FsspecStore

    expected = ndi.gaussian_filter(data, 2.0)
    options = s3_options(endpoint)
    for contender in contenders:
        name = f"out-{contender}"
        store: Any = (
            str(local / f"{name}.zarr")
            if contender == "convflow-local"
            else FsspecStore.from_url(f"s3://{BUCKET}/{name}.zarr", storage_options=options, read_only=True)
        )
        error = float(np.max(np.abs(zarr.open_array(store, mode="r")[...] - expected)))
        bound = 1e-5 * float(np.max(np.abs(data)))
        print(f"  {contender:15s} max |error| vs scipy {error:.1e} (bound {bound:.1e})")
        if error > bound:
            raise SystemExit(f"{contender}: result differs from scipy by {error}")


if __name__ == "__main__":
    sys.exit(main())
