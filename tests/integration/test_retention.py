"""Retention of uploaded originals and guest sessions, on real Postgres and the S3 server:
`imageopt submit FOLDER` and API uploads are deleted with the inputs (zero windows here) or
with their rows, an upload shared by several items only when none needs it, two runs at once
delete and count everything once, a key the store refuses is reported and kept, expired guest
sessions are pruned, and the job views say ``expired`` instead of linking to a 404."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import structlog.testing
from typer.testing import CliRunner

from api.auth import hash_secret
from cli.app import app
from pipeline.db import create_pool
from pipeline.repository import Repository
from pipeline.storage import ObjectStorage
from pipeline.uploads import new_batch, store_upload, upload_key_of
from scheduler.retention import Retention, RetentionConfig, RetentionResult
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api
from tests.support.s3 import purge_bucket, unique_bucket_name

pytestmark = pytest.mark.integration

ZERO_WINDOWS = RetentionConfig(inputs_seconds=0, outputs_seconds=0)
NEVER = 10**9
"""Seconds: a window no test item reaches (about 31 years)."""


@pytest.fixture
def env(pipeline_env: dict[str, str]) -> dict[str, str]:
    """``pipeline_env`` with a bucket of this test's own (so "the bucket is empty" is exact)."""
    return {**pipeline_env, "S3_BUCKET": unique_bucket_name("retention")}


@pytest.fixture
def storage(env: dict[str, str]) -> Iterator[ObjectStorage]:
    storage = ObjectStorage.from_settings(settings_from(env))
    storage.ensure_bucket()
    yield storage
    purge_bucket(storage)
    storage.close()


def _sql(schema: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}", autocommit=True) as c:
        cur = c.execute(query, params)
        return list(cur.fetchall()) if cur.description else []


def _upload(storage: ObjectStorage, name: str = "photo.jpg") -> str:
    """One real upload (what `imageopt submit FOLDER` and the API do); its source URL."""
    return store_upload(
        storage, store_id="shop", batch=new_batch(), index=0, name=name,
        data=b"\xff\xd8\xff original", content_type="image/jpeg",
    )  # fmt: skip


def _job(repo: Repository, urls: list[str]) -> tuple[int, list[int]]:
    job = repo.insert_job(
        store_id="shop", model="nightmareai/real-esrgan", prompt=None, params={}, preset=None,
        items=[{"source_url": url} for url in urls],
    )  # fmt: skip
    return job, [r["id"] for r in repo.api_job_items(job)]


def _finish(
    schema: str,
    item_id: int,
    status: str,
    *,
    input_key: str | None = None,
    output_key: str | None = None,
    ago: timedelta = timedelta(minutes=1),
) -> None:
    _sql(
        schema,
        "UPDATE image_optimization_items SET status = %s, input_key = %s, output_key = %s, "
        "completed_at = now() - %s WHERE id = %s",
        (status, input_key, output_key, ago, item_id),
    )


def _marks(schema: str, item_id: int) -> tuple[Any, ...]:
    """``(input_deleted_at, source_deleted_at, output_deleted_at)`` of an item."""
    return _sql(
        schema,
        "SELECT input_deleted_at, source_deleted_at, output_deleted_at "
        "FROM image_optimization_items WHERE id = %s",
        (item_id,),
    )[0]


def _run(repo: Repository, storage: ObjectStorage, config: RetentionConfig) -> RetentionResult:
    return Retention(repo=repo, storage=storage, config=config).run_once(datetime.now(UTC))


