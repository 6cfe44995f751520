"""``imageopt demo`` works only in a schema, Redis namespace and bucket of its own.

Everything here runs against stores of this module's own, so that no default name of this
machine is touched: a throwaway database (``CREATE DATABASE t_<hex>``, dropped at the end), a
Redis database number that was empty (only the keys this module seeded or made the demo write
are deleted), and a private S3 server on ports of its own. Inside them the production defaults
(schema ``imageopt``, namespace ``imageopt``, bucket ``imageopt``) hold data that the demo,
run with those defaults configured, must leave exactly as it was.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql

from devstack.targets import (
    BUCKET_MARKER_KEY,
    DEMO_MARK,
    DemoTargetRefused,
    DemoTargets,
    claim_targets,
    marker_key,
    namespace_patterns,
    schema_mark,
)
from pipeline.config import Settings
from pipeline.db import create_pool
from pipeline.migrate import migrate
from pipeline.repository import Repository
from pipeline.storage import ObjectStorage
from tests.conftest import DATABASE_URL, REDIS_URL, settings_from
from tests.support.s3 import (
    PrivateServer,
    purge_bucket,
    start_private_server,
    stop_private_server,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PRODUCTION = "imageopt"  # the default schema, namespace and bucket
DEMO_SCHEMA = "imageopt_demo"
DEMO_NAMESPACE = "imageopt-demo"
DEMO_BUCKET = "imageopt-demo"
SAMPLE = {
    "store-food": ["kiwi-cutout.webp", "cherries-cutout.png"],
    "store-furniture": ["chair-balloon.jpg"],
}
"""A small image set: two stores, three images (the two models the stores get)."""


@dataclass(frozen=True)
class Stores:
    """This module's own Postgres database, Redis database and S3 server."""

    database_url: str
    redis_url: str
    s3: PrivateServer

    def env(self) -> dict[str, str]:
        """What a demo process sees: the shell's environment with the production defaults for
        schema, namespace and bucket (their variables unset), pointed at these stores."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"IMAGEOPT_DB_SCHEMA", "IMAGEOPT_REDIS_NAMESPACE", "S3_BUCKET"}
        }
        return {
            **env,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "S3_ENDPOINT": self.s3.endpoint.endpoint,
            "S3_ACCESS_KEY": self.s3.endpoint.access_key,
            "S3_SECRET_KEY": self.s3.endpoint.secret_key,
            "IMAGEOPT_SCHEDULER_METRICS_PORT": "0",  # no fixed ports: tests run side by side
            "IMAGEOPT_WORKER_METRICS_PORT": "0",
        }

    def settings(self) -> Settings:
        return settings_from(self.env())

    def storage(self, bucket: str) -> ObjectStorage:
        return self.s3.endpoint.storage(bucket)

    def remove_bucket(self, storage: ObjectStorage) -> None:
        """Empty and remove a bucket this module made (or made the demo make), if it exists."""
        if self.s3.endpoint.minio().bucket_exists(storage.bucket):
            purge_bucket(storage)


def _redis_url(db: int) -> str:
    return f"{REDIS_URL.rsplit('/', 1)[0]}/{db}"


def _empty_redis_db() -> int:
    """A Redis database number (1-15) holding no keys: every key in it is then this module's."""
    for db in random.sample(range(1, 16), 15):
        client = redis.Redis.from_url(_redis_url(db))
        try:
            if client.dbsize() == 0:
                return db
        finally:
            client.close()
    pytest.skip("no empty Redis database number (1-15) for this test")


@pytest.fixture(scope="module")
def stores() -> Iterator[Stores]:
    database = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    database_url = psycopg.conninfo.make_conninfo(DATABASE_URL, dbname=database)
    redis_url = _redis_url(_empty_redis_db())
    s3 = start_private_server("demo-test-key", "demo-test-secret-not-real")
    try:
        yield Stores(database_url, redis_url, s3)
    finally:
        stop_private_server(s3)
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )


