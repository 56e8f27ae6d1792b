"""Resumable, checksummed downloads of distribution archives, and their safe extraction.

A download writes `{name}.part` and resumes it with an HTTP Range request after an interruption
(a server that ignores ranges makes it start over); the finished file is checked against its
checksum, then renamed into place, so a file under its final name is always complete. Archives
(.tar, .tar.gz, .tgz, .zip) are extracted next to it with a marker written last, so reruns skip
finished work. `fetch_all` runs one Ray task per archive.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20
_DONE = ".extracted"


class DownloadError(Exception):
    """A download that failed every attempt or whose content does not match its checksum."""


@dataclass(frozen=True)
class Archive:
    """A file to fetch: `url`, optional `checksum` as `"sha256:HEX"` or `"md5:HEX"`."""

    url: str
    checksum: str | None = None

    @property
    def name(self) -> str:
        return os.path.basename(urllib.parse.urlparse(self.url).path) or "download"

    @classmethod
    def parse(cls, text: str) -> Archive:
        """`URL` or `URL#sha256=HEX` / `URL#md5=HEX` (the form of the command line)."""
        url, _, fragment = text.partition("#")
        checksum = None
        if fragment:
            algo, _, digest = fragment.partition("=")
            if algo not in ("sha256", "md5") or not digest:
                raise ValueError(f"{text}: expected URL#sha256=HEX or URL#md5=HEX")
            checksum = f"{algo}:{digest.lower()}"
        return cls(url, checksum)


def file_digest(path: str | Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _verify(path: Path, archive: Archive) -> None:
    if archive.checksum is None:
        return
    algo, expected = archive.checksum.split(":", 1)
    actual = file_digest(path, algo)
    if actual != expected:
        raise DownloadError(f"{archive.url}: {algo} is {actual}, expected {expected}")


def _fetch_once(url: str, part: Path, timeout: float) -> None:
    """Append the rest of `url` to `part` (a Range request when `part` has bytes)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to fetch
            return
        raise
    with response:
        mode = "ab" if have and response.status == 206 else "wb"  # 200: the server restarts
        with open(part, mode) as out:
            shutil.copyfileobj(response, out, _CHUNK)


def download(
    archive: Archive, dest_dir: str | Path, retries: int = 5, timeout: float = 60.0
) -> Path:
    """Fetch `archive` into `dest_dir` (resuming a partial file); return the verified file."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / archive.name
    if target.exists():
        _verify(target, archive)
        return target
    part = target.with_name(target.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_once(archive.url, part, timeout)
            break
        except (urllib.error.URLError, OSError) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code in (401, 403, 404, 410):
                raise DownloadError(f"{archive.url}: HTTP {e.code} {e.reason}") from e
            if attempt == retries:
                raise DownloadError(
                    f"{archive.url}: failed after {retries + 1} attempts ({e})"
                ) from e
            time.sleep(min(30.0, 2.0**attempt))
    try:
        _verify(part, archive)
    except DownloadError:
        part.unlink()  # a corrupt partial must not be resumed
        raise
    os.replace(part, target)
    return target


def _inside(root: Path, name: str) -> bool:
    return os.path.realpath(root / name).startswith(os.path.realpath(root) + os.sep)


def extract(archive_path: str | Path, dest_dir: str | Path) -> Path:
    """Extract a .tar(.gz)/.tgz/.zip into `dest_dir` once; return `dest_dir`.

    Members that would land outside `dest_dir` (absolute paths, `..`, links) stop the extraction.
    """
    archive_path, dest_dir = Path(archive_path), Path(dest_dir)
    marker = dest_dir / _DONE
    if marker.exists():
        return dest_dir
    dest_dir.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive_path):
        with zipfile.ZipFile(archive_path) as z:
            bad = [n for n in z.namelist() if not _inside(dest_dir, n)]
            if bad:
                raise DownloadError(f"{archive_path}: member {bad[0]!r} would leave {dest_dir}")
            z.extractall(dest_dir)
    elif tarfile.is_tarfile(archive_path):
        with tarfile.open(archive_path) as t:
            t.extractall(dest_dir, filter="data")  # refuses paths and links that leave dest_dir
    else:
        raise DownloadError(f"{archive_path} is neither a tar nor a zip archive")
    marker.write_text(str(archive_path))
    return dest_dir


def fetch_and_extract(
    archive: Archive, root: str | Path, retries: int = 5, timeout: float = 60.0
) -> str:
    """Download `archive` into `root` and extract it into `root/<name without suffix>`."""
    path = download(archive, root, retries, timeout)
    stem = archive.name
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return str(extract(path, Path(root) / stem))


def fetch_all(
    archives: Sequence[Archive], root: str | Path, retries: int = 5, timeout: float = 60.0
) -> list[str]:
    """Download and extract `archives` in parallel, one Ray task each; return the folders.

    Uses the caller's Ray session (`ingest.distribute.ray_session`).
    """
    import ray

    task = ray.remote(fetch_and_extract).options(
        num_cpus=1, max_retries=2, retry_exceptions=[OSError]
    )
    return ray.get([task.remote(a, str(root), retries, timeout) for a in archives])
