"""Fetching inputs: yt-dlp (as a library) against `python -m http.server` on 127.0.0.1, file
URLs, S3 objects, yt-dlp's format choice, and resumable checksummed archive downloads."""

from __future__ import annotations

import hashlib
import http.server
import os
import tarfile
import threading
from typing import ClassVar

import pytest
import yt_dlp

from ingest.download import Archive, DownloadError, download, extract
from ingest.fetch import FetchError, FetchOptions, download_video, local_copy, ytdlp_params
from ingest.media import decode_clips
from ingest.synthetic import MediaSpec, make_media
from ingest.testing import free_port, serve_directory
from shards import storage


@pytest.fixture(scope="module")
def http_server(tmp_path_factory):
    """`python -m http.server` on 127.0.0.1 serving a folder with one MP4; stopped by its pid."""
    root = tmp_path_factory.mktemp("www")
    make_media(root / "clipA.mp4", MediaSpec(seconds=3, width=160, height=120))
    with serve_directory(root) as base:
        yield base, root


def test_ytdlp_generic_extractor_fetches_a_plain_mp4(http_server, tmp_path):
    base, root = http_server
    path = download_video(f"{base}/clipA.mp4", str(tmp_path), FetchOptions(retries=1))
    assert path.read_bytes() == (root / "clipA.mp4").read_bytes()
    _, (clip,) = decode_clips(path)
    assert abs(clip.duration - 3.0) < 0.1


def test_file_urls_and_local_paths(http_server, tmp_path):
    _, root = http_server
    with local_copy((root / "clipA.mp4").as_uri(), FetchOptions(scratch_dir=str(tmp_path))) as path:
        assert path.read_bytes() == (root / "clipA.mp4").read_bytes()
        assert str(path).startswith(str(tmp_path))
    assert os.listdir(tmp_path) == [], "the scratch copy is removed after use"
    with local_copy(str(root / "clipA.mp4"), FetchOptions()) as path:
        assert path == root / "clipA.mp4"


def test_missing_video_fails_with_a_reason(http_server, tmp_path):
    base, _ = http_server
    with pytest.raises(FetchError) as err:
        download_video(f"{base}/nothing.mp4", str(tmp_path), FetchOptions(retries=0))
    assert err.value.reason == "http_error" and "404" in err.value.detail
    assert "nothing.mp4" in err.value.detail


