"""The storage layer on a local folder and on a real S3 server (SeaweedFS on 127.0.0.1)."""

import socket

import pytest

from shards import storage

FAST = storage.RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.1)


def test_objects_and_prefixes(storage_root, tmp_path):
    a = storage.join(storage_root, "ckpt", "step-1", "model.safetensors")
    b = storage.join(storage_root, "ckpt", "latest.json")
    storage.write_bytes(a, b"weights")
    storage.write_bytes(b, b"{}")
    storage.write_bytes(b, b'{"step": 1}')  # overwrite
    assert storage.read_bytes(a) == b"weights"
    assert storage.read_bytes(b) == b'{"step": 1}'
    assert storage.exists(a) and storage.size(a) == 7
    assert storage.listdir(storage.join(storage_root, "ckpt")) == ["latest.json", "step-1/"]
    assert storage.listdir(storage.join(storage_root, "nothing-here")) == []

    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * 4096)
    up = storage.join(storage_root, "ckpt", "step-2", "big.bin")
    storage.upload_file(str(src), up)
    with storage.open_read(up) as stream:
        assert stream.read() == src.read_bytes()
    storage.download_file(up, str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    assert src.exists()  # uploading from another folder leaves the source alone

    storage.delete(b)
    storage.delete(b)  # deleting a missing object is fine
    assert not storage.exists(b)
    storage.delete(storage.join(storage_root, "ckpt"), recursive=True)
    # (SeaweedFS may still list emptied folders as prefixes, so check the objects themselves.)
    assert not storage.exists(a) and not storage.exists(up)


def test_missing_object_error_names_the_url(storage_root):
    url = storage.join(storage_root, "missing.bin")
    with pytest.raises(storage.StorageNotFound, match="missing.bin"):
        storage.read_bytes(url, policy=FAST)
    with pytest.raises(FileNotFoundError):
        storage.open_read(url, policy=FAST)


def test_unreachable_endpoint_retries_then_fails_clearly(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    with pytest.raises(storage.StorageError) as info:
        storage.read_bytes("s3://bucket/x/000000.tar", policy=FAST)
    message = str(info.value)
    assert "s3://bucket/x/000000.tar" in message and "after 3 attempts" in message
    assert "Could not connect" in message


def test_credentials_never_in_errors(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
    with pytest.raises(storage.StorageError) as info:
        storage.read_bytes(s3_server.url("anything"), policy=FAST)
    assert "wrong-secret-value" not in str(info.value)
    assert "after" not in str(info.value)  # authentication errors are not retried


def test_s3_stream_reopens_after_a_dropped_connection(s3_server, caplog):
    url = s3_server.fresh_url("stream") + "/blob.bin"
    payload = bytes(range(256)) * 20_000  # 5 MB
    storage.write_bytes(url, payload)
    stream = storage.open_read(url, policy=FAST, buffer_size=64 * 1024)
    head = stream.read(1_000_000)
    stream.raw.body.close()  # the server (or a proxy) drops the connection mid-object
    assert head + stream.read() == payload
    assert "reopening" in caplog.text
    stream.close()
