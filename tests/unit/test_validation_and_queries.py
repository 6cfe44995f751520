"""Row validation before queueing, and the named-queries file (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.allowlist import build_allowlist
from pipeline.errors import InvalidSourceUrl
from pipeline.fetch import check_source_url as check_fetchable_url
from pipeline.queries import load_queries, parse_queries
from pipeline.rows import PendingItem
from pipeline.validation import check_source_url, validate_item

ALLOWLIST = build_allowlist("1:1")


def _row(**overrides: Any) -> PendingItem:
    row: dict[str, Any] = {
        "id": 1,
        "job_id": 1,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "store_id": "s1",
        "priority": 0,
        "source_url": "https://example.com/a.jpg",
        "model": "nightmareai/real-esrgan",
        "prompt": None,
        "params": {},
    }
    row.update(overrides)
    return PendingItem.from_row(row)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"store_id": ""}, "invalid_store_id"),
        ({"store_id": "   "}, "invalid_store_id"),
        ({"priority": -1}, "invalid_priority"),
        ({"source_url": "file:///etc/passwd"}, "invalid_source_url"),
        ({"source_url": "ftp://example.com/a.jpg"}, "invalid_source_url"),
        ({"source_url": "http://"}, "invalid_source_url"),
        ({"source_url": "s3://bucket-only"}, "invalid_source_url"),
        ({"model": "someone/unknown"}, "unknown_model"),
        ({"params": {"scale": 9}}, "invalid_params"),
        ({"params": {"bogus": 1}}, "invalid_params"),
        ({"model": "google/nano-banana"}, "missing_prompt"),
        (
            {"model": "stability-ai/sdxl", "prompt": "x", "params": {"num_inference_steps": 50}},
            "invalid_params",
        ),
    ],
)
def test_rows_that_can_never_succeed_get_their_error_code(
    overrides: dict[str, Any], code: str
) -> None:
    error = validate_item(_row(**overrides), ALLOWLIST)
    assert error is not None
    assert error.code == code


def test_a_good_row_passes_and_s3_sources_are_accepted() -> None:
    assert validate_item(_row(), ALLOWLIST) is None
    assert validate_item(_row(source_url="s3://bucket/inputs/a.jpg"), ALLOWLIST) is None
    assert (
        validate_item(_row(model="google/nano-banana", prompt="white background"), ALLOWLIST)
        is None
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://exa mple.com/a.jpg",  # a space: no host has one
        "http://example.com:0/a.jpg",  # port out of range
        "http://exa%41mple.com/a.jpg",  # percent in the host
        "https:///a.jpg",
    ],
)
def test_a_row_is_refused_whatever_the_fetcher_would_refuse(url: str) -> None:
    with pytest.raises(InvalidSourceUrl):
        check_fetchable_url(url)
    with pytest.raises(InvalidSourceUrl):
        check_source_url(url)


@pytest.mark.parametrize(
    "url", ["https://example.com/a.jpg", "HTTP://Example.com:8080/a b.jpg", "http://[::1]/x.png"]
)
def test_a_row_is_accepted_whenever_the_fetcher_accepts_its_url(url: str) -> None:
    check_fetchable_url(url)
    check_source_url(url)


def test_uploads_pass_as_s3_urls_and_rows_keep_their_own_length_cap() -> None:
    check_source_url("s3://bucket/uploads/s1/abc/000-a.jpg")
    with pytest.raises(InvalidSourceUrl):
        check_source_url("s3://bucket/")
    long_url = "https://example.com/" + "a" * 5000
    check_fetchable_url(long_url)  # a redirect may be this long
    with pytest.raises(InvalidSourceUrl):
        check_source_url(long_url)


def test_prompt_edit_model_gets_the_default_aspect_ratio_and_image_list() -> None:
    spec = build_allowlist("16:9")["google/nano-banana"]
    payload = spec.build_input("http://x/a.png", "make it pop", {})
    assert payload["aspect_ratio"] == "16:9"
    assert payload["image_input"] == ["http://x/a.png"]
    assert payload["prompt"] == "make it pop"


def test_queries_file_parses_and_rejects_duplicates() -> None:
    queries = load_queries()
    assert "mark_queued" in queries
    assert all("%(" in q or "SELECT" in q or "UPDATE" in q for q in queries.values())
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\n-- d\nSELECT 1;\n-- name: a\n-- d\nSELECT 2;\n")


@pytest.mark.parametrize("spec", list(build_allowlist().values()), ids=lambda s: s.name)
def test_described_parameter_limits_are_the_ones_validation_enforces(spec: Any) -> None:
    """The console builds its form from :meth:`ModelSpec.parameters`: each described bound
    is accepted, one step past it refused, every choice accepted and the default valid."""
    for p in spec.parameters():
        check = spec.allowed_params[p["name"]]
        if p["type"] in ("integer", "number"):
            step = 1 if p["type"] == "integer" else 0.01
            assert check(p["min"]) == p["min"]
            assert check(p["max"]) == p["max"]
            for outside in (p["min"] - step, p["max"] + step):
                with pytest.raises(ValueError, match="must be between"):
                    check(outside)
        if p["type"] == "string":
            assert [check(c) for c in p["choices"]] == p["choices"]
        if p["default"] is not None:
            assert check(p["default"]) == p["default"]
    sdxl = build_allowlist()["stability-ai/sdxl"].parameters()
    assert {"name": "num_inference_steps", "type": "integer", "min": 1, "max": 20,
            "default": 20} in sdxl  # fmt: skip
