"""URLs as inputs and outputs: object stores (s3://, gs://), HTTP (read-only) and file://, and their secrets.

A plain path or a ``file://`` URL is a local path, read and written by the
rest of `convflow.io` as files.  Any other URL is a store of zarr-python's
own kind, `zarr.storage.FsspecStore` (fsspec with s3fs, gcsfs or aiohttp
under it), so every object written is the one zarr-python would write;
``storage_options`` (endpoint, region, anonymous access, profile, keys) go
to that filesystem, and credentials otherwise come from the environment and
config files the filesystem library reads (for S3: ``AWS_*`` variables,
``~/.aws``).  fsspec was picked over obstore because zarr-python's
FsspecStore is in every zarr 3 install, s3fs already does the conditional
puts the lease needs (``mode="create"``), and HTTP reads come with it.

Secrets never leave this process in text: `redact` gives the form of a URL
or of storage options that may be recorded or printed (userinfo, signed-URL
signatures and secret-looking option values replaced), and `redact_text`
does the same to every URL inside a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import posixpath
import re
import sys
import urllib.parse
import uuid
from typing import Any

from convflow.errors import ArgumentError, ConvflowError, InputFormatError, InputNotFoundError, OutputError

# URL scheme -> the package that reads it.
SCHEMES = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "http": "aiohttp", "https": "aiohttp"}
READ_ONLY = frozenset({"http", "https"})
REDACTED = "<redacted>"
# Option names and URL query parameters whose values are secrets (AWS, GCS, Azure SAS, basic auth...).
_SECRET = re.compile(
    r"key|secret|token|passw|session|credential|signature|auth|cert|private|^sig$|^sv$|^se$", re.IGNORECASE
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>)\]]+")
# Fewer retries than s3fs's default five: an unreachable endpoint is an error in seconds, not a minute.
_PROBE_RETRIES = 2


def scheme(path: Any) -> str | None:
    """The URL scheme of `path` in lower case, or None for a plain path.

    Examples
    --------
    >>> scheme("S3://bucket/a.zarr"), scheme("data/a.zarr"), scheme("C:/data")
    ('s3', None, None)
    """
    found = _SCHEME.match(str(path))
    return found.group(1).lower() if found else None


def is_url(path: Any) -> bool:
    """Whether `path` is a URL that convflow reads (a remote store, or file://)."""
    return scheme(path) in (*SCHEMES, "file")


def is_remote(path: Any) -> bool:
    """Whether `path` is a URL of a remote store (not a local path, not file://)."""
    return scheme(path) in SCHEMES


def local_path(path: str) -> str:
    """`path` as a local path: a ``file://`` URL becomes the path it names, anything else stays.

    Examples
    --------
    >>> local_path("file:///data/a%20b.zarr"), local_path("data/a.zarr")
    ('/data/a b.zarr', 'data/a.zarr')
    """
    if scheme(path) != "file":
        return path
    parsed = urllib.parse.urlsplit(path)
    return urllib.parse.unquote(parsed.path) or "/"


def normalise(url: str) -> str:
    """The canonical form of a remote URL, to compare outputs with inputs: no userinfo, no query.

    Examples
    --------
    >>> normalise("S3://user:pw@Bucket//data/./a.zarr/")
    's3://bucket/data/a.zarr'
    """
    parsed = urllib.parse.urlsplit(url)
    host = (parsed.hostname or "") + (f":{parsed.port}" if parsed.port else "")
    path = posixpath.normpath("/" + parsed.path.lstrip("/")) if parsed.path.strip("/") else ""
    kind = parsed.scheme.lower()
    return f"{'gs' if kind == 'gcs' else kind}://{host.lower()}{path.rstrip('/')}"


def join(url: str, *names: str) -> str:
    """`url` with `names` appended as path parts.

    Examples
    --------
    >>> join("s3://b/a.zarr/", "0")
    's3://b/a.zarr/0'
    """
    return "/".join([url.rstrip("/"), *(n.strip("/") for n in names)])


def redact(value: Any, *, options: bool = False) -> Any:
    """`value` with every secret replaced: URLs' userinfo and signatures, secret-named storage options.

    Every string has the URLs in it redacted (`redact_text`); lists and
    dicts are redacted at any depth, and a dict under a ``storage_options``
    key (or `value` itself, with `options`) has the values of its
    secret-named keys (key, secret, token, password, session, credentials,
    ...) replaced, at any depth.

    Examples
    --------
    >>> redact("https://me:pw@host/a.zarr?X-Amz-Signature=abc&v=1")
    'https://<redacted>@host/a.zarr?X-Amz-Signature=<redacted>&v=1'
    >>> redact({"input": {"storage_options": {"key": "AKIA", "anon": False}}})
    {'input': {'storage_options': {'key': '<redacted>', 'anon': False}}}
    """
    if isinstance(value, dict):
        redacted = {}
        for k, v in value.items():
            if options and isinstance(k, str) and _SECRET.search(k) and v not in (None, False, ""):
                redacted[k] = REDACTED
            else:
                redacted[k] = redact(v, options=options or k == "storage_options")
        return redacted
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, options=options) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    """`text` with every URL in it redacted (userinfo, secret query parameters).

    Examples
    --------
    >>> redact_text("s3://key:secret@bucket/a.zarr: access denied")
    's3://<redacted>@bucket/a.zarr: access denied'
    """
    return _URL_IN_TEXT.sub(lambda found: _redact_url(found.group()), text)


