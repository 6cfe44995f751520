"""Image features on real Postgres, the S3 server and the emulator: custom presets, quotas, item
cancel and retry, retention (with an injected clock)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from devstack.emulator import run_emulator
from emulator.config import EmulatorConfig
from pipeline.allowlist import build_allowlist
from pipeline.cancellation import cancel_item, retry_item
from pipeline.errors import InvalidPreset, UnknownPreset
from pipeline.presets import add_custom_preset, list_presets, resolve_preset
from pipeline.provider import ProviderClient
from pipeline.quotas import QuotaConfig, QuotaGate
from pipeline.reporting import status_report
from pipeline.repository import Repository
from pipeline.storage import ObjectStorage
from scheduler.metering import PendingDispatcher
from scheduler.retention import Retention, RetentionConfig
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.integration
TOKEN = "r8_features-test-token"


def _sql(schema: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}", autocommit=True) as c:
        cur = c.execute(query, params)
        return list(cur.fetchall()) if cur.description else []


def _job(repo: Repository, store: str, n: int, preset: str | None = None) -> int:
    return repo.insert_job(
        store_id=store,
        model="nightmareai/real-esrgan",
        prompt=None,
        params={"scale": 2},
        preset=preset,
        items=[{"source_url": f"https://cdn.example.com/{store}/{i}.jpg"} for i in range(n)],
    )


def _statuses(schema: str, job_id: int) -> list[str]:
    return [
        r[0]
        for r in _sql(
            schema,
            "SELECT status FROM image_optimization_items WHERE job_id = %s ORDER BY id",
            (job_id,),
        )
    ]


# --- presets ------------------------------------------------------------------------------
def test_custom_presets_are_validated_on_insert_and_resolved_per_store(repo: Repository) -> None:
    add_custom_preset(repo, "shop-a", "shop-thumb", {"format": "webp", "width": 300, "quality": 70})
    assert resolve_preset(repo, "shop-a", "shop-thumb").width == 300
    assert resolve_preset(repo, "shop-b", "web-2048").builtin  # built-ins for every store
    with pytest.raises(UnknownPreset):
        resolve_preset(repo, "shop-b", "shop-thumb")  # another store's preset
    with pytest.raises(InvalidPreset, match="'quality'"):
        add_custom_preset(repo, "shop-a", "bad", {"format": "jpeg", "quality": 101})
    with pytest.raises(InvalidPreset, match="built in"):
        add_custom_preset(repo, "shop-a", "web-2048", {"format": "jpeg"})
    names = [(p["store_id"], p["name"]) for p in list_presets(repo)]
    assert ("shop-a", "shop-thumb") in names
    assert ("shop-a", "bad") not in names


def test_a_hand_written_bad_preset_row_fails_with_invalid_preset(
    repo: Repository, db_schema: str
) -> None:
    _sql(
        db_schema,
        "INSERT INTO image_optimization_presets (store_id, name, spec) "
        "VALUES ('s', 'x', '{\"format\": \"bmp\"}')",
    )
    with pytest.raises(InvalidPreset):
        resolve_preset(repo, "s", "x")


def test_item_preset_overrides_the_jobs(repo: Repository, db_schema: str) -> None:
    job = _job(repo, "s", 1, preset="web-2048")
    item = _sql(db_schema, "SELECT id FROM image_optimization_items WHERE job_id = %s", (job,))
    work = repo.get_work_item(item[0][0])
    assert work is not None
    assert work.preset == "web-2048"
    _sql(
        db_schema,
        "UPDATE image_optimization_items SET preset = 'thumb-400' WHERE job_id = %s",
        (job,),
    )
    work = repo.get_work_item(item[0][0])
    assert work is not None
    assert work.preset == "thumb-400"


# --- quotas -------------------------------------------------------------------------------
def test_quota_keeps_items_pending_then_releases_them(repo: Repository, db_schema: str) -> None:
    sent: list[int] = []

    def enqueue(ids: Any) -> int:
        ids = list(ids)
        sent.extend(ids)
        return len(ids)

    repo.set_store_quota("limited", 3)
    limited = _job(repo, "limited", 5)
    free = _job(repo, "free", 5)
    quota = QuotaConfig(default_quota=0, window_seconds=3600)
    meter = PendingDispatcher(
        repo=repo,
        allowlist=build_allowlist(),
        limit=100,
        enqueue=enqueue,
        quota=QuotaGate(repo, quota),
    )
    now = datetime.now(UTC)
    for _ in range(3):
        meter.run_once(now)
    assert _statuses(db_schema, limited).count("QUEUED") == 3
    assert _statuses(db_schema, limited).count("PENDING") == 2  # held, not dropped or failed
    assert _statuses(db_schema, free).count("QUEUED") == 5
    report = status_report(repo, quota=quota, now=now)
    assert report["quotas"]["limited"]["pending_held"] == 2
    assert report["quotas"]["limited"]["remaining"] == 0
    assert "free" not in report["quotas"]
    # An hour later (injected clock) the window has moved past the first three: released.
    later = now + timedelta(seconds=3601)
    meter.run_once(later)
    assert _statuses(db_schema, limited).count("QUEUED") == 5


def test_default_quota_applies_to_stores_without_their_own(
    repo: Repository, db_schema: str
) -> None:
    job = _job(repo, "any", 4)
    meter = PendingDispatcher(
        repo=repo,
        allowlist=build_allowlist(),
        limit=100,
        enqueue=lambda ids: len(list(ids)),
        quota=QuotaGate(repo, QuotaConfig(default_quota=1)),
    )
    meter.run_once(datetime.now(UTC))
    meter.run_once(datetime.now(UTC))
    assert _statuses(db_schema, job).count("QUEUED") == 1


# --- cancel and retry ----------------------------------------------------------------------
@pytest.fixture
def provider() -> Iterator[ProviderClient]:
    config = EmulatorConfig(latency_min=30.0, latency_max=30.0, token=TOKEN)
    with run_emulator(config) as url, ProviderClient(url, TOKEN) as client:
        yield client


def test_cancel_each_state(repo: Repository, db_schema: str, provider: ProviderClient) -> None:
    job = _job(repo, "s", 6)
    ids = [
        r[0]
        for r in _sql(
            db_schema,
            "SELECT id FROM image_optimization_items WHERE job_id = %s ORDER BY id",
            (job,),
        )
    ]
    states = ["PENDING", "QUEUED", "SUBMITTING", "PROCESSING", "DONE", "FAILED"]
    for item_id, status in zip(ids, states, strict=True):
        _sql(
            db_schema,
            "UPDATE image_optimization_items SET status = %s, prediction_id = %s WHERE id = %s",
            (status, "p-unknown" if status == "PROCESSING" else None, item_id),
        )
    results = {s: cancel_item(repo, provider, i) for i, s in zip(ids, states, strict=True)}
    for status in ("PENDING", "QUEUED", "SUBMITTING"):
        assert results[status].canceled
        assert results[status].provider_canceled is None
    # PROCESSING: the provider was asked first (it does not know this id), then CANCELED.
    assert results["PROCESSING"].canceled
    assert results["PROCESSING"].provider_canceled is False
    assert results["PROCESSING"].error_code == "provider_rejected"
    assert not results["DONE"].canceled
    assert not results["FAILED"].canceled
    assert _statuses(db_schema, job) == ["CANCELED"] * 4 + ["DONE", "FAILED"]
    assert cancel_item(repo, provider, 999_999).previous_status is None


def test_cancel_of_a_running_prediction_cancels_it_at_the_provider(
    repo: Repository, db_schema: str, provider: ProviderClient
) -> None:
    spec = build_allowlist()["nightmareai/real-esrgan"]
    prediction = provider.create_prediction(
        spec, {"image": "https://example.com/a.jpg", "scale": 2}
    )
    job = _job(repo, "s", 1)
    _sql(
        db_schema,
        "UPDATE image_optimization_items SET status = 'PROCESSING', "
        "prediction_id = %s WHERE job_id = %s",
        (prediction.id, job),
    )
    item_id = _sql(db_schema, "SELECT id FROM image_optimization_items WHERE job_id = %s", (job,))[
        0
    ][0]
    result = cancel_item(repo, provider, item_id)
    assert result.canceled
    assert result.provider_canceled is True
    assert provider.get_prediction(prediction.id).status == "canceled"


def test_retry_of_a_failed_item_resets_attempts(
    repo: Repository, db_schema: str, storage: ObjectStorage
) -> None:
    job = _job(repo, "s", 2)
    _sql(
        db_schema,
        "UPDATE image_optimization_items SET status = 'FAILED', attempts = 5, "
        "error_code = 'timeout', completed_at = now() WHERE job_id = %s",
        (job,),
    )
    first, second = (
        r[0]
        for r in _sql(
            db_schema,
            "SELECT id FROM image_optimization_items WHERE job_id = %s ORDER BY id",
            (job,),
        )
    )
    repo.refresh_active_jobs()
    assert retry_item(repo, storage, first).retried
    again = retry_item(repo, storage, first)
    assert (again.retried, again.refused) == (False, None)  # no longer FAILED
    rows = _sql(
        db_schema,
        "SELECT id, status, attempts, error_code FROM "
        "image_optimization_items WHERE job_id = %s ORDER BY id",
        (job,),
    )
    assert rows == [(first, "PENDING", 0, None), (second, "FAILED", 5, "timeout")]
    assert (
        _sql(db_schema, "SELECT status FROM image_optimization_jobs WHERE id = %s", (job,))[0][0]
        == "PROCESSING"
    )


# --- retention ------------------------------------------------------------------------------
def test_retention_deletes_exactly_what_is_due(
    repo: Repository, db_schema: str, storage: ObjectStorage
) -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    day = timedelta(days=1)
    # (age since completion, status): old/new done, 40-day done, 100-day done job, running.
    cases = {
        "fresh": (timedelta(hours=1), "DONE"),
        "two_days": (2 * day, "DONE"),
        "forty_days": (40 * day, "DONE"),
        "failed_two_days": (2 * day, "FAILED"),
        "old_job": (100 * day, "DONE"),
        "running": (200 * day, "PROCESSING"),
    }
    keys: dict[str, tuple[str, str]] = {}
    jobs: dict[str, int] = {}
    for name, (age, status) in cases.items():
        job = _job(repo, f"r-{name}", 1)
        jobs[name] = job
        inp, out = f"inputs/r/{job}/1.jpg", f"results/r/{job}/1.jpg"
        storage.put_bytes(inp, b"in", "image/jpeg")
        storage.put_bytes(out, b"out", "image/jpeg")
        keys[name] = (inp, out)
        done = now - age
        _sql(
            db_schema,
            "UPDATE image_optimization_items SET status = %s, input_key = %s, "
            "output_key = %s, completed_at = %s, created_at = %s WHERE job_id = %s",
            (status, inp, out, None if status == "PROCESSING" else done, done, job),
        )
        final = status != "PROCESSING"
        _sql(
            db_schema,
            "UPDATE image_optimization_jobs SET status = %s, completed_at = %s WHERE id = %s",
            (status if final else "PROCESSING", done if final else None, job),
        )
    config = RetentionConfig(batch=2)  # several rounds
    dry = Retention(repo=repo, storage=storage, config=RetentionConfig(dry_run=True)).run_once(now)
    assert (dry.inputs_deleted, dry.outputs_deleted, dry.jobs_deleted, dry.items_deleted) == (
        4,
        2,
        1,
        1,
    )
    assert all(storage.exists(k) for pair in keys.values() for k in pair)  # dry run: nothing
    result = Retention(repo=repo, storage=storage, config=config).run_once(now)
    # inputs: two_days, forty_days, failed_two_days, old_job (fresh and running are kept)
    assert result.inputs_deleted == 4
    # outputs: forty_days and old_job (DONE, older than 30 d)
    assert result.outputs_deleted == 2
    assert (result.jobs_deleted, result.items_deleted) == (1, 1)  # old_job's rows (> 90 d)
    expect_input = {
        "fresh": True,
        "two_days": False,
        "forty_days": False,
        "failed_two_days": False,
        "old_job": False,
        "running": True,
    }
    expect_output = {
        "fresh": True,
        "two_days": True,
        "forty_days": False,
        "failed_two_days": True,
        "old_job": False,
        "running": True,
    }
    for name, (inp, out) in keys.items():
        assert storage.exists(inp) == expect_input[name], name
        assert storage.exists(out) == expect_output[name], name
    remaining = {r[0] for r in _sql(db_schema, "SELECT id FROM image_optimization_jobs")}
    assert remaining == {jobs[n] for n in cases if n != "old_job"}
    assert _sql(
        db_schema,
        "SELECT output_key IS NOT NULL, output_deleted_at FROM "
        "image_optimization_items WHERE job_id = %s",
        (jobs["forty_days"],),
    )[0] == (True, now)
    again = Retention(repo=repo, storage=storage, config=config).run_once(now)
    assert (again.inputs_deleted, again.outputs_deleted, again.jobs_deleted) == (0, 0, 0)
    for inp, out in keys.values():
        storage.delete(inp)
        storage.delete(out)
