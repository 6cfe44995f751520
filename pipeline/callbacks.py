"""Completion callbacks: a signed POST to a job's ``callback_url`` once the job is final.

Upstream sets ``image_optimization_jobs.callback_url``; when the job becomes DONE, FAILED or
CANCELED a trigger (migration 0010) marks its callback ``pending``. :meth:`CallbackSender.run_once`
claims due callbacks (one conditional UPDATE, ``FOR UPDATE SKIP LOCKED``, counted as an attempt)
and POSTs each one's JSON::

    {"type": "job.completed", "job_id", "store_id", "status", "total_items", "done_items",
     "failed_items", "canceled_items", "completed_at"}

signed as the provider signs its webhooks (Standard Webhooks: ``webhook-id`` the same on every
retry of one message, ``webhook-timestamp``, ``webhook-signature``; :mod:`pipeline.webhooks`)
with ``IMAGEOPT_CALLBACK_SECRET``. A 2xx answer ends it ``sent``; anything else is retried with
exponential backoff and jitter (:func:`pipeline.lifecycle.backoff_delay`), ``failed`` after
:attr:`CallbackPolicy.max_attempts`. The connection goes through the SSRF guard
(:mod:`pipeline.ssrf`: no private, loopback or metadata address unless allowlisted by
``IMAGEOPT_SOURCE_ALLOWLIST``, no redirects); a URL the guard refuses fails at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import structlog

from pipeline.errors import ConfigurationError, SourceBlocked
from pipeline.lifecycle import backoff_delay
from pipeline.repository import Repository, Row
from pipeline.ssrf import AddressPolicy, PinnedTransport, PinningBackend
from pipeline.webhooks import signed_headers

log = structlog.get_logger(__name__)

MAX_ERROR_CHARS = 300
"""Longest error text kept on the job row."""


@dataclass(frozen=True)
class CallbackPolicy:
    """Knobs of the callback sender; durations in seconds.

    Attributes:
        max_attempts: POSTs before a callback is ``failed`` (8: with base 2 s and cap 600 s,
            retries span about 4 minutes).
        backoff_base: wait before the first retry.
        backoff_cap: longest wait between retries.
        timeout: connect/read timeout of one POST.
        lease: how long a claimed callback is not claimed again (longer than one POST).
        batch: callbacks claimed per run.
    """

    max_attempts: int = 8
    backoff_base: float = 2.0
    backoff_cap: float = 600.0
    timeout: float = 10.0
    lease: float = 60.0
    batch: int = 50


def callback_body(row: Row) -> bytes:
    """The JSON a job's callback POSTs (see the module docstring)."""
    completed = row["completed_at"]
    return json.dumps(
        {
            "type": "job.completed",
            "job_id": int(row["id"]),
            "store_id": str(row["store_id"]),
            "status": str(row["status"]),
            "total_items": int(row["total_items"]),
            "done_items": int(row["done_items"]),
            "failed_items": int(row["failed_items"]),
            "canceled_items": int(row["canceled_items"]),
            "completed_at": completed.isoformat() if isinstance(completed, datetime) else None,
        },
        separators=(",", ":"),
    ).encode()


def message_id(row: Row) -> str:
    """``webhook-id``: the job and the moment it became final (a retry keeps it; a job final
    again after ``imageopt retry`` gets a new one)."""
    completed = row["completed_at"]
    stamp = int(completed.timestamp() * 1000) if isinstance(completed, datetime) else 0
    return f"job_{int(row['id'])}_{stamp}"


class CallbackSender:
    """Sends due completion callbacks; safe to run in two processes at once.

    Args:
        repo: the repository.
        secret: ``whsec_`` signing secret (``IMAGEOPT_CALLBACK_SECRET``); empty: every due
            callback fails with ``no callback secret configured``.
        policy: the sender's knobs.
        address_policy: the SSRF guard's policy.
        transport: httpx transport (default: the SSRF guard's pinned transport).
        rand: uniform [0, 1) source of the backoff jitter.
    """

    def __init__(
        self,
        repo: Repository,
        *,
        secret: str,
        policy: CallbackPolicy,
        address_policy: AddressPolicy,
        transport: httpx.BaseTransport | None = None,
        rand: Callable[[], float] | None = None,
    ) -> None:
        self._repo = repo
        self._secret = secret
        self._policy = policy
        self._rand = rand
        self._client = httpx.Client(
            transport=transport or PinnedTransport(PinningBackend(address_policy)),
            timeout=policy.timeout,
            follow_redirects=False,
        )

    def run_once(self) -> dict[str, int]:
        """Claim the due callbacks and POST each; returns ``{"sent", "retry", "failed"}``."""
        done = {"sent": 0, "retry": 0, "failed": 0}
        for row in self._repo.claim_due_callbacks(self._policy.batch, self._policy.lease):
            done[self._deliver(row)] += 1
        return done

    def _deliver(self, row: Row) -> str:
        job_id, attempt = int(row["id"]), int(row["callback_attempts"])
        bound = log.bind(job_id=job_id, store_id=row["store_id"], attempt=attempt)
        error = self._post(row)
        if error is None:
            self._repo.end_callback(job_id, attempt, "sent", None)
            bound.info("callback_sent")
            return "sent"
        permanent, text = error
        if permanent or attempt >= self._policy.max_attempts:
            self._repo.end_callback(job_id, attempt, "failed", text)
            bound.warning("callback_failed", error=text)
            return "failed"
        delay = backoff_delay(
            attempt,
            base=self._policy.backoff_base,
            cap=self._policy.backoff_cap,
            **({"rand": self._rand} if self._rand is not None else {}),
        )
        self._repo.retry_callback(job_id, attempt, delay, text)
        bound.info("callback_retry", error=text, delay_seconds=round(delay, 2))
        return "retry"

    def _post(self, row: Row) -> tuple[bool, str] | None:
        """None when delivered; else ``(permanent, error)``."""
        url = str(row["callback_url"] or "")
        if not url.startswith(("https://", "http://")):
            return True, "callback URL is not http(s)"
        body = callback_body(row)
        try:
            headers = signed_headers(self._secret, message_id(row), body)
        except ConfigurationError:
            return True, "no callback secret configured"
        headers["content-type"] = "application/json"
        try:
            response = self._client.post(url, content=body, headers=headers)
        except SourceBlocked as exc:
            return True, f"callback address refused by the SSRF guard: {exc.message}"[
                :MAX_ERROR_CHARS
            ]
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return False, f"callback POST failed: {type(exc).__name__}"
        if 200 <= response.status_code < 300:
            return None
        return False, f"callback answered {response.status_code}"

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def __enter__(self) -> CallbackSender:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
