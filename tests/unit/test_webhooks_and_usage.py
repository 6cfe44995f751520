"""Pure logic of provider webhooks (signature, timestamp, URL), the usage price table and the
emulator's data URLs: no I/O."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from emulator.config import EmulatorConfig
from emulator.runner import decode_data_url
from pipeline.errors import ConfigurationError, WebhookRejected
from pipeline.usage import DEFAULT_PRICES, Price, parse_prices
from pipeline.webhooks import WebhookVerifier, new_secret, signed_headers, webhook_url

SECRET = new_secret()
BODY = json.dumps({"id": "p1", "status": "succeeded"}).encode()


def test_a_delivery_signed_with_the_secret_verifies_and_gives_its_json() -> None:
    headers = signed_headers(SECRET, "msg_1", BODY)
    assert WebhookVerifier(SECRET).verify(BODY, headers) == {"id": "p1", "status": "succeeded"}


def test_the_signature_is_replicates_hmac_over_id_timestamp_and_body() -> None:
    """The scheme of Replicate's docs, computed by hand: HMAC-SHA256 keyed with the base64
    part of whsec_, over ``id.timestamp.body``, sent as ``v1,<base64>``."""
    import hashlib
    import hmac

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    headers = signed_headers(SECRET, "msg_x", BODY, now=when)
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = hmac.new(key, b"msg_x.1767323045." + BODY, hashlib.sha256).digest()
    assert headers["webhook-timestamp"] == "1767323045"
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("webhook-signature", "v1,AAAA"),
        ("webhook-signature", "garbage-without-comma"),
        ("webhook-signature", "v1,not base64!"),
        ("webhook-id", "msg_other"),
        ("webhook-timestamp", "not-a-number"),
        ("webhook-timestamp", "nan"),
    ],
)
def test_a_changed_header_is_refused(change: str, value: str) -> None:
    headers = {**signed_headers(SECRET, "msg_1", BODY), change: value}
    with pytest.raises(WebhookRejected):
        WebhookVerifier(SECRET).verify(BODY, headers)


@pytest.mark.parametrize("minutes", [-6, 6])
def test_a_timestamp_more_than_five_minutes_off_is_refused(minutes: int) -> None:
    when = datetime.now(UTC) + timedelta(minutes=minutes)
    with pytest.raises(WebhookRejected):
        WebhookVerifier(SECRET).verify(BODY, signed_headers(SECRET, "m", BODY, now=when))


def test_a_timestamp_four_minutes_off_is_accepted() -> None:
    when = datetime.now(UTC) - timedelta(minutes=4)
    assert WebhookVerifier(SECRET).verify(BODY, signed_headers(SECRET, "m", BODY, now=when))


def test_another_secret_a_changed_body_or_no_headers_are_refused() -> None:
    headers = signed_headers(SECRET, "msg_1", BODY)
    with pytest.raises(WebhookRejected):
        WebhookVerifier(new_secret()).verify(BODY, headers)
    with pytest.raises(WebhookRejected):
        WebhookVerifier(SECRET).verify(BODY + b" ", headers)
    with pytest.raises(WebhookRejected):
        WebhookVerifier(SECRET).verify(BODY, {})
    not_json = b"\xff\xfe"
    with pytest.raises(WebhookRejected):
        WebhookVerifier(SECRET).verify(not_json, signed_headers(SECRET, "m", not_json))


def test_an_empty_or_malformed_secret_is_a_configuration_error() -> None:
    for secret in ("", "whsec_", "whsec_!!!"):
        with pytest.raises(ConfigurationError):
            WebhookVerifier(secret)


def test_the_webhook_url_carries_the_item_and_keeps_its_own_query() -> None:
    assert webhook_url("https://h.example/api/webhooks/replicate", 42) == (
        "https://h.example/api/webhooks/replicate?item=42"
    )
    assert webhook_url("https://h.example/hook?env=prod", 7) == (
        "https://h.example/hook?env=prod&item=7"
    )
    assert webhook_url("https://h.example/hook?item=1&env=prod", 8) == (
        "https://h.example/hook?item=8&env=prod"
    )
    assert webhook_url("https://h.example/hook#top", 9) == "https://h.example/hook?item=9#top"


def test_prices_default_to_the_table_and_the_setting_overrides_or_adds() -> None:
    assert parse_prices("") == DEFAULT_PRICES
    prices = parse_prices('{"nightmareai/real-esrgan": 0.001, "me/model": {"per_prediction": 0.5}}')
    assert prices["nightmareai/real-esrgan"] == Price(per_second=0.001)
    assert prices["me/model"] == Price(per_prediction=0.5)
    for bad in ("[1]", "{", '{"m": -1}', '{"m": "x"}', '{"m": {"per_hour": 1}}'):
        with pytest.raises(ConfigurationError):
            parse_prices(bad)


def test_data_urls_decode_base64_and_percent_encoding() -> None:
    assert decode_data_url("data:image/png;base64," + base64.b64encode(b"abc").decode()) == b"abc"
    assert decode_data_url("data:,a%20b") == b"a b"
    for bad in ("data:image/png;base64,@@@", "data:nocomma", "http://x/,y"):
        with pytest.raises(ValueError, match=r"base64|data URL"):
            decode_data_url(bad)


def test_the_emulator_refuses_an_unknown_webhook_fault_and_hides_its_secret() -> None:
    with pytest.raises(ValueError, match="webhook_fault"):
        EmulatorConfig(webhook_fault="explode")
    with pytest.raises(ValueError, match="webhook_fault_rate"):
        EmulatorConfig(webhook_fault_rate=1.5)
    view = EmulatorConfig(webhook_secret=SECRET).public_view()
    assert view["webhook_secret"] == "set"
    assert SECRET not in json.dumps(view)
