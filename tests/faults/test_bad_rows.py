"""Fault scenario 6: rows upstream should not have written. Each fails with its own code,
before any provider call; sources on private, loopback or link-local addresses are refused by
the SSRF guard before any connection (the allowlist is empty here; that no packet is sent is
proven without a network in tests/unit/test_ssrf.py, which fails on any connect)."""

from __future__ import annotations

import io
import random
from typing import Any

import pytest
from PIL import Image

from tests.faults.conftest import REPEATS, FaultStack, assert_sound

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]
CMD = "IMAGEOPT_FAULT_REPEATS=N .venv/bin/pytest tests/faults -k bad_upstream_rows"
MAX_BYTES = 1_000_000
MAX_PIXELS = 1_000_000


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("run", range(REPEATS))
def test_bad_upstream_rows_fail_with_their_own_codes_and_cost_no_prediction(
    make_stack: Any, run: int
) -> None:
    stack: FaultStack = make_stack(
        extra_env={
            "IMAGEOPT_MAX_INPUT_BYTES": str(MAX_BYTES),
            "IMAGEOPT_MAX_INPUT_PIXELS": str(MAX_PIXELS),
        }
    )
    bucket = stack.storage.bucket
    noise = Image.frombytes("RGB", (800, 700), random.Random(run).randbytes(800 * 700 * 3))
    uploads = {
        "notes.jpg": b"this is not an image\n" * 50,
        "noise.png": _png(noise),  # ~1.7 MB, under the pixel cap, over the byte cap
        "wide.png": _png(Image.new("RGB", (1200, 1000), "white")),  # small, over the pixel cap
    }
    for name, data in uploads.items():
        stack.storage.put_bytes(f"bad/{name}", data, "application/octet-stream")
    cases: list[tuple[str, dict[str, Any], str | None]] = [
        (stack.good(1)[0], {}, None),
        ("http://[::1/broken.jpg", {}, "invalid_source_url"),
        ("file:///etc/passwd", {}, "invalid_source_url"),
        ("ftp://example.com/photo.jpg", {}, "invalid_source_url"),
        ("s3://someone-elses-bucket/photo.jpg", {}, "invalid_source_url"),
        ("http://localhost:9/photo.jpg", {}, "source_blocked"),
        ("http://169.254.169.254/latest/meta-data/", {}, "source_blocked"),
        ("http://10.0.0.1/photo.jpg", {}, "source_blocked"),
        (f"s3://{bucket}/bad/notes.jpg", {}, "not_an_image"),
        (f"s3://{bucket}/bad/noise.png", {}, "source_too_large"),
        (f"s3://{bucket}/bad/wide.png", {}, "image_too_large"),
        (stack.good(1)[0], {"model": "acme/unknown-model"}, "unknown_model"),
        (stack.good(1)[0], {"model": "google/nano-banana", "params": {}}, "missing_prompt"),
        (stack.good(1)[0], {"priority": -1}, "invalid_priority"),
        (stack.good(1)[0], {"store_id": ""}, "invalid_store_id"),
    ]
    ids = stack.insert([c[0] for c in cases], item_fields=[c[1] for c in cases], params={})
    stack.start_scheduler()
    stack.start_workers("workers", threads=4)
    out = stack.outcome(timeout=40)
    expected = {
        item_id: ("DONE", None) if code is None else ("FAILED", code)
        for item_id, (_, _, code) in zip(ids, cases, strict=True)
    }
    assert_sound(
        stack, out, scenario="6. bad upstream rows (14 kinds)", expected=expected, command=CMD
    )
    assert sum(out.predictions.values()) == 1  # only the good row reached the provider