def _redact_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    netloc = parsed.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parsed.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{k}={REDACTED if _SECRET.search(k) else v}" for k, v in pairs)
    return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, query, parsed.fragment))


def check_storage_options(storage_options: Any, what: str = "storage_options") -> dict[str, Any]:
    """Return `storage_options` as a dict (None: empty), or raise naming it."""
    if storage_options is None:
        return {}
    if not isinstance(storage_options, dict) or not all(isinstance(k, str) for k in storage_options):
        raise ArgumentError(
            f"{what} must be a mapping of option names to values, e.g. "
            "{'endpoint_url': 'http://127.0.0.1:9000', 'anon': True}"
        )
    return dict(storage_options)


def _package(url: str) -> None:
    """Raise naming the package to install when the one for `url`'s scheme is missing."""
    kind = scheme(url)
    package = SCHEMES.get(kind or "")
    if package is not None and importlib.util.find_spec(package) is None:
        raise ArgumentError(
            f"{redact_text(url)}: reading {kind}:// URLs needs the package {package}; install it with "
            f"`pip install {package}` (or `pip install convflow[remote]`)"
        )


def filesystem(url: str, storage_options: dict[str, Any] | None, *, probe: bool = False) -> tuple[Any, str]:
    """The (synchronous) fsspec filesystem of remote `url`, and the path of `url` inside it."""
    _package(url)
    options = dict(storage_options or {})
    probing = probe and scheme(url) == "s3"
    if probing:
        config = {"retries": {"max_attempts": _PROBE_RETRIES}, **(options.get("config_kwargs") or {})}
        # Its own instance (fsspec caches one per options: these differ by the retries), made once.
        options = {**options, "config_kwargs": config}
    try:
        fs, path = _url_to_fs(url, options)
        if probing:
            fs.retries = _PROBE_RETRIES  # s3fs's own retries, around botocore's
        return fs, path
    except (TypeError, ValueError) as err:
        raise ArgumentError(
            f"{redact_text(url)}: storage_options {redact(options, options=True)} are not options of "
            f"{scheme(url)}:// ({redact_text(str(err))}); see the docs of {SCHEMES[scheme(url) or '']}"
        ) from err


def _url_to_fs(url: str, options: dict[str, Any]) -> tuple[Any, str]:
    """fsspec's filesystem of `url` and the path inside it; a GCS endpoint of its own gets plain gcsfs.

    gcsfs (2025.10 on) registers a filesystem that asks every bucket's storage layout over gRPC
    first, to find zonal buckets; a server at another endpoint (an emulator, a GCS-compatible
    store) does not answer it, and each request waits a minute for that before it is sent.
    Zonal buckets are Google's own, so beside any other endpoint the plain filesystem is right.
    """
    import fsspec

    if scheme(url) in ("gs", "gcs") and _is_other_gcs_endpoint(options):
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(**options), GCSFileSystem._strip_protocol(url)
    return fsspec.core.url_to_fs(url, **options)  # type: ignore[no-any-return]


