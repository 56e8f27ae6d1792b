"""The local SeaweedFS server does not outlive the process that started it."""

import os
import subprocess
import sys
import time

import pytest

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
