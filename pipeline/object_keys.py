"""Object keys of the pipeline's bucket: one pure function per kind of object.

Layout (documented in ``docs/STORAGE.md``)::

    inputs/{store_id}/{job_id}/{item_id}.{ext}     normalized source image, sent to the provider
    results/{store_id}/{job_id}/{item_id}.{ext}    final output, read by upstream systems

Ids are validated upstream, but every segment is still percent-encoded here (RFC 3986
unreserved characters stay as they are), so a key never holds ``/``, a leading ``/``, ``.``
or ``..`` segments, control characters or anything a URL or a file-system mirror would
misread. The encoding is injective: two different ids never share a key.
"""

from __future__ import annotations

import re
from urllib.parse import quote
from uuid import UUID

KeyPart = str | int | UUID
"""An id as it comes from a row: text, integer or UUID."""

MAX_KEY_BYTES = 1024
"""S3's limit on the UTF-8 length of an object key (AWS S3 documentation, "Object keys")."""

_EXTENSION = re.compile(r"[a-z0-9]{1,10}")


def input_key(store_id: KeyPart, job_id: KeyPart, item_id: KeyPart, ext: str) -> str:
    """Return the key of an item's normalized input image.

    Args:
        store_id: the item's store.
        job_id: the item's job.
        item_id: the item.
        ext: file extension without the dot, e.g. ``png`` (case-insensitive).

    Returns:
        ``inputs/{store_id}/{job_id}/{item_id}.{ext}`` with each segment made safe.

    Raises:
        ValueError: on an empty id, an extension outside ``[a-z0-9]{1,10}``, or a key longer
            than ``MAX_KEY_BYTES``.
    """
    return _item_key("inputs", store_id, job_id, item_id, ext)


def result_key(store_id: KeyPart, job_id: KeyPart, item_id: KeyPart, ext: str) -> str:
    """Return the key of an item's final output image.

    Args:
        store_id: the item's store.
        job_id: the item's job.
        item_id: the item.
        ext: file extension without the dot, e.g. ``webp`` (case-insensitive).

    Returns:
        ``results/{store_id}/{job_id}/{item_id}.{ext}`` with each segment made safe.

    Raises:
        ValueError: as for :func:`input_key`.
    """
    return _item_key("results", store_id, job_id, item_id, ext)


def safe_segment(value: KeyPart) -> str:
    """Percent-encode one key segment so that it is a single, harmless path element.

    Args:
        value: an id.

    Returns:
        The id with every character outside ``A-Z a-z 0-9 - _ . ~`` percent-encoded (UTF-8),
        and a segment made only of dots (``.``, ``..``) encoded entirely.

    Raises:
        ValueError: when the id is empty.
    """
    text = str(value)
    if not text:
        raise ValueError("an object key segment must not be empty")
    encoded = quote(text, safe="")
    if encoded.strip(".") == "":
        encoded = "%2E" * len(encoded)
    return encoded


def _item_key(kind: str, store_id: KeyPart, job_id: KeyPart, item_id: KeyPart, ext: str) -> str:
    extension = ext.lower().removeprefix(".")
    if not _EXTENSION.fullmatch(extension):
        raise ValueError(f"invalid file extension {ext!r}")
    key = "/".join(
        (kind, safe_segment(store_id), safe_segment(job_id), f"{safe_segment(item_id)}.{extension}")
    )
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"object key longer than {MAX_KEY_BYTES} bytes")
    return key