def close_sessions() -> None:
    """Close the HTTP sessions of the gcsfs filesystems this process opened, before it exits.

    gcsfs closes a filesystem's aiohttp session from a finalizer at interpreter
    exit, from the main thread, on fsspec's event loop, though zarr's store
    made it on zarr's own loop: the close fails ("attached to a different
    loop") and the process ends with a traceback after convflow's own last
    line.  Closed here first, each on its own loop, the finalizer finds the
    session closed and does nothing.
    """
    core = sys.modules.get("gcsfs.core")
    if core is None:
        return
    kinds = [core.GCSFileSystem]  # and its subclasses (gcsfs's own for gs://), each with its cache
    for kind in kinds:
        kinds.extend(k for k in kind.__subclasses__() if k not in kinds)
    for fs in [fs for kind in kinds for fs in list(kind._cache.values())]:
        session = getattr(fs, "_session", None)
        loop = getattr(session, "_loop", None)  # the loop it was made on: fsspec's, or zarr's
        if session is None or session.closed or loop is None or not loop.is_running():
            continue
        with contextlib.suppress(Exception):  # a session that cannot close is gcsfs's own to finalize
            asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=5)


def _is_other_gcs_endpoint(options: dict[str, Any]) -> bool:
    """Whether gs:// `options` (or STORAGE_EMULATOR_HOST) name an endpoint that is not Google's."""
    endpoint = options.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST")
    if not endpoint:
        return False
    host = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").hostname or ""
    return not (host == "googleapis.com" or host.endswith(".googleapis.com"))


def zarr_store(path: str, storage_options: dict[str, Any] | None = None, *, read_only: bool = False) -> Any:
    """What zarr opens for `path`: the local path itself, or an `FsspecStore` of a remote URL."""
    if not is_remote(path):
        return local_path(path)
    from zarr.storage import FsspecStore

    _package(path)
    if not read_only and scheme(path) in READ_ONLY:
        raise OutputError(
            f"{redact_text(path)}: http(s):// URLs are read-only; write to s3://, gs:// or a path"
        )
    options = dict(storage_options or {})
    if scheme(path) == "s3":
        # s3fs asks an object's size (a HEAD) before every whole read, to split reads larger than a
        # block into concurrent ranges; a chunk is read whole, so that is one round trip saved per chunk.
        options.setdefault("max_concurrency", 1)
    try:
        fs, inside = _url_to_fs(path, {"asynchronous": True, **options})
        return FsspecStore(fs=fs, path=inside, read_only=read_only)
    except (TypeError, ValueError) as err:
        raise ArgumentError(
            f"{redact_text(path)}: storage_options {redact(storage_options, options=True)} are not "
            f"options of {scheme(path)}:// ({redact_text(str(err))})"
        ) from err


def store_error(url: str, err: BaseException, *, writing: bool) -> ConvflowError:
    """`err`, raised by a store at `url`, as one line naming the URL and the likely fix."""
    shown = redact_text(url)
    reason = redact_text(str(err)) or type(err).__name__
    kind = InputNotFoundError if not writing else OutputError
    if isinstance(err, PermissionError):
        return (OutputError if writing else InputFormatError)(
            f"{shown}: access denied ({reason}); check the credentials (storage_options key/secret or "
            "token, a profile, or the environment's AWS_*/GOOGLE_* variables) and the bucket's permissions"
        )
    if isinstance(err, FileNotFoundError):
        return kind(f"{shown}: not found ({reason}); check the bucket and the path (does the bucket exist?)")
    if _is_connection_error(err):
        return (OutputError if writing else InputFormatError)(
            f"{shown}: cannot reach the store ({reason}); check the endpoint (storage_options "
            "endpoint_url), the network, and that the server runs"
        )
    return (OutputError if writing else InputFormatError)(f"{shown}: the store failed: {reason}")


def _is_connection_error(err: BaseException) -> bool:
    """Whether `err` says the store's server could not be reached (botocore, aiohttp, sockets)."""
    names = {cls.__name__ for cls in type(err).__mro__}
    reachable = {"EndpointConnectionError", "ConnectionError", "ClientConnectorError", "ConnectTimeoutError"}
    return bool(names & reachable) or isinstance(err, (ConnectionError, TimeoutError, asyncio.TimeoutError))


