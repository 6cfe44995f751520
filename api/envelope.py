"""The one response envelope of the API (seed 002 §1) and the errors that produce it.

Success: ``{"success": true, "data": ...}``. Failure: ``{"success": false, "error": {"type",
"message", "details"?}}``. Error types are stable snake_case strings (docs/API.md lists them);
clients map them to messages, never the English text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipeline.errors import MalformedInput

NO_STORE = {"Cache-Control": "no-store"}

_HTTP_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error answered as the envelope.

    Args:
        status: HTTP status code.
        type: stable error type (``validation_error``, ``forbidden``, ...).
        message: human-readable text (English; never secrets, never stack traces).
        details: optional JSON-ready details, e.g. ``{"field": "model"}``.
        headers: extra response headers (``Retry-After``, ``Allow``).
    """

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.details = dict(details) if details else None
        self.headers = dict(headers or {})


def validation_error(field: str, message: str) -> ApiError:
    """A 400 naming the offending field (``details.field``)."""
    return ApiError(400, "validation_error", message, details={"field": field})


async def read_body(request: Request, model: type[BaseModel]) -> Any:
    """The JSON body as ``model``.

    Raises:
        ApiError: 400 ``validation_error`` naming the first bad field (``body`` when the body
            is no JSON at all).
    """
    try:
        raw = await request.json()
    except ValueError as exc:
        raise validation_error("body", "the body must be a JSON object") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise validation_error(field, f"{field}: {first.get('msg', 'invalid')}") from exc


def ok(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The success envelope (never cached: it carries a caller's own data)."""
    return JSONResponse(
        {"success": True, "data": data}, status_code=status, headers={**NO_STORE, **(headers or {})}
    )


def error_response(error: ApiError) -> JSONResponse:
    """The failure envelope for ``error``."""
    body: dict[str, Any] = {"type": error.type, "message": error.message}
    if error.details:
        body["details"] = error.details
    return JSONResponse(
        {"success": False, "error": body},
        status_code=error.status,
        headers={**NO_STORE, **error.headers},
    )


async def api_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette handler for :class:`ApiError`."""
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def malformed_input_handler(request: Request, exc: Exception) -> Response:
    """:class:`~pipeline.errors.MalformedInput` (a NUL, a lone surrogate, a number out of
    range, ...): 400 ``validation_error`` naming its field."""
    assert isinstance(exc, MalformedInput)
    return error_response(validation_error(exc.field, exc.message))


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (routing) in the envelope, keeping ``Allow`` on a 405."""
    assert isinstance(exc, HTTPException)
    error_type = _HTTP_TYPES.get(exc.status_code, "http_error")
    message = str(exc.detail) if exc.detail else error_type.replace("_", " ")
    return error_response(ApiError(exc.status_code, error_type, message, headers=exc.headers))


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    """Anything unexpected: a 500 envelope without internals (the log has the traceback)."""
    return error_response(ApiError(500, "internal_error", "internal server error"))
