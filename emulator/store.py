"""The emulator's in-memory state: predictions, output files and counters (thread-safe).

One lock guards everything; every method is short. Predictions are kept in creation order so
that ``GET /v1/predictions`` can page newest first with a sequence-number cursor. Both
predictions and output files are bounded: beyond their maximum the oldest are forgotten.
"""

from __future__ import annotations

import base64
import secrets
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipeline.allowlist import ModelSpec

TERMINAL = frozenset({"succeeded", "failed", "canceled"})


def new_prediction_id() -> str:
    """A random 26-character lowercase base32 id, the shape Replicate uses."""
    return base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()


def utc_now_iso() -> str:
    """Current UTC time as Replicate writes it: ``2023-09-08T16:19:34.765994Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def strip_query(url: str) -> str:
    """``url`` without query string and fragment (presigned URLs differ only there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclass
class PredictionRecord:
    """One prediction, mutable under :class:`Store`'s lock only."""

    id: str
    seq: int
    model: str
    version: str
    spec: ModelSpec
    input: dict[str, Any]
    image_urls: tuple[str, ...]
    base_url: str
    output_is_list: bool
    status: str = "starting"
    output: Any = None
    error: str | None = None
    logs: str = ""
    created_at: str = field(default_factory=utc_now_iso)
    started_at: str | None = None
    completed_at: str | None = None
    predict_time: float | None = None
    webhook: str | None = None
    webhook_taken: bool = False

    def to_json(self) -> dict[str, Any]:
        """The prediction object in Replicate's JSON shape."""
        api = f"{self.base_url}/v1/predictions/{self.id}"
        metrics: dict[str, Any] = {}
        if self.predict_time is not None:
            metrics["predict_time"] = self.predict_time
        extra: dict[str, Any] = {}
        if self.webhook is not None:
            extra = {"webhook": self.webhook, "webhook_events_filter": ["completed"]}
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "input": self.input,
            "logs": self.logs,
            "output": self.output,
            "data_removed": False,
            "error": self.error,
            "status": self.status,
            "source": "api",
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "urls": {"get": api, "cancel": f"{api}/cancel"},
            "metrics": metrics,
            **extra,
        }


@dataclass(frozen=True)
class OutputFile:
    """An output image served at ``/files/{prediction_id}/output.{ext}``."""

    data: bytes
    ext: str
    content_type: str


