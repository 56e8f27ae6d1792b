"""Fetch work: bring one input (web video, S3 object, file URL or local path) to a local file.

Web videos go through yt-dlp used as a library (no shell command is ever built): the format
chosen is the smallest video at or above `min_height` that comes with audio (or is merged with
the smallest audio stream by a stream copy, never a re-encode), falling back to the largest
below it. Timeouts, retries, a rate limit and a cookies file pass straight to yt-dlp.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import yt_dlp
from yt_dlp.utils import parse_bytes

from shards import storage

YOUTUBE_URL_TEMPLATE = "https://www.youtube.com/watch?v={YTID}"

log = logging.getLogger(__name__)


class FetchError(Exception):
    """An input that could not be fetched. `reason` is a short code, `detail` the explanation."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class FetchOptions:
    """Download settings for web inputs (yt-dlp)."""

    min_height: int = 360  # smallest video at or above this height; the largest below if none
    socket_timeout: float = 30.0  # seconds without data before a request fails
    retries: int = 3  # per HTTP request and per fragment
    rate_limit: str | None = None  # bytes per second per download, e.g. "2M"
    sleep_interval: float = 0.0  # seconds to wait before each download (politeness)
    cookies: str | None = None  # a Netscape cookies.txt passed to yt-dlp
    scratch_dir: str | None = None  # where downloads live until decoded (default: the temp dir)

    def __post_init__(self) -> None:
        if self.rate_limit is not None and parse_bytes(self.rate_limit) is None:
            raise ValueError(
                f"rate_limit {self.rate_limit!r} is not a byte rate like '500K' or '2M'"
            )
        if self.cookies is not None and not os.path.isfile(self.cookies):
            raise ValueError(f"cookies file {self.cookies} does not exist")
        if self.min_height < 1 or self.retries < 0 or self.socket_timeout <= 0:
            raise ValueError(f"min_height, retries and socket_timeout must be positive: {self}")


class _QuietLogger:
    """Keeps yt-dlp off the console; the last error becomes the failure detail."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        self.errors.append(msg)


def ytdlp_params(options: FetchOptions, out_dir: str) -> dict:
    """The yt-dlp option dict for `options`, writing into `out_dir`."""
    h = options.min_height
    params = {
        # Smallest with video >= h (merging the best-sorted audio), else the largest below h.
        "format": f"bv*[height>=?{h}]+ba/b[height>=?{h}]/wv*+ba/w",
        "format_sort": ["+res", "+size", "+br"],
        "outtmpl": {"default": os.path.join(out_dir, "%(id)s.%(ext)s")},
        "merge_output_format": "mkv",  # stream copy of the chosen video and audio, no re-encode
        "ffmpeg_location": imageio_ffmpeg.get_ffmpeg_exe(),
        "socket_timeout": options.socket_timeout,
        "retries": options.retries,
        "fragment_retries": options.retries,
        "extractor_retries": options.retries,
        "noplaylist": True,
        "enable_file_urls": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "color": {"stdout": "never", "stderr": "never"},
        "logger": _QuietLogger(),
    }
    if options.rate_limit:
        params["ratelimit"] = parse_bytes(options.rate_limit)
    if options.sleep_interval > 0:
        params["sleep_interval"] = options.sleep_interval
    if options.cookies:
        params["cookiefile"] = options.cookies
    return params


def _reason(message: str) -> str:
    text = message.lower()
    if "timed out" in text or "timeout" in text:
        return "timeout"
    if any(
        s in text
        for s in ("unavailable", "private video", "removed", "terminated", "not available")
    ):
        return "unavailable"
    if "sign in" in text or "cookies" in text or "login" in text:
        return "login_required"
    if "http error 429" in text or "too many requests" in text:
        return "rate_limited"
    if "http error" in text:
        return "http_error"
    return "download_failed"


def download_video(url: str, out_dir: str, options: FetchOptions) -> Path:
    """Download `url` with yt-dlp into `out_dir`; return the file. Raises `FetchError`."""
    params = ytdlp_params(options, out_dir)
    try:
        with yt_dlp.YoutubeDL(params) as ydl:
            info = ydl.extract_info(url, download=True)
    except yt_dlp.utils.YoutubeDLError as e:
        message = (params["logger"].errors or [str(e)])[-1].removeprefix("ERROR: ")
        raise FetchError(_reason(message), f"{url}: {message}") from e
    downloads = (info or {}).get("requested_downloads") or []
    paths = [d.get("filepath") for d in downloads if d.get("filepath")]
    if not paths or not os.path.isfile(paths[0]):
        raise FetchError("download_failed", f"{url}: yt-dlp reported no downloaded file")
    return Path(paths[0])


def is_web_url(location: str) -> bool:
    return location.startswith(("http://", "https://", "file://"))


@contextlib.contextmanager
def local_copy(location: str, options: FetchOptions) -> Iterator[Path]:
    """Yield a local file for `location` (path, file://, http(s):// or s3:// URL).

    Downloads live in a private scratch folder that is removed on exit; local paths are used in
    place. Raises `FetchError` when the input cannot be fetched.
    """
    if not is_web_url(location) and not storage.is_s3(location):
        yield Path(location)
        return
    scratch = tempfile.mkdtemp(prefix="ingest-fetch-", dir=options.scratch_dir)
    try:
        if storage.is_s3(location):
            target = os.path.join(scratch, storage.basename(location) or "object")
            try:
                storage.download_file(location, target)
            except FileNotFoundError as e:
                raise FetchError("missing_file", f"{location} does not exist") from e
            except OSError as e:
                raise FetchError("download_failed", f"{location}: {e}") from e
            yield Path(target)
        else:
            yield download_video(location, scratch, options)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
