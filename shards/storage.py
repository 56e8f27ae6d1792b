"""One small storage layer over local paths and ``s3://bucket/prefix`` URLs.

Objects are addressed by URL strings: a local path (``/data/ds/000000.tar``, ``file:///...``) or
``s3://bucket/key``. Every operation names the URL in its errors. S3 settings come only from the
standard AWS environment variables and files (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``~/.aws/*``) and are never logged. With a
custom ``AWS_ENDPOINT_URL`` the client uses path-style addressing (what SeaweedFS, MinIO and most
self-hosted servers want).

Publishing is atomic: a local write goes to a hidden temporary name in the same folder and is
renamed into place; an S3 upload (single or multipart) becomes visible only when complete.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_ENV_KEYS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
)


class StorageError(OSError):
    """A storage operation failed; the message names the URL."""


class StorageNotFound(StorageError, FileNotFoundError):
    """The object or file does not exist."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff for transient failures (network, throttling, 5xx)."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delays(self) -> Iterator[float]:
        for i in range(self.attempts - 1):
            yield min(self.max_delay, self.base_delay * 2**i)


DEFAULT_RETRY = RetryPolicy(
    attempts=int(os.environ.get("SHARDS_RETRY_ATTEMPTS", "5")),
    base_delay=float(os.environ.get("SHARDS_RETRY_BASE_DELAY", "0.5")),
)


def is_s3(url: str) -> bool:
    return url.startswith("s3://")


def split_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not is_s3(url):
        raise StorageError(f"not an s3:// URL: {url}")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise StorageError(f"S3 URL without a bucket: {url}")
    return bucket, key


def local_path(url: str) -> str:
    return url.removeprefix("file://")


def join(base: str, *parts: str) -> str:
    """Join URL parts with '/' (works for local paths and S3 URLs alike)."""
    out = base
    for part in parts:
        if not part:
            continue
        out = part if not out else out.rstrip("/") + "/" + part.lstrip("/")
    return out


