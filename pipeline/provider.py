"""Our client for Replicate's predictions HTTP API (sync httpx), with errors mapped at the edge.

Endpoints (https://replicate.com/docs/reference/http): ``POST /models/{owner}/{name}/predictions``
for official models, ``POST /predictions`` with a ``version`` otherwise, ``GET /predictions/{id}``,
``POST /predictions/{id}/cancel`` and ``GET /predictions`` (cursor pages, newest first).

Error mapping (every httpx exception is translated here, ``raise ... from exc``)::

    httpx.TimeoutException          -> ProviderTimeout
    other httpx transport errors    -> ProviderUnavailable
    HTTP 429                        -> ProviderRateLimited(retry_after=Retry-After seconds)
    HTTP 5xx                        -> ProviderUnavailable
    HTTP 4xx                        -> ProviderRejected (with the provider's ``detail``)
    2xx, not JSON / no id or status -> ProviderProtocolError

The API token is sent only to the API's own origin (never to output download hosts) and is
redacted from every message this module builds, even when the provider echoes it back.

Size: one client of one HTTP API (create, get, cancel, list, download) with its error table,
its token redaction and its response parsing; each call is short, the shared parts are most of it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx
import structlog

from pipeline import metrics
from pipeline.allowlist import ModelSpec
from pipeline.capped_read import read_capped
from pipeline.errors import (
    OutputInvalid,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from pipeline.pollplan import runtime_seconds
from pipeline.ratelimit.retry_after import parse_retry_after
from pipeline.version import package_version

log = structlog.get_logger(__name__)

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
MAX_DETAIL_CHARS = 500
"""Longest provider ``detail`` copied into an error message (rows store the message)."""
MAX_SYNC_WAIT_SECONDS = 60
"""Longest ``Prefer: wait=N`` Replicate accepts (its sync mode: 1-60 s, docs "Create a
prediction")."""
DEFAULT_OUTPUT_HOSTS = ("replicate.delivery",)
"""Hosts (and their subdomains) that serve Replicate's output files, over https only."""


USER_AGENT = f"imageopt/{package_version()}"


@dataclass(frozen=True)
class Prediction:
    """A prediction as the provider reported it.

    Attributes:
        id: the provider's prediction id.
        status: ``starting`` | ``processing`` | ``succeeded`` | ``failed`` | ``canceled``.
        output_urls: output file URLs (a single string output becomes a 1-tuple).
        error: the provider's error text for ``failed`` predictions.
        input: the input object as the provider echoes it.
        created_at: ISO 8601 creation time, as sent.
        completed_at: ISO 8601 completion time, as sent.
        predict_time: model run time, seconds (``metrics.predict_time``).
    """

    id: str
    status: str
    output_urls: tuple[str, ...] = ()
    error: str | None = None
    input: Mapping[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    completed_at: str | None = None
    predict_time: float | None = None

    @property
    def terminal(self) -> bool:
        """True once the status can no longer change."""
        return self.status in TERMINAL_STATUSES

    @property
    def created(self) -> datetime | None:
        """``created_at`` as an aware datetime (the provider's arrival stamp); None when missing
        or unreadable."""
        return parse_provider_time(self.created_at)

    @property
    def runtime_seconds(self) -> float | None:
        """``completed_at - created_at`` on the provider's clock, seconds; None when either
        stamp is missing or unreadable, or the difference is negative
        (:func:`pipeline.pollplan.runtime_seconds`, the one runtime rule)."""
        return runtime_seconds(
            parse_provider_time(self.created_at), parse_provider_time(self.completed_at)
        )

    @classmethod
    def from_json(cls, data: Any) -> Prediction:
        """Parse a prediction object.

        Raises:
            ProviderProtocolError: not an object, or ``id``/``status`` missing.
        """
        if not isinstance(data, dict):
            raise ProviderProtocolError("provider answered something that is not a prediction")
        prediction_id, status = data.get("id"), data.get("status")
        if not isinstance(prediction_id, str) or not isinstance(status, str):
            raise ProviderProtocolError("provider prediction lacks id or status")
        metrics = data.get("metrics")
        predict_time = metrics.get("predict_time") if isinstance(metrics, dict) else None
        raw_input = data.get("input")
        error = data.get("error")
        return cls(
            id=prediction_id,
            status=status,
            output_urls=_output_urls(data.get("output")),
            error=None if error is None else str(error),
            input=raw_input if isinstance(raw_input, dict) else {},
            created_at=_optional_str(data.get("created_at")),
            completed_at=_optional_str(data.get("completed_at")),
            predict_time=float(predict_time) if isinstance(predict_time, int | float) else None,
        )


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _output_urls(output: Any) -> tuple[str, ...]:
    if isinstance(output, str):
        candidates: list[Any] = [output]
    elif isinstance(output, list):
        candidates = output
    else:
        return ()
    return tuple(
        item for item in candidates if isinstance(item, str) and item.startswith(("http", "data:"))
    )


def parse_provider_time(value: str | None) -> datetime | None:
    """A provider timestamp (ISO 8601, e.g. Replicate's ``2026-11-22T03:00:05.500000Z``) as an
    aware datetime; a stamp without an offset is read as UTC; None when missing or unreadable.
    """
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _output_too_large(max_bytes: int, declared: int | None) -> OutputInvalid:
    if declared is not None:
        return OutputInvalid(f"output is {declared} bytes, more than {max_bytes}")
    return OutputInvalid(f"output is more than {max_bytes} bytes")


def _matches_prefix(input_: Mapping[str, Any], prefix: str) -> bool:
    for value in input_.values():
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, str) and item.startswith(prefix) for item in items):
            return True
    return False


