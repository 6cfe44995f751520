"""Object storage (S3, MinIO, SeaweedFS) for normalized inputs and final results.

The one module that talks to the ``minio`` SDK. Every SDK, urllib3 and socket exception is
translated here, with ``raise ... from exc``, into :class:`~pipeline.errors.StorageError`
(transient by default) or its permanent subclasses :class:`ObjectNotFound` and
:class:`ObjectTooLarge`; messages name the
operation, bucket and key, never credentials or presigned URLs::

    S3 answer / failure                         raised                      transient
    NoSuchKey                                   ObjectNotFound              no
    AccessDenied, SignatureDoesNotMatch, ...    StorageError                yes (ops fix keys)
    other 4xx S3 error (e.g. InvalidArgument)   StorageError                no
    5xx, SlowDown, timeouts, resets, refused    StorageError                yes
    object larger than ``max_bytes``            ObjectTooLarge              no

One :class:`ObjectStorage` per process is enough: the minio client is thread-safe (a shared
urllib3 connection pool with bounded size and explicit connect/read timeouts).

The bucket is private: :meth:`ObjectStorage.ensure_bucket` removes any bucket policy, and
readers outside the pipeline (the provider, upstream systems) get presigned GET URLs.

Size: one client of one S3 bucket (put, get capped, stream, stat, list, delete one and in
batches, presign, bucket policy) with its error table; each method is short.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import certifi
import structlog
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error, ServerError

from pipeline.capped_read import read_capped
from pipeline.errors import ConfigurationError, StorageError
from pipeline.object_keys import input_key, result_key

if TYPE_CHECKING:
    from pipeline.config import Settings

__all__ = [
    "DeleteOutcome",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStorage",
    "ObjectStream",
    "ObjectTooLarge",
    "input_key",
    "result_key",
]

log = structlog.get_logger(__name__)

T = TypeVar("T")

PART_SIZE_BYTES = 8 * 1024 * 1024
"""Multipart part size: objects above it upload in parts of this size, one part in memory at a
time (S3 requires parts of at least 5 MiB except the last)."""
READ_CHUNK_BYTES = 64 * 1024
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
"""SigV4 presigned URLs live at most 7 days (AWS S3 documentation)."""
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 60.0
POOL_CONNECTIONS = 16
DELETE_BATCH_KEYS = 1000
"""Keys per ``DeleteObjects`` request: the S3 API's maximum (AWS S3 documentation); the minio
SDK splits longer lists into requests of this size."""

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound"})
_AUTH_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"}
)
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "NoSuchBucket"}
)
_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError, InvalidResponseError, ServerError)


class ObjectNotFound(StorageError):
    """The key does not exist in the bucket (permanent: retrying cannot create it)."""

    transient = False


class ObjectTooLarge(StorageError):
    """The object is larger than the reader's ``max_bytes`` (permanent)."""

    transient = False


@dataclass(frozen=True)
class ObjectInfo:
    """What ``HEAD object`` tells about a stored object.

    Attributes:
        key: object key.
        size: length in bytes.
        content_type: the ``Content-Type`` stored with the object.
        etag: entity tag without quotes (``<md5>-<parts>`` for multipart uploads).
        last_modified: time of the last write (UTC), when the server reports it.
        metadata: user metadata (``x-amz-meta-*``), names lower-cased without the prefix.
    """

    key: str
    size: int
    content_type: str
    etag: str
    last_modified: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeleteOutcome:
    """What a batch delete (:meth:`ObjectStorage.delete_many`) did, key by key.

    Attributes:
        deleted: keys that are gone now (deleted, or already missing: S3 reports a missing key
            as deleted).
        failed: key -> the S3 error code the store gave for that key (e.g. ``AccessDenied``,
            ``InternalError``); these objects may still exist.
    """

    deleted: frozenset[str]
    failed: Mapping[str, str]


class ObjectStream:
    """An object being read (:meth:`ObjectStorage.open_stream`): iterate once, then close.

    Attributes:
        size: length in bytes (``Content-Length``).
        content_type: the stored ``Content-Type``.
    """

    def __init__(self, response: Any, target: str, size: int, content_type: str) -> None:
        self._response = response
        self._target = target
        self.size = size
        self.content_type = content_type

    def chunks(self, chunk_bytes: int = READ_CHUNK_BYTES) -> Iterator[bytes]:
        """Yield the content in chunks of at most ``chunk_bytes`` bytes, then close.

        Raises:
            StorageError: transient, when the transfer breaks.
        """
        try:
            yield from self._response.stream(chunk_bytes)
        except _NETWORK_ERRORS as exc:
            raise _translate(exc, "get_object", self._target) from exc
        finally:
            self.close()

    def close(self) -> None:
        """Release the connection (safe to call twice)."""
        self._response.close()
        self._response.release_conn()


