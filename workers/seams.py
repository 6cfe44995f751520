"""The seams of the creation and polling services, as :class:`typing.Protocol` s.

:class:`workers.creation.CreationService` and :class:`workers.polling.PollingService` are
written against these, not the concrete clients: in production they get
:class:`pipeline.repository.Repository`, :class:`pipeline.storage.ObjectStorage`,
:class:`pipeline.provider.ProviderClient`, :class:`pipeline.fetch.SourceFetcher` and
:class:`pipeline.ratelimit.RateLimiter` (mypy checks that each satisfies its Protocol where
``workers/services.py`` builds the services); the unit tests of their decisions give them
in-process fakes (tests/unit/service_fakes.py, which mypy checks against these Protocols too:
``modules`` in pyproject's ``[tool.mypy]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pipeline.allowlist import ModelSpec
from pipeline.fetch import FetchedSource
from pipeline.provider import Prediction
from pipeline.ratelimit import Grant
from pipeline.rows import WorkItem
from pipeline.statuses import ItemStatus


class ItemWrites(Protocol):
    """The conditional UPDATEs both services end an attempt with (each True when it moved
    the row, False when the row was elsewhere: safe to run twice)."""

    def fail_item(
        self, item_id: int, from_statuses: Sequence[ItemStatus], code: str, message: str
    ) -> bool: ...

    def retry_later(
        self,
        item_id: int,
        from_statuses: Sequence[ItemStatus],
        delay_seconds: float,
        code: str,
        message: str,
    ) -> bool: ...

    def get_preset(self, store_id: str, name: str) -> Mapping[str, Any] | None: ...


class CreationRepository(ItemWrites, Protocol):
    """The rows the creation step reads and writes (QUEUED → SUBMITTING → PROCESSING)."""

    def claim_work_item(self, item_id: int) -> WorkItem | None: ...

    def record_input(self, item_id: int, input_key: str) -> bool: ...

    def mark_processing(self, item_id: int, prediction_id: str) -> bool: ...

    def release_submission(
        self, item_id: int, delay_seconds: float, code: str, message: str
    ) -> bool: ...


class PollingRepository(ItemWrites, Protocol):
    """The rows the polling step reads and writes (PROCESSING → DONE | FAILED, or → PENDING
    for a new prediction when the provider could not download the input)."""

    def get_work_item(self, item_id: int) -> WorkItem | None: ...

    def record_poll(self, item_id: int) -> int | None: ...

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
    ) -> bool: ...

    def record_predict_time(self, item_id: int, prediction_id: str, seconds: float) -> bool: ...


class InputStorage(Protocol):
    """The object store as the creation step uses it (inputs, s3:// sources)."""

    @property
    def bucket(self) -> str: ...

    def exists(self, key: str) -> bool: ...

    def get_bytes(self, key: str, *, max_bytes: int) -> bytes: ...

    def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> None: ...

    def presigned_get_url(self, key: str, expires_seconds: int | None = None) -> str: ...


class ResultStorage(Protocol):
    """The object store as the polling step uses it (results)."""

    def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> None: ...


class Fetcher(Protocol):
    """Downloads a source over http(s) within the SSRF and size rules."""

    def fetch(self, url: str) -> FetchedSource: ...


class PredictionCreator(Protocol):
    """The provider as the creation step uses it."""

    def create_prediction(
        self,
        spec: ModelSpec,
        input: Mapping[str, Any],
        *,
        wait_seconds: int = 0,
        webhook: str | None = None,
    ) -> Prediction: ...

    def cancel_prediction(self, prediction_id: str) -> Prediction: ...


class PredictionReader(Protocol):
    """The provider as the polling step uses it."""

    def get_prediction(self, prediction_id: str) -> Prediction: ...

    def download(self, url: str, *, max_bytes: int) -> bytes: ...


class CreateBudget(Protocol):
    """The global create budget (:class:`pipeline.ratelimit.RateLimiter`)."""

    def acquire_grant(self, timeout: float) -> Grant: ...

    def pause(self, seconds: float, reason: str) -> float: ...


class ReadBudget(Protocol):
    """The global read budget (:class:`pipeline.ratelimit.RateLimiter`)."""

    def acquire(self, timeout: float) -> float: ...

    def pause(self, seconds: float, reason: str) -> float: ...
