"""structlog configuration, done once per process at its entry point.

JSON lines by default (``IMAGEOPT_LOG_FORMAT=console`` for people). A redaction processor
replaces any value of a key that looks like a secret, and any occurrence of the configured
secrets themselves, with ``"[redacted]"`` — a token must never reach a log line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(token|secret|password|authorization|api_key|access_key)", re.I)
REDACTED = "[redacted]"


class Redactor:
    """structlog processor removing secrets from event dicts.

    Args:
        secrets: literal secret values (e.g. the provider token) to blank wherever they appear.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = [s for s in secrets if s and len(s) >= 4]

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
        return value

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            if _SECRET_KEYS.search(key):
                event_dict[key] = REDACTED
            else:
                event_dict[key] = self._scrub(event_dict[key])
        return event_dict


class _CurrentStderr:
    """Writes to ``sys.stderr`` as it is at each call: a CLI runner (or a test) that swaps
    the stream gets the lines, and none goes to a stream that was closed since."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(
    level: str = "INFO", fmt: str = "json", secrets: Iterable[str] = (), *, cache: bool = True
) -> None:
    """Configure structlog (and the stdlib root logger it feeds) for this process.

    Args:
        level: lowest level written (``DEBUG``, ``INFO``, ...).
        fmt: ``json`` (one object per line) or ``console`` (for people).
        secrets: literal values to blank wherever they appear (:class:`Redactor`).
        cache: keep each logger's configuration after its first use (faster; long-running
            processes). Off for a CLI command run inside another process (tests), where a
            later reconfiguration must still reach every logger.
    """
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            Redactor(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=cache,
    )
    logging.basicConfig(
        level=level.upper(), stream=_CurrentStderr(), format="%(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
