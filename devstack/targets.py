"""Where ``imageopt demo`` may write: a schema, a Redis namespace and a bucket of its own.

The demo resets its state on every run, so it must never point at anything else. Three rules:

* **Demo names only.** Each target's name contains ``demo``: ``--schema``/``--namespace``/
  ``--bucket`` naming anything else is refused (:class:`DemoTargetRefused`, exit 2). The
  configured ``IMAGEOPT_DB_SCHEMA``/``IMAGEOPT_REDIS_NAMESPACE``/``S3_BUCKET`` are used only
  when they are demo names; otherwise (the production defaults ``imageopt`` included) the demo
  takes ``imageopt_demo``/``imageopt-demo``/``imageopt-demo`` and says so.
* **Marked when created.** The schema gets ``COMMENT ON SCHEMA ... IS 'imageopt demo'``, the
  namespace the key ``{namespace}:created-by``, the bucket the object ``.imageopt-demo``, each
  holding :data:`DEMO_MARK`.
* **Reset only what carries the mark.** A demo-named target that exists without the mark (an
  empty namespace or bucket excepted: nothing to lose) is refused; so is a marked schema that
  objects in other schemas depend on (``DROP SCHEMA ... CASCADE`` would drop them too).
  Every check runs before anything is reset.

Schema DDL needs identifiers, so (as in :mod:`pipeline.migrate`) it is composed with
``psycopg.sql`` here rather than kept in ``queries.sql``, whose statements run inside a schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import psycopg
import redis
import urllib3
from minio import Minio
from minio.error import S3Error
from psycopg import sql
from psycopg.rows import TupleRow

from pipeline.config import Settings
from pipeline.db import check_schema_name
from pipeline.errors import ConfigurationError, StorageError
from pipeline.migrate import migrate
from pipeline.storage import ObjectStorage

DEMO_MARK = "imageopt demo"
"""What every target the demo created carries (schema comment, marker key, marker object)."""
DEMO_WORD = "demo"
DEFAULT_SCHEMA = "imageopt_demo"
DEFAULT_NAMESPACE = "imageopt-demo"
DEFAULT_BUCKET = "imageopt-demo"
BUCKET_MARKER_KEY = ".imageopt-demo"
"""Object holding :data:`DEMO_MARK` in a bucket the demo claimed (never a pipeline key)."""

# No glob characters: the namespace becomes a SCAN pattern when the demo resets it.
_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# S3 bucket naming rules (lower case, 3-63 characters), without dots for simplicity.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")

_OUTSIDE_DEPENDENTS = """
SELECT DISTINCT dep.type || ' ' || dep.identity AS object
FROM pg_depend AS d
CROSS JOIN LATERAL pg_identify_object(d.refclassid, d.refobjid, 0) AS ref
CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) AS dep
CROSS JOIN LATERAL (
    SELECT CASE d.classid
        WHEN 'pg_rewrite'::regclass THEN (SELECT c.relnamespace FROM pg_rewrite AS r
            JOIN pg_class AS c ON c.oid = r.ev_class WHERE r.oid = d.objid)
        WHEN 'pg_trigger'::regclass THEN (SELECT c.relnamespace FROM pg_trigger AS t
            JOIN pg_class AS c ON c.oid = t.tgrelid WHERE t.oid = d.objid)
        WHEN 'pg_policy'::regclass THEN (SELECT c.relnamespace FROM pg_policy AS p
            JOIN pg_class AS c ON c.oid = p.polrelid WHERE p.oid = d.objid)
        WHEN 'pg_attrdef'::regclass THEN (SELECT c.relnamespace FROM pg_attrdef AS a
            JOIN pg_class AS c ON c.oid = a.adrelid WHERE a.oid = d.objid)
    END AS oid
) AS owner
WHERE ref.schema = %(schema)s
  AND d.deptype IN ('n', 'a')
  AND coalesce(owner.oid::regnamespace::text, dep.schema) IS DISTINCT FROM %(schema)s
