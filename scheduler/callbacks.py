"""The leader's completion-callback duty: :class:`pipeline.callbacks.CallbackSender` in a thread.

POSTs to upstream URLs may take seconds (timeouts, slow receivers); in a thread of its own
with its own one-connection pool they never delay metering. Two senders at once (a leader
change) are harmless: each callback is claimed by one conditional UPDATE.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import structlog

from pipeline.callbacks import CallbackPolicy, CallbackSender
from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.repository import Repository
from pipeline.ssrf import AddressPolicy

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CallbackConfig:
    """What the duty needs (from Settings): the secret, the SSRF allowlist and the knobs."""

    secret: str = ""
    allowlist: str = ""
    interval: float = 1.0
    policy: CallbackPolicy = field(default_factory=CallbackPolicy)


def callback_config(settings: Settings) -> CallbackConfig:
    """The duty's config from ``IMAGEOPT_CALLBACK_SECRET`` and ``IMAGEOPT_SOURCE_ALLOWLIST``."""
    return CallbackConfig(
        secret=settings.callback_secret.get_secret_value(), allowlist=settings.source_allowlist
    )


class CallbackThread:
    """Runs :meth:`CallbackSender.run_once` every ``config.interval`` seconds while leading."""

    def __init__(self, *, database_url: str, schema: str, config: CallbackConfig) -> None:
        self._database_url = database_url
        self._schema = schema
        self._config = config
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="callbacks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        from pipeline.db import create_pool  # noqa: PLC0415 - only the scheduler needs a pool

        try:
            pool = create_pool(self._database_url, self._schema, max_size=1, name="callbacks")
        except Exception as exc:  # noqa: BLE001 - a thread must log, not die silently
            log.warning("callbacks_failed", error=type(exc).__name__)
            return
        sender = CallbackSender(
            Repository(pool),
            secret=self._config.secret,
            policy=self._config.policy,
            address_policy=AddressPolicy.from_setting(self._config.allowlist),
        )
        try:
            while not self._stop.is_set():
                try:
                    sender.run_once()
                except PipelineError as exc:
                    log.warning("callbacks_failed", error_code=exc.code)
                self._stop.wait(self._config.interval)
        finally:
            sender.close()
            pool.close()