# --- what the production defaults hold, and proof that it is untouched ------------------------
def _schema_snapshot(database_url: str, schema: str) -> dict[str, str]:
    """Every table of ``schema`` and an md5 of all its rows, in a stable order."""
    with psycopg.connect(database_url) as conn:
        tables = [
            str(r[0])
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,)
            )
        ]
        snapshot = {}
        for table in tables:
            query = sql.SQL(
                "SELECT count(*) || ':'"
                " || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '')"
                " FROM {}.{} AS t"
            ).format(sql.Identifier(schema), sql.Identifier(table))
            row = conn.execute(query).fetchone()
            assert row is not None
            snapshot[table] = str(row[0])
    return snapshot


def _seed_production_schema(stores: Stores) -> dict[str, str]:
    migrate(stores.database_url, PRODUCTION)
    pool = create_pool(stores.database_url, PRODUCTION, max_size=1, name="test-seed")
    try:
        repo = Repository(pool)
        for store in ("store-food", "shop-42"):
            repo.insert_job(
                store_id=store,
                model="nightmareai/real-esrgan",
                prompt=None,
                params={"scale": 2},
                preset=None,
                items=[
                    {"source_url": f"s3://{PRODUCTION}/uploads/{store}/{i}.jpg"} for i in range(3)
                ],
            )
    finally:
        pool.close()
    snapshot = _schema_snapshot(stores.database_url, PRODUCTION)
    assert any(v.split(":")[0] != "0" for v in snapshot.values())
    return snapshot


PRODUCTION_KEYS = {
    f"{PRODUCTION}:poll:runtime": ("hset", {"nightmareai/real-esrgan": "4.2"}),
    f"{PRODUCTION}:ratelimit:create": ("zadd", {"a": 1.0, "b": 2.0}),
    f"{PRODUCTION}-dramatiq:create": ("rpush", ["message-1", "message-2"]),
    f"{PRODUCTION}-dramatiq:create.msgs": ("hset", {"message-1": "{}", "message-2": "{}"}),
}


def _seed_production_redis(client: redis.Redis) -> dict[str, bytes | None]:
    for key, (command, value) in PRODUCTION_KEYS.items():
        if command == "hset":
            client.hset(key, mapping=value)  # type: ignore[arg-type]
        elif command == "zadd":
            client.zadd(key, value)  # type: ignore[arg-type]
        else:
            client.rpush(key, *value)
    return _redis_snapshot(client)


def _redis_snapshot(client: redis.Redis) -> dict[str, bytes | None]:
    return {key: client.dump(key) for key in PRODUCTION_KEYS}  # type: ignore[misc]


def _seed_production_bucket(storage: ObjectStorage) -> dict[str, bytes]:
    storage.ensure_bucket()
    objects = {  # the keys the demo's uploads and its first results would have taken
        "uploads/store-food/kiwi-cutout.webp": b"a shop's own upload",
        "results/store-food/1/1.png": b"a shop's own result",
    }
    for key, data in objects.items():
        storage.put_bytes(key, data, "application/octet-stream")
    return objects


def _bucket_contents(storage: ObjectStorage) -> dict[str, bytes]:
    return {key: storage.get_bytes(key, max_bytes=1 << 20) for key in storage.list_keys("")}


def _clean_redis(client: redis.Redis, namespaces: tuple[str, ...]) -> None:
    """Delete the keys this module seeded and those the demo wrote in the test's database."""
    client.delete(*PRODUCTION_KEYS)
    for namespace in namespaces:
        for pattern in namespace_patterns(namespace):
            keys = list(client.scan_iter(match=pattern))
            if keys:
                client.delete(*keys)


def _images(tmp_path: Path, images_dir: Path) -> Path:
    root = tmp_path / "images"
    for store, names in SAMPLE.items():
        (root / store).mkdir(parents=True)
        for name in names:
            shutil.copy(images_dir / store / name, root / store / name)
    return root