def test_unreachable_host_fails_with_a_reason(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/x.mp4"  # nothing listens there
    with pytest.raises(FetchError) as err:
        download_video(url, str(tmp_path), FetchOptions(retries=0, socket_timeout=2))
    assert (
        err.value.reason in ("download_failed", "http_error", "timeout") and url in err.value.detail
    )


def test_cookies_rate_limit_and_timeouts_reach_ytdlp(http_server, tmp_path):
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tabc\n")
    options = FetchOptions(
        cookies=str(cookies), rate_limit="5M", socket_timeout=7, retries=2, sleep_interval=0.1
    )
    params = ytdlp_params(options, str(tmp_path))
    assert params["cookiefile"] == str(cookies) and params["ratelimit"] == 5 * 1024 * 1024
    assert (
        params["socket_timeout"] == 7 and params["retries"] == 2 and params["sleep_interval"] == 0.1
    )
    base, _ = http_server
    assert download_video(f"{base}/clipA.mp4", str(tmp_path / "dl"), options).is_file()
    with pytest.raises(ValueError, match="rate_limit"):
        FetchOptions(rate_limit="fast")
    with pytest.raises(ValueError, match="cookies file"):
        FetchOptions(cookies=str(tmp_path / "none.txt"))


def _formats_info(formats):
    return {
        "id": "x",
        "title": "x",
        "extractor": "generic",
        "extractor_key": "Generic",
        "webpage_url": "http://127.0.0.1:1/x",
        "formats": formats,
    }


def _fmt(fid, height=None, vcodec="avc1", acodec="none", size=None):
    return {
        "format_id": fid,
        "url": f"http://127.0.0.1:1/{fid}",
        "ext": "mp4",
        "height": height,
        "width": height and height * 16 // 9,
        "vcodec": vcodec,
        "acodec": acodec,
        "filesize": size,
        "protocol": "http",
    }


@pytest.mark.parametrize(
    "min_height, chosen", [(360, "v360+a-lo"), (300, "v360+a-lo"), (1080, "v720+a-lo")]
)
def test_format_choice_smallest_video_at_or_above_height(tmp_path, min_height, chosen):
    formats = [_fmt(f"v{h}", h) for h in (144, 240, 360, 480, 720)]
    formats += [
        _fmt("a-lo", vcodec="none", acodec="opus", size=1000),
        _fmt("a-hi", vcodec="none", acodec="opus", size=5000),
    ]
    with yt_dlp.YoutubeDL(ytdlp_params(FetchOptions(min_height=min_height), str(tmp_path))) as ydl:
        info = ydl.process_ie_result(_formats_info(formats), download=False)
    assert info["format_id"] == chosen


def test_format_choice_prefers_files_with_audio(tmp_path):
    formats = [
        _fmt("c240", 240, acodec="mp4a"),
        _fmt("c360", 360, acodec="mp4a"),
        _fmt("c720", 720, acodec="mp4a"),
    ]
    with yt_dlp.YoutubeDL(ytdlp_params(FetchOptions(min_height=300), str(tmp_path))) as ydl:
        assert ydl.process_ie_result(_formats_info(formats), download=False)["format_id"] == "c360"


def test_s3_input_is_copied_locally(s3_server, tmp_path):
    path = make_media(tmp_path / "v.mp4", MediaSpec(seconds=2, width=160, height=120))
    url = storage.join(s3_server.fresh_url("inputs"), "v.mp4")
    storage.upload_file(str(path), url)
    with local_copy(url, FetchOptions()) as local:
        assert local.read_bytes() == path.read_bytes()
    with pytest.raises(FetchError) as err, local_copy(url + ".missing", FetchOptions()):
        pass
    assert err.value.reason == "missing_file"


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves byte ranges (http.server does not) and records the Range headers it saw."""

    ranges: ClassVar[list[str]] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        with open(path, "rb") as f:
            data = f.read()
        header = self.headers.get("Range")
        start = 0
        if header:
            type(self).ranges.append(header)
            start = int(header.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def range_server(tmp_path):
    root = tmp_path / "www"
    (root / "pack").mkdir(parents=True)
    (root / "pack" / "hello.txt").write_text("hello\n" * 1000)
    with tarfile.open(root / "pack.tar.gz", "w:gz") as tar:
        tar.add(root / "pack", arcname="pack")
    _RangeHandler.ranges = []
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(root), **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_download_resumes_a_partial_file_and_checks_it(range_server, tmp_path):
    base, root = range_server
    data = (root / "pack.tar.gz").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "pack.tar.gz.part").write_bytes(data[:100])  # an interrupted earlier download
    archive = Archive.parse(f"{base}/pack.tar.gz#sha256={digest}")
    path = download(archive, dest)
    assert path.read_bytes() == data and _RangeHandler.ranges == ["bytes=100-"]
    assert not (dest / "pack.tar.gz.part").exists()
    folder = extract(path, dest / "pack")
    assert (folder / "pack" / "hello.txt").read_text() == "hello\n" * 1000
    assert download(archive, dest) == path  # done: not fetched again
    assert _RangeHandler.ranges == ["bytes=100-"]


def test_download_with_a_wrong_checksum_fails_and_drops_the_part(range_server, tmp_path):
    base, _ = range_server
    dest = tmp_path / "dl"
    with pytest.raises(DownloadError, match="sha256"):
        download(Archive.parse(f"{base}/pack.tar.gz#sha256={'0' * 64}"), dest)
    assert list(dest.iterdir()) == []
    with pytest.raises(DownloadError, match="404"):
        download(Archive(f"{base}/none.tar.gz"), dest, retries=0)
    with pytest.raises(ValueError, match="URL#sha256"):
        Archive.parse(f"{base}/pack.tar.gz#crc=1")
