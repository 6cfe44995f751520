"""Runs predictions in the background: wait the latency, fetch the input, do the image work.

Waiting costs no thread: the latency is an ``asyncio`` timer on the server's event loop. Only
the real work (download + Pillow) runs in a bounded :class:`~concurrent.futures.ThreadPoolExecutor`,
so thousands of predictions can be "running" while at most ``max_workers`` images are decoded
at once. Predictions queue in ``starting`` when the pool is busy, as on a busy provider.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import httpx
import structlog
from PIL import Image, UnidentifiedImageError

from emulator import ops
from emulator.config import EmulatorConfig
from emulator.store import OutputFile, PredictionRecord, Store
from pipeline.capped_read import read_capped

log = structlog.get_logger(__name__)

PROCESSING_FRACTION = 0.25
"""Share of the latency spent in ``starting`` before the prediction shows ``processing``."""


MAX_DATA_URL_BYTES = 256 * 1024
"""Largest file Replicate accepts as a data URL input (its docs: "up to 256kb"; larger files
are uploaded and passed by URL)."""


def decode_data_url(url: str) -> bytes:
    """The bytes of a ``data:[<media type>][;base64],<data>`` URL (RFC 2397).

    Raises:
        ValueError: not a data URL, or its base64 is malformed.
    """
    header, comma, data = url.partition(",")
    if not header.startswith("data:") or not comma:
        raise ValueError("not a data URL")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error as exc:
            raise ValueError("bad base64") from exc
    return unquote_to_bytes(data)


class InputError(Exception):
    """The input image could not be fetched or decoded (the prediction ends ``failed``)."""


@dataclass(frozen=True)
class Plan:
    """What will happen to one prediction, drawn once at creation."""

    latency: float
    outcome: str  # "succeed" | "fail" | "never_finish"


class Runner:
    """Schedules and executes predictions for one emulator.

    Args:
        store: where records and outputs live.
        config: returns the current config (it may change at runtime).
        max_workers: size of the image-work thread pool.
    """

    def __init__(
        self,
        store: Store,
        config: Callable[[], EmulatorConfig],
        *,
        max_workers: int,
        on_final: Callable[[str], None] | None = None,
    ) -> None:
        self._on_final = on_final
        self._store = store
        self._config = config
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="emulator")
        self._http = httpx.Client(follow_redirects=True)
        self._rng_lock = threading.Lock()
        self._rng = random.Random(config().rng_seed)  # noqa: S311 - simulation, not crypto

    def reseed(self, seed: int | None) -> None:
        """Restart the random draws from ``seed``."""
        with self._rng_lock:
            self._rng.seed(seed)

    def chance(self, rate: float) -> bool:
        """True with probability ``rate`` (thread-safe, from the seeded generator)."""
        if rate <= 0.0:
            return False
        with self._rng_lock:
            return self._rng.random() < rate

    def plan(self) -> Plan:
        """Draw the latency and the outcome of a new prediction from the current config."""
        config = self._config()
        with self._rng_lock:
            latency = self._rng.uniform(config.latency_min, config.latency_max)
            draw = self._rng.random()
        if draw < config.never_finish_rate:
            return Plan(latency, "never_finish")
        if draw < config.never_finish_rate + config.failure_rate:
            return Plan(latency, "fail")
        return Plan(latency, "succeed")

    def schedule(self, record: PredictionRecord, plan: Plan) -> None:
        """Arm the timers of a new prediction on the running event loop."""
        loop = asyncio.get_running_loop()
        loop.call_later(plan.latency * PROCESSING_FRACTION, self._store.mark_processing, record.id)
        if plan.outcome != "never_finish":
            loop.call_later(plan.latency, self._submit, record.id, plan.outcome)

    def _submit(self, prediction_id: str, outcome: str) -> None:
        try:
            self._pool.submit(self._work, prediction_id, outcome)
        except RuntimeError:  # the pool shut down: the server is stopping
            log.debug("emulator_work_dropped", prediction_id=prediction_id)

    def _work(self, prediction_id: str, outcome: str) -> None:
        try:
            self._run(prediction_id, outcome)
        finally:
            if self._on_final is not None:
                self._on_final(prediction_id)

    def _run(self, prediction_id: str, outcome: str) -> None:
        if not self._store.mark_processing(prediction_id):
            return
        record = self._store.record_for_work(prediction_id)
        if record is None:
            return
        started = time.monotonic()
        if outcome == "fail":
            self._store.finish(
                prediction_id,
                status="failed",
                error="emulated model failure (failure_rate)",
                predict_time=time.monotonic() - started,
            )
            return
        try:
            file = self._produce(record)
        except InputError as exc:
            self._store.finish(
                prediction_id,
                status="failed",
                error=str(exc),
                predict_time=time.monotonic() - started,
            )
            return
        except Exception as exc:  # any bug must fail the prediction, not hang it
            log.exception("emulator_work_crashed", prediction_id=prediction_id)
            self._store.finish(
                prediction_id,
                status="failed",
                error=f"emulator internal error: {type(exc).__name__}",
                predict_time=time.monotonic() - started,
            )
            return
        url = f"{record.base_url}/files/{prediction_id}/output.{file.ext}"
        self._store.finish(
            prediction_id,
            status="succeeded",
            output=[url] if record.output_is_list else url,
            predict_time=time.monotonic() - started,
            file=file,
        )

    def _produce(self, record: PredictionRecord) -> OutputFile:
        data = self._fetch(record.image_urls[0])
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                result, output = ops.run_model_op(record.spec, image, record.input)
        except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise InputError(f"input image could not be decoded: {exc}") from exc
        except (OSError, SyntaxError) as exc:  # truncated or corrupt data
            raise InputError(f"input image is corrupt: {type(exc).__name__}") from exc
        except ValueError as exc:
            raise InputError(f"invalid input: {exc}") from exc
        payload, ext, content_type = ops.encode(result, output)
        return OutputFile(payload, ext, content_type)

    def _fetch(self, url: str) -> bytes:
        if url.startswith("data:"):
            try:
                return decode_data_url(url)
            except ValueError as exc:
                raise InputError(f"input data URL is malformed: {exc}") from exc
        config = self._config()
        try:
            with self._http.stream("GET", url, timeout=config.fetch_timeout_seconds) as response:
                if response.status_code != 200:
                    raise InputError(
                        f"input image could not be fetched: HTTP {response.status_code}"
                    )
                body = read_capped(
                    response.iter_bytes(),
                    max_bytes=config.max_input_bytes,
                    content_length=response.headers.get("Content-Length"),
                    too_large=_input_too_large,
                )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise InputError(f"input image could not be fetched: {type(exc).__name__}") from exc
        if not body:
            raise InputError("input image is empty")
        return body

    def close(self) -> None:
        """Stop the pool without waiting (queued work is dropped) and the HTTP client.

        Work already running finishes in its thread and writes to a store nobody reads.
        """
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()


def _input_too_large(_declared: int | None) -> InputError:
    return InputError("input image is larger than the emulator accepts")