# --- uploads from the CLI and the API ---------------------------------------------------------
def test_cli_retention_with_zero_windows_deletes_the_folder_submits_originals(
    env: dict[str, str], storage: ObjectStorage, db_schema: str, images_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for source in sorted(images_dir.rglob("*.jpg"))[:3]:
        shutil.copy(source, folder / source.name)
    cli = CliRunner()
    submitted = cli.invoke(app, ["submit", str(folder), "--store", "shop"], env=env)
    assert submitted.exit_code == 0, submitted.output
    job = int(submitted.stdout)
    rows = _sql(
        db_schema,
        "SELECT id, source_url FROM image_optimization_items WHERE job_id = %s ORDER BY id",
        (job,),
    )
    originals = [upload_key_of(url, storage.bucket) for _, url in rows]
    assert len(originals) == 3
    assert all(key is not None and storage.exists(key) for key in originals)
    (done, failed, canceled) = (int(r[0]) for r in rows)
    for item in (done, canceled):
        storage.put_bytes(f"inputs/shop/{job}/{item}.jpg", b"input", "image/jpeg")
    storage.put_bytes(f"results/shop/{job}/{done}.jpg", b"result", "image/jpeg")
    _finish(db_schema, done, "DONE", input_key=f"inputs/shop/{job}/{done}.jpg",
            output_key=f"results/shop/{job}/{done}.jpg")  # fmt: skip
    _finish(db_schema, failed, "FAILED")  # failed before a worker normalized it: no input_key
    _finish(db_schema, canceled, "CANCELED", input_key=f"inputs/shop/{job}/{canceled}.jpg")
    zero = {
        **env,
        "IMAGEOPT_RETENTION_INPUTS_SECONDS": "0",
        "IMAGEOPT_RETENTION_OUTPUTS_SECONDS": "0",
    }

    due = cli.invoke(app, ["retention", "--dry-run"], env=zero)
    deleted = cli.invoke(app, ["retention"], env=zero)
    again = cli.invoke(app, ["retention"], env=zero)

    assert due.stdout.strip() == (
        "due: inputs=3 outputs=1 originals=3 jobs=0 items=0 guest_sessions=0"
    )
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout.strip() == (
        "deleted: inputs=3 outputs=1 originals=3 jobs=0 items=0 guest_sessions=0"
    )
    assert list(storage.list_keys("")) == []  # originals, inputs and the result: all gone
    for item in (done, failed, canceled):
        input_deleted, source_deleted, _ = _marks(db_schema, item)
        assert input_deleted is not None, item
        assert source_deleted is not None, item
    assert _marks(db_schema, done)[2] is not None
    assert again.stdout.strip() == (
        "deleted: inputs=0 outputs=0 originals=0 jobs=0 items=0 guest_sessions=0"
    )


@contextlib.contextmanager
def _browser(base: str) -> Iterator[httpx.Client]:
    """A console guest: opens the page (guest and CSRF cookies), then sends Origin and CSRF."""
    with httpx.Client(base_url=base, timeout=20, headers={"Origin": base}) as client:
        assert client.get("/").status_code == 200
        client.headers["X-CSRF-Token"] = client.cookies["csrf_token"]
        yield client


def test_job_views_say_expired_instead_of_linking_to_deleted_files(
    env: dict[str, str], storage: ObjectStorage, repo: Repository, db_schema: str,
    images_dir: Path,
) -> None:  # fmt: skip
    photo = (images_dir / "store-food" / "coffee-cup.png").read_bytes()
    with run_api(settings_from(env)) as base, _browser(base) as owner:
        created = owner.post(
            "/api/jobs", data={"model": "nightmareai/real-esrgan"},
            files=[("image", ("coffee.png", photo, "image/png"))],
        )  # fmt: skip
        assert created.status_code == 201, created.text
        job = created.json()["data"]
        item_id = job["items"][0]["id"]
        (source,) = _sql(
            db_schema, "SELECT source_url FROM image_optimization_items WHERE id = %s", (item_id,)
        )[0]
        original = upload_key_of(source, storage.bucket)
        assert original is not None
        assert storage.exists(original)
        result_key = f"results/console/{job['id']}/{item_id}.png"
        storage.put_bytes(result_key, photo, "image/png")
        _finish(db_schema, item_id, "DONE", output_key=result_key)  # input: the upload itself

        def item() -> dict[str, Any]:
            view = owner.get(f"/api/jobs/{job['id']}")
            assert view.status_code == 200
            found: dict[str, Any] = view.json()["data"]["items"][0]
            return found

        fresh = item()
        assert (fresh["inputExpired"], fresh["resultExpired"]) == (False, False)
        assert owner.get(fresh["inputUrl"]).status_code == 200
        assert owner.get(fresh["resultUrl"]).status_code == 200

        _run(repo, storage, RetentionConfig(inputs_seconds=0, outputs_seconds=NEVER))
        input_gone = item()
        assert not storage.exists(original)
        assert (input_gone["inputUrl"], input_gone["inputExpired"]) == (None, True)
        assert input_gone["resultExpired"] is False
        assert owner.get(input_gone["resultUrl"]).status_code == 200
        refused = owner.get(f"/api/items/{item_id}/input")
        assert refused.status_code == 404
        assert "expired" in refused.json()["error"]["message"]

        _run(repo, storage, ZERO_WINDOWS)
        both_gone = item()
        assert not storage.exists(result_key)
        assert (both_gone["resultUrl"], both_gone["downloadUrl"]) == (None, None)
        assert (both_gone["inputExpired"], both_gone["resultExpired"]) == (True, True)
        assert owner.get(f"/api/items/{item_id}/result").status_code == 404


# --- shared uploads, rows, concurrency, refusals ----------------------------------------------
def test_an_upload_shared_by_several_items_goes_only_when_none_needs_it(
    repo: Repository, storage: ObjectStorage, db_schema: str
) -> None:
    url = _upload(storage)
    key = upload_key_of(url, storage.bucket)
    assert key is not None
    _, (first,) = _job(repo, [url])
    _, (second,) = _job(repo, [url])  # e.g. the demo run twice: same uploads/{store}/{file}
    _finish(db_schema, first, "DONE")

    early = _run(repo, storage, ZERO_WINDOWS)

    assert (early.inputs_deleted, early.originals_deleted) == (1, 0)
    assert storage.exists(key)  # the second item (PENDING) still needs it
    assert _marks(db_schema, first)[:2] != (None, None)
    assert _marks(db_schema, first)[1] is None

    _finish(db_schema, second, "FAILED")
    late = _run(repo, storage, ZERO_WINDOWS)

    assert (late.inputs_deleted, late.originals_deleted, late.storage_errors) == (1, 1, 0)
    assert not storage.exists(key)
    assert _marks(db_schema, first)[1] is not None
    assert _marks(db_schema, second)[1] is not None
    assert _run(repo, storage, ZERO_WINDOWS).originals_deleted == 0
    assert repo.mark_originals_deleted([url], datetime.now(UTC)) == []  # marked once only


def test_row_retention_deletes_a_jobs_originals_unless_another_job_still_needs_them(
    repo: Repository, storage: ObjectStorage, db_schema: str
) -> None:
    own, shared = _upload(storage, "own.jpg"), _upload(storage, "shared.jpg")
    old_job, old_items = _job(repo, [own, shared])
    live_job, _ = _job(repo, [shared])
    for item in old_items:
        _finish(db_schema, item, "DONE", ago=timedelta(days=100))
    _sql(
        db_schema,
        "UPDATE image_optimization_jobs SET status = 'DONE', completed_at = now() - "
        "interval '100 days' WHERE id = %s",
        (old_job,),
    )

    # Inputs never due: the rows duty alone must take the originals before the rows go.
    result = _run(repo, storage, RetentionConfig(inputs_seconds=NEVER, outputs_seconds=NEVER))

    assert (result.jobs_deleted, result.items_deleted, result.originals_deleted) == (1, 2, 1)
    assert not storage.exists(str(upload_key_of(own, storage.bucket)))
    assert storage.exists(str(upload_key_of(shared, storage.bucket)))  # the live job's source
    jobs = {r[0] for r in _sql(db_schema, "SELECT id FROM image_optimization_jobs")}
    assert jobs == {live_job}


def test_two_runs_at_once_delete_every_original_and_count_each_once(
    repo: Repository, storage: ObjectStorage, db_schema: str
) -> None:
    urls = [_upload(storage, f"p{n}.jpg") for n in range(40)]
    items = [i for _ in range(2) for i in _job(repo, urls)[1]]  # every upload named twice
    for item in items:
        storage.put_bytes(f"inputs/shop/x/{item}.jpg", b"input", "image/jpeg")
        _finish(db_schema, item, "DONE", input_key=f"inputs/shop/x/{item}.jpg")
    # Many small rounds of different sizes, so the two runs interleave rather than march in step.
    configs = [RetentionConfig(inputs_seconds=0, outputs_seconds=NEVER, batch=b) for b in (3, 4)]
    start = threading.Barrier(2)
    results: list[RetentionResult] = []
    errors: list[BaseException] = []

    def run(config: RetentionConfig) -> None:
        pool = create_pool(DATABASE_URL, db_schema, max_size=1, name="test")
        try:
            retention = Retention(repo=Repository(pool), storage=storage, config=config)
            start.wait()
            results.append(retention.run_once(datetime.now(UTC)))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            pool.close()

    threads = [threading.Thread(target=run, args=(config,)) for config in configs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(r.inputs_deleted for r in results) == len(items)
    assert sum(r.originals_deleted for r in results) == len(urls)
    assert sum(r.storage_errors for r in results) == 0
    assert list(storage.list_keys("")) == []
    unmarked = _sql(
        db_schema,
        "SELECT count(*) FROM image_optimization_items WHERE source_deleted_at IS NULL",
    )
    assert unmarked == [(0,)]


def test_a_key_the_store_refuses_is_reported_and_its_item_kept_for_the_next_run(
    repo: Repository, storage: ObjectStorage, db_schema: str
) -> None:
    _, (good, refused) = _job(repo, ["https://cdn.example.com/a.jpg"] * 2)
    storage.put_bytes("inputs/shop/1/good.jpg", b"input", "image/jpeg")
    _finish(db_schema, good, "DONE", input_key="inputs/shop/1/good.jpg")
    _finish(db_schema, refused, "DONE", input_key="inputs/../refused.jpg")  # a hand-edited row

    with structlog.testing.capture_logs() as logs:
        result = _run(repo, storage, ZERO_WINDOWS)

    assert (result.inputs_deleted, result.storage_errors) == (1, 1)
    assert not storage.exists("inputs/shop/1/good.jpg")
    assert _marks(db_schema, good)[0] is not None
    assert _marks(db_schema, refused)[0] is None  # kept: the next run tries again
    failures = [e for e in logs if e["event"] == "retention_delete_failed"]
    assert failures == [
        {
            "event": "retention_delete_failed",
            "key": "inputs/../refused.jpg",
            "error_code": "InvalidRequest",
            "log_level": "warning",
        }
    ]


# --- guest sessions ----------------------------------------------------------------------------
def test_expired_guest_sessions_are_pruned_and_live_ones_kept(
    repo: Repository, storage: ObjectStorage, db_schema: str
) -> None:
    sessions = {
        "long_gone": "00000000-0000-4000-8000-000000000001",
        "just_expired": "00000000-0000-4000-8000-000000000002",
        "live": "00000000-0000-4000-8000-000000000003",
    }
    for name, guest_id in sessions.items():
        repo.api_insert_guest(guest_id, hash_secret(f"token-{name}"), 3600)
    _sql(
        db_schema,
        "UPDATE image_optimization_guest_sessions SET expires_at = now() - interval '40 days' "
        "WHERE id = %s",
        (sessions["long_gone"],),
    )
    _sql(
        db_schema,
        "UPDATE image_optimization_guest_sessions SET expires_at = now() - interval '1 second' "
        "WHERE id = %s",
        (sessions["just_expired"],),
    )
    dry = _run(repo, storage, RetentionConfig(dry_run=True))

    result = _run(repo, storage, RetentionConfig())

    assert dry.guest_sessions_deleted == 2
    assert result.guest_sessions_deleted == 2
    left = {str(r[0]) for r in _sql(db_schema, "SELECT id FROM image_optimization_guest_sessions")}
    assert left == {sessions["live"]}
    assert repo.api_find_guest(hash_secret("token-live")) is not None
    assert _run(repo, storage, RetentionConfig()).guest_sessions_deleted == 0


# --- what counts as an upload ------------------------------------------------------------------
UPLOAD_URLS = [
    ("s3://b/uploads/shop/0123456789ab/000-a.jpg", "uploads/shop/0123456789ab/000-a.jpg"),
    ("s3://b/uploads/store-food/kiwi.webp", "uploads/store-food/kiwi.webp"),
    ("s3://b/uploads/a%2E%2E/..x/x..", "uploads/a%2E%2E/..x/x.."),
    ("s3://b/uploads/", None),
    ("s3://b/uploads//x", None),
    ("s3://b/uploads/./x", None),
    ("s3://b/uploads/../results/shop/1/2.png", None),
    ("s3://b/uploads/a/..", None),
    ("s3://b/uploads/a/", None),
    ("s3://b/uploads/a\x01b", None),
    ("s3://b/uploadsx/y", None),
    ("s3://b/results/shop/1/2.png", None),
    ("s3://other/uploads/x", None),
    ("S3://b/uploads/x", None),
    ("https://cdn.example.com/uploads/x", None),
]


def test_postgres_and_python_agree_on_which_sources_are_uploads(db_schema: str) -> None:
    for url, expected in UPLOAD_URLS:
        assert upload_key_of(url, "b") == expected, url
        in_sql = _sql(db_schema, "SELECT image_optimization_upload_key(%s, 'b')", (url,))[0][0]
        assert in_sql == expected, url


@pytest.mark.usefixtures("storage")
def test_cli_retention_reports_each_phase_on_a_terminal_and_nothing_in_scripts(
    env: dict[str, str], db_schema: str, images_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    folder = tmp_path / "photos"
    folder.mkdir()
    source = sorted(images_dir.rglob("*.jpg"))[0]
    shutil.copy(source, folder / source.name)
    cli = CliRunner()
    submitted = cli.invoke(app, ["submit", str(folder), "--store", "shop"], env=env)
    assert submitted.exit_code == 0, submitted.output
    (item,) = (int(r[0]) for r in _sql(db_schema, "SELECT id FROM image_optimization_items"))
    _finish(db_schema, item, "FAILED")
    zero = {**env, "IMAGEOPT_RETENTION_INPUTS_SECONDS": "0"}

    in_script = cli.invoke(app, ["retention"], env=zero)
    monkeypatch.setattr("cli.admin.on_terminal", lambda: True)
    at_terminal = cli.invoke(app, ["retention"], env=zero)

    assert in_script.exit_code == 0, in_script.output
    assert "retention:" not in in_script.stderr
    assert "originals=1" in in_script.stdout
    phases = [line for line in at_terminal.stderr.splitlines() if line.startswith("retention:")]
    assert phases == [
        "retention: inputs 0",
        "retention: originals 0",
        "retention: outputs 0",
        "retention: rows 0",
        "retention: guest_sessions 0",
    ]
    assert at_terminal.stdout.startswith("deleted: inputs=0 outputs=0 originals=0")