ORDER BY 1
LIMIT 5
"""
"""Objects outside the schema that depend on one inside it (a view, a foreign key, a trigger...):
``DROP SCHEMA ... CASCADE`` would drop them. Rules, triggers, policies and column defaults have
no schema of their own (``pg_identify_object``): they count where their table is; any other
object without a schema counts as outside."""


class DemoTargetRefused(Exception):
    """A target the demo may not use or reset; the message is one line for the user (exit 2)."""


@dataclass(frozen=True)
class DemoTargets:
    """The demo's own schema, Redis namespace and bucket.

    Attributes:
        schema: Postgres schema (``[a-z_][a-z0-9_]*`` containing ``demo``).
        namespace: prefix of the Redis keys (``{namespace}:*``, ``{namespace}-dramatiq:*``).
        bucket: S3 bucket of uploads and results.
        notes: configured values that were not demo names and were passed over, for the user.
    """

    schema: str
    namespace: str
    bucket: str
    notes: tuple[str, ...] = field(default=())


def _pick(given: str | None, configured: str, default: str) -> str:
    if given is not None:
        return given
    return configured if DEMO_WORD in configured else default


def resolve_targets(
    settings: Settings,
    *,
    schema: str | None = None,
    namespace: str | None = None,
    bucket: str | None = None,
) -> DemoTargets:
    """Choose the demo's targets: the flags, else the configured names when they are demo
    names, else the defaults (``imageopt_demo``, ``imageopt-demo``, ``imageopt-demo``).

    Raises:
        DemoTargetRefused: a flag names something that is not a demo target, or is malformed.
    """
    chosen = {
        "schema": ("--schema", schema, "IMAGEOPT_DB_SCHEMA", settings.db_schema, DEFAULT_SCHEMA),
        "namespace": (
            "--namespace", namespace, "IMAGEOPT_REDIS_NAMESPACE", settings.redis_namespace,
            DEFAULT_NAMESPACE,
        ),
        "bucket": ("--bucket", bucket, "S3_BUCKET", settings.s3_bucket, DEFAULT_BUCKET),
    }  # fmt: skip
    values: dict[str, str] = {}
    notes = []
    for kind, (flag, given, env, configured, default) in chosen.items():
        value = _pick(given, configured, default)
        source = flag if given is not None else env
        if DEMO_WORD not in value:
            raise DemoTargetRefused(
                f"{source} {value!r} is not a demo {kind}: the demo resets its {kind}, so its "
                f"name must contain {DEMO_WORD!r} (default {default!r})"
            )
        _check_format(kind, source, value)
        if given is None and value != configured:
            notes.append(f"{env}={configured} is not a demo {kind}; the demo uses {value}")
        values[kind] = value
    return DemoTargets(values["schema"], values["namespace"], values["bucket"], tuple(notes))


def _check_format(kind: str, source: str, value: str) -> None:
    if kind == "schema":
        try:
            check_schema_name(value)
        except ConfigurationError:
            # (check_schema_name also caps the length: Postgres would cut a longer name to
            # another schema's)
            raise DemoTargetRefused(
                f"{source} {value!r}: use [a-z_][a-z0-9_]*, at most 63 characters"
            ) from None
    elif kind == "namespace" and not _NAMESPACE.match(value):
        raise DemoTargetRefused(f"{source} {value!r}: use [a-z0-9][a-z0-9_-]*, at most 63")
    elif kind == "bucket" and not _BUCKET.match(value):
        raise DemoTargetRefused(f"{source} {value!r}: use [a-z0-9-], 3 to 63 characters")


def claim_targets(settings: Settings, targets: DemoTargets) -> None:
    """Check all three targets, then reset each to an empty, marked demo state.

    The schema is dropped (when marked), created, marked and migrated; the namespace's keys are
    deleted (when marked) and the marker set; the bucket is created (or kept, when marked or
    empty) and its marker written. Nothing is changed unless every check passes.

    Args:
        settings: ``database_url``, ``redis_url`` and the S3 connection are read from it.
        targets: from :func:`resolve_targets`.

    Raises:
        DemoTargetRefused: a target exists without the demo's mark, or a schema has dependents
            outside it.
    """
    client = redis.Redis.from_url(settings.redis_url)
    storage = ObjectStorage.from_settings(settings.model_copy(update={"s3_bucket": targets.bucket}))
    try:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            _check_schema(conn, targets.schema)
        _check_namespace(client, targets.namespace)
        _check_bucket(settings, storage)
        _reset_schema(settings.database_url, targets.schema)
        _reset_namespace(client, targets.namespace)
        _claim_bucket(storage)
    finally:
        client.close()
        storage.close()


# --- Postgres ----------------------------------------------------------------------------------
def schema_mark(conn: psycopg.Connection[TupleRow], schema: str) -> str | None:
    """The schema's comment (``""`` when it has none), or ``None`` when it does not exist."""
    row = conn.execute(
        "SELECT coalesce(obj_description(oid, 'pg_namespace'), '') AS mark"
        " FROM pg_namespace WHERE nspname = %s",
        (schema,),
    ).fetchone()
    return None if row is None else str(row[0])


