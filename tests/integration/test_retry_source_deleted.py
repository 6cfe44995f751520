"""Retrying items whose uploaded source is gone, on real Postgres, Redis, the S3 server and the
api under uvicorn: after retention deleted an upload (or it vanished from the bucket), the
store's job retry, the operator's item, job and filter retries and ``imageopt retry`` refuse
to send such an item back to PENDING (where it could only fail with ``storage_error``), say
why with the stable code ``source_deleted``, and still retry the items that can run again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from api.operator_auth import create_operator_key
from cli.app import app
from pipeline.repository import Repository
from pipeline.storage import ObjectStorage
from pipeline.uploads import upload_key_of
from scheduler.retention import Retention, RetentionConfig
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import store_client, track

pytestmark = pytest.mark.integration

PHOTO = "store-food/coffee-cup.png"
ZERO_WINDOWS = RetentionConfig(inputs_seconds=0, outputs_seconds=0)


@pytest.fixture
def storage(api_env: dict[str, str]) -> Iterator[ObjectStorage]:
    storage = ObjectStorage.from_settings(settings_from(api_env))
    yield storage
    storage.close()


@pytest.fixture
def photo(images_dir: Path) -> bytes:
    return (images_dir / PHOTO).read_bytes()


def _sql(schema: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}", autocommit=True) as c:
        cur = c.execute(query, params)
        return list(cur.fetchall()) if cur.description else []


def _uploaded_job(shop: httpx.Client, photo: bytes, files: int = 1) -> int:
    """A job of uploaded files, made as the console makes it; its id."""
    response = shop.post(
        "/api/jobs", data={"model": "nightmareai/real-esrgan"},
        files=[("image", (f"{i}.png", photo, "image/png")) for i in range(files)],
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return int(response.json()["data"]["id"])


def _add_http_item(schema: str, job_id: int) -> int:
    """An item of an http source in the job (fetched again on a retry, whatever retention did)."""
    rows = _sql(
        schema,
        "INSERT INTO image_optimization_items (job_id, store_id, source_url) "
        "SELECT id, store_id, 'https://img.example/a.jpg' FROM image_optimization_jobs "
        "WHERE id = %s RETURNING id",
        (job_id,),
    )
    return int(rows[0][0])


def _fail_all(schema: str, job_id: int) -> None:
    """Every item of the job FAILED a minute ago (as a worker leaves a dead letter)."""
    _sql(
        schema,
        "UPDATE image_optimization_items SET status = 'FAILED', error_code = 'provider_timeout', "
        "error_message = 'timed out', attempts = 3, completed_at = now() - interval '1 minute' "
        "WHERE job_id = %s",
        (job_id,),
    )
    _sql(schema, "UPDATE image_optimization_jobs SET status = 'FAILED', completed_at = now() "
                 "WHERE id = %s", (job_id,))  # fmt: skip


def _statuses(schema: str, job_id: int) -> dict[int, tuple[str, str | None]]:
    rows = _sql(schema, "SELECT id, status, error_code FROM image_optimization_items "
                        "WHERE job_id = %s", (job_id,))  # fmt: skip
    return {int(r[0]): (r[1], r[2]) for r in rows}


def _upload_items(schema: str, job_id: int) -> list[int]:
    rows = _sql(schema, "SELECT id FROM image_optimization_items WHERE job_id = %s "
                        "AND source_url LIKE 's3://%%' ORDER BY id", (job_id,))  # fmt: skip
    return [int(r[0]) for r in rows]


def _run_retention(repo: Repository, storage: ObjectStorage) -> None:
    result = Retention(repo=repo, storage=storage, config=ZERO_WINDOWS).run_once(datetime.now(UTC))
    assert result.originals_deleted >= 1, result


def _half_gone_job(
    shop: httpx.Client, schema: str, repo: Repository, storage: ObjectStorage, photo: bytes
) -> tuple[int, int]:
    """A FAILED job of one upload, whose source retention deleted, and one http item: its id
    and the http item's."""
    job_id = _uploaded_job(shop, photo)
    http_item = _add_http_item(schema, job_id)
    _fail_all(schema, job_id)
    _run_retention(repo, storage)
    return job_id, http_item


def _operator_client(api: str, repo: Repository) -> httpx.Client:
    """An operator's API client (a new operator key), closed after the test."""
    key, _ = create_operator_key(repo, "alice")
    return track(httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}))


def _upload_keys(schema: str, job_id: int, bucket: str) -> list[str]:
    rows = _sql(schema, "SELECT source_url FROM image_optimization_items WHERE job_id = %s "
                        "AND source_url LIKE 's3://%%'", (job_id,))  # fmt: skip
    keys = [upload_key_of(r[0], bucket) for r in rows]
    assert all(keys), rows
    return [k for k in keys if k]


def test_a_store_retrying_a_job_whose_uploads_retention_deleted_gets_409_and_nothing_moves(
    api: str, repo: Repository, api_env: dict[str, str], storage: ObjectStorage, photo: bytes
) -> None:
    schema = api_env["IMAGEOPT_DB_SCHEMA"]
    shop = store_client(api, repo, "shop-1")
    job_id = _uploaded_job(shop, photo, files=2)
    _fail_all(schema, job_id)
    keys = _upload_keys(schema, job_id, storage.bucket)
    _run_retention(repo, storage)
    assert not any(storage.exists(k) for k in keys)

    response = shop.post(f"/api/jobs/{job_id}/retry")

    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["type"] == "source_deleted"
    assert "deleted by retention" in error["message"]
    assert error["details"] == {"sourceDeleted": 2}
    assert set(_statuses(schema, job_id).values()) == {("FAILED", "provider_timeout")}


