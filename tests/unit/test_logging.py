"""``pipeline.logging``: secrets never reach a log line (pure logic of the redaction), and the
lines go to the stderr of the moment."""

from __future__ import annotations

import io
import json
import sys

import pytest
import structlog

from pipeline.logging import REDACTED, Redactor, configure_logging


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
