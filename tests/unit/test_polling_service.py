"""PollingService's decisions, over in-process fakes of its seams (pure logic).

One test per decision of the polling step (docs/LIFECYCLE.md): succeeded → DONE with the
stored result, failed/canceled → FAILED, still running → poll again with a growing delay,
transient errors → poll again without losing the prediction, an invalid output → FAILED, and
Replicate's sync mode, where the create's own answer finishes the item without a GET.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from pipeline.errors import ProviderRateLimited, ProviderUnavailable, RateLimitTimeout
from pipeline.lifecycle import poll_delay
from pipeline.prediction_errors import FailureClassifier
from pipeline.provider import Prediction
from pipeline.statuses import ItemStatus
from tests.unit.service_fakes import (
    MODEL,
    FakeLimiter,
    FakeProvider,
    FakeRepository,
    FakeStorage,
    png_bytes,
    work_item,
)
from workers.polling import PollingPolicy, PollingService, PollOutcome

INITIAL = 2.0
MAXIMUM = 30.0
OUTPUT = "https://replicate.delivery/out/1.png"


def succeeded(prediction_id: str = "p-1", **fields: Any) -> Prediction:
    values: dict[str, Any] = {
        "output_urls": (OUTPUT,),
        "created_at": "2026-01-01T00:00:00Z",
        "completed_at": "2026-01-01T00:00:05Z",
    }
    values.update(fields)
    return Prediction(prediction_id, "succeeded", **values)


@dataclass
class Harness:
    repo: FakeRepository = field(default_factory=FakeRepository)
    storage: FakeStorage = field(default_factory=FakeStorage)
    provider: FakeProvider = field(default_factory=FakeProvider)
    limiter: FakeLimiter = field(default_factory=FakeLimiter)
    runtimes: list[tuple[str, float]] = field(default_factory=list)

    def service(self, *, webhooks: bool = False, pattern: str | None = None) -> PollingService:
        return PollingService(
            repo=self.repo,
            storage=self.storage,
            provider=self.provider,
            read_limiter=self.limiter,
            policy=PollingPolicy(
                initial_delay=INITIAL,
                max_delay=MAXIMUM,
                acquire_timeout=5.0,
                max_output_bytes=1 << 20,
                max_output_pixels=10_000_000,
                webhooks=webhooks,
                **({} if pattern is None else {"failures": FailureClassifier(pattern)}),
            ),
            on_runtime=lambda model, seconds: self.runtimes.append((model, seconds)),
            first_delay=lambda _model: 3.5,
        )

    def run(self, item_id: int = 1, known: Prediction | None = None) -> PollOutcome:
        return self.service().run(item_id, known=known)


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    harness.repo.add(
        work_item(status=ItemStatus.PROCESSING, prediction_id="p-1", attempts=1, poll_count=0)
    )
    harness.provider.outputs[OUTPUT] = png_bytes(8, 6)
    return harness


def test_a_succeeded_prediction_stores_the_result_and_ends_done(h: Harness) -> None:
    h.provider.polls = [succeeded()]
    assert h.run() == PollOutcome("done")
    assert h.repo.status(1) == ItemStatus.DONE
    key = "results/store-a/10/1.png"
    assert h.storage.objects[key] == (png_bytes(8, 6), "image/png")
    assert h.repo.done[1] == {
        "output_key": key,
        "width": 8,
        "height": 6,
        "bytes": len(png_bytes(8, 6)),
        "content_type": "image/png",
    }
    assert h.repo.items[1].poll_count == 1  # the GET that saw the success counts
    assert h.limiter.grants == 1
    assert h.runtimes == [(MODEL, 5.0)]


def test_an_output_preset_is_applied_before_storing(h: Harness) -> None:
    h.repo.add(work_item(status=ItemStatus.PROCESSING, prediction_id="p-1", preset="web-2048"))
    h.provider.polls = [succeeded()]
    assert h.run() == PollOutcome("done")
    assert h.repo.done[1]["output_key"] == "results/store-a/10/1.jpg"
    assert h.repo.done[1]["content_type"] == "image/jpeg"


@pytest.mark.parametrize(
    ("prediction", "code"),
    [
        (Prediction("p-1", "failed", error="CUDA out of memory"), "prediction_failed"),
        (Prediction("p-1", "canceled"), "canceled"),
    ],
)
def test_a_failed_or_canceled_prediction_fails_the_item(
    h: Harness, prediction: Prediction, code: str
) -> None:
    h.provider.polls = [prediction]
    assert h.run() == PollOutcome("failed", error_code=code)
    assert h.repo.status(1) == ItemStatus.FAILED
    assert h.repo.errors[1][0] == code
    assert h.repo.items[1].poll_count == 1


def test_the_providers_error_text_is_kept_for_ops(h: Harness) -> None:
    h.provider.polls = [Prediction("p-1", "failed", error="CUDA out of memory")]
    h.run()
    assert "CUDA out of memory" in h.repo.errors[1][1]


def test_a_running_prediction_is_polled_again_with_a_growing_delay(h: Harness) -> None:
    h.provider.polls = [Prediction("p-1", "processing"), Prediction("p-1", "processing")]
    first = h.run()
    second = h.run()
    assert first == PollOutcome("again", delay=poll_delay(1, initial=INITIAL, maximum=MAXIMUM))
    assert second == PollOutcome("again", delay=poll_delay(2, initial=INITIAL, maximum=MAXIMUM))
    assert first.delay < second.delay
    assert h.repo.status(1) == ItemStatus.PROCESSING
    assert h.repo.items[1].poll_count == 2


def test_the_poll_delay_stops_growing_at_the_maximum(h: Harness) -> None:
    h.repo.add(work_item(status=ItemStatus.PROCESSING, prediction_id="p-1", poll_count=40))
    h.provider.polls = [Prediction("p-1", "starting")]
    assert h.run() == PollOutcome("again", delay=MAXIMUM)


def test_a_transient_error_polls_again_with_backoff_and_keeps_the_prediction(
    h: Harness,
) -> None:
    h.provider.polls = [ProviderUnavailable("502 from provider")]
    outcome = h.run()
    assert outcome.action == "again"
    assert outcome.error_code == "provider_unavailable"
    assert INITIAL / 2 <= outcome.delay <= INITIAL  # equal jitter of the first backoff step
    assert h.repo.status(1) == ItemStatus.PROCESSING
    assert h.repo.items[1].prediction_id == "p-1"


def test_a_429_pauses_the_read_budget_and_polls_after_retry_after(h: Harness) -> None:
    h.provider.polls = [ProviderRateLimited("429", retry_after=9.0)]
    assert h.run() == PollOutcome("again", delay=9.0, error_code="provider_rate_limited")
    assert h.limiter.pauses == [(9.0, "provider_429")]
    assert h.repo.status(1) == ItemStatus.PROCESSING


def test_no_read_token_in_time_polls_again_soon(h: Harness) -> None:
    h.limiter.error = RateLimitTimeout("no token")
    assert h.run() == PollOutcome("again", delay=1.0, error_code="rate_limit_timeout")
    assert h.provider.gets == []


def test_a_success_without_an_output_url_is_an_invalid_output(h: Harness) -> None:
    h.provider.polls = [succeeded(output_urls=())]
    assert h.run() == PollOutcome("failed", error_code="output_invalid")
    assert h.repo.status(1) == ItemStatus.FAILED


def test_an_output_that_is_no_image_is_an_invalid_output(h: Harness) -> None:
    h.provider.outputs[OUTPUT] = b"<html>not an image</html>"
    h.provider.polls = [succeeded()]
    assert h.run() == PollOutcome("failed", error_code="output_invalid")
    assert h.repo.status(1) == ItemStatus.FAILED
    assert h.storage.objects == {}


@pytest.mark.parametrize(
    "item",
    [
        work_item(status=ItemStatus.DONE, prediction_id="p-1"),
        work_item(status=ItemStatus.CANCELED, prediction_id="p-1"),
        work_item(status=ItemStatus.PROCESSING, prediction_id=None),
    ],
)
def test_an_item_not_processing_with_a_prediction_is_skipped(h: Harness, item: Any) -> None:
    h.repo.add(item)
    assert h.run() == PollOutcome("skipped")
    assert h.provider.gets == []
    assert h.limiter.grants == 0


def test_a_missing_item_is_skipped(h: Harness) -> None:
    assert h.run(item_id=404) == PollOutcome("skipped")


def test_sync_mode_finishes_the_item_from_the_creates_answer_without_a_get(h: Harness) -> None:
    assert h.service().after_create(1, MODEL, succeeded()) is None  # no poll message
    assert h.repo.status(1) == ItemStatus.DONE
    assert h.provider.gets == []
    assert h.limiter.grants == 0
    assert h.repo.items[1].poll_count == 0  # no GET was made


def test_sync_mode_with_a_failed_answer_fails_the_item(h: Harness) -> None:
    answer = Prediction("p-1", "failed", error="bad input")
    assert h.service().after_create(1, MODEL, answer) is None
    assert h.repo.status(1) == ItemStatus.FAILED
    assert h.provider.gets == []


def test_an_unfinished_create_answer_gets_its_first_poll_after_the_models_delay(
    h: Harness,
) -> None:
    assert h.service().after_create(1, MODEL, Prediction("p-1", "starting")) == 3.5
    assert h.repo.status(1) == ItemStatus.PROCESSING


def test_with_webhooks_an_unfinished_create_answer_gets_no_poll_message(h: Harness) -> None:
    """The webhook finishes it, or the scheduler's rescuer polls it once the webhook is late."""
    service = h.service(webhooks=True)
    assert service.after_create(1, MODEL, Prediction("p-1", "starting")) is None
    assert h.repo.status(1) == ItemStatus.PROCESSING


