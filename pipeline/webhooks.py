"""Provider webhooks: Replicate's signature scheme, the webhook URL of an item, and replays.

Replicate signs every webhook as the Standard Webhooks specification describes
(https://replicate.com/docs/topics/webhooks/verify-webhook): three headers, ``webhook-id``
(the same on every retry of one message), ``webhook-timestamp`` (seconds since the epoch) and
``webhook-signature`` (space-separated ``v1,<base64>`` entries), each signature an
HMAC-SHA256 over ``{id}.{timestamp}.{body}`` keyed with the base64 part of the account's
``whsec_...`` secret (``GET /v1/webhooks/default/secret``). The ``standardwebhooks`` library
does the HMAC, the constant-time comparison and the 5-minute timestamp tolerance; this module
translates its errors and adds what the library leaves to the receiver:

- :func:`webhook_url` puts the item id in the URL the prediction is created with, so the
  receiver needs no lookup; the URL is not signed, but the body is, and the polling worker
  finishes an item only with the prediction whose id its row holds.
- :class:`Deliveries` remembers each ``webhook-id`` in Redis for longer than the timestamp
  tolerance: a retried or replayed message is answered as handled and not queued again.

The same scheme signs the completion callbacks sent to upstream (docs/UPSTREAM.md) and the
emulator's webhooks (:func:`signed_headers`).
"""

from __future__ import annotations

import base64
import functools
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import redis
from standardwebhooks.webhooks import (
    EmptyWebhookSecretError,
    Webhook,
    WebhookVerificationError,
)

from pipeline.errors import ConfigurationError, RateLimiterUnavailable, WebhookRejected

TOLERANCE_SECONDS = 300
"""A webhook whose timestamp is further than this from our clock is refused (Replicate's
docs and the Standard Webhooks library: 5 minutes)."""
REPLAY_WINDOW_SECONDS = 2 * TOLERANCE_SECONDS
"""How long a ``webhook-id`` is remembered: past the tolerance on both sides, a replay is
refused by its timestamp instead."""
ITEM_PARAM = "item"
"""Query parameter of the webhook URL that names the item."""
COMPLETED_EVENTS = ("completed",)
"""``webhook_events_filter``: one webhook per prediction, when it is final."""


def webhook_url(base_url: str, item_id: int) -> str:
    """The URL a prediction of ``item_id`` is created with: ``base_url?item=ID``.

    Args:
        base_url: the public webhook route (``IMAGEOPT_WEBHOOK_URL``).
        item_id: the item.
    """
    prefix = _item_url_prefix(base_url)
    if prefix is None:
        return str(httpx.URL(base_url).copy_merge_params({ITEM_PARAM: str(item_id)}))
    return f"{prefix}{item_id}"


@functools.lru_cache(maxsize=4)
def _item_url_prefix(base_url: str) -> str | None:
    """``base_url`` parsed once, ready for the id (two URL parses per creation were 3 % of a
    creation worker's CPU, docs/BENCHMARKS.md); None where only a merge is right (the base
    already names the parameter, or has a fragment)."""
    url = httpx.URL(base_url)
    if url.fragment or ITEM_PARAM in url.params:
        return None
    return f"{url}{'&' if url.query else '?'}{ITEM_PARAM}="


def new_secret() -> str:
    """A fresh ``whsec_`` secret: 32 random bytes, base64 (the emulator's and tests')."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _webhook(secret: str) -> Webhook:
    try:
        return Webhook(secret)
    except (ValueError, RuntimeError, EmptyWebhookSecretError) as exc:  # empty, not base64
        raise ConfigurationError("webhook secret is not a whsec_ base64 key") from exc


class WebhookVerifier:
    """Verifies webhooks signed with one ``whsec_`` secret.

    Args:
        secret: the account's signing secret, ``whsec_<base64>``.

    Raises:
        ConfigurationError: the secret is empty or not base64.
    """

    def __init__(self, secret: str) -> None:
        self._webhook = _webhook(secret)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Any:
        """Check the signature and the timestamp of one delivery; return its JSON body.

        Args:
            body: the raw request body, as received (the signature covers these bytes).
            headers: the request's headers (``webhook-id``, ``webhook-timestamp``,
                ``webhook-signature``; any case).

        Returns:
            The parsed JSON body.

        Raises:
            WebhookRejected: a header is missing or malformed, the timestamp is more than
                :data:`TOLERANCE_SECONDS` off, no signature matches, or the body is not JSON.
        """
        try:
            return self._webhook.verify(body, dict(headers))
        except WebhookVerificationError as exc:
            raise WebhookRejected(f"webhook refused: {exc}") from exc
        except ValueError as exc:  # a malformed signature entry, base64, UTF-8 or JSON
            raise WebhookRejected("webhook refused: malformed headers or body") from exc


def signed_headers(
    secret: str, message_id: str, body: bytes, *, now: datetime | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers of one delivery of ``body``.

    Args:
        secret: ``whsec_<base64>``.
        message_id: ``webhook-id``, the same on every retry of one message.
        body: the exact bytes that will be sent.
        now: the signing time (default: the current time).

    Raises:
        ConfigurationError: the secret is empty or not base64.
    """
    when = now or datetime.now(UTC)
    signature = _webhook(secret).sign(message_id, when, body)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }


class Deliveries:
    """The ``webhook-id`` of each handled webhook, in Redis for :data:`REPLAY_WINDOW_SECONDS`.

    Args:
        client: Redis client.
        namespace: key prefix (``IMAGEOPT_REDIS_NAMESPACE``); keys are
            ``{namespace}:webhook:seen:{webhook-id}``.
    """

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self._client = client
        self._prefix = f"{namespace}:webhook:seen:"

    def first(self, message_id: str) -> bool:
        """Claim ``message_id`` (one atomic ``SET NX EX``): True the first time only.

        Raises:
            RateLimiterUnavailable: Redis could not be reached (the sender retries later).
        """
        try:
            claimed = self._client.set(
                self._prefix + message_id, b"1", nx=True, ex=REPLAY_WINDOW_SECONDS
            )
        except redis.RedisError as exc:
            raise RateLimiterUnavailable("webhook deliveries unavailable") from exc
        return bool(claimed)

    def forget(self, message_id: str) -> None:
        """Release a claim whose work could not be queued, so the sender's retry is handled."""
        try:
            self._client.delete(self._prefix + message_id)
        except redis.RedisError:
            return
