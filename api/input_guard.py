"""Malformed input is answered before any route runs (a pure ASGI middleware).

* **Query parameters**: every name and value must be percent-encoded UTF-8 without a NUL or a
  lone surrogate, values at most :data:`MAX_QUERY_CHARS`; else 400 naming the parameter.
* **Path**: a segment of more than 19 digits cannot be an id (ids are Postgres ``bigint``):
  404, before Starlette's ``int`` convertor would fail on it (over 4300 digits it raises).
* **JSON bodies** (``Content-Type: application/json``, any method with a body): at most
  ``max_json_bytes`` (413), parsed and checked by :func:`pipeline.validation.parse_json`
  (NUL, lone surrogates, integers outside 64 bits, ``NaN``, nesting, string length); a bad
  value is a 400 naming its path (``items[0].sourceUrl``, ``prompt``). The body, once
  checked, is handed to the route as it came. Except on a **signed** path (the provider's
  webhooks): that route checks the signature over the raw bytes first, so a body nobody signed
  is never parsed (a 401), and a signed one comes from the provider; parsing it here too cost 7 %
  of the api's CPU per webhook (docs/BENCHMARKS.md).

Every JSON field, present or added later, gets the same treatment without a line in its
route; the routes still check their own rules (types, lengths, allowlists).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.envelope import ApiError, error_response, validation_error
from pipeline.errors import MalformedInput
from pipeline.validation import check_text, parse_json

MAX_QUERY_CHARS = 1024
"""Longest query parameter name or value, characters (ours are a flag: ``download=1``)."""
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LONG_NUMBER_SEGMENT = re.compile(r"(?:^|/)[0-9]{20,}(?:/|$)")


def _decode(raw: bytes) -> str:
    """One query name or value: ``+`` is a space, then percent-decoding, then strict UTF-8."""
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")


def query_problem(query_string: bytes) -> ApiError | None:
    """The 400 for the first malformed query parameter, or None.

    Args:
        query_string: the raw query (ASGI ``scope["query_string"]``).
    """
    for pair in query_string.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        try:
            name = _decode(raw_name)
            check_text(name, "query parameter name", max_chars=MAX_QUERY_CHARS)
        except (UnicodeDecodeError, MalformedInput):
            return validation_error("query", "a query parameter name is malformed")
        try:
            check_text(_decode(raw_value), name, max_chars=MAX_QUERY_CHARS)
        except UnicodeDecodeError:
            return validation_error(name, f"query parameter {name} is not valid UTF-8")
        except MalformedInput as exc:
            return validation_error(name, f"query parameter {exc.message}")
    return None


class InputGuardMiddleware:
    """Refuses malformed query parameters, impossible ids and hostile JSON bodies (module doc).

    Args:
        app: the wrapped app.
        max_json_bytes: the largest JSON body accepted, bytes.
        signed_paths: paths whose route verifies a signature over the raw body before it
            parses it; their bodies are not read here (query and path checks still apply).
    """

    def __init__(self, app: ASGIApp, max_json_bytes: int, signed_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.max_json_bytes = max_json_bytes
        self.signed_paths = frozenset(signed_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        error = query_problem(scope.get("query_string", b""))
        if error is None and _LONG_NUMBER_SEGMENT.search(scope["path"]):
            error = ApiError(404, "not_found", "not found")
        headers = Headers(scope=scope)
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if (
            error is None
            and scope["method"] in _BODY_METHODS
            and media_type == "application/json"
            and scope["path"] not in self.signed_paths
        ):
            body, error = await self._read_json(receive, headers)
            if error is None:
                await self.app(scope, _replay(body, receive), send)
                return
        if error is not None:
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _read_json(self, receive: Receive, headers: Headers) -> tuple[bytes, ApiError | None]:
        too_large = ApiError(
            413, "payload_too_large", f"JSON body larger than {self.max_json_bytes} bytes",
            details={"field": "body", "maxBytes": self.max_json_bytes},
        )  # fmt: skip
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_json_bytes:
            return b"", too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left; nobody reads an answer
                return b"", ApiError(400, "bad_request", "request body incomplete")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_json_bytes:
                return b"", too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not body.strip():  # nothing to check; a route that needs a body says so itself
            return body, None
        try:
            parse_json(body)
        except MalformedInput as exc:
            return body, validation_error(exc.field, exc.message)
        return body, None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over ``body`` once, then waits on the client as usual (for
    ``http.disconnect``)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