def test_with_webhooks_a_final_create_answer_still_finishes_the_item(h: Harness) -> None:
    assert h.service(webhooks=True).after_create(1, MODEL, succeeded()) is None
    assert h.repo.status(1) == ItemStatus.DONE


def test_a_known_answer_for_another_prediction_is_skipped(h: Harness) -> None:
    assert h.run(known=succeeded("p-other")) == PollOutcome("skipped")
    assert h.repo.status(1) == ItemStatus.PROCESSING


INPUT_UNREACHABLE = "input image could not be fetched: ReadError"


def test_a_prediction_whose_input_could_not_be_downloaded_gets_a_new_one(h: Harness) -> None:
    h.provider.polls = [Prediction("p-1", "failed", error=INPUT_UNREACHABLE)]
    outcome = h.run()
    assert outcome.action == "retried"
    assert outcome.error_code == "prediction_input_unreachable"
    assert h.repo.status(1) == ItemStatus.PENDING
    assert h.repo.items[1].prediction_id is None  # the next attempt creates a new one
    assert h.repo.errors[1][0] == "prediction_input_unreachable"
    assert INPUT_UNREACHABLE in h.repo.errors[1][1]
    assert 1.0 <= h.repo.retry_delays[1] <= 2.0  # attempt 1: equal jitter over base 2 s


def test_a_webhook_with_an_unreachable_input_also_gets_a_new_prediction(h: Harness) -> None:
    outcome = h.run(known=Prediction("p-1", "failed", error="Failed to download input file"))
    assert outcome.action == "retried"
    assert h.limiter.grants == 0
    assert h.repo.status(1) == ItemStatus.PENDING


def test_the_last_attempt_with_an_unreachable_input_fails_the_item(h: Harness) -> None:
    h.repo.add(work_item(status=ItemStatus.PROCESSING, prediction_id="p-1", attempts=5))
    h.provider.polls = [Prediction("p-1", "failed", error=INPUT_UNREACHABLE)]
    assert h.run() == PollOutcome("failed", error_code="prediction_input_unreachable")
    assert h.repo.status(1) == ItemStatus.FAILED
    assert "gave up after 5 attempts" in h.repo.errors[1][1]


def test_with_an_empty_pattern_every_failed_prediction_is_final(h: Harness) -> None:
    service = h.service(pattern="")
    h.provider.polls = [Prediction("p-1", "failed", error=INPUT_UNREACHABLE)]
    assert service.run(1) == PollOutcome("failed", error_code="prediction_failed")
