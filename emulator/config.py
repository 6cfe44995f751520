"""Knobs of the Replicate-compatible emulator, as one frozen value object.

The defaults follow Replicate's documented limits (600 prediction creations per minute, 3000
requests per minute for every other endpoint; https://replicate.com/docs/topics/predictions/
rate-limits) and a latency small enough for tests. The fault knobs exist for the
fault-injection suite: each is a probability in ``[0, 1]`` drawn per request or per prediction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OUTPUT_MODES = ("normal", "not_image", "truncated", "bomb", "huge")
"""What ``GET /files/...`` serves: the real output, text, a cut PNG, a decompression bomb
(tiny bytes, 30000x30000 pixels) or a very large valid PNG (about ``huge_bytes`` bytes)."""

WEBHOOK_FAULTS = ("drop", "delay", "duplicate", "corrupt")
"""What ``webhook_fault`` does to a drawn delivery: never send it, send it ``webhook_delay_seconds``
late, send it twice (same ``webhook-id``), or send a body that no longer matches its signature."""

_RATES = (
    "failure_rate",
    "http_5xx_rate",
    "malformed_json_rate",
    "never_finish_rate",
    "webhook_fault_rate",
)

RUNTIME_FIELDS = frozenset(
    {
        "latency_min",
        "latency_max",
        "failure_rate",
        "create_rpm",
        "read_rpm",
        "window_seconds",
        "http_5xx_rate",
        "malformed_json_rate",
        "never_finish_rate",
        "output_mode",
        "slow_response_seconds",
        "rng_seed",
        "token",
        "page_size",
        "huge_bytes",
        "webhook_fault",
        "webhook_fault_rate",
        "webhook_delay_seconds",
        "webhook_max_attempts",
        "webhook_retry_seconds",
    }
)
"""Fields that ``POST /_emulator/config`` may change while the server runs (not the pool size
or the store bounds, which are fixed when the app is built)."""


@dataclass(frozen=True)
class EmulatorConfig:
    """Configuration of one emulator instance.

    Attributes:
        latency_min: shortest time from creation to the start of the image work, seconds.
        latency_max: longest such time, seconds; each prediction draws uniformly in between.
        failure_rate: fraction of predictions that end ``failed`` on purpose.
        create_rpm: accepted ``POST`` creations per ``window_seconds`` (Replicate: 600/min).
        read_rpm: accepted other API requests per ``window_seconds`` (Replicate: 3000/min).
        window_seconds: length of the sliding rate-limit window, seconds.
        http_5xx_rate: fraction of API requests answered 503 before any work.
        malformed_json_rate: fraction of API answers whose JSON body is cut in half (the
            action, e.g. a creation, still happens).
        never_finish_rate: fraction of predictions that stay ``processing`` forever.
        output_mode: one of :data:`OUTPUT_MODES`.
        slow_response_seconds: delay added after handling an API or file request and before
            answering it, seconds (the action still happens; provokes client timeouts).
        rng_seed: seed of the random draws (latency, faults) for reproducible runs.
        token: API token clients must send (``Bearer`` or ``Token``); ``None`` disables auth.
        public_base_url: scheme and host used in absolute URLs (``urls.get``, outputs), e.g.
            ``http://127.0.0.1:8088``; ``None`` derives it from each request's ``Host``.
        page_size: predictions per page of ``GET /v1/predictions`` (Replicate: 100).
        max_workers: threads doing image work at once (a bounded pool).
        max_outputs: output files kept in memory; the oldest are evicted beyond it.
        max_predictions: predictions kept; the oldest are forgotten beyond it.
        max_input_bytes: largest input image the emulator downloads, bytes.
        fetch_timeout_seconds: timeout of the input download, seconds.
        huge_bytes: approximate size of the ``huge`` output, bytes.
        webhook_secret: the ``whsec_`` key webhooks are signed with (served at
            ``GET /v1/webhooks/default/secret``); ``None``: a random one per instance.
        webhook_fault: one of :data:`WEBHOOK_FAULTS`, applied to a ``webhook_fault_rate``
            fraction of webhook deliveries.
        webhook_fault_rate: fraction of deliveries that get ``webhook_fault``.
        webhook_delay_seconds: how late a ``delay`` fault sends, seconds.
        webhook_max_attempts: sends of one webhook until a 2xx answer (Replicate retries).
        webhook_retry_seconds: wait before the first retry, seconds; doubles per retry.
    """

    latency_min: float = 0.05
    latency_max: float = 0.2
    failure_rate: float = 0.0
    create_rpm: int = 600
    read_rpm: int = 3000
    window_seconds: float = 60.0
    http_5xx_rate: float = 0.0
    malformed_json_rate: float = 0.0
    never_finish_rate: float = 0.0
    output_mode: str = "normal"
    slow_response_seconds: float = 0.0
    rng_seed: int | None = None
    token: str | None = None
    public_base_url: str | None = None
    page_size: int = 100
    max_workers: int = 4
    max_outputs: int = 500
    max_predictions: int = 100_000
    max_input_bytes: int = 50 * 1024 * 1024
    fetch_timeout_seconds: float = 20.0
    huge_bytes: int = 32 * 1024 * 1024
    webhook_secret: str | None = None
    webhook_fault: str = "drop"
    webhook_fault_rate: float = 0.0
    webhook_delay_seconds: float = 2.0
    webhook_max_attempts: int = 4
    webhook_retry_seconds: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.latency_min <= self.latency_max:
            raise ValueError("need 0 <= latency_min <= latency_max")
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.webhook_fault not in WEBHOOK_FAULTS:
            raise ValueError(f"webhook_fault must be one of {', '.join(WEBHOOK_FAULTS)}")
        if self.output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}")
        positive = (
            "create_rpm",
            "read_rpm",
            "window_seconds",
            "page_size",
            "max_workers",
            "max_outputs",
            "max_predictions",
            "max_input_bytes",
            "fetch_timeout_seconds",
            "huge_bytes",
            "webhook_max_attempts",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("slow_response_seconds", "webhook_delay_seconds", "webhook_retry_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.public_base_url is not None:
            object.__setattr__(self, "public_base_url", self.public_base_url.rstrip("/"))

    def with_public_base_url(self, url: str) -> EmulatorConfig:
        """Return a copy whose absolute URLs start with ``url`` (e.g. ``http://host:port``)."""
        return dataclasses.replace(self, public_base_url=url)

    def with_changes(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """Return a copy with some runtime fields changed (``POST /_emulator/config``).

        Raises:
            ValueError: an unknown or fixed field, or a value out of range.
            TypeError: a value of the wrong type.
        """
        unknown = set(changes) - RUNTIME_FIELDS
        if unknown:
            raise ValueError(f"cannot change {', '.join(sorted(unknown))} at runtime")
        return dataclasses.replace(self, **dict(changes))

    def public_view(self) -> dict[str, Any]:
        """The config as JSON-ready data, with the token and the webhook secret replaced by
        whether one is set."""
        data = dataclasses.asdict(self)
        data["token"] = "set" if self.token else None
        data["webhook_secret"] = "set" if self.webhook_secret else None
        return data


def advertised_base_url(host: str, port: int) -> str:
    """``http://host:port`` as clients should use it (a wildcard bind means loopback).

    Args:
        host: interface the server binds.
        port: TCP port the server binds.
    """
    wildcard = host in ("0.0.0.0", "::", "")  # noqa: S104 - compared, never bound here
    return f"http://{'127.0.0.1' if wildcard else host}:{port}"
