"""Logging configuration, done once per process at its entry point.

Every line a process writes to stderr goes through one handler on the standard library's root
logger whose formatter is structlog's :class:`~structlog.stdlib.ProcessorFormatter` (structlog's
"rendering using structlog-based formatters within logging"). Our own structlog events and the
plain :mod:`logging` lines of the libraries (dramatiq, uvicorn, psycopg-pool, redis, ...) come
out alike: one JSON object per line by default (``IMAGEOPT_LOG_FORMAT=console`` for people),
with ``timestamp``, ``level``, ``logger``, ``event``, the process kind (``process``:
scheduler|worker|api|emulator|cli) and ``pid``, plus whatever the context binds (the api's
``request_id``). A redaction processor, last before rendering, replaces any value of a key that
looks like a secret, any occurrence of the configured secrets and the password of any URL with
``"[redacted]"``: a token must never reach a log line, whichever library wrote it. Uncaught
exceptions and :mod:`warnings` go the same way.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import structlog

if TYPE_CHECKING:
    from pipeline.config import Settings

ProcessKind = Literal["scheduler", "worker", "api", "emulator", "cli"]
"""What a process is, as its log lines say it in ``process``."""

_SECRET_KEYS = re.compile(r"(token|secret|password|authorization|api_key|access_key)", re.I)
# The password of a URL's userinfo (``scheme://user:password@host``): a DSN that a library puts
# in a message (a connection error, a repr) keeps its user and host, never its password.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/?#@]*:)[^\s/?#@]+@")
REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 4
"""Shorter configured values are not blanked: they would mangle ordinary words."""
QUIET_LOGGERS = {"httpx": logging.WARNING}
"""Libraries whose INFO lines are one per request: only their warnings and errors are kept."""


class Redactor:
    """structlog processor removing secrets from event dicts.

    Blanks (:data:`REDACTED`) the value of any key that looks like a secret (``token``,
    ``secret``, ``password``, ``authorization``, ``api_key``, ``access_key``), and in every
    string value each occurrence of ``secrets`` and the password of any URL
    (``scheme://user:password@host``), at any depth of dicts, lists and tuples.

    Args:
        secrets: literal secret values (e.g. the provider token) to blank wherever they appear
            in a string value; values shorter than :data:`MIN_SECRET_LENGTH` are ignored.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = [s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH]

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            if "://" in value:
                value = _URL_PASSWORD.sub(rf"\g<head>{REDACTED}@", value)
        elif isinstance(value, dict):
            value = {
                k: REDACTED if _SECRET_KEYS.search(str(k)) else self._scrub(v)
                for k, v in value.items()
            }
        elif isinstance(value, list | tuple):
            value = [self._scrub(v) for v in value]
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


class ProcessKindAdder:
    """structlog processor adding ``process`` (the process kind) and ``pid`` to every event.

    The pid is read at each event: dramatiq forks its worker processes after logging is set
    up, and each must show its own.
    """

    def __init__(self, process: ProcessKind) -> None:
        self.process = process

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict["process"] = self.process
        event_dict["pid"] = os.getpid()
        return event_dict


class _CurrentStderr:
    """Writes to ``sys.stderr`` as it is at each call: a CLI runner (or a test) that swaps
    the stream gets the lines, and none goes to a stream that was closed since. (dramatiq
    points ``sys.stderr`` of each worker process at its log pipe.)"""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root logger's one handler (a class of its own, to be found and replaced)."""


def _log_uncaught(
    kind: type[BaseException], value: BaseException, traceback: TracebackType | None
) -> None:
    structlog.get_logger("uncaught").error("unhandled_exception", exc_info=(kind, value, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # as threading's own hook: a thread may exit that way
        return
    structlog.get_logger("uncaught").error(
        "unhandled_exception",
        thread=args.thread.name if args.thread is not None else None,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def configure_logging(
    level: str = "INFO",
    fmt: str = "json",
    secrets: Iterable[str] = (),
    *,
    process: ProcessKind = "cli",
    cache: bool = True,
) -> None:
    """Route structlog and the standard library's logging through one redacting formatter.

    Replaces the root logger's handlers with one that writes to the current ``sys.stderr``
    (so a library's own ``basicConfig``, e.g. dramatiq's in its worker processes, is undone),
    sets the root level, and logs uncaught exceptions (main and other threads) and
    :mod:`warnings` as events. Safe to call again (the last call wins).

    Args:
        level: lowest level written (``DEBUG``, ``INFO``, ...), for our events and the
            libraries' alike (:data:`QUIET_LOGGERS` stay at theirs).
        fmt: ``json`` (one object per line) or ``console`` (for people).
        secrets: literal values to blank wherever they appear (:class:`Redactor`).
        process: the process kind every line carries as ``process``.
        cache: keep each logger's configuration after its first use (faster; long-running
            processes). Off for a CLI command run inside another process (tests), where a
            later reconfiguration must still reach every logger.
    """
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    # Run on our events before they are handed to logging, and on the libraries' records
    # inside the formatter: both carry the same fields.
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        ProcessKindAdder(process),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=cache,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            Redactor(secrets),  # last before rendering: sees every field of every line
            renderer,
        ],
    )
    handler = _Handler(_CurrentStderr())
    handler.setFormatter(formatter)
    handler.setLevel(numeric_level)  # also for a library that lowered its own logger's level
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name, quiet_level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quiet_level, numeric_level))
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def secrets_of(settings: Settings) -> tuple[str, ...]:
    """The values :func:`setup_logging` blanks: the provider token, the S3 secret key and the
    passwords in ``DATABASE_URL`` and ``REDIS_URL``. The S3 access key ID is an identifier,
    not a secret (AWS IAM: "like a user name"); blanking it would mangle every name that
    contains it (the dev default ``imageopt`` is in the schema, bucket and queue names)."""
    passwords = []
    for url in (settings.database_url, settings.redis_url):
        try:
            password = urlsplit(url).password
        except ValueError:  # a malformed URL: the process reports it where it is used
            password = None
        if password:
            passwords.append(password)
    return (
        settings.replicate_api_token.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
        *passwords,
    )


def setup_logging(settings: Settings, *, process: ProcessKind, cache: bool = True) -> None:
    """Configure logging for this process from its settings (``IMAGEOPT_LOG_LEVEL``,
    ``IMAGEOPT_LOG_FORMAT``), redacting :func:`secrets_of` ``settings``.

    Args:
        settings: the process's settings.
        process: the process kind its lines carry (``process``).
        cache: see :func:`configure_logging`.
    """
    configure_logging(
        settings.log_level,
        settings.log_format,
        secrets=secrets_of(settings),
        process=process,
        cache=cache,
    )
