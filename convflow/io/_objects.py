"""One object in a store, read and written with conditional requests: what a lease at a URL needs.

S3 (and moto's server, which the tests run) honour ``If-None-Match: *`` and
``If-Match: ETag`` on PutObject, and ``If-Match`` on DeleteObject; GCS takes
the same conditions on an object's generation (``ifGenerationMatch=0`` for
"absent", else the generation read), on uploads and on deletes.  So a put
that must not replace anything, and a replace or delete that must not undo
another writer's put, are each one request; the version token this class
hands out is the ETag on S3 and the generation on GCS.  Elsewhere fsspec's
exclusive create (``mode="create"``) is used, and the replace and delete
are unconditional.
"""

from __future__ import annotations

import email.utils
import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from convflow.io import _stores


class ConditionalObject:
    """The object at remote `url`: create it only if absent, replace or delete it only if unchanged."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None) -> None:
        self.url = url
        self.fs, self.key = _stores.filesystem(url, storage_options)
        self.is_s3 = _stores.scheme(url) == "s3"
        self.is_gcs = _stores.scheme(url) in ("gs", "gcs")

    def _s3(self, operation: str, **kwargs: Any) -> Any:
        bucket, key, _ = self.fs.split_path(self.key)
        return self.fs.call_s3(operation, Bucket=bucket, Key=key, **kwargs)

    def create(self, body: bytes) -> str | bool:
        """Put `body` unless the object exists: its ETag (True if none is known), or False if it existed."""
        if self.is_s3:
            made = _attempt(lambda: self._s3("put_object", Body=body, IfNoneMatch="*"))
            return made if made is False else str(made["ETag"])
        if self.is_gcs:
            made = _attempt(lambda: self._gcs_upload(body, generation="0"))
            return made if made is False else str(made["generation"])
        return _attempt(lambda: self.fs.pipe_file(self.key, body, mode="create")) is not False

    def _gcs_upload(self, body: bytes, generation: str) -> dict[str, Any]:
        """Upload `body` in one multipart request if the object's generation is `generation` (0: absent).

        gcsfs's own put takes no generation but 0 (``mode="create"``), so the replace is sent here.
        """
        bucket, key, _ = self.fs.split_path(self.key)
        boundary = "convflow-lease"  # the body is the lease's JSON, which never holds it
        head = f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
        head += f"{json.dumps({'name': key})}\r\n"
        head += f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
        answer = self.fs.call(
            "POST",
            f"{self.fs._location}/upload/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o",
            uploadType="multipart",
            ifGenerationMatch=generation,
            headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
            data=head.encode() + body + f"\r\n--{boundary}--\r\n".encode(),
            json_out=True,
        )
        self.fs.invalidate_cache(self.key)
        return answer  # type: ignore[no-any-return]

    def _gcs(self, method: str, **params: Any) -> Any:
        """One JSON API request on the object: (headers, body)."""
        bucket, key, _ = self.fs.split_path(self.key)
        return self.fs.call(method, "b/{}/o/{}", bucket, key, **params)

    def read(self) -> tuple[bytes, str | None, float] | None:
        """(body, ETag, LastModified as a POSIX timestamp), or None when there is no object."""
        try:
            if self.is_s3:
                answer = self._s3("get_object")
                body, etag, modified = (
                    _read_body(self.fs, answer["Body"]),
                    answer.get("ETag"),
                    answer["LastModified"],
                )
            elif self.is_gcs:  # body and generation of one version, in one request
                headers, body = self._gcs("GET", alt="media")
                etag = headers.get("X-Goog-Generation")
                modified = email.utils.parsedate_to_datetime(headers["Last-Modified"])
            else:
                info = self.fs.info(self.key)
                body, etag, modified = self.fs.cat_file(self.key), info.get("etag"), info.get("mtime")
        except FileNotFoundError:
            return None
        touched = modified.timestamp() if hasattr(modified, "timestamp") else float(modified or 0)
        return bytes(body), etag, touched

    def replace(self, body: bytes, etag: str | None) -> str | None:
        """Put `body` over the object if its ETag is still `etag`; return the new ETag."""
        if self.is_s3 and etag is not None:
            return str(self._s3("put_object", Body=body, IfMatch=etag)["ETag"])
        if self.is_gcs and etag is not None:
            return str(self._gcs_upload(body, generation=etag)["generation"])
        self.fs.pipe_file(self.key, body)
        return None

    def delete(self, etag: str | None) -> bool:
        """Remove the object if its ETag is still `etag` (else at all); return whether it went."""
        if self.is_s3 and etag is not None:
            return _attempt(lambda: self._s3("delete_object", IfMatch=etag)) is not False
        if self.is_gcs and etag is not None:
            gone = _attempt(lambda: self._gcs("DELETE", ifGenerationMatch=etag)) is not False
            self.fs.invalidate_cache(self.key)
            return gone
        return _attempt(lambda: self.fs.rm_file(self.key)) is not False


def _attempt(request: Callable[[], Any]) -> Any:
    """`request()`, or False when the store refused it for a condition or found nothing to act on."""
    try:
        return request()
    except (FileExistsError, FileNotFoundError):
        return False
    except OSError as err:
        if _failed_condition(err):
            return False
        raise


def _failed_condition(err: OSError) -> bool:
    """Whether `err` is the store's 412: a condition (If-Match, If-None-Match) did not hold."""
    text = str(err).lower()
    return "pre-condition" in text or "precondition" in text


def _read_body(fs: Any, body: Any) -> bytes:
    """The bytes of an aiobotocore streaming body, read on the filesystem's event loop."""
    import fsspec.asyn

    async def read() -> bytes:
        return bytes(await body.read())

    return fsspec.asyn.sync(fs.loop, read)  # type: ignore[no-any-return]
