"""In-process fakes of the creation and polling seams (:mod:`workers.seams`), for unit tests of
the services' decisions.

The fake repository keeps item rows in a dict and applies each write as its named query does
in ``pipeline/sql/queries.sql``: a conditional move from the statuses the query guards on, a
no-op (False) otherwise. Every move is checked against the lifecycle's transition table, so
a service that asked for a move the lifecycle forbids fails the test.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from PIL import Image

from pipeline.allowlist import ModelSpec
from pipeline.errors import PipelineError
from pipeline.fetch import FetchedSource
from pipeline.lifecycle import can_transition
from pipeline.provider import Prediction
from pipeline.ratelimit import Grant
from pipeline.rows import WorkItem
from pipeline.statuses import ItemStatus

MODEL = "nightmareai/real-esrgan"
CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def png_bytes(width: int = 8, height: int = 6) -> bytes:
    """A small valid PNG (the fetched source, or the provider's output)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def work_item(item_id: int = 1, **overrides: Any) -> WorkItem:
    """An item row as ``get_work_item`` returns it; QUEUED unless overridden."""
    base = WorkItem(
        id=item_id,
        job_id=10,
        store_id="store-a",
        source_url="https://images.example/a.png",
        status=ItemStatus.QUEUED,
        attempts=0,
        priority=0,
        prediction_id=None,
        input_key=None,
        poll_count=0,
        created_at=CREATED,
        submitted_at=None,
        model=MODEL,
        prompt=None,
        params={},
        preset=None,
    )
    return replace(base, **overrides)


@dataclass
class FakeRepository:
    """Item rows in memory; writes follow the guards of their named queries."""

    items: dict[int, WorkItem] = field(default_factory=dict)
    presets: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    moves: list[tuple[int, ItemStatus, ItemStatus]] = field(default_factory=list)
    errors: dict[int, tuple[str, str]] = field(default_factory=dict)
    retry_delays: dict[int, float] = field(default_factory=dict)
    done: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, item: WorkItem) -> WorkItem:
        self.items[item.id] = item
        return item

    def status(self, item_id: int) -> ItemStatus:
        return self.items[item_id].status

    def _move(
        self, item_id: int, from_statuses: Sequence[ItemStatus], to: ItemStatus, **changes: Any
    ) -> bool:
        item = self.items.get(item_id)
        if item is None or item.status not in from_statuses:
            return False
        assert can_transition(item.status, to), f"{item.status} -> {to} is not in the lifecycle"
        self.moves.append((item_id, item.status, to))
        self.items[item_id] = replace(item, status=to, **changes)
        return True

    # --- CreationRepository ------------------------------------------------------------------
    def claim_work_item(self, item_id: int) -> WorkItem | None:
        item = self.items.get(item_id)
        if item is None:
            return None
        moved = self._move(
            item_id, (ItemStatus.QUEUED,), ItemStatus.SUBMITTING, attempts=item.attempts + 1
        )
        return self.items[item_id] if moved else None

    def record_input(self, item_id: int, input_key: str) -> bool:
        item = self.items.get(item_id)
        if item is None or item.status not in (ItemStatus.QUEUED, ItemStatus.SUBMITTING):
            return False
        self.items[item_id] = replace(item, input_key=input_key)
        return True

    def mark_processing(self, item_id: int, prediction_id: str) -> bool:
        return self._move(
            item_id,
            (ItemStatus.SUBMITTING,),
            ItemStatus.PROCESSING,
            prediction_id=prediction_id,
            submitted_at=CREATED,
        )

    def release_submission(
        self, item_id: int, delay_seconds: float, code: str, message: str
    ) -> bool:
        item = self.items.get(item_id)
        attempts = max((item.attempts if item else 0) - 1, 0)
        if not self._move(item_id, (ItemStatus.SUBMITTING,), ItemStatus.PENDING, attempts=attempts):
            return False
        self.retry_delays[item_id] = delay_seconds
        self.errors[item_id] = (code, message)
        return True

    def retry_later(
        self,
        item_id: int,
        from_statuses: Sequence[ItemStatus],
        delay_seconds: float,
        code: str,
        message: str,
    ) -> bool:
        if not self._move(item_id, from_statuses, ItemStatus.PENDING, prediction_id=None):
            return False
        self.retry_delays[item_id] = delay_seconds
        self.errors[item_id] = (code, message)
        return True

    def fail_item(
        self, item_id: int, from_statuses: Sequence[ItemStatus], code: str, message: str
    ) -> bool:
        if not self._move(item_id, from_statuses, ItemStatus.FAILED):
            return False
        self.errors[item_id] = (code, message)
        return True

    def get_preset(self, store_id: str, name: str) -> Mapping[str, Any] | None:
        return self.presets.get((store_id, name))

    # --- PollingRepository -------------------------------------------------------------------
    def get_work_item(self, item_id: int) -> WorkItem | None:
        return self.items.get(item_id)

    def record_predict_time(self, item_id: int, prediction_id: str, seconds: float) -> bool:
        item = self.items.get(item_id)
        return item is not None and item.prediction_id == prediction_id

    def record_poll(self, item_id: int) -> int | None:
        item = self.items.get(item_id)
        if item is None or item.status != ItemStatus.PROCESSING:
            return None
        self.items[item_id] = replace(item, poll_count=item.poll_count + 1)
        return item.poll_count + 1

    def mark_done(
        self,
        item_id: int,
        *,
        output_key: str,
        width: int,
        height: int,
        size: int,
        content_type: str,
        polled: bool = True,
        predict_time: float | None = None,
    ) -> bool:
        item = self.items.get(item_id)
        polls = (item.poll_count if item else 0) + int(polled)
        if not self._move(item_id, (ItemStatus.PROCESSING,), ItemStatus.DONE, poll_count=polls):
            return False
        self.done[item_id] = {
            "output_key": output_key,
            "width": width,
            "height": height,
            "bytes": size,
            "content_type": content_type,
        }
        return True


