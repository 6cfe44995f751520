"""CreationService's decisions, over in-process fakes of its seams (pure logic).

Each test names one decision of the creation step (docs/LIFECYCLE.md): who holds the claim,
which errors retry and which fail, what the last attempt does, what a rate limit releases, and
what is left for the rescuer. The fake repository applies the same guards as the named queries
and refuses moves the lifecycle forbids (tests/unit/service_fakes.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from pipeline.allowlist import build_allowlist
from pipeline.errors import (
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    RateLimitTimeout,
    SourceHttpError,
)
from pipeline.provider import Prediction
from pipeline.statuses import ItemStatus
from tests.unit.service_fakes import (
    MODEL,
    FakeFetcher,
    FakeLimiter,
    FakeProvider,
    FakeRepository,
    FakeStorage,
    png_bytes,
    work_item,
)
from workers.creation import CreationOutcome, CreationPolicy, CreationService

MAX_ATTEMPTS = 3
BASE = 4.0


@dataclass
class Harness:
    repo: FakeRepository = field(default_factory=FakeRepository)
    storage: FakeStorage = field(default_factory=FakeStorage)
    fetcher: FakeFetcher = field(default_factory=FakeFetcher)
    provider: FakeProvider = field(default_factory=FakeProvider)
    limiter: FakeLimiter = field(default_factory=FakeLimiter)
    submitted: list[tuple[int, str, Prediction]] = field(default_factory=list)

    def service(self, **policy: Any) -> CreationService:
        knobs: dict[str, Any] = {
            "max_attempts": MAX_ATTEMPTS,
            "backoff_base": BASE,
            "backoff_cap": 60.0,
            "acquire_timeout": 5.0,
            "default_retry_after": 10.0,
            "max_input_bytes": 1 << 20,
            "max_input_pixels": 10_000_000,
        }
        knobs.update(policy)
        return CreationService(
            repo=self.repo,
            storage=self.storage,
            fetcher=self.fetcher,
            provider=self.provider,
            create_limiter=self.limiter,
            allowlist=build_allowlist(),
            policy=CreationPolicy(**knobs),
            on_submitted=lambda item_id, model, p: self.submitted.append((item_id, model, p)),
        )

    def run(self, item_id: int = 1, **policy: Any) -> CreationOutcome:
        return self.service(**policy).run(item_id)


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    harness.repo.add(work_item())
    return harness


def test_a_queued_item_is_stored_created_and_set_processing(h: Harness) -> None:
    outcome = h.run()
    assert outcome == CreationOutcome("submitted", prediction_id="p-1")
    item = h.repo.items[1]
    assert item.status == ItemStatus.PROCESSING
    assert item.prediction_id == "p-1"
    assert item.attempts == 1
    assert item.input_key == "inputs/store-a/10/1.jpg"
    assert item.input_key in h.storage.objects
    # the provider got the presigned URL of the stored input, after one create token
    assert h.provider.created[0]["image"].startswith(
        f"https://s3.example/imageopt-test/{item.input_key}"
    )
    assert h.limiter.grants == 1
    assert h.submitted == [(1, MODEL, Prediction("p-1", "starting"))]


@pytest.mark.parametrize("status", [s for s in ItemStatus if s != ItemStatus.QUEUED])
def test_an_item_that_is_not_queued_is_left_alone(h: Harness, status: ItemStatus) -> None:
    h.repo.add(work_item(status=status))
    assert h.run() == CreationOutcome("skipped")
    assert h.repo.status(1) == status
    assert h.fetcher.fetched == []
    assert h.provider.created == []
    assert h.limiter.grants == 0


def test_a_second_run_of_the_same_message_does_nothing(h: Harness) -> None:
    h.run()
    assert h.run() == CreationOutcome("skipped")
    assert len(h.provider.created) == 1


def test_a_permanent_source_error_fails_the_item_at_once(h: Harness) -> None:
    h.fetcher.error = SourceHttpError("source answered 404", status_code=404)
    assert h.run() == CreationOutcome("failed", error_code="source_http_error")
    assert h.repo.status(1) == ItemStatus.FAILED
    assert h.repo.errors[1] == ("source_http_error", "source answered 404")
    assert h.provider.created == []
    assert h.limiter.grants == 0


def test_a_transient_source_error_retries_later_with_backoff(h: Harness) -> None:
    h.fetcher.error = SourceHttpError("source answered 503", status_code=503)
    assert h.run() == CreationOutcome("retry", error_code="source_http_error")
    assert h.repo.status(1) == ItemStatus.PENDING
    # equal jitter around the first delay: uniform in [base/2, base]
    assert BASE / 2 <= h.repo.retry_delays[1] <= BASE
    assert h.repo.items[1].attempts == 1  # the attempt counts


def test_the_backoff_grows_with_the_attempt(h: Harness) -> None:
    h.repo.add(work_item(attempts=1))  # this claim is the second attempt
    h.fetcher.error = SourceHttpError("source answered 503", status_code=503)
    assert h.run().action == "retry"
    assert BASE <= h.repo.retry_delays[1] <= 2 * BASE


def test_the_last_attempt_of_a_transient_error_fails_the_item(h: Harness) -> None:
    h.repo.add(work_item(attempts=MAX_ATTEMPTS - 1))
    h.fetcher.error = SourceHttpError("source answered 503", status_code=503)
    assert h.run() == CreationOutcome("failed", error_code="source_http_error")
    assert h.repo.status(1) == ItemStatus.FAILED
    code, message = h.repo.errors[1]
    assert code == "source_http_error"
    assert message.endswith(f"(gave up after {MAX_ATTEMPTS} attempts)")


def test_a_provider_rejection_fails_the_item(h: Harness) -> None:
    h.provider.create_error = ProviderRejected("422 from provider")
    assert h.run() == CreationOutcome("failed", error_code="provider_rejected")
    assert h.repo.status(1) == ItemStatus.FAILED


def test_a_429_pauses_the_budget_and_releases_the_item_without_counting_the_attempt(
    h: Harness,
) -> None:
    h.provider.create_error = ProviderRateLimited("429", retry_after=7.0)
    assert h.run() == CreationOutcome("released", error_code="provider_rate_limited")
    assert h.limiter.pauses == [(7.0, "provider_429")]
    assert h.repo.status(1) == ItemStatus.PENDING
    assert h.repo.retry_delays[1] == 7.0
    assert h.repo.items[1].attempts == 0


def test_no_create_token_in_time_releases_the_item(h: Harness) -> None:
    h.limiter.error = RateLimitTimeout("no token within 5 s")
    assert h.run() == CreationOutcome("released", error_code="rate_limit_timeout")
    assert h.repo.status(1) == ItemStatus.PENDING
    assert h.repo.retry_delays[1] == 1.0
    assert h.provider.created == []


@pytest.mark.parametrize(
    "error", [ProviderTimeout("read timed out"), ProviderProtocolError("not JSON")]
)
def test_a_lost_create_answer_leaves_the_item_submitting_for_the_rescuer(
    h: Harness, error: Exception
) -> None:
    h.provider.create_error = error  # type: ignore[assignment]
    outcome = h.run()
    assert outcome.action == "unknown"
    assert h.repo.status(1) == ItemStatus.SUBMITTING  # submitting again could pay twice
    assert h.submitted == []


def test_a_lost_create_answer_on_the_last_attempt_fails_the_item(h: Harness) -> None:
    h.repo.add(work_item(attempts=MAX_ATTEMPTS - 1))
    h.provider.create_error = ProviderTimeout("read timed out")
    assert h.run() == CreationOutcome("failed", error_code="provider_timeout")
    assert h.repo.status(1) == ItemStatus.FAILED


def test_an_item_canceled_during_the_create_gets_its_prediction_canceled(h: Harness) -> None:
    class CancelingProvider(FakeProvider):
        def create_prediction(self, *args: Any, **kwargs: Any) -> Prediction:
            h.repo.items[1] = replace(h.repo.items[1], status=ItemStatus.CANCELED)
            return super().create_prediction(*args, **kwargs)

    h.provider = CancelingProvider()
    assert h.run() == CreationOutcome("skipped", prediction_id="p-1")
    assert h.provider.canceled == ["p-1"]  # no paid orphan left running
    assert h.repo.status(1) == ItemStatus.CANCELED
    assert h.submitted == []


def test_a_stored_input_is_reused_without_fetching_again(h: Harness) -> None:
    h.storage.put_bytes("inputs/store-a/10/1.jpg", b"stored", "image/jpeg")
    h.repo.add(work_item(input_key="inputs/store-a/10/1.jpg"))
    assert h.run().action == "submitted"
    assert h.fetcher.fetched == []


def test_an_s3_source_in_the_pipeline_bucket_is_read_from_storage(h: Harness) -> None:
    h.storage.put_bytes("uploads/a.png", png_bytes(), "image/png")
    h.repo.add(work_item(source_url="s3://imageopt-test/uploads/a.png"))
    assert h.run().action == "submitted"
    assert h.fetcher.fetched == []


def test_an_s3_source_in_another_bucket_fails(h: Harness) -> None:
    h.repo.add(work_item(source_url="s3://someone-else/a.png"))
    assert h.run() == CreationOutcome("failed", error_code="invalid_source_url")


def test_an_unknown_preset_fails_before_anything_is_paid(h: Harness) -> None:
    h.repo.add(work_item(preset="no-such-preset"))
    assert h.run() == CreationOutcome("failed", error_code="unknown_preset")
    assert h.fetcher.fetched == []
    assert h.provider.created == []


def test_bad_params_fail_before_anything_is_paid(h: Harness) -> None:
    h.repo.add(work_item(params={"scale": 9}))
    assert h.run() == CreationOutcome("failed", error_code="invalid_params")
    assert h.provider.created == []
