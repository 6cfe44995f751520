"""``pipeline.logging``: secrets never reach a log line (pure logic of the redaction), the lines
go to the stderr of the moment, and the standard library's records (dramatiq, uvicorn,
psycopg-pool, ...) come out as our own events do: one JSON object, redacted, with the process
kind (a real stdlib logger, the real root handler)."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator

import pytest
import structlog

from pipeline.config import Settings
from pipeline.logging import REDACTED, Redactor, configure_logging, setup_logging

TOKEN = "r8_abcdef123456"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Leave structlog, the root logger and the exception hooks as the test found them."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    hooks = sys.excepthook, threading.excepthook
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hooks
    logging.captureWarnings(False)


def lines_of(text: str) -> list[dict[str, object]]:
    """Every line of ``text`` as JSON (fails on any line that is not one object)."""
    return [json.loads(line) for line in text.splitlines()]


def test_secret_values_and_secret_looking_keys_are_redacted() -> None:
    redact = Redactor([TOKEN, "s3-secret-xyz", "abc"])  # < 4 chars: ignored
    event = redact(
        None,
        "info",
        {
            "event": "provider_error",
            "detail": f"token {TOKEN} rejected",
            "api_key": "anything",
            "s3_secret": "s3-secret-xyz",
            "schema": "imageopt_demo",
            "note": "abc stays",
            "request": {"headers": {"Authorization": "Bearer x"}, "args": [f"t={TOKEN}"]},
        },
    )
    assert event["detail"] == f"token {REDACTED} rejected"
    assert event["api_key"] == REDACTED
    assert event["s3_secret"] == REDACTED
    assert event["schema"] == "imageopt_demo"
    assert event["note"] == "abc stays"
    assert event["request"] == {"headers": {"Authorization": REDACTED}, "args": [f"t={REDACTED}"]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "connection to postgresql://imageopt:hunter22@db:5432/x failed",
            f"connection to postgresql://imageopt:{REDACTED}@db:5432/x failed",
        ),
        ("Redis<redis://:pw-0001@10.0.0.5:6379/0>", f"Redis<redis://:{REDACTED}@10.0.0.5:6379/0>"),
        ("https://user@host/a:b@c", "https://user@host/a:b@c"),  # no password in the userinfo
        ("http://127.0.0.1:8088/v1/predictions", "http://127.0.0.1:8088/v1/predictions"),
    ],
)
def test_the_password_of_any_url_is_redacted_and_the_rest_kept(text: str, expected: str) -> None:
    assert Redactor([])(None, "info", {"event": text})["event"] == expected


def test_lines_go_to_the_current_stderr_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    configure_logging("INFO", "json", secrets=[TOKEN], cache=False)
    first, second = io.StringIO(), io.StringIO()
    log = structlog.get_logger("t")
    monkeypatch.setattr(sys, "stderr", first)
    log.info("one", token=TOKEN)
    monkeypatch.setattr(sys, "stderr", second)  # swapped after the logger was cached
    log.debug("hidden")  # below INFO
    log.warning("two", detail=f"uses {TOKEN}")
    assert json.loads(first.getvalue())["token"] == REDACTED
    lines = lines_of(second.getvalue())
    assert [(line["event"], line["level"]) for line in lines] == [("two", "warning")]
    assert lines[0]["detail"] == f"uses {REDACTED}"


def test_a_library_line_is_one_redacted_json_object_with_the_process_kind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json", secrets=[TOKEN], process="worker", cache=False)
    library = logging.getLogger("dramatiq.worker.Worker")
    library.warning("retrying %s against redis://:hunter22@10.0.0.5:6379/0", TOKEN)
    library.debug("below the level")
    (line,) = lines_of(capsys.readouterr().err)
    assert line["event"] == f"retrying {REDACTED} against redis://:{REDACTED}@10.0.0.5:6379/0"
    assert (line["level"], line["logger"], line["process"]) == (
        "warning",
        "dramatiq.worker.Worker",
        "worker",
    )
    assert line["pid"] == os.getpid()
    assert isinstance(line["timestamp"], str)


def test_a_library_traceback_is_in_the_same_object_and_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json", secrets=[TOKEN], process="api", cache=False)
    try:
        raise ConnectionError(f"refused for {TOKEN}")
    except ConnectionError:
        logging.getLogger("psycopg.pool").exception("error connecting in 'pool-1'")
    err = capsys.readouterr().err
    (line,) = lines_of(err)
    assert line["event"] == "error connecting in 'pool-1'"
    assert line["process"] == "api"
    assert isinstance(line["exception"], str)
    assert f"ConnectionError: refused for {REDACTED}" in line["exception"]
    assert TOKEN not in err


def test_a_library_line_carries_what_the_context_binds(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json", process="api", cache=False)
    structlog.contextvars.bind_contextvars(request_id="req-1")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    structlog.get_logger("api.jobs").info("job_created", job_id=7)
    library, ours = lines_of(capsys.readouterr().err)
    assert (library["request_id"], library["logger"]) == ("req-1", "uvicorn.error")
    assert (ours["request_id"], ours["logger"], ours["job_id"]) == (
        "req-1",
        "api.jobs",
        7,
    )
    assert library.keys() - {"event"} <= ours.keys()  # the same fields for both kinds of line


def test_a_librarys_own_handler_is_replaced(capsys: pytest.CaptureFixture[str]) -> None:
    # dramatiq's worker processes call basicConfig with their plain-text format before they
    # import the actors, whose set-up must take over.
    plain = io.StringIO()
    logging.basicConfig(format="[%(name)s] [%(levelname)s] %(message)s", stream=plain, force=True)
    configure_logging("INFO", "json", process="worker", cache=False)
    logging.getLogger("dramatiq.WorkerProcess(0)").info("Worker process is ready for action.")
    assert plain.getvalue() == ""
    (line,) = lines_of(capsys.readouterr().err)
    assert line["event"] == "Worker process is ready for action."


def test_uncaught_exceptions_are_logged_as_redacted_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json", secrets=[TOKEN], process="scheduler", cache=False)
    try:
        raise RuntimeError(f"bad dsn with {TOKEN}")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    error = RuntimeError(f"in a thread: {TOKEN}")
    threading.excepthook(threading.ExceptHookArgs((RuntimeError, error, None, None)))
    err = capsys.readouterr().err
    main, thread = lines_of(err)
    assert (main["event"], main["level"], main["process"]) == (
        "unhandled_exception",
        "error",
        "scheduler",
    )
    assert f"RuntimeError: bad dsn with {REDACTED}" in str(main["exception"])
    assert f"in a thread: {REDACTED}" in str(thread["exception"])
    assert TOKEN not in err


def test_the_console_format_is_for_people_and_still_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "console", secrets=[TOKEN], process="cli", cache=False)
    logging.getLogger("redis.connection").warning("auth with %s failed", TOKEN)
    text = capsys.readouterr().err
    assert not text.startswith("{")
    assert f"auth with {REDACTED} failed" in text
    assert "process=cli" in text
    assert TOKEN not in text


def test_the_pipeline_redacts_its_secrets_but_not_the_s3_access_key_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The access key ID is an identifier; with the dev default `imageopt` it is part of every
    # schema, bucket and queue name, which must stay readable.
    settings = Settings(
        REPLICATE_API_TOKEN="r8_unit-token-123456",
        S3_ACCESS_KEY="imageopt",
        S3_SECRET_KEY="imageopt-secret",
        DATABASE_URL="postgresql://imageopt:pg-pass-0042@db/imageopt",
    )
    setup_logging(settings, process="cli", cache=False)
    structlog.get_logger("t").info(
        "x", schema="imageopt_demo", detail="r8_unit-token-123456 / imageopt-secret"
    )
    logging.getLogger("psycopg").warning("password pg-pass-0042 rejected")
    ours, library = lines_of(capsys.readouterr().err)
    assert ours["schema"] == "imageopt_demo"
    assert ours["detail"] == f"{REDACTED} / {REDACTED}"
    assert library["event"] == f"password {REDACTED} rejected"