def basename(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def parent(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[0]


# ---------------------------------------------------------------------------------------- S3
_clients: dict[tuple, object] = {}
_sessions: dict[tuple, object] = {}
_clients_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _clients_lock
    _clients_lock = threading.Lock()  # the parent's lock may have been held by another thread


os.register_at_fork(after_in_child=_after_fork_in_child)


def s3_client():
    """The process-wide boto3 S3 client (created once per process and per AWS settings).

    Clients (and their connection pools) are not shared across ``fork``: they are keyed by pid,
    so DataLoader workers and Ray tasks each build their own, once. The boto3 session is shared,
    so a forked worker reuses its parsed service model (a new client then takes ~10 ms, not
    ~300 ms).
    """
    settings = tuple(os.environ.get(k) for k in _ENV_KEYS)
    key = (os.getpid(),) + settings
    client = _clients.get(key)
    if client is not None:
        return client
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            config = Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
                max_pool_connections=32,
                s3={"addressing_style": "path"} if endpoint else {},
            )
            session = boto3.session.Session()
            region = session.region_name or ("us-east-1" if endpoint else None)
            client = session.client("s3", region_name=region, config=config)
            _clients[key] = client
    return client


def _s3_error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code"))
    return None


def _is_not_found(exc: BaseException) -> bool:
    return _s3_error_code(exc) in {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def _is_permanent(exc: BaseException) -> bool:
    code = _s3_error_code(exc)
    if code is None:
        return False
    return code in {
        "403",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "400",
        "InvalidBucketName",
        "InvalidRequest",
        "NoSuchBucket",
    }


def with_retries(
    what: str,
    url: str,
    fn: Callable[[], T],
    policy: RetryPolicy = DEFAULT_RETRY,
    retry_not_found: bool = False,
) -> T:
    """Run ``fn`` with backoff on transient errors; raise :class:`StorageError` naming ``url``.

    Missing objects fail at once (:class:`StorageNotFound`) unless ``retry_not_found``.
    Authentication and malformed-request errors are never retried.
    """
    delays = policy.delays()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except (StorageNotFound, FileNotFoundError) as exc:
            err: StorageError = StorageNotFound(f"{what} {url}: not found")
            cause: BaseException = exc
            transient = retry_not_found
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 -- any backend error becomes a StorageError naming the URL
            cause = exc
            if _is_not_found(exc):
                err = StorageNotFound(f"{what} {url}: not found ({_s3_error_code(exc)})")
                transient = retry_not_found
            else:
                err = StorageError(f"{what} {url}: {type(exc).__name__}: {exc}")
                transient = not _is_permanent(exc) and not isinstance(
                    exc, (PermissionError, IsADirectoryError)
                )
        delay = next(delays, None) if transient else None
        if delay is None:
            if attempt > 1:
                err = type(err)(f"{err} (after {attempt} attempts)")
            raise err from cause
        log.warning("%s %s failed (%s); retrying in %.1fs", what, url, type(cause).__name__, delay)
        time.sleep(delay)


# ------------------------------------------------------------------------------ operations
def _tmp_name(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def read_bytes(url: str, policy: RetryPolicy = DEFAULT_RETRY) -> bytes:
    """The whole content of one object or file."""
    if is_s3(url):
        bucket, key = split_s3(url)
        return with_retries(
            "read",
            url,
            lambda: s3_client().get_object(Bucket=bucket, Key=key)["Body"].read(),
            policy,
        )

    def read() -> bytes:
        with open(local_path(url), "rb") as f:
            return f.read()

    return with_retries("read", url, read, policy)


def write_bytes(url: str, data: bytes, policy: RetryPolicy = DEFAULT_RETRY) -> None:
    """Publish ``data`` at ``url`` atomically (readers see the old state or all of it)."""
    if is_s3(url):
        bucket, key = split_s3(url)
        with_retries(
            "write", url, lambda: s3_client().put_object(Bucket=bucket, Key=key, Body=data), policy
        )
        return
    path = local_path(url)

    def write() -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = _tmp_name(path)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    with_retries("write", url, write, policy)


def upload_file(src_path: str, url: str, policy: RetryPolicy = DEFAULT_RETRY) -> None:
    """Publish the local file ``src_path`` at ``url`` atomically.

    S3: a (multipart) upload that becomes visible only once complete. Local: copied to a hidden
    temporary name beside the target, then renamed (a plain rename if ``src_path`` already is in
    the target's folder; the source is then consumed).
    """
    if is_s3(url):
        bucket, key = split_s3(url)
        with_retries("upload", url, lambda: s3_client().upload_file(src_path, bucket, key), policy)
        return
    path = local_path(url)

    def publish() -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if os.path.dirname(os.path.abspath(src_path)) == os.path.dirname(os.path.abspath(path)):
            os.replace(src_path, path)
            return
        tmp = _tmp_name(path)
        try:
            shutil.copyfile(src_path, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    with_retries("upload", url, publish, policy)


def download_file(url: str, dst_path: str, policy: RetryPolicy = DEFAULT_RETRY) -> None:
    """Copy the object at ``url`` to the local file ``dst_path`` (written atomically)."""
    os.makedirs(os.path.dirname(os.path.abspath(dst_path)), exist_ok=True)
    tmp = _tmp_name(dst_path)
    try:
        if is_s3(url):
            bucket, key = split_s3(url)
            with_retries(
                "download", url, lambda: s3_client().download_file(bucket, key, tmp), policy
            )
        else:
            with_retries("download", url, lambda: shutil.copyfile(local_path(url), tmp), policy)
        os.replace(tmp, dst_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class _S3ReadStream(io.RawIOBase):
    """A streamed S3 object that survives dropped connections.

    A slow consumer can leave the HTTP response idle long enough for the server to close it; a
    failed read re-opens the object at the current offset (a ranged GET) with backoff, so the
    bytes delivered are always exactly the object's.
    """

    def __init__(self, url: str, policy: RetryPolicy, retry_not_found: bool):
        self.url = url
        self.bucket, self.key = split_s3(url)
        self.policy = policy
        self.offset = 0
        self.body = None
        self._open(retry_not_found)

    def _open(self, retry_not_found: bool = False) -> None:
        extra = {"Range": f"bytes={self.offset}-"} if self.offset else {}
        self.body = with_retries(
            "open",
            self.url,
            lambda: s3_client().get_object(Bucket=self.bucket, Key=self.key, **extra)["Body"],
            self.policy,
            retry_not_found=retry_not_found,
        )

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        delays = self.policy.delays()
        while True:
            try:
                data = self.body.read(len(view))
                break
            except Exception as exc:  # connection reset, read timeout, ...
                delay = next(delays, None)
                if delay is None:
                    raise StorageError(
                        f"read {self.url} at byte {self.offset}: {type(exc).__name__}: {exc}"
                    ) from exc
                log.warning(
                    "read %s at byte %d failed (%s); reopening in %.1fs",
                    self.url,
                    self.offset,
                    type(exc).__name__,
                    delay,
                )
                time.sleep(delay)
                self.body.close()
                self._open()
        view[: len(data)] = data
        self.offset += len(data)
        return len(data)

    def close(self) -> None:
        if self.body is not None:
            self.body.close()
        super().close()


def open_read(
    url: str,
    policy: RetryPolicy = DEFAULT_RETRY,
    retry_not_found: bool = False,
    buffer_size: int = 1 << 20,
) -> IO[bytes]:
    """A readable binary stream over the object (S3: streamed, not loaded into memory, and
    re-opened at the current offset if the connection drops)."""
    if is_s3(url):
        return io.BufferedReader(_S3ReadStream(url, policy, retry_not_found), buffer_size)
    return with_retries(
        "open", url, lambda: open(local_path(url), "rb"), policy, retry_not_found=retry_not_found
    )


def exists(url: str, policy: RetryPolicy = DEFAULT_RETRY) -> bool:
    """Whether the object or file exists."""
    if not is_s3(url):
        return os.path.exists(local_path(url))
    bucket, key = split_s3(url)
    try:
        with_retries("stat", url, lambda: s3_client().head_object(Bucket=bucket, Key=key), policy)
    except StorageNotFound:
        return False
    return True


def size(url: str, policy: RetryPolicy = DEFAULT_RETRY) -> int:
    """Size in bytes of the object or file."""
    if is_s3(url):
        bucket, key = split_s3(url)
        head = with_retries(
            "stat", url, lambda: s3_client().head_object(Bucket=bucket, Key=key), policy
        )
        return int(head["ContentLength"])
    return with_retries("stat", url, lambda: os.path.getsize(local_path(url)), policy)


def listdir(url: str, policy: RetryPolicy = DEFAULT_RETRY) -> list[str]:
    """Sorted names directly under the folder/prefix ``url``; sub-folders end with '/'.

    A missing folder lists as empty. Hidden temporary files of in-progress writes are skipped.
    """
    if not is_s3(url):
        path = local_path(url)
        if not os.path.isdir(path):
            return []
        names = [n + "/" if os.path.isdir(os.path.join(path, n)) else n for n in os.listdir(path)]
        return sorted(n for n in names if not (n.startswith(".") and ".tmp-" in n))
    bucket, prefix = split_s3(url)
    prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""

    def list_all() -> list[str]:
        names: list[str] = []
        paginator = s3_client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            names += [c["Prefix"][len(prefix) :] for c in page.get("CommonPrefixes", [])]
            names += [o["Key"][len(prefix) :] for o in page.get("Contents", [])]
        return sorted(n for n in names if n and n != "/")

    return with_retries("list", url, list_all, policy)


def delete(url: str, recursive: bool = False, policy: RetryPolicy = DEFAULT_RETRY) -> None:
    """Delete one object/file (missing is fine), or with ``recursive`` everything under a prefix."""
    if not is_s3(url):
        path = local_path(url)
        if recursive and os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            with_retries("delete", url, lambda: os.unlink(path), policy)
        return
    bucket, key = split_s3(url)
    client = s3_client()
    if not recursive:
        with_retries("delete", url, lambda: client.delete_object(Bucket=bucket, Key=key), policy)
        return
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""

    def delete_all() -> None:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})

    with_retries("delete", url, delete_all, policy)


def ensure_bucket(url: str) -> None:
    """Create the bucket of an ``s3://`` URL if it does not exist (no-op for local paths)."""
    if not is_s3(url):
        os.makedirs(local_path(url), exist_ok=True)
        return
    bucket, _ = split_s3(url)
    client = s3_client()
    try:
        client.head_bucket(Bucket=bucket)
    except Exception as exc:
        if not _is_not_found(exc):
            raise StorageError(f"bucket of {url}: {type(exc).__name__}: {exc}") from exc
        with_retries("create bucket", url, lambda: client.create_bucket(Bucket=bucket))
