"""``pipeline.logging``: secrets never reach a log line (pure logic of the redaction), and the
lines go to the stderr of the moment."""

from __future__ import annotations

import io
import json
import sys

import pytest
import structlog

from pipeline.config import Settings
from pipeline.logging import REDACTED, Redactor, configure_logging
from pipeline.wiring import setup_logging


def test_secret_values_and_secret_looking_keys_are_redacted() -> None:
    redact = Redactor(["r8_abcdef123456", "s3-secret-xyz", "abc"])  # < 4 chars: ignored
    event = redact(
        None,
        "info",
        {
            "event": "provider_error",
            "detail": "token r8_abcdef123456 rejected",
            "api_key": "anything",
            "s3_secret": "s3-secret-xyz",
            "schema": "imageopt_demo",
            "note": "abc stays",
        },
    )
    assert event["detail"] == f"token {REDACTED} rejected"
    assert event["api_key"] == REDACTED
    assert event["s3_secret"] == REDACTED
    assert event["schema"] == "imageopt_demo"
    assert event["note"] == "abc stays"


def test_lines_go_to_the_current_stderr_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    configure_logging("INFO", "json", secrets=["r8_abcdef123456"], cache=False)
    try:
        first, second = io.StringIO(), io.StringIO()
        log = structlog.get_logger("t")
        monkeypatch.setattr(sys, "stderr", first)
        log.info("one", token="r8_abcdef123456")
        monkeypatch.setattr(sys, "stderr", second)  # swapped after the logger was cached
        log.debug("hidden")  # below INFO
        log.warning("two", detail="uses r8_abcdef123456")
    finally:
        structlog.reset_defaults()
    assert json.loads(first.getvalue())["token"] == REDACTED
    lines = [json.loads(line) for line in second.getvalue().splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [("two", "warning")]
    assert lines[0]["detail"] == f"uses {REDACTED}"


def test_the_pipeline_redacts_its_secrets_but_not_the_s3_access_key_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The access key ID is an identifier; with the dev default `imageopt` it is part of every
    # schema, bucket and queue name, which must stay readable.
    settings = Settings(
        REPLICATE_API_TOKEN="r8_unit-token-123456",
        S3_ACCESS_KEY="imageopt",
        S3_SECRET_KEY="imageopt-secret",
    )
    setup_logging(settings, cache=False)
    try:
        out = io.StringIO()
        monkeypatch.setattr(sys, "stderr", out)
        structlog.get_logger("t").info(
            "x", schema="imageopt_demo", detail="r8_unit-token-123456 / imageopt-secret"
        )
    finally:
        structlog.reset_defaults()
    line = json.loads(out.getvalue())
    assert line["schema"] == "imageopt_demo"
    assert line["detail"] == f"{REDACTED} / {REDACTED}"
