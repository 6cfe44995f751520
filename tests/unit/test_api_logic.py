"""Pure logic of the api: who owns what, file sniffing, job status from items, the stats
document and its health thresholds, bearer parsing, the CSRF decision, camelCase keys, which
requests count against the read budget."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from starlette.datastructures import Headers

from api.auth import KEY_PREFIX, Caller, bearer_token, hash_secret, new_api_key
from api.imaging import camel, camel_keys
from api.ops import stats_payload
from api.security import CsrfMiddleware
from api.throttle import is_read
from api.views import display_name, job_status
from pipeline.controls import PauseState
from pipeline.ratelimit import LimiterStats
from pipeline.uploads import sniff_content_type, upload_key, upload_key_of

GUEST = Caller("guest", "g-1", "console", "guest-g-1")
SHOP = Caller("store", "shop-1", "shop-1", "key-1")


def test_a_guest_owns_only_its_own_jobs() -> None:
    assert GUEST.owns("guest", "g-1", "console")
    assert not GUEST.owns("guest", "g-2", "console")
    assert not GUEST.owns(None, None, "console")
    assert not GUEST.owns("store", "console", "console")


def test_a_store_owns_its_store_jobs_but_never_guests_jobs() -> None:
    assert SHOP.owns(None, None, "shop-1")  # inserted by upstream
    assert SHOP.owns("store", "shop-1", "shop-1")
    assert not SHOP.owns("store", "shop-2", "shop-2")
    assert not Caller("store", "console", "console", "k").owns("guest", "g-1", "console")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xff\xd8\xff\xe0rest", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\nrest", "image/png"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"this is not an image", None),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
        (b"", None),
    ],
)
def test_uploads_are_recognized_by_their_bytes_not_their_names(
    data: bytes, expected: str | None
) -> None:
    assert sniff_content_type(data) == expected


def test_upload_keys_are_safe_and_recognized_as_ours() -> None:
    key = upload_key("shop/../1", "abc", 3, "../x y.jpg")
    assert key == "uploads/shop_.._1/abc/003-_x_y.jpg"
    assert ".." not in key.split("/")
    assert upload_key_of(f"s3://b/{key}", "b") == key
    assert upload_key_of("s3://b/results/x.png", "b") is None
    assert upload_key_of(f"s3://other/{key}", "b") is None
    assert display_name(f"s3://b/{key}") == "_x_y.jpg"
    assert display_name("https://example.com/p/photo.jpg?x=1") == "photo.jpg"


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["PENDING", "QUEUED"], "PENDING"),
        (["PENDING", "PROCESSING"], "PROCESSING"),
        (["DONE", "PENDING"], "PROCESSING"),
        (["DONE", "FAILED"], "DONE"),
        (["FAILED", "CANCELED"], "FAILED"),
        (["CANCELED"], "CANCELED"),
    ],
)
def test_job_status_follows_its_items(statuses: list[str], expected: str) -> None:
    assert job_status([{"status": s} for s in statuses], "PENDING") == expected


def _stats(granted: int, rpm: int = 450, waiting: int = 0) -> LimiterStats:
    return LimiterStats(
        budget="create", budget_rpm=rpm, limit=rpm, window_seconds=60.0,
        granted_in_window=granted, waiting=waiting,
        usage_percent=round(granted / rpm * 100, 2), paused_until=None, pause_reason=None, now=0.0,
    )  # fmt: skip


def test_stats_have_the_seed_shape_and_its_health_thresholds() -> None:
    depths = {"PENDING": 400, "QUEUED": 99, "SUBMITTING": 3, "PROCESSING": 50}
    doc = stats_payload(depths, _stats(387), _stats(100, 2400), 500, 95.0)
    assert doc["status"] == "ok"
    rate = doc["rateLimiter"]
    assert (rate["queueLength"], rate["requestsInLastMinute"], rate["maxRPM"]) == (499, 387, 450)
    assert rate["rpmUsagePercent"] == 86.0
    assert doc["health"] == {"queueHealthy": True, "rpmHealthy": True, "readRpmHealthy": True}
    busy = stats_payload({**depths, "PENDING": 401}, _stats(427), _stats(100, 2400), 500, 95.0)
    assert busy["health"]["queueHealthy"] is False  # 500 waiting: the seed's warning
    assert busy["health"]["rpmHealthy"] is True  # 427/450 = 94.9 %
    hot = stats_payload(depths, _stats(428), _stats(100, 2400), 500, 95.0)  # 95.1 %
    assert hot["health"]["rpmHealthy"] is False
    assert doc["submissions"] == {"paused": False, "pausedSince": None, "pausedStores": 0}
    since = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    paused = stats_payload(
        depths, _stats(0), _stats(0, 2400), 500, 95.0,
        pause=PauseState(True, "switch", "secret reason", "ops@host", since),
    )  # fmt: skip
    assert paused["submissions"] == {
        "paused": True,
        "pausedSince": "2026-12-03T09:00:00+00:00",
        "pausedStores": 0,
    }


def test_bearer_tokens_are_parsed_and_keys_are_long_random_and_hashed() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    key, prefix = new_api_key()
    assert key.startswith(f"{KEY_PREFIX}{prefix}_")
    assert len(key) > 50
    assert new_api_key()[0] != key
    assert len(hash_secret(key)) == 32


def _csrf(headers: dict[str, str], allowed: tuple[str, ...] = ()) -> str | None:
    middleware = CsrfMiddleware(app=None, allowed_origins=allowed)  # type: ignore[arg-type]
    scope = {"type": "http", "scheme": "http", "method": "POST", "path": "/api/jobs"}
    return middleware.check(scope, Headers(headers={"host": "api.test", **headers}))


def test_csrf_needs_a_same_origin_and_a_matching_double_submitted_token() -> None:
    token = "t" * 24
    good = {
        "origin": "http://api.test",
        "x-csrf-token": token,
        "cookie": f"a=1; csrf_token={token}",
    }
    assert _csrf(good) is None
    assert _csrf({**good, "origin": "https://evil.test"}) is not None
    no_origin = {k: v for k, v in good.items() if k != "origin"}
    assert _csrf(no_origin) is not None
    assert _csrf({**no_origin, "referer": "http://api.test/page"}) is None
    assert _csrf({**good, "x-csrf-token": "u" * 24}) is not None
    assert _csrf({**good, "x-csrf-token": "short", "cookie": "csrf_token=short"}) is not None
    assert _csrf({**good, "cookie": "a=1"}) is not None
    proxied = {**good, "origin": "https://shop.example"}
    assert _csrf(proxied, allowed=("https://shop.example/",)) is None


def test_preview_and_analysis_keys_become_camel_case_but_model_params_stay() -> None:
    assert camel("estimated_bytes") == "estimatedBytes"
    assert camel("has_icc_profile") == "hasIccProfile"
    assert camel("width") == "width"
    data = {"stored_width": 1, "notes": [{"a_b": 1}],
            "recommendation": {"model_reason": "x", "params": {"face_enhance": True}}}  # fmt: skip
    assert camel_keys(data) == {
        "storedWidth": 1, "notes": [{"aB": 1}],
        "recommendation": {"modelReason": "x", "params": {"face_enhance": True}},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("method", "read"),
    [("GET", True), ("HEAD", True), ("get", True), ("POST", False), ("PUT", False),
     ("DELETE", False), ("PATCH", False), ("OPTIONS", False)],
)  # fmt: skip
def test_only_the_safe_methods_count_against_the_read_budget(method: str, read: bool) -> None:
    assert is_read(method) is read
