"""``imageopt`` commands against the real Postgres and S3 server (typer's runner, in process):
submit a folder of real photos, read the status, send dead letters back, set a quota, cancel,
manage API keys; a database that cannot be reached is a one-line error with exit code 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.integration

IMAGES = Path(__file__).resolve().parents[3] / "shared" / "data" / "images"


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for source in sorted(IMAGES.rglob("*.jpg"))[:2]:
        shutil.copy(source, folder / source.name)
    return folder


def test_submit_status_retry_quota_cancel_and_api_keys(
    pipeline_env: dict[str, str], db_schema: str, photos: Path
) -> None:
    cli = CliRunner()
    submitted = cli.invoke(app, ["submit", str(photos), "--store", "store-a"], env=pipeline_env)
    assert submitted.exit_code == 0, submitted.output
    job = int(submitted.output.strip())

    status = cli.invoke(app, ["status", "--json", "--job", str(job)], env=pipeline_env)
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["jobs"][str(job)]["PENDING"] == 2

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
    assert json.loads(status.output)["jobs"][str(job)]["CANCELED"] == 2

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
    assert result.stderr.strip() == "error: database unreachable: PoolTimeout"
    assert result.exception is None or isinstance(result.exception, SystemExit)