def _check_schema(conn: psycopg.Connection[TupleRow], schema: str) -> None:
    mark = schema_mark(conn, schema)
    if mark is None:
        return
    if mark != DEMO_MARK:
        raise DemoTargetRefused(
            f"schema {schema} exists but the demo did not create it (no comment {DEMO_MARK!r});"
            f" drop it yourself or choose another --schema"
        )
    rows = conn.execute(_OUTSIDE_DEPENDENTS, {"schema": schema}).fetchall()
    if rows:
        outside = ", ".join(str(r[0]) for r in rows)
        raise DemoTargetRefused(
            f"schema {schema}: objects outside it depend on it ({outside}); resetting it would "
            "drop them too"
        )


def _reset_schema(database_url: str, schema: str) -> None:
    with psycopg.connect(database_url) as conn, conn.transaction():
        # one transaction, serialized per schema: check the mark again, drop, create, mark
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{DEMO_MARK}:{schema}",))
        _check_schema(conn, schema)
        name = sql.Identifier(schema)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(name))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(name))
        conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(name, sql.Literal(DEMO_MARK)))
    migrate(database_url, schema)


# --- Redis -------------------------------------------------------------------------------------
def namespace_patterns(namespace: str) -> tuple[str, str]:
    """SCAN patterns of every key the pipeline writes under ``namespace`` (its own keys and
    dramatiq's, :func:`pipeline.taskqueue.build_broker`)."""
    return f"{namespace}:*", f"{namespace}-dramatiq:*"


def marker_key(namespace: str) -> str:
    """The key marking a namespace as the demo's."""
    return f"{namespace}:created-by"


def _namespace_keys(client: redis.Redis, namespace: str) -> list[bytes]:
    return [
        key
        for pattern in namespace_patterns(namespace)
        for key in client.scan_iter(match=pattern, count=1000)
    ]


def _check_namespace(client: redis.Redis, namespace: str) -> None:
    if client.get(marker_key(namespace)) == DEMO_MARK.encode():
        return
    if _namespace_keys(client, namespace):
        raise DemoTargetRefused(
            f"redis namespace {namespace} holds keys the demo did not create (no "
            f"{marker_key(namespace)}); delete them yourself or choose another --namespace"
        )


def _reset_namespace(client: redis.Redis, namespace: str) -> None:
    _check_namespace(client, namespace)
    keys = [k for k in _namespace_keys(client, namespace) if k != marker_key(namespace).encode()]
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    client.set(marker_key(namespace), DEMO_MARK)


# --- S3 ----------------------------------------------------------------------------------------
def _bucket_exists(settings: Settings, bucket: str) -> bool:
    # ObjectStorage only has ensure_bucket (which also strips a policy: a change to a bucket
    # that may not be ours) and ping (one error for "missing" and "unreachable")
    client = Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key.get_secret_value(),
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=settings.s3_secure,
        region=settings.s3_region,
    )
    try:
        return bool(client.bucket_exists(bucket))
    except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
        raise StorageError(f"storage bucket_exists {bucket} failed: {type(exc).__name__}") from exc


def _bucket_is_ours(settings: Settings, storage: ObjectStorage) -> bool:
    """Whether the bucket may take the demo's objects: missing, marked, or empty."""
    if not _bucket_exists(settings, storage.bucket):
        return True
    if storage.exists(BUCKET_MARKER_KEY):
        mark = storage.get_bytes(BUCKET_MARKER_KEY, max_bytes=len(DEMO_MARK) + 1)
        if mark == DEMO_MARK.encode():
            return True
    return next(iter(storage.list_keys("")), None) is None


def _check_bucket(settings: Settings, storage: ObjectStorage) -> None:
    if not _bucket_is_ours(settings, storage):
        raise DemoTargetRefused(
            f"bucket {storage.bucket} holds objects the demo did not put there (no "
            f"{BUCKET_MARKER_KEY}); choose another --bucket"
        )


def _claim_bucket(storage: ObjectStorage) -> None:
    storage.ensure_bucket()
    storage.put_bytes(BUCKET_MARKER_KEY, DEMO_MARK.encode(), "text/plain")