@dataclass
class FakeStorage:
    """An object store in a dict (satisfies InputStorage and ResultStorage)."""

    objects: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    bucket: str = "imageopt-test"

    def exists(self, key: str) -> bool:
        return key in self.objects

    def get_bytes(self, key: str, *, max_bytes: int) -> bytes:
        return self.objects[key][0]

    def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.objects[key] = (data, content_type)

    def presigned_get_url(self, key: str, expires_seconds: int | None = None) -> str:
        return f"https://s3.example/{self.bucket}/{key}?X-Amz-Signature=x"


@dataclass
class FakeFetcher:
    """Answers every URL with ``data``, or raises ``error``."""

    data: bytes = field(default_factory=png_bytes)
    error: PipelineError | None = None
    fetched: list[str] = field(default_factory=list)

    def fetch(self, url: str) -> FetchedSource:
        self.fetched.append(url)
        if self.error is not None:
            raise self.error
        return FetchedSource(self.data, "image/png", url)


@dataclass
class FakeProvider:
    """The provider's answers: ``create`` for POSTs (or ``create_error``), ``polls`` for GETs
    in order (an exception in the list is raised), ``outputs`` by URL for downloads."""

    create: Prediction = field(default_factory=lambda: Prediction("p-1", "starting"))
    create_error: PipelineError | None = None
    polls: list[Prediction | PipelineError] = field(default_factory=list)
    outputs: dict[str, bytes] = field(default_factory=dict)
    created: list[Mapping[str, Any]] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    gets: list[str] = field(default_factory=list)

    def create_prediction(
        self,
        spec: ModelSpec,
        input: Mapping[str, Any],
        *,
        wait_seconds: int = 0,
        webhook: str | None = None,
    ) -> Prediction:
        self.created.append(input)
        if self.create_error is not None:
            raise self.create_error
        return self.create

    def cancel_prediction(self, prediction_id: str) -> Prediction:
        self.canceled.append(prediction_id)
        return Prediction(prediction_id, "canceled")

    def get_prediction(self, prediction_id: str) -> Prediction:
        self.gets.append(prediction_id)
        answer = self.polls.pop(0)
        if isinstance(answer, PipelineError):
            raise answer
        return answer

    def download(self, url: str, *, max_bytes: int) -> bytes:
        return self.outputs[url]


@dataclass
class FakeLimiter:
    """A budget that always grants (or raises ``error``) and remembers pauses."""

    error: PipelineError | None = None
    grants: int = 0
    pauses: list[tuple[float, str]] = field(default_factory=list)

    def acquire_grant(self, timeout: float) -> Grant:
        self.acquire(timeout)
        return Grant(granted_at=0.0, waited=0.0, dispatched_at=0.0, token="t")

    def acquire(self, timeout: float) -> float:
        if self.error is not None:
            raise self.error
        self.grants += 1
        return 0.0

    def pause(self, seconds: float, reason: str) -> float:
        self.pauses.append((seconds, reason))
        return seconds
