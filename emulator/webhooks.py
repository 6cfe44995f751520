"""The emulator's webhooks: a signed POST of each final prediction, with retries and faults.

As Replicate does (https://replicate.com/docs/topics/webhooks): a prediction created with
``webhook`` gets a POST of its JSON to that URL when it is final (this emulator sends only the
``completed`` event, whatever ``webhook_events_filter`` asks), signed with the instance's
``whsec_`` secret as Standard Webhooks describes (:func:`pipeline.webhooks.signed_headers`).
A delivery answered with anything but a 2xx, or not answered, is sent again with the same
``webhook-id`` after ``webhook_retry_seconds`` (doubling), ``webhook_max_attempts`` times in all.

Faults (``webhook_fault`` for a ``webhook_fault_rate`` fraction of deliveries): ``drop``
(never sent), ``delay`` (sent ``webhook_delay_seconds`` late), ``duplicate`` (sent twice) and
``corrupt`` (the body changed after signing: a receiver must refuse it). Deliveries run on a
small thread pool of their own, never on the image-work pool.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import structlog

from emulator.config import EmulatorConfig
from emulator.store import Store, new_prediction_id
from pipeline.webhooks import signed_headers

log = structlog.get_logger(__name__)

DELIVERY_THREADS = 8
"""Deliveries in flight at once (a slow receiver holds one thread per retry wait)."""
DELIVERY_TIMEOUT_SECONDS = 10.0
"""Longest wait for a receiver's answer, seconds."""


class WebhookSender:
    """Sends the webhooks of one emulator.

    Args:
        secret: the ``whsec_`` signing secret.
        store: where deliveries are counted (``GET /_emulator/stats``, ``webhooks``).
        config: returns the current config (faults and retries may change at runtime).
        chance: ``chance(rate)`` is True with probability ``rate`` (the seeded draws).
    """

    def __init__(
        self,
        secret: str,
        store: Store,
        config: Callable[[], EmulatorConfig],
        chance: Callable[[float], bool],
    ) -> None:
        self.secret = secret
        self._store = store
        self._config = config
        self._chance = chance
        self._pool = ThreadPoolExecutor(DELIVERY_THREADS, thread_name_prefix="emulator-webhook")
        self._http = httpx.Client(timeout=DELIVERY_TIMEOUT_SECONDS, follow_redirects=False)

    def send(self, url: str, prediction: dict[str, Any]) -> None:
        """Deliver ``prediction`` to ``url`` in the background (faults drawn now)."""
        config = self._config()
        fault = config.webhook_fault if self._chance(config.webhook_fault_rate) else None
        if fault == "drop":
            self._store.count_webhook("dropped")
            return
        try:
            self._pool.submit(self._deliver, url, prediction, fault)
        except RuntimeError:  # the pool shut down: the server is stopping
            log.debug("emulator_webhook_dropped", prediction_id=prediction.get("id"))

    def _deliver(self, url: str, prediction: dict[str, Any], fault: str | None) -> None:
        config = self._config()
        body = json.dumps(prediction, separators=(",", ":")).encode()
        message_id = f"msg_{new_prediction_id()}"
        if fault == "delay":
            self._store.count_webhook("delayed")
            time.sleep(config.webhook_delay_seconds)
        sent = body
        if fault == "corrupt":  # signed as it was, sent changed
            self._store.count_webhook("corrupted")
            sent = body.replace(b'"succeeded"', b'"failed"', 1)
            sent = sent if sent != body else body + b" "
        delivered = self._attempts(url, message_id, body, sent, config)
        if delivered and fault == "duplicate":
            self._store.count_webhook("duplicated")
            self._attempts(url, message_id, body, sent, config)

    def _attempts(
        self, url: str, message_id: str, signed: bytes, sent: bytes, config: EmulatorConfig
    ) -> bool:
        wait = config.webhook_retry_seconds
        for attempt in range(config.webhook_max_attempts):
            if attempt:
                self._store.count_webhook("retried")
                time.sleep(wait)
                wait *= 2
            headers = signed_headers(self.secret, message_id, signed)
            headers["content-type"] = "application/json"
            try:
                status = self._http.post(url, content=sent, headers=headers).status_code
            except httpx.HTTPError as exc:
                log.debug("emulator_webhook_failed", error=type(exc).__name__)
                continue
            if 200 <= status < 300:
                self._store.count_webhook("delivered")
                return True
            self._store.count_webhook(f"answered_{status}")
        self._store.count_webhook("gave_up")
        return False

    def close(self) -> None:
        """Stop sending (queued deliveries are dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()
