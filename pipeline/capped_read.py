"""Read a streamed body into memory, refusing it once it is larger than a cap.

The one rule for every download held in memory (a source image from the web, a provider
output, an object from S3): an honest ``Content-Length`` over the cap is refused before a
byte is read, and the count is checked again while reading, so a body that lies about its
size costs at most ``max_bytes`` plus one chunk of memory. Each caller raises its own error
(its ``error_code`` is part of its contract) through ``too_large``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


def declared_length(content_length: str | None) -> int | None:
    """``Content-Length`` as a number of bytes; None when absent or not all ASCII digits."""
    if content_length is None or not content_length.isascii() or not content_length.isdigit():
        return None
    return int(content_length)


def read_capped(
    chunks: Iterable[bytes],
    *,
    max_bytes: int,
    content_length: str | None,
    too_large: Callable[[int | None], Exception],
) -> bytes:
    """Join ``chunks`` into one body of at most ``max_bytes`` bytes.

    Args:
        chunks: the body as it arrives (only iterated when the declared length fits).
        max_bytes: the largest body accepted, bytes.
        content_length: the response's ``Content-Length`` header, if any.
        too_large: builds the caller's error; called with the declared length when the
            header is over the cap, with None when the body itself grows over it.

    Returns:
        The body.

    Raises:
        Exception: whatever ``too_large`` returns; errors of ``chunks`` pass through.
    """
    declared = declared_length(content_length)
    if declared is not None and declared > max_bytes:
        raise too_large(declared)
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise too_large(None)
    return bytes(body)
