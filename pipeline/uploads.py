"""Uploaded source images: sniffed, stored under ``uploads/`` in the bucket, referenced by URL.

Both ``imageopt submit DIR`` and the HTTP API upload files here and give the item an
``s3://{bucket}/uploads/{store}/{batch}/{name}`` source URL, which the creation workers read
back from the bucket (no HTTP fetch, no SSRF surface).

These originals are the user's own photos: retention (:mod:`scheduler.retention`) deletes an
upload once every item whose ``source_url`` names it has had its inputs deleted (24 h after
the item is final), or with the rows of its jobs. Several items may name one upload (the
demo reuses ``uploads/{store}/{file}``, upstream rows may point at any upload); it goes only
when none of them needs it any more.
"""

from __future__ import annotations

import uuid
from pathlib import PurePath

from pipeline.images import JPEG, PNG, WEBP, format_of_suffix
from pipeline.storage import ObjectStorage

UPLOAD_PREFIX = "uploads/"


def new_batch() -> str:
    """A short random id grouping one request's uploads (12 hex digits, 48 bits)."""
    return uuid.uuid4().hex[:12]


def safe_name(name: str) -> str:
    """A file name reduced to ``[A-Za-z0-9._-]`` with no leading dot (never empty)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "_"


def content_type_of_file(name: str) -> str:
    """The content type ``submit`` trusts for a local file, by its suffix
    (:data:`pipeline.images.IMAGE_FORMATS`); ``application/octet-stream`` for anything else."""
    fmt = format_of_suffix(PurePath(name).suffix)
    return fmt.content_type if fmt is not None else "application/octet-stream"


def sniff_content_type(data: bytes) -> str | None:
    """The image type named by the first bytes (magic numbers), whatever the file is called.

    Args:
        data: the file's content (only the first 12 bytes are read).

    Returns:
        ``image/jpeg``, ``image/png`` or ``image/webp``, or None for anything else.
    """
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG.content_type
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG.content_type
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP.content_type
    return None


def upload_key(store_id: str, batch: str, index: int, name: str) -> str:
    """Key of one uploaded file: ``uploads/{store}/{batch}/{index}-{name}``.

    The index keeps two files of one batch with the same name apart; the random batch keeps
    two stores whose names reduce alike apart. No ``%`` ever appears (source URLs are read
    verbatim).
    """
    return f"{UPLOAD_PREFIX}{safe_name(store_id)}/{batch}/{index:03d}-{safe_name(name)}"


def store_upload(
    storage: ObjectStorage,
    *,
    store_id: str,
    batch: str,
    index: int,
    name: str,
    data: bytes,
    content_type: str,
) -> str:
    """Put one file in the bucket and return the ``s3://`` source URL of its item.

    Raises:
        StorageError: the upload failed.
    """
    key = upload_key(store_id, batch, index, name)
    storage.put_bytes(key, data, content_type)
    return f"s3://{storage.bucket}/{key}"


def upload_url_prefix(bucket: str) -> str:
    """What every uploaded source URL of ``bucket`` starts with: ``s3://{bucket}/uploads/``."""
    return f"s3://{bucket}/{UPLOAD_PREFIX}"


def upload_key_of(source_url: str, bucket: str) -> str | None:
    """The bucket key of an uploaded source URL, or None when the URL is not one of ours.

    Only keys of the shape our uploads have are recognized: segments that are not empty,
    ``.`` or ``..`` and no control characters. Retention deletes what this returns, so a
    hand-written source such as ``s3://{bucket}/uploads/../results/...`` never names an
    object outside ``uploads/``.
    """
    if not source_url.startswith(upload_url_prefix(bucket)):
        return None
    key = source_url.removeprefix(f"s3://{bucket}/")
    segments = key.split("/")
    if any(s in ("", ".", "..") for s in segments) or any(ord(c) < 32 for c in key):
        return None
    return key