def _demo(stores: Stores, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**stores.env(), "IMAGEOPT_RUN_DIR": str(tmp_path / "run")}
    return subprocess.run(
        [sys.executable, "-m", "cli", "demo", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


# --- the demo with the default settings --------------------------------------------------------
@pytest.mark.timeout(420)
def test_demo_with_default_settings_leaves_production_data_alone(
    stores: Stores, tmp_path: Path, images_dir: Path
) -> None:
    client = redis.Redis.from_url(stores.redis_url)
    production_bucket = stores.storage(PRODUCTION)
    demo_bucket = stores.storage(DEMO_BUCKET)
    try:
        schema_before = _seed_production_schema(stores)
        redis_before = _seed_production_redis(client)
        bucket_before = _seed_production_bucket(production_bucket)

        images = _images(tmp_path, images_dir)
        result = _demo(stores, tmp_path, "--images", str(images), "--timeout", "240")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

        # the production defaults: every row, key and object as it was
        assert _schema_snapshot(stores.database_url, PRODUCTION) == schema_before
        assert _redis_snapshot(client) == redis_before
        assert _bucket_contents(production_bucket) == bucket_before
        # the demo worked in its own targets, which it marked
        assert f"schema {DEMO_SCHEMA}, redis namespace {DEMO_NAMESPACE}" in result.stdout
        with psycopg.connect(stores.database_url) as conn:
            assert schema_mark(conn, DEMO_SCHEMA) == DEMO_MARK
            done = conn.execute(
                sql.SQL("SELECT count(*) FROM {}.image_optimization_items WHERE status = 'DONE'")
                .format(sql.Identifier(DEMO_SCHEMA))
            ).fetchone()  # fmt: skip
        assert done == (sum(len(v) for v in SAMPLE.values()),)
        assert client.get(marker_key(DEMO_NAMESPACE)) == DEMO_MARK.encode()
        written = {k.decode() for k in client.scan_iter()} - set(PRODUCTION_KEYS)
        assert written
        assert all(
            k.startswith((f"{DEMO_NAMESPACE}:", f"{DEMO_NAMESPACE}-dramatiq:")) for k in written
        )
        demo_keys = set(demo_bucket.list_keys(""))
        assert BUCKET_MARKER_KEY in demo_keys
        assert any(key.startswith("results/store-food/") for key in demo_keys)
    finally:
        _clean_redis(client, (DEMO_NAMESPACE,))
        client.close()
        stores.remove_bucket(demo_bucket)
        stores.remove_bucket(production_bucket)
        _drop_schemas(stores.database_url, PRODUCTION, DEMO_SCHEMA)


def _drop_schemas(database_url: str, *schemas: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# --- refusals: exit 2, one line, nothing touched ----------------------------------------------
@pytest.mark.parametrize(
    "flag", [("--schema", PRODUCTION), ("--namespace", PRODUCTION), ("--bucket", PRODUCTION)]
)
def test_a_target_without_demo_in_its_name_is_refused(
    stores: Stores, tmp_path: Path, images_dir: Path, flag: tuple[str, str]
) -> None:
    client = redis.Redis.from_url(stores.redis_url)
    production_bucket = stores.storage(PRODUCTION)
    try:
        schema_before = _seed_production_schema(stores)
        redis_before = _seed_production_redis(client)
        bucket_before = _seed_production_bucket(production_bucket)

        result = _demo(stores, tmp_path, *flag, "--images", str(_images(tmp_path, images_dir)))

        assert result.returncode == 2
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1
        assert f"{flag[0]} '{PRODUCTION}' is not a demo" in lines[0]
        assert "Traceback" not in result.stderr
        assert _schema_snapshot(stores.database_url, PRODUCTION) == schema_before
        assert _redis_snapshot(client) == redis_before
        assert _bucket_contents(production_bucket) == bucket_before
        with psycopg.connect(stores.database_url) as conn:
            assert schema_mark(conn, DEMO_SCHEMA) is None  # nothing created either
    finally:
        _clean_redis(client, ())
        client.close()
        stores.remove_bucket(production_bucket)
        _drop_schemas(stores.database_url, PRODUCTION)


def test_a_demo_named_schema_the_demo_did_not_create_is_refused(
    stores: Stores, tmp_path: Path, images_dir: Path
) -> None:
    try:
        with psycopg.connect(stores.database_url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA imageopt_demo")
            conn.execute("CREATE TABLE imageopt_demo.notes (body text)")
            conn.execute("INSERT INTO imageopt_demo.notes VALUES ('someone else''s')")
        before = _schema_snapshot(stores.database_url, DEMO_SCHEMA)

        result = _demo(stores, tmp_path, "--images", str(_images(tmp_path, images_dir)))

        assert result.returncode == 2
        assert "schema imageopt_demo exists but the demo did not create it" in result.stderr
        assert _schema_snapshot(stores.database_url, DEMO_SCHEMA) == before
    finally:
        _drop_schemas(stores.database_url, DEMO_SCHEMA)


# --- claim_targets: reset what carries the mark, and nothing else -----------------------------
def test_claim_resets_only_marked_targets(stores: Stores) -> None:
    settings = stores.settings()
    targets = DemoTargets("claim_demo", "claim-demo", "claim-demo")
    client = redis.Redis.from_url(stores.redis_url)
    bucket = stores.storage("claim-demo")
    neighbours = ["claim-demo2:x", "claim-demo-dramatiqx", "claim:x"]  # similar, not ours
    try:
        client.set("claim-demo:foreign", "not the demo's")
        with pytest.raises(DemoTargetRefused, match="redis namespace claim-demo holds keys"):
            claim_targets(settings, targets)
        with psycopg.connect(stores.database_url) as conn:
            assert schema_mark(conn, "claim_demo") is None  # checks all before changing any
        assert client.get("claim-demo:foreign") == b"not the demo's"
        client.delete("claim-demo:foreign")

        claim_targets(settings, targets)  # creates and marks all three
        with psycopg.connect(stores.database_url, autocommit=True) as conn:
            assert schema_mark(conn, "claim_demo") == DEMO_MARK
            conn.execute("CREATE TABLE claim_demo.leftover (n int)")
        client.set("claim-demo:leftover", "1")
        client.rpush("claim-demo-dramatiq:create", "m")
        for key in neighbours:
            client.set(key, "keep")
        bucket.put_bytes("results/s/1/1.png", b"demo result", "image/png")

        claim_targets(settings, targets)  # a second run resets the demo's own state
        assert _schema_snapshot(stores.database_url, "claim_demo").get("leftover") is None
        assert client.exists("claim-demo:leftover", "claim-demo-dramatiq:create") == 0
        assert client.get(marker_key("claim-demo")) == DEMO_MARK.encode()
        assert [client.get(k) for k in neighbours] == [b"keep"] * 3
        assert bucket.exists("results/s/1/1.png")  # the demo never deletes objects

        # a view elsewhere on the demo's tables: resetting would drop it too
        with psycopg.connect(stores.database_url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA claim_other")
            conn.execute(
                "CREATE VIEW claim_other.v AS"
                " SELECT count(*) FROM claim_demo.image_optimization_jobs"
            )
        with pytest.raises(DemoTargetRefused, match="objects outside it depend on it"):
            claim_targets(settings, targets)
        with psycopg.connect(stores.database_url) as conn:
            assert conn.execute("SELECT * FROM claim_other.v").fetchone() == (0,)
    finally:
        client.delete(*neighbours)
        _clean_redis(client, ("claim-demo",))
        client.close()
        stores.remove_bucket(bucket)
        _drop_schemas(stores.database_url, "claim_other", "claim_demo")


def test_a_bucket_with_objects_the_demo_did_not_put_is_refused(stores: Stores) -> None:
    settings = stores.settings()
    bucket = stores.storage("foreign-demo")
    try:
        bucket.ensure_bucket()
        bucket.put_bytes("results/s/1/1.png", b"not the demo's", "image/png")
        with pytest.raises(DemoTargetRefused, match="bucket foreign-demo holds objects"):
            claim_targets(settings, DemoTargets("bucket_demo", "bucket-demo", "foreign-demo"))
        assert _bucket_contents(bucket) == {"results/s/1/1.png": b"not the demo's"}
        with psycopg.connect(stores.database_url) as conn:
            assert schema_mark(conn, "bucket_demo") is None
    finally:
        stores.remove_bucket(bucket)
