"""``imageopt`` commands against the real Postgres and S3 server (typer's runner, in process):
submit a folder of real photos, read the status, send dead letters back, set a quota, cancel,
manage API keys; a database that cannot be reached is a one-line error with exit code 1."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipeline.storage import ObjectStorage
from tests.conftest import DATABASE_URL, settings_from

pytestmark = pytest.mark.integration

IMAGES = Path(__file__).resolve().parents[3] / "shared" / "data" / "images"


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for source in sorted(IMAGES.rglob("*.jpg"))[:2]:
        shutil.copy(source, folder / source.name)
    return folder


@pytest.fixture
def fresh_bucket(pipeline_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """``pipeline_env`` with a bucket that does not exist yet; it is removed afterwards."""
    env = {**pipeline_env, "S3_BUCKET": f"cli-{uuid.uuid4().hex[:10]}"}
    yield env
    storage = ObjectStorage.from_settings(settings_from(env))
    for key in list(storage.list_keys("")):
        storage.delete(key)
    storage.remove_bucket()
    storage.close()


def test_submit_status_retry_quota_cancel_and_api_keys(
    fresh_bucket: dict[str, str], db_schema: str, photos: Path
) -> None:
    cli = CliRunner()
    pipeline_env = fresh_bucket
    submitted = cli.invoke(app, ["submit", str(photos), "--store", "store-a"], env=pipeline_env)
    assert submitted.exit_code == 0, submitted.output
    job = int(submitted.stdout.strip())  # only the id: `JOB=$(imageopt submit ...)` works
    assert '"event": "storage_bucket_created"' in submitted.stderr  # the log went to stderr

    status = cli.invoke(app, ["status", "--json", "--job", str(job)], env=pipeline_env)
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["jobs"][str(job)]["PENDING"] == 2

    with psycopg.connect(DATABASE_URL, options=f"-c search_path={db_schema}") as conn:
        conn.execute(
            "UPDATE image_optimization_items SET status = 'FAILED', error_code = 'x' "
            "WHERE job_id = %s",
            (job,),
        )
    retried = cli.invoke(app, ["retry", "--job", str(job)], env=pipeline_env)
    assert (retried.exit_code, retried.output.strip()) == (0, "2 item(s) back to PENDING")

    quota = cli.invoke(app, ["quota", "--store", "store-a", "--limit", "5"], env=pipeline_env)
    assert (quota.exit_code, quota.output.strip()) == (0, "store store-a: quota 5")

    canceled = cli.invoke(app, ["cancel", str(job)], env=pipeline_env)
    assert canceled.exit_code == 0, canceled.output
    status = cli.invoke(app, ["status", "--json", "--job", str(job)], env=pipeline_env)
    assert json.loads(status.stdout)["jobs"][str(job)]["CANCELED"] == 2

    created = cli.invoke(app, ["api-key", "create", "--store", "store-a"], env=pipeline_env)
    assert created.exit_code == 0, created.output
    key_id = int(created.stderr.split()[2])
    listed = cli.invoke(app, ["api-key", "list", "--store", "store-a"], env=pipeline_env)
    assert f"{key_id:>6}  store-a" in listed.output
    assert created.stdout.strip() not in listed.output  # the key itself is never shown again
    revoked = cli.invoke(app, ["api-key", "revoke", str(key_id)], env=pipeline_env)
    assert (revoked.exit_code, revoked.output.strip()) == (0, f"key {key_id} revoked")
    again = cli.invoke(app, ["api-key", "revoke", str(key_id)], env=pipeline_env)
    assert again.exit_code == 1


def test_an_unreachable_database_is_a_one_line_error(pipeline_env: dict[str, str]) -> None:
    env = {**pipeline_env, "DATABASE_URL": "postgresql://127.0.0.1:9/none?connect_timeout=1"}
    result = CliRunner().invoke(app, ["submissions", "status"], env=env)
    assert result.exit_code == 1
    *logged, error = result.stderr.strip().splitlines()
    assert error == "error: database unreachable: PoolTimeout"
    # before it, only log lines: psycopg-pool's reasons (refused, auth failed, ...), as JSON
    assert {json.loads(line)["logger"] for line in logged} <= {"psycopg.pool"}
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_presets_preview_and_analysis_of_a_real_photo(
    pipeline_env: dict[str, str], photos: Path
) -> None:
    cli = CliRunner()
    photo = str(sorted(photos.iterdir())[0])
    added = cli.invoke(
        app,
        ["preset-add", "--store", "store-a", "--name", "thumb-200",
         "--spec", '{"format": "webp", "width": 200}'],
        env=pipeline_env,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert added.output.startswith("preset thumb-200 saved for store store-a: ")
    bad = cli.invoke(
        app,
        ["preset-add", "--store", "store-a", "--name", "x", "--spec", '{"format": "bmp"}'],
        env=pipeline_env,
    )
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: invalid_preset: ")
    listed = cli.invoke(app, ["presets", "--store", "store-a", "--json"], env=pipeline_env)
    names = {(p["name"], p["builtin"]) for p in json.loads(listed.stdout)}
    assert ("thumb-200", False) in names

    preview = cli.invoke(
        app, ["preview", photo, "--preset", "thumb-200", "--store", "store-a", "--json"],
        env=pipeline_env,
    )  # fmt: skip
    assert preview.exit_code == 0, preview.output
    sized = json.loads(preview.stdout)
    assert (sized["width"], sized["content_type"]) == (200, "image/webp")
    unknown = cli.invoke(app, ["preview", photo, "--preset", "nope"], env=pipeline_env)
    assert unknown.exit_code == 2
    upscaled = cli.invoke(
        app, ["preview", photo, "--model", "nightmareai/real-esrgan", "--params", '{"scale": 2}',
              "--preset", "thumb-200", "--store", "store-a", "--json"], env=pipeline_env,
    )  # fmt: skip
    assert upscaled.exit_code == 0, upscaled.output
    staged = json.loads(upscaled.stdout)
    assert staged["model"]["width"] == 2 * staged["model"]["input_width"]
    assert (staged["width"], staged["content_type"]) == (200, "image/webp")
    raw = cli.invoke(
        app, ["preview", photo, "--model", "nightmareai/real-esrgan"], env=pipeline_env
    )
    assert raw.exit_code == 0, raw.output
    assert "image/png" in raw.stdout.splitlines()[-1]
    esrgan = ["--model", "nightmareai/real-esrgan"]
    for bad in (["--model", "acme/x"], [*esrgan, "--params", "[1]"],
                [*esrgan, "--params", '{"scale": 9}'], []):  # fmt: skip
        refused = cli.invoke(app, ["preview", photo, *bad], env=pipeline_env)
        assert refused.exit_code == 2, bad

    analysis = cli.invoke(app, ["analyze", photo, "--json"], env=pipeline_env)
    assert analysis.exit_code == 0, analysis.output
    assert json.loads(analysis.stdout)["kind"] in ("photo", "graphic")
    missing = cli.invoke(app, ["analyze", str(photos / "none.jpg")], env=pipeline_env)
    assert (missing.exit_code, missing.stderr.strip()) == (
        2,
        f"error: {photos / 'none.jpg'} is not a file",
    )


def test_retention_dry_run_counts_and_deletes_nothing(pipeline_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["retention", "--dry-run"], env=pipeline_env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "due: inputs=0 outputs=0 originals=0 jobs=0 items=0 guest_sessions=0"
    )
    assert '"event": "retention_run"' in result.stderr  # log lines never mix with the result


def test_a_schema_without_this_releases_migrations_is_a_one_line_error(
    pipeline_env: dict[str, str], db_schema: str
) -> None:
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={db_schema}") as conn:
        conn.execute("DROP TABLE image_optimization_controls")  # as before release 0005
    result = CliRunner().invoke(app, ["submissions", "status"], env=pipeline_env)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: schema {db_schema} lacks this release's migrations: run `imageopt migrate`"
    )