class Store:
    """Predictions, outputs and counters of one emulator.

    Args:
        max_predictions: predictions kept; the oldest are forgotten beyond it.
        max_outputs: output files kept; the oldest are evicted beyond it.
    """

    def __init__(self, max_predictions: int, max_outputs: int) -> None:
        self._lock = threading.Lock()
        self._max_predictions = max_predictions
        self._max_outputs = max_outputs
        self._predictions: OrderedDict[str, PredictionRecord] = OrderedDict()
        self._outputs: OrderedDict[str, OutputFile] = OrderedDict()
        self._seq = 0
        self._created = 0
        self._created_by_input: Counter[str] = Counter()
        self._created_by_model: Counter[str] = Counter()
        self._requests: Counter[str] = Counter()
        self._responses: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._webhooks: Counter[str] = Counter()

    # --- predictions ---------------------------------------------------------------------
    def create(self, **fields: Any) -> PredictionRecord:
        """Record a new prediction (status ``starting``) and count it.

        Args:
            **fields: :class:`PredictionRecord` fields other than ``id`` and ``seq``.
        """
        with self._lock:
            self._seq += 1
            record = PredictionRecord(id=new_prediction_id(), seq=self._seq, **fields)
            self._predictions[record.id] = record
            while len(self._predictions) > self._max_predictions:
                self._predictions.popitem(last=False)
            self._created += 1
            self._created_by_model[record.model] += 1
            for url in record.image_urls:
                self._created_by_input[strip_query(url)] += 1
            return record

    def snapshot(self, prediction_id: str) -> dict[str, Any] | None:
        """The prediction's JSON, or ``None`` when unknown."""
        with self._lock:
            record = self._predictions.get(prediction_id)
            return None if record is None else record.to_json()

    def record_for_work(self, prediction_id: str) -> PredictionRecord | None:
        """The record if it still needs work (known and not terminal)."""
        with self._lock:
            record = self._predictions.get(prediction_id)
            if record is None or record.status in TERMINAL:
                return None
            return record

    def take_webhook(self, prediction_id: str) -> tuple[str, dict[str, Any]] | None:
        """``(url, JSON)`` of a final prediction's webhook, once per prediction; else None."""
        with self._lock:
            record = self._predictions.get(prediction_id)
            if record is None or record.webhook is None or record.webhook_taken:
                return None
            if record.status not in TERMINAL:
                return None
            record.webhook_taken = True
            return record.webhook, record.to_json()

    def mark_processing(self, prediction_id: str) -> bool:
        """Move ``starting`` to ``processing``; False when the prediction is gone or done."""
        with self._lock:
            record = self._predictions.get(prediction_id)
            if record is None or record.status in TERMINAL:
                return False
            if record.status == "starting":
                record.status = "processing"
                record.started_at = utc_now_iso()
                record.logs = "processing\n"
            return True

    def finish(
        self,
        prediction_id: str,
        *,
        status: str,
        predict_time: float,
        output: Any = None,
        error: str | None = None,
        file: OutputFile | None = None,
    ) -> None:
        """Set a terminal status unless the prediction already has one (e.g. canceled)."""
        with self._lock:
            record = self._predictions.get(prediction_id)
            if record is None or record.status in TERMINAL:
                return
            record.status = status
            record.output = output
            record.error = error
            record.completed_at = utc_now_iso()
            record.predict_time = round(predict_time, 6)
            record.logs += f"{status}\n"
            if file is not None:
                self._outputs[prediction_id] = file
                while len(self._outputs) > self._max_outputs:
                    self._outputs.popitem(last=False)

    def cancel(self, prediction_id: str) -> dict[str, Any] | None:
        """Cancel a prediction that is not terminal; returns its JSON, ``None`` if unknown."""
        with self._lock:
            record = self._predictions.get(prediction_id)
            if record is None:
                return None
            if record.status not in TERMINAL:
                record.status = "canceled"
                record.completed_at = utc_now_iso()
                record.logs += "canceled\n"
            return record.to_json()

    def page(self, before_seq: int | None, size: int) -> tuple[list[dict[str, Any]], int | None]:
        """Predictions newest first with ``seq < before_seq``.

        Returns:
            ``(results, cursor of the next page or None)``.
        """
        with self._lock:
            results: list[dict[str, Any]] = []
            next_cursor: int | None = None
            for record in reversed(self._predictions.values()):
                if before_seq is not None and record.seq >= before_seq:
                    continue
                if len(results) == size:
                    next_cursor = results[-1]["_seq"]
                    break
                results.append({**record.to_json(), "_seq": record.seq})
            for item in results:
                del item["_seq"]
            return results, next_cursor

    def output(self, prediction_id: str) -> OutputFile | None:
        """The stored output file of a prediction, if still kept."""
        with self._lock:
            return self._outputs.get(prediction_id)

    # --- counters ------------------------------------------------------------------------
    def count_request(self, endpoint: str) -> None:
        """Count one request by stable endpoint name."""
        with self._lock:
            self._requests[endpoint] += 1

    def count_response(self, status_code: int) -> None:
        """Count one answer by HTTP status code."""
        with self._lock:
            self._responses[str(status_code)] += 1

    def count_fault(self, fault: str) -> None:
        """Count one injected fault by name."""
        with self._lock:
            self._faults[fault] += 1

    def count_webhook(self, result: str) -> None:
        """Count one webhook event (``delivered``, ``retried``, ``dropped``, ...)."""
        with self._lock:
            self._webhooks[result] += 1

    def stats(self) -> dict[str, Any]:
        """Counters for tests (``GET /_emulator/stats``)."""
        with self._lock:
            status_counts = Counter(record.status for record in self._predictions.values())
            return {
                "predictions_created": self._created,
                "created_by_input": dict(self._created_by_input),
                "created_by_model": dict(self._created_by_model),
                "status_counts": dict(status_counts),
                "responses_429": self._responses.get("429", 0),
                "responses_by_status": dict(self._responses),
                "requests_by_endpoint": dict(self._requests),
                "faults_injected": dict(self._faults),
                "outputs_stored": len(self._outputs),
                "webhooks": dict(self._webhooks),
            }

    def clear(self) -> None:
        """Forget every prediction, output and counter."""
        with self._lock:
            self._predictions.clear()
            self._outputs.clear()
            self._created = 0
            for counter in (
                self._created_by_input,
                self._created_by_model,
                self._requests,
                self._responses,
                self._faults,
                self._webhooks,
            ):
                counter.clear()
