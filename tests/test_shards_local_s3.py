"""The local SeaweedFS server: ready only when it can store, and never outliving its starter."""

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shards import storage
from shards.local_s3 import NO_STORAGE, LocalS3Server

STARTER = """
import sys
from shards.local_s3 import LocalS3Server
server = LocalS3Server(workdir=sys.argv[1]).start()
print(server.process.pid, flush=True)
sys.stdin.read()  # held open until the test kills us
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited already
        return stat.read().split()[2] != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux-only")
def test_server_stops_when_its_starter_is_killed(tmp_path):
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(tmp_path / "s3")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        weed_pid = int(starter.stdout.readline())
        assert _alive(weed_pid)
        starter.kill()  # SIGKILL: no teardown, no atexit
        starter.wait()
        deadline = time.monotonic() + 20
        while _alive(weed_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(weed_pid), "SeaweedFS outlived the process that started it"
    finally:
        if starter.poll() is None:
            starter.kill()


def test_started_server_can_store_an_object(s3_server):
    url = storage.join(s3_server.fresh_url("probe"), "object")
    storage.write_bytes(url, b"x")
    assert storage.read_bytes(url) == b"x"


class _FullMaster(BaseHTTPRequestHandler):
    """What SeaweedFS's master answers a file-id request when no volume has room."""

    def do_GET(self):
        body = json.dumps({"error": "no free volumes left"}).encode()
        self.send_response(406)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_storage_error_names_the_reason_and_the_free_space(tmp_path):
    master = ThreadingHTTPServer(("127.0.0.1", 0), _FullMaster)
    threading.Thread(target=master.serve_forever, daemon=True).start()
    try:
        server = LocalS3Server(workdir=str(tmp_path))
        server._master_port = master.server_address[1]
        error = server._storage_error()
    finally:
        master.shutdown()
    assert error.startswith(f"{NO_STORAGE} (no free volumes left)")
    assert "GB free on the disk of" in error and str(tmp_path / "data") in error