def store_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a remote store raises for access, reachability and missing objects."""
    errors: list[type[BaseException]] = [OSError, TimeoutError]
    with contextlib.suppress(ImportError):
        import botocore.exceptions

        errors.append(botocore.exceptions.BotoCoreError)
    with contextlib.suppress(ImportError):
        import aiohttp

        errors.append(aiohttp.ClientError)
    return tuple(errors)


def exists(url: str, storage_options: dict[str, Any] | None) -> bool:
    """Whether an object, or any object under the prefix, is at remote `url`."""
    fs, path = filesystem(url, storage_options)
    fs.invalidate_cache()  # another process may have written or removed objects since the last listing
    return bool(fs.exists(path))


def is_zarr_store(url: str, storage_options: dict[str, Any] | None) -> bool:
    """Whether remote `url` holds zarr v2 or v3 metadata at its root."""
    fs, path = filesystem(url, storage_options)
    fs.invalidate_cache()
    return any(fs.exists(f"{path}/{name}") for name in ("zarr.json", ".zarray", ".zgroup"))


def read_bytes(url: str, storage_options: dict[str, Any] | None) -> bytes | None:
    """The object at remote `url`, or None when there is none."""
    fs, path = filesystem(url, storage_options)
    try:
        return bytes(fs.cat_file(path))
    except FileNotFoundError:
        return None


def write_bytes(url: str, data: bytes, storage_options: dict[str, Any] | None) -> None:
    """Write `data` as the object at remote `url`, whole in one request (replacing any)."""
    fs, path = filesystem(url, storage_options)
    fs.pipe_file(path, data)


def remove(url: str, storage_options: dict[str, Any] | None, *, recursive: bool = False) -> None:
    """Remove the object at remote `url`, or with `recursive` every object under it; none there is fine."""
    fs, path = filesystem(url, storage_options)
    with contextlib.suppress(FileNotFoundError):
        if recursive:
            found = fs.find(path)
            if found:
                fs.rm(found)
        else:
            fs.rm_file(path)
    fs.invalidate_cache()


PROBE = ".convflow-probe-"  # an empty object beside a remote output, written and removed by the probe


def probe_writable(url: str, storage_options: dict[str, Any] | None) -> None:
    """Write and remove a small object beside remote output `url`, or raise naming the URL and the fix.

    Finds a missing bucket, denied access and an unreachable endpoint before anything is computed.
    """
    if scheme(url) in READ_ONLY:
        raise OutputError(
            f"{redact_text(url)}: http(s):// URLs are read-only; write the output to s3://, gs:// or a path"
        )
    probe = f"{url.rstrip('/')}{PROBE}{uuid.uuid4().hex}"
    try:
        fs, path = filesystem(probe, storage_options, probe=True)
        _reach(url, fs, path)
        fs.pipe_file(path, b"")
        # A run killed between these two requests left its probe: this output's old probes go too.
        stale = fs.glob(path[: path.rindex(PROBE) + len(PROBE)] + "*")
        fs.rm([name for name in stale if name != path] + [path])
    except store_errors() as err:
        raise store_error(url, err, writing=True) from err


def probe_readable(url: str, storage_options: dict[str, Any] | None) -> None:
    """List the folder of remote input `url`, or raise naming the URL: missing bucket, denied, unreachable."""
    if scheme(url) in READ_ONLY:
        return  # a plain HTTP server lists nothing: the open itself finds what is missing
    try:
        fs, path = filesystem(url, storage_options, probe=True)
        _reach(url, fs, path)
        found = fs.exists(path)
    except store_errors() as err:
        raise store_error(url, err, writing=False) from err
    if not found:
        raise InputNotFoundError(f"{redact_text(url)}: no such object or prefix in the store")


def _reach(url: str, fs: Any, path: str) -> None:
    """For gs://, list one object of `path`'s bucket in one request, so a closed port fails at once.

    gcsfs retries a refused connection six times, about 30 s of back-off, and takes no setting
    for it; the probe's request is sent without that retry loop (``__wrapped__``).  A missing
    bucket raises FileNotFoundError; anything else the next request finds again.
    """
    if scheme(url) not in ("gs", "gcs"):
        return
    import fsspec.asyn

    request = getattr(type(fs)._request, "__wrapped__", None)  # gcsfs's request, under its retries
    if request is None:  # another gcsfs: its own requests find the port closed, only later
        return
    bucket, _, key = path.partition("/")
    fsspec.asyn.sync(fs.loop, request, fs, "GET", "b/{}/o", bucket, prefix=key, maxResults=1)
