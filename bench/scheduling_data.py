"""Scale data for the scheduler's queries: finished rows, PENDING backlog, many stores.

Builds a throwaway schema (migrated like production) filled with ``generate_series``:
``finished`` DONE/FAILED rows in finished jobs, and ``pending`` PENDING rows spread evenly over
``stores`` stores (one active job per store), plus a few hundred rows in flight. Then it runs
``ANALYZE`` so plans are the ones production would get.

Used by ``bench/bench_scheduling.py`` (tick time) and to produce the EXPLAIN ANALYZE output in
``docs/SCHEDULING.md``::

    .venv/bin/python -m bench.scheduling_data --explain      # build, explain, drop
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from pipeline.migrate import drop_schema, migrate

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True)
class Scale:
    """Row counts of the generated data set."""

    finished: int = 1_000_000
    pending: int = 100_000
    stores: int = 5_000
    in_flight: int = 200
    processing: int = 500


def build(database_url: str, scale: Scale, schema: str | None = None) -> str:
    """Create and fill a fresh schema; returns its name (drop it with ``drop_schema``)."""
    schema = schema or f"bench_{uuid.uuid4().hex[:10]}"
    migrate(database_url, schema)
    finished_jobs = max(1, scale.finished // 100)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        # Finished jobs and their items (100 per job), spread over the same stores.
        conn.execute(
            """
            INSERT INTO image_optimization_jobs (id, store_id, model, status, total_items,
                                                 done_items, completed_at, created_at)
            SELECT g, 'store-' || lpad((g %% %(stores)s)::text, 5, '0'), 'nightmareai/real-esrgan',
                   'DONE', 100, 100, now() - interval '1 day', now() - interval '2 days'
            FROM generate_series(1, %(jobs)s) g
            """,
            {"stores": scale.stores, "jobs": finished_jobs},
        )
        conn.execute(
            """
            INSERT INTO image_optimization_items (job_id, store_id, source_url, status, attempts,
                   prediction_id, output_key, created_at, updated_at, submitted_at, completed_at)
            SELECT 1 + (g - 1) / 100,
                   'store-' || lpad((((g - 1) / 100 + 1) %% %(stores)s)::text, 5, '0'),
                   'https://img.example/' || g || '.jpg',
                   CASE WHEN g %% 50 = 0 THEN 'FAILED' ELSE 'DONE' END, 1,
                   'p' || g, 'results/x/' || g || '.png',
                   now() - interval '2 days' + g * interval '100 ms',
                   now() - interval '1 day', now() - interval '2 days', now() - interval '1 day'
            FROM generate_series(1, %(n)s) g
            """,
            {"stores": scale.stores, "n": scale.finished},
        )
        # One active job per store; PENDING items evenly over the stores.
        conn.execute(
            """
            INSERT INTO image_optimization_jobs (id, store_id, model, status)
            SELECT %(base)s + s, 'store-' || lpad(s::text, 5, '0'), 'nightmareai/real-esrgan',
                   'PROCESSING'
            FROM generate_series(0, %(stores)s - 1) s
            """,
            {"base": finished_jobs + 1, "stores": scale.stores},
        )
        conn.execute(
            """
            INSERT INTO image_optimization_items (job_id, store_id, source_url, status, priority,
                                                  created_at, updated_at)
            SELECT %(base)s + g %% %(stores)s, 'store-' || lpad((g %% %(stores)s)::text, 5, '0'),
                   'https://img.example/p' || g || '.jpg', 'PENDING',
                   CASE WHEN g %% 97 = 0 THEN 1 ELSE 0 END,
                   now() - interval '1 hour' + g * interval '10 ms',
                   now() - interval '1 hour' + g * interval '10 ms'
            FROM generate_series(1, %(n)s) g
            """,
            {"base": finished_jobs + 1, "stores": scale.stores, "n": scale.pending},
        )
        for status, count in (("QUEUED", scale.in_flight), ("PROCESSING", scale.processing)):
            conn.execute(
                """
                INSERT INTO image_optimization_items (job_id, store_id, source_url, status,
                       prediction_id, created_at, updated_at, last_polled_at)
                SELECT %(base)s + g %% %(stores)s,
                       'store-' || lpad((g %% %(stores)s)::text, 5, '0'),
                       'https://img.example/f' || g || '.jpg', %(status)s,
                       CASE WHEN %(status)s = 'PROCESSING' THEN 'q' || g END,
                       now() - interval '5 minutes', now() - interval '1 minute',
                       now() - interval '1 minute'
                FROM generate_series(1, %(n)s) g
                """,
                {"base": finished_jobs + 1, "stores": scale.stores, "n": count, "status": status},
            )
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('image_optimization_jobs', 'id'), "
            "(SELECT max(id) FROM image_optimization_jobs))"
        )
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('image_optimization_items', 'id'), "
            "(SELECT max(id) FROM image_optimization_items))"
        )
        conn.execute("VACUUM ANALYZE image_optimization_items")
        conn.execute("VACUUM ANALYZE image_optimization_jobs")
    return schema


def explain(database_url: str, schema: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of each query the metering tick runs, as text."""
    from pipeline.queries import load_queries

    q = load_queries()
    now = datetime.now(UTC)
    stores = [f"store-{i:05d}" for i in range(0, 40)]
    cases = [
        ("count_in_flight", {}),
        ("pending_stores_after", {"cursor": "store-02500", "limit": 100}),
        ("pending_stores", {}),
        ("pending_heads", {"store_ids": stores, "per_store": 2, "now": now}),
        ("recent_active_job_ids", {"since": now - timedelta(seconds=32)}),
        ("active_job_ids", {}),
        ("refresh_jobs", {"ids": []}),  # filled below with the recently changed jobs
        ("queue_depths", {}),
    ]
    out: list[str] = []
    with psycopg.connect(database_url, options=f"-c search_path={schema}") as conn:
        # About 2 s of traffic at 100 items/s (each item changes ~2 times): 400 item changes
        # over 400 jobs, so the recent-jobs refresh has real work.
        conn.execute(
            "UPDATE image_optimization_items SET updated_at = now() WHERE id IN ("
            "SELECT id FROM image_optimization_items WHERE status = 'PENDING' "
            "ORDER BY id LIMIT 400)"
        )
        conn.commit()
        recent = conn.execute(q["recent_active_job_ids"], cases[4][1]).fetchall()
        cases[6] = ("refresh_jobs", {"ids": [r[0] for r in recent]})
        for name, params in cases:
            if name not in q:
                continue
            conn.execute(q[name], params)  # warm the cache as a running scheduler has it
            rows = conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + q[name], params
            ).fetchall()
            conn.rollback()  # refresh_jobs writes: keep the data as built
            out.append(f"-- {name}\n" + "\n".join(str(r[0]) for r in rows))
    return "\n\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--finished", type=int, default=Scale.finished)
    parser.add_argument("--pending", type=int, default=Scale.pending)
    parser.add_argument("--stores", type=int, default=Scale.stores)
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the tick")
    parser.add_argument("--keep", action="store_true", help="keep the schema (prints its name)")
    args = parser.parse_args()
    started = time.monotonic()
    schema = build(DATABASE_URL, Scale(args.finished, args.pending, args.stores))
    print(f"built {schema} in {time.monotonic() - started:.1f} s")
    try:
        if args.explain:
            print(explain(DATABASE_URL, schema))
    finally:
        if not args.keep:
            drop_schema(DATABASE_URL, schema)


if __name__ == "__main__":
    main()
