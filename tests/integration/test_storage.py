"""``pipeline.storage`` against a real SeaweedFS S3 server over sockets.

Each test gets a private bucket of its own (``temporary_bucket``), so tests run in any order
and alongside other sessions on the same server.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from pipeline.errors import StorageError
from pipeline.object_keys import input_key, result_key
from pipeline.storage import DELETE_BATCH_KEYS, ObjectNotFound, ObjectStorage, ObjectTooLarge
from tests.support.s3 import S3Endpoint, ensure_s3_server, temporary_bucket, unique_bucket_name

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def s3() -> S3Endpoint:
    return ensure_s3_server()


@pytest.fixture
def storage(s3: S3Endpoint) -> Iterator[ObjectStorage]:
    with temporary_bucket(s3) as bucket_storage:
        yield bucket_storage


def public_url(storage: ObjectStorage, key: str) -> str:
    return f"http://{storage.endpoint}/{storage.bucket}/{key}"


def test_put_then_get_returns_the_same_bytes(storage: ObjectStorage) -> None:
    data = os.urandom(10_000)
    storage.put_bytes("a/b.png", data, "image/png")

    assert storage.get_bytes("a/b.png", max_bytes=len(data)) == data


def test_stat_describes_size_content_type_etag_and_metadata(storage: ObjectStorage) -> None:
    data = b"hello, object storage"
    storage.put_bytes("x.txt", data, "text/plain", metadata={"Item-Id": "42"})

    info = storage.stat("x.txt")

    assert info is not None
    assert info.key == "x.txt"
    assert info.size == len(data)
    assert info.content_type == "text/plain"
    assert info.etag == hashlib.md5(data).hexdigest()
    assert info.metadata == {"item-id": "42"}
    assert info.last_modified is not None


def test_a_missing_key_has_no_stat_and_does_not_exist(storage: ObjectStorage) -> None:
    assert storage.stat("nope") is None
    assert storage.exists("nope") is False
    storage.put_bytes("yes", b"1", "text/plain")
    assert storage.exists("yes") is True


def test_reading_a_missing_key_raises_a_permanent_not_found(storage: ObjectStorage) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        storage.get_bytes("nope", max_bytes=10)

    assert caught.value.transient is False
    assert caught.value.code == "storage_error"


def test_put_replaces_an_existing_object(storage: ObjectStorage) -> None:
    storage.put_bytes("k", b"first", "text/plain")
    storage.put_bytes("k", b"second!", "application/octet-stream")

    assert storage.get_bytes("k", max_bytes=100) == b"second!"
    info = storage.stat("k")
    assert info is not None
    assert info.content_type == "application/octet-stream"


def test_delete_removes_the_object_and_deleting_again_succeeds(storage: ObjectStorage) -> None:
    storage.put_bytes("gone", b"x", "text/plain")

    storage.delete("gone")
    storage.delete("gone")

    assert storage.exists("gone") is False


def test_delete_many_deletes_in_batches_and_reports_the_keys_the_store_refuses(
    storage: ObjectStorage,
) -> None:
    # More keys than one DeleteObjects request takes (1,000), so the batches are split.
    keys = [f"uploads/shop/b/{n:04d}.jpg" for n in range(DELETE_BATCH_KEYS + 5)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: storage.put_bytes(key, b"x", "image/jpeg"), keys))
    storage.put_bytes("results/kept.jpg", b"x", "image/jpeg")
    refused = "uploads/../results/kept.jpg"  # SeaweedFS refuses a ".." segment, key by key

    outcome = storage.delete_many([*keys, "uploads/missing.jpg", refused, keys[0]])
    again = storage.delete_many(keys)

    assert outcome.failed == {refused: "InvalidRequest"}
    assert outcome.deleted == {*keys, "uploads/missing.jpg"}  # missing: gone, as S3 says
    assert list(storage.list_keys("")) == ["results/kept.jpg"]
    assert (again.deleted, again.failed) == (set(keys), {})
    assert storage.delete_many([]).deleted == frozenset()


def test_list_keys_yields_every_key_under_the_prefix_and_nothing_else(
    storage: ObjectStorage,
) -> None:
    wanted = [result_key("s1", "j1", item, "png") for item in range(1, 6)]
    others = [result_key("s10", "j1", 1, "png"), input_key("s1", "j1", 1, "png"), "results/s1"]
    for key in wanted + others:
        storage.put_bytes(key, b"x", "image/png")

    assert list(storage.list_keys("results/s1/")) == sorted(wanted)
    assert sorted(storage.list_keys("")) == sorted(wanted + others)


def test_hostile_ids_stay_inside_their_prefix(storage: ObjectStorage) -> None:
    key = input_key("../../etc", "/abs", "a b?c#d", "PNG")
    storage.put_bytes(key, b"x", "image/png")

    assert key == "inputs/..%2F..%2Fetc/%2Fabs/a%20b%3Fc%23d.png"
    assert list(storage.list_keys("inputs/")) == [key]
    assert input_key("..", ".", "x", "png") == "inputs/%2E%2E/%2E/x.png"


def test_a_12_mib_object_round_trips_through_a_multipart_upload(storage: ObjectStorage) -> None:
    data = os.urandom(12 * MIB)

    storage.put_bytes("big.bin", data, "application/octet-stream")

    info = storage.stat("big.bin")
    assert info is not None
    assert info.size == len(data)
    assert info.etag.endswith("-2")  # two 8 MiB parts: the ETag of a multipart upload
    assert storage.get_bytes("big.bin", max_bytes=len(data)) == data


def test_get_bytes_over_the_cap_is_a_permanent_storage_error(storage: ObjectStorage) -> None:
    storage.put_bytes("ten", b"0123456789", "text/plain")

    assert storage.get_bytes("ten", max_bytes=10) == b"0123456789"
    with pytest.raises(ObjectTooLarge, match="exceeds 9 bytes") as caught:
        storage.get_bytes("ten", max_bytes=9)
    assert caught.value.transient is False
    assert isinstance(caught.value, StorageError)


def test_the_connection_is_reusable_after_an_over_cap_read(storage: ObjectStorage) -> None:
    storage.put_bytes("big", os.urandom(2 * MIB), "application/octet-stream")
    for _ in range(20):  # more rounds than the pool has connections
        with pytest.raises(StorageError):
            storage.get_bytes("big", max_bytes=1024)

    storage.put_bytes("small", b"ok", "text/plain")
    assert storage.get_bytes("small", max_bytes=2) == b"ok"


def test_a_presigned_url_downloads_the_object_with_plain_httpx(storage: ObjectStorage) -> None:
    data = os.urandom(5000)
    storage.put_bytes("p.jpg", data, "image/jpeg")

    response = httpx.get(storage.presigned_get_url("p.jpg"))

    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/jpeg"


def test_a_presigned_url_with_a_tampered_signature_is_refused(storage: ObjectStorage) -> None:
    storage.put_bytes("p.jpg", b"secret pixels", "image/jpeg")
    url = urlsplit(storage.presigned_get_url("p.jpg"))
    query = {name: values[0] for name, values in parse_qs(url.query).items()}
    signature = query["X-Amz-Signature"]
    query["X-Amz-Signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]

    response = httpx.get(urlunsplit(url._replace(query=urlencode(query))))

    assert response.status_code == 403
    assert b"secret pixels" not in response.content


def test_a_presigned_url_for_another_key_is_refused(storage: ObjectStorage) -> None:
    storage.put_bytes("mine.jpg", b"a", "image/jpeg")
    storage.put_bytes("other.jpg", b"b", "image/jpeg")

    url = storage.presigned_get_url("mine.jpg").replace("/mine.jpg?", "/other.jpg?")

    assert httpx.get(url).status_code == 403


def test_an_expired_presigned_url_is_refused(storage: ObjectStorage) -> None:
    storage.put_bytes("p.jpg", b"a", "image/jpeg")
    url = storage.presigned_get_url("p.jpg", expires_seconds=3)
    assert httpx.get(url).status_code == 200

    time.sleep(4.5)

    assert httpx.get(url).status_code == 403


@pytest.mark.parametrize("seconds", [0, 7 * 24 * 3600 + 1])
def test_presign_lifetimes_outside_one_second_to_seven_days_are_rejected(
    storage: ObjectStorage, seconds: int
) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        storage.presigned_get_url("p.jpg", expires_seconds=seconds)


def test_an_anonymous_get_is_refused_because_the_bucket_is_private(
    storage: ObjectStorage,
) -> None:
    storage.put_bytes("private.png", b"pixels", "image/png")

    response = httpx.get(public_url(storage, "private.png"))

    assert response.status_code == 403
    assert b"pixels" not in response.content


def test_ensure_bucket_removes_a_public_read_policy(s3: S3Endpoint, storage: ObjectStorage) -> None:
    storage.put_bytes("o.png", b"pixels", "image/png")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ["*"]},
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{storage.bucket}/*"],
            }
        ],
    }
    s3.minio().set_bucket_policy(storage.bucket, json.dumps(policy))
    assert httpx.get(public_url(storage, "o.png")).status_code == 200  # the policy took effect

    storage.ensure_bucket()

    assert httpx.get(public_url(storage, "o.png")).status_code == 403


def test_ensure_bucket_creates_a_missing_bucket_and_is_idempotent(s3: S3Endpoint) -> None:
    storage = s3.storage(unique_bucket_name())
    with pytest.raises(StorageError, match="does not exist"):
        storage.ping()
    try:
        storage.ensure_bucket()
        storage.ensure_bucket()
        storage.ping()
        storage.put_bytes("k", b"v", "text/plain")
        assert storage.get_bytes("k", max_bytes=1) == b"v"
    finally:
        storage.delete("k")
        storage.remove_bucket()
        storage.close()
    assert not s3.minio().bucket_exists(storage.bucket)


def test_a_wrong_secret_key_is_refused_with_a_storage_error(
    s3: S3Endpoint, storage: ObjectStorage
) -> None:
    storage.put_bytes("k", b"v", "text/plain")
    wrong = s3.storage(storage.bucket, secret_key="not-the-secret")

    with pytest.raises(StorageError, match="SignatureDoesNotMatch") as put_error:
        wrong.put_bytes("k2", b"v", "text/plain")
    with pytest.raises(StorageError, match="SignatureDoesNotMatch"):
        wrong.get_bytes("k", max_bytes=10)
    with pytest.raises(StorageError):
        wrong.ping()
    with pytest.raises(StorageError):
        wrong.exists("k")
    wrong.close()

    assert put_error.value.transient is True  # ops fix the keys; items retry meanwhile
    assert "not-the-secret" not in str(put_error.value)
    assert s3.secret_key not in str(put_error.value)
    assert storage.exists("k2") is False


def test_an_unknown_access_key_is_refused(s3: S3Endpoint, storage: ObjectStorage) -> None:
    stranger = ObjectStorage(
        endpoint=s3.endpoint, access_key="stranger", secret_key=s3.secret_key, bucket=storage.bucket
    )

    with pytest.raises(StorageError, match="InvalidAccessKeyId"):
        stranger.put_bytes("k", b"v", "text/plain")
    with pytest.raises(StorageError, match="AccessDenied"):  # HEAD answers carry no error code
        stranger.ping()
    stranger.close()
    assert storage.exists("k") is False


def test_an_unreachable_endpoint_is_a_transient_storage_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        storage = ObjectStorage(
            endpoint=f"127.0.0.1:{port}", access_key="a", secret_key="b", bucket="any"
        )
        started = time.monotonic()
        with pytest.raises(StorageError) as caught:
            storage.ping()
        storage.close()

    assert caught.value.transient is True
    assert time.monotonic() - started < 10


def test_an_endpoint_with_a_scheme_is_a_configuration_error() -> None:
    from pipeline.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="without scheme"):
        ObjectStorage(endpoint="http://127.0.0.1:8333", access_key="a", secret_key="b", bucket="x")


def test_the_local_server_listens_on_loopback_only(s3: S3Endpoint) -> None:
    s3_port = int(s3.endpoint.rsplit(":", 1)[1])
    ports = set(range(s3_port, s3_port + 8))  # the script's layout: S3 port + 7 internal
    listeners = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(port_hex, 16) in ports:  # 0A = LISTEN
                listeners.append(address)

    assert listeners, "no listener found on the server's ports"
    assert set(listeners) == {"0100007F"}  # 127.0.0.1, little-endian hex