class ObjectStorage:
    """The pipeline's bucket in an S3-compatible object store.

    Args:
        endpoint: ``host:port`` without a scheme (``S3_ENDPOINT``).
        access_key: access key id.
        secret_key: secret access key.
        bucket: bucket holding inputs and results.
        region: bucket region; also used for signing, so presigning needs no network call.
        secure: use HTTPS (certificates checked against ``SSL_CERT_FILE`` or certifi).
        presign_expiry_seconds: default lifetime of presigned URLs, in seconds.
        max_pool_connections: connections kept per host in the shared pool.
        connect_timeout_seconds: TCP connect timeout, seconds.
        read_timeout_seconds: timeout between bytes read, seconds.

    Raises:
        ConfigurationError: on an endpoint with a scheme or path, or a bad expiry.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        region: str = "us-east-1",
        secure: bool = False,
        presign_expiry_seconds: int = 3600,
        max_pool_connections: int = POOL_CONNECTIONS,
        connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS,
        read_timeout_seconds: float = READ_TIMEOUT_SECONDS,
    ) -> None:
        if "://" in endpoint or "/" in endpoint:
            raise ConfigurationError(
                "S3_ENDPOINT must be host:port without scheme or path (S3_SECURE picks https)"
            )
        if not 1 <= presign_expiry_seconds <= MAX_PRESIGN_SECONDS:
            raise ConfigurationError(
                f"presign expiry must be 1..{MAX_PRESIGN_SECONDS} s, got {presign_expiry_seconds}"
            )
        self._bucket = bucket
        self._region = region
        self._endpoint = endpoint
        self._presign_expiry = presign_expiry_seconds
        self._http = urllib3.PoolManager(
            num_pools=4,
            maxsize=max_pool_connections,
            timeout=urllib3.Timeout(connect=connect_timeout_seconds, read=read_timeout_seconds),
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(
                total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)
            ),
        )
        try:
            self._client = Minio(
                endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure,
                region=region,
                http_client=self._http,
            )
        except ValueError as exc:
            raise ConfigurationError(f"invalid S3 endpoint {endpoint!r}") from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> ObjectStorage:
        """Build the storage from the process settings.

        Args:
            settings: the process's frozen settings.

        Returns:
            A storage bound to ``settings.s3_bucket``.
        """
        return cls(
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key.get_secret_value(),
            secret_key=settings.s3_secret_key.get_secret_value(),
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            secure=settings.s3_secure,
            presign_expiry_seconds=settings.presign_expiry_seconds,
        )

    @property
    def bucket(self) -> str:
        """Name of the bucket."""
        return self._bucket

    @property
    def endpoint(self) -> str:
        """``host:port`` of the object store."""
        return self._endpoint

    def ensure_bucket(self) -> None:
        """Create the bucket if missing and make sure it is private (no bucket policy).

        Raises:
            StorageError: when the store refuses or cannot be reached.
        """
        target = self._bucket
        if not self._call("bucket_exists", target, lambda: self._client.bucket_exists(target)):
            try:
                self._client.make_bucket(target, location=self._region)
                log.info("storage_bucket_created", bucket=target)
            except S3Error as exc:
                if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise _translate(exc, "make_bucket", target) from exc
            except _NETWORK_ERRORS as exc:
                raise _translate(exc, "make_bucket", target) from exc
        try:
            self._client.get_bucket_policy(target)
        except S3Error as exc:
            if exc.code == "NoSuchBucketPolicy":
                return
            raise _translate(exc, "get_bucket_policy", target) from exc
        except _NETWORK_ERRORS as exc:
            raise _translate(exc, "get_bucket_policy", target) from exc
        self._call(
            "delete_bucket_policy", target, lambda: self._client.delete_bucket_policy(target)
        )
        log.warning("storage_bucket_policy_removed", bucket=target)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Store an object, replacing any object under the same key.

        Args:
            key: object key (see :mod:`pipeline.object_keys`).
            data: the content.
            content_type: MIME type stored with the object.
            metadata: user metadata, stored as ``x-amz-meta-<name>`` (ASCII values).

        Raises:
            StorageError: when the upload fails.
        """
        self.put_stream(key, io.BytesIO(data), len(data), content_type, metadata)

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        length: int,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Store an object read from a stream; above ``PART_SIZE_BYTES`` it goes multipart.

        Memory stays bounded by one part (``PART_SIZE_BYTES``) whatever the object's size.

        Args:
            key: object key.
            stream: readable binary stream positioned at the start of the content.
            length: exact content length in bytes.
            content_type: MIME type stored with the object.
            metadata: user metadata, stored as ``x-amz-meta-<name>``.

        Raises:
            StorageError: when the upload fails.
        """
        meta: dict[str, str | list[str] | tuple[str]] | None = dict(metadata) if metadata else None
        self._call(
            "put_object",
            f"{self._bucket}/{key}",
            lambda: self._client.put_object(
                self._bucket,
                key,
                stream,
                length,
                content_type=content_type,
                metadata=meta,
                part_size=PART_SIZE_BYTES,
                num_parallel_uploads=1,
            ),
        )

    def get_bytes(self, key: str, *, max_bytes: int) -> bytes:
        """Read a whole object, refusing objects larger than ``max_bytes``.

        The size is checked against ``Content-Length`` before reading and again while
        streaming, so an oversized object costs at most ``max_bytes`` + one chunk of memory.

        Args:
            key: object key.
            max_bytes: the largest size accepted, in bytes.

        Returns:
            The content.

        Raises:
            ObjectNotFound: when the key does not exist.
            ObjectTooLarge: when the object exceeds ``max_bytes``.
            StorageError: transient on transport failures.
        """
        target = f"{self._bucket}/{key}"
        response = self._call(
            "get_object", target, lambda: self._client.get_object(self._bucket, key)
        )
        try:
            return read_capped(
                response.stream(READ_CHUNK_BYTES),
                max_bytes=max_bytes,
                content_length=response.headers.get("Content-Length"),
                too_large=lambda _declared: _too_large(target, max_bytes),
            )
        except _NETWORK_ERRORS as exc:
            raise _translate(exc, "get_object", target) from exc
        finally:
            response.close()
            response.release_conn()

    def open_stream(self, key: str, *, max_bytes: int) -> ObjectStream:
        """Open an object for reading in chunks (one ``GET``; the caller closes the stream).

        Args:
            key: object key.
            max_bytes: the largest size accepted, in bytes (checked on ``Content-Length``).

        Returns:
            The open stream, with its size and content type.

        Raises:
            ObjectNotFound: when the key does not exist.
            ObjectTooLarge: when the object exceeds ``max_bytes``.
            StorageError: transient on transport failures.
        """
        target = f"{self._bucket}/{key}"
        response = self._call(
            "get_object", target, lambda: self._client.get_object(self._bucket, key)
        )
        declared = response.headers.get("Content-Length") or ""
        if not declared.isdigit() or int(declared) > max_bytes:
            response.close()
            response.release_conn()
            if not declared.isdigit():
                raise StorageError(f"storage get_object {target}: no Content-Length")
            raise _too_large(target, max_bytes)
        content_type = response.headers.get("Content-Type") or "application/octet-stream"
        return ObjectStream(response, target, int(declared), content_type)

    def stat(self, key: str) -> ObjectInfo | None:
        """Describe an object without reading it.

        Args:
            key: object key.

        Returns:
            The object's description, or None when the key does not exist.

        Raises:
            StorageError: on any other failure.
        """
        try:
            obj = self._call(
                "stat_object", f"{self._bucket}/{key}",
                lambda: self._client.stat_object(self._bucket, key),
            )  # fmt: skip
        except ObjectNotFound:
            return None
        prefix = "x-amz-meta-"
        metadata = {
            name.lower().removeprefix(prefix): str(value)
            for name, value in (obj.metadata or {}).items()
            if name.lower().startswith(prefix)
        }
        return ObjectInfo(
            key=key,
            size=int(obj.size or 0),
            content_type=str(obj.content_type or "application/octet-stream"),
            etag=str(obj.etag or "").strip('"'),
            last_modified=obj.last_modified,
            metadata=metadata,
        )

    def exists(self, key: str) -> bool:
        """Tell whether the key exists.

        Args:
            key: object key.

        Returns:
            True when an object is stored under the key.

        Raises:
            StorageError: when the store cannot answer.
        """
        return self.stat(key) is not None

    def presigned_get_url(self, key: str, expires_seconds: int | None = None) -> str:
        """Return a URL that lets anyone holding it GET the object until it expires.

        Signed locally (SigV4, no network call). Treat the URL as a secret: do not log it.

        Args:
            key: object key.
            expires_seconds: lifetime in seconds (default: ``presign_expiry_seconds``), at most
                ``MAX_PRESIGN_SECONDS``.

        Returns:
            The presigned URL (path-style on IP endpoints).

        Raises:
            ValueError: on a lifetime outside 1..``MAX_PRESIGN_SECONDS``.
            StorageError: when signing fails.
        """
        seconds = self._presign_expiry if expires_seconds is None else expires_seconds
        if not 1 <= seconds <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"presigned URL lifetime must be 1..{MAX_PRESIGN_SECONDS} s")
        return self._call(
            "presign_get",
            f"{self._bucket}/{key}",
            lambda: self._client.presigned_get_object(
                self._bucket, key, expires=timedelta(seconds=seconds)
            ),
        )

    def delete(self, key: str) -> None:
        """Delete an object; deleting a missing key succeeds (S3 semantics).

        Args:
            key: object key.

        Raises:
            StorageError: when the store refuses or cannot be reached.
        """
        self._call(
            "remove_object", f"{self._bucket}/{key}",
            lambda: self._client.remove_object(self._bucket, key),
        )  # fmt: skip

    def delete_many(self, keys: Iterable[str]) -> DeleteOutcome:
        """Delete many objects with S3 batch deletes (``DeleteObjects``, up to
        :data:`DELETE_BATCH_KEYS` keys per request) instead of one ``DELETE`` per key.

        Missing keys count as deleted (S3 semantics), so running it twice is harmless. The
        store answers key by key: a refused key lands in ``failed`` and the others still go.

        Args:
            keys: object keys (duplicates are sent once).

        Returns:
            The keys deleted and the keys refused, with the store's error code.

        Raises:
            StorageError: when a whole request fails (store unreachable, credentials refused,
                5xx); keys of earlier requests of the same call may be gone already.
        """
        unique = sorted(set(keys))
        if not unique:
            return DeleteOutcome(frozenset(), {})
        target = f"{self._bucket}/({len(unique)} keys)"
        failed: dict[str, str] = {}

        def run() -> None:
            # The SDK yields per-key errors lazily: the requests go out while this loop runs.
            objects = (DeleteObject(key) for key in unique)
            for error in self._client.remove_objects(self._bucket, objects):
                if error.code not in _NOT_FOUND_CODES:
                    failed[error.name or ""] = error.code or "unknown"

        self._call("remove_objects", target, run)
        if "" in failed:  # an error naming no key: nothing can be known to be gone
            return DeleteOutcome(frozenset(), failed)
        return DeleteOutcome(frozenset(unique) - failed.keys(), failed)

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Yield every key under a prefix, recursively, in lexicographic order, page by page.

        Args:
            prefix: key prefix, e.g. ``results/store-1/``; ``""`` lists the whole bucket.

        Yields:
            Object keys.

        Raises:
            StorageError: when a page cannot be fetched.
        """
        target = f"{self._bucket}/{prefix}*"
        try:
            for obj in self._client.list_objects(self._bucket, prefix=prefix, recursive=True):
                if obj.object_name is not None and not obj.is_dir:
                    yield obj.object_name
        except (S3Error, *_NETWORK_ERRORS) as exc:
            raise _translate(exc, "list_objects", target) from exc

    def ping(self) -> None:
        """Check that the store answers with our credentials and the bucket exists (``HEAD``).

        Meant for readiness probes: one cheap request, no side effect.

        Raises:
            StorageError: when the store is unreachable, refuses us, or the bucket is missing.
        """
        target = self._bucket
        if not self._call("bucket_exists", target, lambda: self._client.bucket_exists(target)):
            raise StorageError(f"storage bucket {target} does not exist")

    def remove_bucket(self) -> None:
        """Delete the bucket, which must be empty; a missing bucket is fine.

        For test teardown and tools; the pipeline itself never deletes its bucket.

        Raises:
            StorageError: when the store refuses (e.g. ``BucketNotEmpty``) or is unreachable.
        """
        target = self._bucket
        try:
            self._client.remove_bucket(target)
        except S3Error as exc:
            if exc.code != "NoSuchBucket":
                raise _translate(exc, "remove_bucket", target) from exc
        except _NETWORK_ERRORS as exc:
            raise _translate(exc, "remove_bucket", target) from exc

    def close(self) -> None:
        """Close the pooled connections (the storage stays usable and reconnects on demand)."""
        self._http.clear()

    def _call(self, operation: str, target: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (S3Error, *_NETWORK_ERRORS) as exc:
            raise _translate(exc, operation, target) from exc


def _too_large(target: str, max_bytes: int) -> ObjectTooLarge:
    return ObjectTooLarge(f"storage object {target} exceeds {max_bytes} bytes")


def _translate(exc: Exception, operation: str, target: str) -> StorageError:
    """Map an SDK or transport exception to the pipeline's error tree (see module doc)."""
    if isinstance(exc, S3Error):
        code = exc.code or "unknown"
        message = f"storage {operation} {target} failed: {code}"
        if code in _NOT_FOUND_CODES:
            return ObjectNotFound(message)
        if code in _AUTH_CODES:
            return StorageError(f"{message} (check S3_ACCESS_KEY/S3_SECRET_KEY)", transient=True)
        status = exc.response.status if exc.response is not None else 0
        return StorageError(message, transient=code in _TRANSIENT_CODES or status >= 500)
    if isinstance(exc, ServerError):
        return StorageError(f"storage {operation} {target} failed: HTTP {exc.status_code}")
    return StorageError(f"storage {operation} {target} failed: {type(exc).__name__}")