def test_a_job_retry_skips_items_whose_upload_is_gone_and_retries_the_others(
    api: str, repo: Repository, api_env: dict[str, str], storage: ObjectStorage, photo: bytes
) -> None:
    schema = api_env["IMAGEOPT_DB_SCHEMA"]
    shop = store_client(api, repo, "shop-1")
    job_id, http_item = _half_gone_job(shop, schema, repo, storage, photo)

    response = shop.post(f"/api/jobs/{job_id}/retry")

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["retried"], data["sourceDeleted"]) == (1, 1)
    statuses = _statuses(schema, job_id)
    assert statuses.pop(http_item) == ("PENDING", None)
    assert list(statuses.values()) == [("FAILED", "provider_timeout")]


def test_an_operator_retrying_an_item_whose_upload_left_the_bucket_gets_409_source_deleted(
    api: str, repo: Repository, api_env: dict[str, str], storage: ObjectStorage, photo: bytes
) -> None:
    schema = api_env["IMAGEOPT_DB_SCHEMA"]
    shop = store_client(api, repo, "shop-1")
    job_id = _uploaded_job(shop, photo, files=2)
    _fail_all(schema, job_id)
    gone, kept = _upload_items(schema, job_id)
    # no retention mark on the row: only the stat finds the object missing
    url = _sql(schema, "SELECT source_url FROM image_optimization_items WHERE id = %s", (gone,))
    gone_key = upload_key_of(url[0][0], storage.bucket)
    assert gone_key is not None
    storage.delete(gone_key)
    ops = _operator_client(api, repo)

    refused = ops.post("/ops/api/retry", json={"itemId": gone})
    retried = ops.post("/ops/api/retry", json={"itemId": kept})

    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert (error["type"], error["details"]) == ("source_deleted", {"itemId": gone})
    assert error["message"].startswith(f"item {gone} cannot be retried: ")
    assert retried.status_code == 200, retried.text
    assert _statuses(schema, job_id) == {
        gone: ("FAILED", "provider_timeout"), kept: ("PENDING", None),
    }  # fmt: skip


def test_an_operator_job_retry_counts_the_items_it_skips(
    api: str, repo: Repository, api_env: dict[str, str], storage: ObjectStorage, photo: bytes
) -> None:
    schema = api_env["IMAGEOPT_DB_SCHEMA"]
    shop = store_client(api, repo, "shop-1")
    job_id, http_item = _half_gone_job(shop, schema, repo, storage, photo)
    ops = _operator_client(api, repo)

    response = ops.post("/ops/api/retry", json={"jobId": job_id})
    again = ops.post("/ops/api/retry", json={"jobId": job_id})

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["retried"], data["itemIds"], data["sourceDeleted"]) == (1, [http_item], 1)
    assert again.status_code == 409  # only the item without a source is left FAILED
    assert again.json()["error"]["type"] == "source_deleted"


def test_the_cli_refuses_one_such_item_and_a_bulk_retry_reports_the_count_it_skips(
    api: str, repo: Repository, api_env: dict[str, str], storage: ObjectStorage, photo: bytes
) -> None:
    schema = api_env["IMAGEOPT_DB_SCHEMA"]
    cli = CliRunner()
    shop = store_client(api, repo, "shop-1")
    job_id, http_item = _half_gone_job(shop, schema, repo, storage, photo)
    (upload_item,) = _upload_items(schema, job_id)

    one = cli.invoke(app, ["retry", "--item", str(upload_item)], env=api_env)
    dry = cli.invoke(app, ["retry", "--store", "shop-1", "--dry-run"], env=api_env)
    bulk = cli.invoke(app, ["retry", "--store", "shop-1"], env=api_env)
    rest = cli.invoke(app, ["retry", "--job", str(job_id)], env=api_env)

    assert one.exit_code == 1, one.output
    assert one.stderr.strip() == (
        f"error: item {upload_item} cannot be retried: its uploaded source image was deleted "
        "by retention, so a new attempt could only fail; submit the image again"
    )
    skipped = "1 skipped (source_deleted: retention deleted their uploaded source)"
    assert (dry.exit_code, dry.stdout.strip()) == (
        0, f"1 item(s) would go back to PENDING; {skipped}",
    )  # fmt: skip
    assert (bulk.exit_code, bulk.stdout.strip()) == (0, f"1 item(s) back to PENDING; {skipped}")
    assert rest.exit_code == 1
    assert rest.stderr.strip() == f"error: 0 item(s) back to PENDING; {skipped}"
    assert _statuses(schema, job_id) == {
        http_item: ("PENDING", None), upload_item: ("FAILED", "provider_timeout"),
    }  # fmt: skip


def test_the_cli_retry_of_one_item_exits_1_and_changes_nothing_when_the_bucket_is_down(
    api: str, repo: Repository, api_env: dict[str, str], photo: bytes
) -> None:
    schema = api_env["IMAGEOPT_DB_SCHEMA"]
    shop = store_client(api, repo, "shop-1")
    job_id = _uploaded_job(shop, photo)
    _fail_all(schema, job_id)
    (item,) = _upload_items(schema, job_id)
    down = {**api_env, "S3_ENDPOINT": "127.0.0.1:9"}  # the discard port: nothing listens

    result = CliRunner().invoke(app, ["retry", "--item", str(item)], env=down)

    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1].startswith("error: storage_error: storage stat_object")
    assert _statuses(schema, job_id) == {item: ("FAILED", "provider_timeout")}