class ProviderClient:
    """Sync client for a Replicate-compatible predictions API (one connection pool).

    Args:
        base_url: API root including the version, e.g. ``https://api.replicate.com/v1``.
        token: API token (sent as ``Authorization: Bearer``; never logged or put in errors).
        timeout: connect/read/write/pool timeout per request, seconds.
        transport: httpx transport (tests pass ``httpx.MockTransport``).
        default_retry_after: seconds to pause on a 429 without a usable ``Retry-After``.
        output_hosts: hosts (with their subdomains) outputs may be downloaded from over https,
            besides the API's own origin; any other output URL is refused before a connection
            (so a hostile output URL cannot point the worker at internal addresses).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        default_retry_after: float = 10.0,
        output_hosts: tuple[str, ...] = DEFAULT_OUTPUT_HOSTS,
    ) -> None:
        self._token = token
        self._output_hosts = tuple(h.strip().lower().strip(".") for h in output_hosts if h.strip())
        self._default_retry_after = default_retry_after
        self._base = httpx.URL(base_url.rstrip("/") + "/")
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=self._base,
            headers=headers,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    # --- API -----------------------------------------------------------------------------
    def create_prediction(
        self,
        spec: ModelSpec,
        input: Mapping[str, Any],
        *,
        wait_seconds: int = 0,
        webhook: str | None = None,
    ) -> Prediction:
        """Create a prediction for an allowlisted model.

        Official models (``spec.version is None``) go to
        ``POST /models/{owner}/{name}/predictions``; others to ``POST /predictions``.

        Args:
            spec: the model.
            input: the model's input object (see :meth:`ModelSpec.build_input`).
            wait_seconds: Replicate's sync mode (``Prefer: wait=N``, 1-60 s; 0: async): the
                provider holds the answer until the prediction finished or ``N`` seconds
                passed, so a fast model's answer already carries its output. The read timeout
                of this request grows by ``N``.
            webhook: a URL the provider POSTs the prediction to once it is final
                (``webhook_events_filter: ["completed"]``); None: no webhook.

        Raises:
            ProviderRateLimited, ProviderUnavailable, ProviderTimeout, ProviderRejected,
            ProviderProtocolError: see the module's error mapping.
        """
        if spec.version is None:
            owner, _, name = spec.name.partition("/")
            path = f"models/{owner}/{name}/predictions"
            body: dict[str, Any] = {"input": dict(input)}
        else:
            path = "predictions"
            body = {"version": spec.version, "input": dict(input)}
        if webhook:
            body["webhook"] = webhook
            body["webhook_events_filter"] = ["completed"]
        extra: dict[str, Any] = {}
        wait = min(max(wait_seconds, 0), MAX_SYNC_WAIT_SECONDS)
        if wait:
            timeout = self._client.timeout
            extra["headers"] = {"Prefer": f"wait={wait}"}
            extra["timeout"] = httpx.Timeout(
                timeout.connect,
                read=(timeout.read or 0) + wait,
                write=timeout.write,
                pool=timeout.pool,
            )
        answer = self._request("POST", path, "create_prediction", json=body, **extra)
        return Prediction.from_json(answer)

    def get_prediction(self, prediction_id: str) -> Prediction:
        """Fetch a prediction's current state (``GET /predictions/{id}``)."""
        path = f"predictions/{_safe_id(prediction_id)}"
        return Prediction.from_json(self._request("GET", path, "get_prediction"))

    def webhook_secret(self) -> str:
        """The account's webhook signing secret (``GET /webhooks/default/secret``, ``key``).

        Raises:
            ProviderProtocolError: the answer has no ``whsec_`` key; and the module's errors.
        """
        answer = self._request("GET", "webhooks/default/secret", "webhook_secret")
        key = answer.get("key") if isinstance(answer, dict) else None
        if not isinstance(key, str) or not key.startswith("whsec_"):
            raise ProviderProtocolError("provider webhook secret answer lacks a whsec_ key")
        return key

    def cancel_prediction(self, prediction_id: str) -> Prediction:
        """Cancel a prediction (``POST /predictions/{id}/cancel``); a terminal one stays as is."""
        path = f"predictions/{_safe_id(prediction_id)}/cancel"
        return Prediction.from_json(self._request("POST", path, "cancel_prediction"))

    def find_predictions_by_image(
        self, image_url_prefix: str, *, created_after: datetime, max_pages: int = 5
    ) -> list[Prediction]:
        """Find predictions whose input has a URL starting with ``image_url_prefix``.

        Walks ``GET /predictions`` (newest first) and stops at the first prediction created
        before ``created_after`` or after ``max_pages`` pages. Used to recover the id of a
        prediction whose create answer was lost (timeout, crash) instead of creating twice.

        Args:
            image_url_prefix: e.g. the presigned input URL without its query string.
            created_after: oldest creation time of interest (naive means UTC).
            max_pages: most pages fetched (each costs one read request).

        Returns:
            Matching predictions, newest first.
        """
        after = created_after if created_after.tzinfo else created_after.replace(tzinfo=UTC)
        found: list[Prediction] = []
        for results in self._pages(max_pages):
            for raw in results:
                prediction = Prediction.from_json(raw)
                created = prediction.created
                if created is not None and created < after:
                    return found
                if _matches_prefix(prediction.input, image_url_prefix):
                    found.append(prediction)
        return found

    def _pages(self, max_pages: int) -> Iterator[list[Any]]:
        url: str = "predictions"
        for _ in range(max_pages):
            page = self._request("GET", url, "list_predictions")
            results = page.get("results") if isinstance(page, dict) else None
            if not isinstance(results, list):
                raise ProviderProtocolError("provider list answer lacks results")
            yield results
            next_url = page.get("next")
            if not isinstance(next_url, str) or not next_url:
                return
            if not self._same_origin(next_url):
                raise ProviderProtocolError("provider pagination points to another host")
            url = next_url

    def download(self, url: str, *, max_bytes: int) -> bytes:
        """Download an output file, streaming, without sending the API token.

        Args:
            url: the output URL from :attr:`Prediction.output_urls`.
            max_bytes: largest accepted body, bytes.

        Raises:
            OutputInvalid: larger than ``max_bytes``, a 4xx answer (gone, not found), or a URL
                neither on the API's origin nor on an ``output_hosts`` host over https.
            ProviderRateLimited: 429.
            ProviderUnavailable: 5xx or a transport error.
            ProviderTimeout: the download timed out.
        """
        if not self._output_allowed(url):
            raise OutputInvalid("output URL is not on the provider's output hosts")
        try:
            request = self._client.build_request("GET", url)
        except httpx.InvalidURL as exc:
            raise OutputInvalid("output URL is not valid") from exc
        request.headers.pop("Authorization", None)
        started, status = time.monotonic(), "error"
        try:
            response = self._client.send(request, stream=True)
            status = str(response.status_code)
            try:
                self._raise_for_download_status(response)
                return read_capped(
                    response.iter_bytes(),
                    max_bytes=max_bytes,
                    content_length=response.headers.get("Content-Length"),
                    too_large=functools.partial(_output_too_large, max_bytes),
                )
            finally:
                response.close()
        except httpx.TimeoutException as exc:
            status = "timeout"
            raise ProviderTimeout("output download timed out") from exc
        except httpx.HTTPError as exc:
            status = "error"
            raise ProviderUnavailable(f"output download failed: {type(exc).__name__}") from exc
        finally:
            metrics.provider_request("download_output", status, time.monotonic() - started)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the edge ------------------------------------------------------------------------
    def _request(self, method: str, url: str, endpoint: str, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            metrics.provider_request(endpoint, "timeout", time.monotonic() - started)
            log.warning("provider_timeout", endpoint=endpoint, error=type(exc).__name__)
            raise ProviderTimeout(f"provider {endpoint} timed out") from exc
        except httpx.HTTPError as exc:
            metrics.provider_request(endpoint, "error", time.monotonic() - started)
            log.warning("provider_unreachable", endpoint=endpoint, error=type(exc).__name__)
            raise ProviderUnavailable(f"provider {endpoint} failed: {type(exc).__name__}") from exc
        metrics.provider_request(endpoint, response.status_code, time.monotonic() - started)
        log.debug(
            "provider_response",
            endpoint=endpoint,
            status_code=response.status_code,
            elapsed_ms=round((time.monotonic() - started) * 1000, 1),
        )
        self._raise_for_status(response, endpoint)
        try:
            return response.json()
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise ProviderProtocolError(f"provider {endpoint} answered malformed JSON") from exc

    def _raise_for_status(self, response: httpx.Response, endpoint: str) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = self._redact(_detail(response))
        if status == 429:
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), self._default_retry_after
            )
            log.warning("provider_rate_limited", endpoint=endpoint, retry_after=retry_after)
            raise ProviderRateLimited(
                f"provider {endpoint} rate limited (429): {detail}", retry_after=retry_after
            )
        if status >= 500:
            log.warning("provider_server_error", endpoint=endpoint, status_code=status)
            raise ProviderUnavailable(f"provider {endpoint} answered {status}: {detail}")
        log.warning("provider_rejected", endpoint=endpoint, status_code=status)
        raise ProviderRejected(f"provider {endpoint} rejected ({status}): {detail}")

    def _raise_for_download_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            if status >= 300:
                raise OutputInvalid(f"output download redirected ({status})")
            return
        if status == 429:
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), self._default_retry_after
            )
            raise ProviderRateLimited("output download rate limited", retry_after=retry_after)
        if status >= 500:
            raise ProviderUnavailable(f"output download answered {status}")
        raise OutputInvalid(f"output download answered {status}")

    def _same_origin(self, url: str) -> bool:
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL:
            return False
        return not target.is_absolute_url or self._on_api_origin(target)

    def _on_api_origin(self, target: httpx.URL) -> bool:
        return (target.scheme, target.host, target.port) == (
            self._base.scheme,
            self._base.host,
            self._base.port,
        )

    def _output_allowed(self, url: str) -> bool:
        try:
            target = httpx.URL(url)  # parsed once: it runs for every output (profiled)
        except httpx.InvalidURL:
            return False
        if not target.is_absolute_url:
            return False
        if self._on_api_origin(target):
            return True
        host = target.host.lower().rstrip(".")
        return target.scheme == "https" and any(
            host == allowed or host.endswith(f".{allowed}") for allowed in self._output_hosts
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "[redacted]") if self._token else text


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title")
        if detail:
            return str(detail)[:MAX_DETAIL_CHARS]
    return response.reason_phrase or "no detail"


def _safe_id(prediction_id: str) -> str:
    """Refuse ids that would change the request path (``/``, ``..``, ``?``)."""
    if not prediction_id or not all(c.isalnum() or c in "-_" for c in prediction_id):
        raise ProviderRejected("prediction id has unexpected characters")
    return prediction_id
