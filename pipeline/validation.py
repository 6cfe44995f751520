"""Row-level validation, run by the scheduler before an item costs anything.

An item whose row can never succeed (unknown model, bad params, missing prompt, a URL we will
never fetch, an empty store id, a negative priority) ends FAILED at once with its error code,
before it takes a queue slot, a download or a provider call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import (
    InvalidParams,
    InvalidPriority,
    InvalidSourceUrl,
    InvalidStoreId,
    PipelineError,
)
from pipeline.models import ModelSpec, get_model

ALLOWED_SCHEMES = ("http", "https", "s3")
MAX_URL_LENGTH = 4096


def check_source_url(url: str) -> None:
    """Reject URLs the workers will never fetch (scheme, host, length).

    Raises:
        InvalidSourceUrl: empty, too long, no host, or a scheme other than http, https, s3.
    """
    if not url or len(url) > MAX_URL_LENGTH:
        raise InvalidSourceUrl("source_url is empty or longer than 4096 characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidSourceUrl(f"source_url is malformed: {exc}") from exc
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise InvalidSourceUrl(
            f"source_url scheme {parts.scheme or '(none)'!r} is not supported "
            "(use http, https or s3)"
        )
    if not parts.netloc or (parts.scheme == "s3" and not parts.path.strip("/")):
        raise InvalidSourceUrl("source_url has no host (or no key for s3://bucket/key)")


def validate_item(
    row: Mapping[str, Any], allowlist: Mapping[str, ModelSpec]
) -> PipelineError | None:
    """Return the error that dooms this item, or None when it may be queued.

    Args:
        row: an item with the job's defaults folded in (``store_id``, ``source_url``,
            ``priority``, ``model``, ``prompt``, ``params``).
        allowlist: the model allowlist.
    """
    try:
        if not str(row.get("store_id") or "").strip():
            raise InvalidStoreId("store_id is empty")
        if int(row.get("priority") or 0) < 0:
            raise InvalidPriority(f"priority {row.get('priority')} is negative; use 0 or more")
        check_source_url(str(row.get("source_url") or ""))
        spec = get_model(str(row.get("model") or ""), allowlist)
        params = row.get("params") or {}
        if not isinstance(params, Mapping):
            raise InvalidParams("params must be a JSON object")
        spec.validate(row.get("prompt"), params)
    except PipelineError as exc:
        return exc
    return None
