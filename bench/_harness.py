"""Harness of the end-to-end benchmarks: the whole pipeline in processes, measured.

One :func:`pipeline_stack` gives a run its own Postgres **database** (so that
``pg_stat_database`` counts only this run's transactions), schema, Redis namespace and S3
bucket, and a :class:`devstack.stack.Stack` for the emulator, scheduler and workers (the
processes the demo and the tests start the same way); it removes all of them afterwards.

What is measured, and how:

- **CPU seconds** per process kind: ``utime + stime`` of every process in the kind's session
  (each child is started in a session of its own, so dramatiq's forked workers are included),
  from ``/proc/<pid>/stat``, sampled every :data:`SAMPLE_SECONDS` and at the end; the largest
  value seen per pid is summed.
- **Peak RSS** per process kind: the largest ``VmHWM`` of ``/proc/<pid>/status`` among its
  processes (the biggest single process), and the RSS time series (sum over the kind) for
  "flat, not growing with the backlog".
- **Database transactions**: ``xact_commit + xact_rollback`` of the run's own database from
  ``pg_stat_database`` (before/after, minus the harness's own polling queries). Each
  repository call is one transaction; see docs/BENCHMARKS.md for round trips per transaction.
- **Throughput**: from the rows' own timestamps (database clock): items / (last
  ``completed_at`` - first ``created_at``); every DONE item's result is checked in S3.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from minio import Minio
from minio.deleteobjects import DeleteObject
from PIL import Image, ImageOps

from devstack import rows
from devstack.processes import ProcessGroup
from devstack.s3 import ensure_s3_server
from devstack.stack import Stack as Processes
from devstack.stack import running_stack
from pipeline.migrate import migrate
from pipeline.storage import ObjectStorage

BASE_DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"
MODEL = "nightmareai/real-esrgan"
TOKEN = "bench-token"
UNLIMITED_EMULATOR: dict[str, object] = {
    "latency_min": 0,
    "latency_max": 0,
    "create_rpm": 10_000_000,
    "read_rpm": 10_000_000,
    "window_seconds": 1,
    "max_workers": 2,
    "max_outputs": 200_000,
    "max_predictions": 200_000,
}
"""The emulator for capacity runs: zero latency, no limit worth the name, room for 200,000
predictions (:meth:`Stack.start_emulator` keywords)."""
SAMPLE_SECONDS = 1.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = 1


# --- /proc sampling ----------------------------------------------------------------------
def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[3]) == sid:  # field 6 (session) counted from the state field (3)
            pids.append(int(entry))
    return pids


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def _status_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class KindStats:
    """Figures of one process kind (e.g. ``worker-create``)."""

    cpu_by_pid: dict[int, float] = field(default_factory=dict)
    hwm_kib: int = 0
    processes: int = 0
    rss_series: list[tuple[float, int]] = field(default_factory=list)

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu_by_pid.values())


class ProcSampler:
    """Samples CPU and memory of process sessions in a background thread.

    Args:
        sessions: kind name -> session id (the pid of the child started with a new session).
        extra: kind name -> a function listing that kind's pids now (e.g. the run's Postgres
            backends).
    """

    def __init__(
        self,
        sessions: Mapping[str, int],
        extra: Mapping[str, Callable[[], list[int]]] | None = None,
    ) -> None:
        self.sources: dict[str, Callable[[], list[int]]] = {
            kind: functools.partial(_session_pids, sid) for kind, sid in sessions.items()
        }
        self.sources.update(extra or {})
        self.stats: dict[str, KindStats] = {kind: KindStats() for kind in self.sources}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="proc-sampler", daemon=True)
        self._started = time.monotonic()
        self._baseline: dict[int, float] = {}

    def baseline(self) -> None:
        """Subtract the CPU used so far (start-up, imports) from the figures."""
        for kind, source in self.sources.items():
            for pid in source():
                cpu = _cpu_seconds(pid)
                if cpu is not None:
                    self._baseline[pid] = cpu
            self.stats[kind].cpu_by_pid.clear()
        self._started = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def sample(self) -> None:
        now = time.monotonic() - self._started
        for kind, source in self.sources.items():
            stats = self.stats[kind]
            rss_total = 0
            pids = source()
            stats.processes = max(stats.processes, len(pids))
            for pid in pids:
                cpu = _cpu_seconds(pid)
                if cpu is not None:
                    cpu -= self._baseline.get(pid, 0.0)
                    stats.cpu_by_pid[pid] = max(stats.cpu_by_pid.get(pid, 0.0), cpu)
                hwm = _status_kib(pid, "VmHWM")
                if hwm is not None:
                    stats.hwm_kib = max(stats.hwm_kib, hwm)
                rss_total += _status_kib(pid, "VmRSS") or 0
            stats.rss_series.append((now, rss_total))

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()


# --- sources -----------------------------------------------------------------------------
def make_thumbnails(max_side: int, limit: int | None = None) -> list[tuple[str, bytes]]:
    """Scaled-down JPEG copies of the shared real photos: ``(name, bytes)`` pairs."""
    out: list[tuple[str, bytes]] = []
    for path in sorted(IMAGES.rglob("*")):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp"):
            continue
        try:
            with Image.open(path) as image:
                image.load()
                upright = ImageOps.exif_transpose(image).convert("RGB")
        except (OSError, Image.DecompressionBombError, ValueError):
            continue
        upright.thumbnail((max_side, max_side))
        buf = io.BytesIO()
        upright.save(buf, "JPEG", quality=85)
        out.append((f"{path.parent.name}-{path.stem}.jpg", buf.getvalue()))
        if limit is not None and len(out) >= limit:
            break
    return out


# --- the stack ---------------------------------------------------------------------------
@dataclass
class Stack:
    """A running pipeline of a benchmark's own."""

    database_url: str
    database: str
    schema: str
    namespace: str
    storage: ObjectStorage
    processes: Processes
    run_dir: Path
    sources: list[str] = field(default_factory=list)
    own_queries: int = 0

    @property
    def env(self) -> Mapping[str, str]:
        """The environment of every process the run starts."""
        return self.processes.env

    @property
    def group(self) -> ProcessGroup:
        return self.processes.group

    @property
    def emulator_url(self) -> str:
        return self.processes.emulator_url

    def connect(self) -> psycopg.Connection[Any]:
        return rows.connect(self.database_url, self.schema)

    def upload_sources(self, thumbs: Sequence[tuple[str, bytes]]) -> None:
        """Put the source images in the bucket; items refer to them as ``s3://`` URLs."""
        for name, data in thumbs:
            key = f"sources/{name}"
            self.storage.put_bytes(key, data, "image/jpeg")
            self.sources.append(f"s3://{self.storage.bucket}/{key}")

    def transactions(self) -> int:
        """Committed plus rolled back transactions of the run's database so far."""
        with psycopg.connect(BASE_DATABASE_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                (self.database,),
            ).fetchone()
        return int(row[0]) if row else 0

    def insert(self, counts: Mapping[str, int], params: Mapping[str, Any] | None = None) -> None:
        """Insert one job per store with ``counts[store]`` items, cycling over the sources.

        Each store's items are one ``COPY`` (:func:`devstack.rows.insert_job`); all in one
        transaction, so every store is backlogged from the scheduler's first look.
        """
        with self.connect() as conn, conn.transaction():
            self.own_queries += 1
            for index, (store, n) in enumerate(counts.items()):
                urls = [self.sources[(index * 7 + i) % len(self.sources)] for i in range(n)]
                rows.insert_job(conn, store, urls, model=MODEL, params=params or {"scale": 1})

    def status_counts(self, conn: psycopg.Connection[Any]) -> dict[str, int]:
        self.own_queries += 1
        rows = conn.execute(
            "SELECT status, count(*) FROM image_optimization_items GROUP BY status"
        ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def wait_final(
        self, total: int, timeout: float, poll: float = 0.5, on_tick: Any = None
    ) -> dict[str, int]:
        """Wait until every item is final; returns the counts by status.

        Raises:
            TimeoutError: not final within ``timeout`` s.
            RuntimeError: a process of the run died.
        """
        with self.connect() as conn:

            def final() -> dict[str, int] | None:
                counts = self.status_counts(conn)
                if on_tick is not None:
                    on_tick(counts)
                if sum(counts.get(s, 0) for s in rows.FINAL) >= total:
                    return counts
                deaths = self.processes.dead()
                if deaths:
                    raise RuntimeError("\n".join(deaths))
                return None

            return rows.wait_until(final, timeout, "items not all final", interval=poll)

    def backend_pids(self) -> list[int]:
        """Pids of the Postgres backends connected to the run's database (not the harness's
        own: it reads from another database)."""
        with psycopg.connect(BASE_DATABASE_URL, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database,)
            ).fetchall()
        return [int(r[0]) for r in rows]

    def emulator_stats(self) -> dict[str, Any]:
        root = self.emulator_url.removesuffix("/v1")
        return dict(httpx.get(f"{root}/_emulator/stats", timeout=10).json())

    def start_emulator(self, **config: object) -> None:
        """The emulator as a process of its own (its CPU is measured apart)."""
        self.processes.start_emulator(**config)

    def start_pipeline(self, processes: int, threads: int) -> None:
        """The scheduler and one creation and one polling worker group."""
        self.processes.start_scheduler()
        for queue in ("create", "poll"):
            self.processes.start_workers(
                f"worker-{queue}", queues=queue, processes=processes, threads=threads
            )


def _purge_bucket(endpoint: Any, bucket: str) -> None:
    client = Minio(
        endpoint.endpoint,
        access_key=endpoint.access_key,
        secret_key=endpoint.secret_key,
        secure=False,
    )
    names = (
        DeleteObject(o.object_name)
        for o in client.list_objects(bucket, recursive=True)
        if o.object_name
    )
    for error in client.remove_objects(bucket, names):
        print(f"cleanup: {error}", file=sys.stderr)
    with contextlib.suppress(Exception):
        client.remove_bucket(bucket)


@contextlib.contextmanager
def pipeline_stack(env_overrides: Mapping[str, str], keep_logs: bool = False) -> Iterator[Stack]:
    """A database, schema, Redis namespace, bucket and process group of this run's own.

    Everything is removed on exit (processes stopped, database dropped, keys deleted, bucket
    emptied and removed).
    """
    tag = uuid.uuid4().hex[:10]
    database = f"bench_e2e_{tag}"
    schema = "imageopt"
    namespace = f"bench-{tag}"
    base = psycopg.conninfo.conninfo_to_dict(BASE_DATABASE_URL)
    database_url = psycopg.conninfo.make_conninfo(**{**base, "dbname": database})  # type: ignore[arg-type]
    with psycopg.connect(BASE_DATABASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    endpoint = ensure_s3_server()
    bucket = f"bench-{tag}"
    storage = ObjectStorage(
        endpoint=endpoint.endpoint,
        access_key=endpoint.access_key,
        secret_key=endpoint.secret_key,
        bucket=bucket,
    )
    storage.ensure_bucket()
    run_dir = Path(__file__).resolve().parents[1] / ".run" / f"bench-e2e-{tag}"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "IMAGEOPT_DB_SCHEMA": schema,
        "IMAGEOPT_REDIS_NAMESPACE": namespace,
        "IMAGEOPT_SOURCE_ALLOWLIST": "127.0.0.0/8",
        "IMAGEOPT_SCHEDULER_METRICS_PORT": "0",
        "IMAGEOPT_WORKER_METRICS_PORT": "0",
        "REPLICATE_API_TOKEN": TOKEN,
        "S3_ENDPOINT": endpoint.endpoint,
        "S3_ACCESS_KEY": endpoint.access_key,
        "S3_SECRET_KEY": endpoint.secret_key,
        "S3_BUCKET": bucket,
        **env_overrides,
    }
    try:
        migrate(database_url, schema)
        with running_stack(env, run_dir) as processes:
            yield Stack(database_url, database, schema, namespace, storage, processes, run_dir)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for pattern in (f"{namespace}:*", f"{namespace}-dramatiq*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
        client.close()
        with psycopg.connect(BASE_DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        _purge_bucket(endpoint, bucket)
        if not keep_logs:
            for path in run_dir.iterdir():
                path.unlink()
            run_dir.rmdir()


def _pgrep(*args: str) -> list[int]:
    out = subprocess.run(["pgrep", *args], capture_output=True, text=True, check=False).stdout
    return [int(pid) for pid in out.split()]


def shared_server_pids() -> dict[str, Callable[[], list[int]]]:
    """Kind name -> pid lister of the servers a run shares with the host: Redis and the S3
    server (SeaweedFS). Their CPU is the run's only when nothing else uses them."""
    return {
        "redis-server (shared)": functools.partial(_pgrep, "-x", "redis-server"),
        "s3 server (shared)": functools.partial(_pgrep, "-x", "weed"),
    }


def session_of(group: ProcessGroup) -> dict[str, int]:
    """Kind name -> session id of every child of ``group`` (its pid: new session each)."""
    return {name: proc.pid for name, proc in group.procs.items()}


def timings(stack: Stack) -> dict[str, float]:
    """Figures from the rows' timestamps (database clock)."""
    with stack.connect() as conn:
        stack.own_queries += 1
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'DONE'), "
            "extract(epoch FROM max(completed_at) - min(created_at)), "
            "extract(epoch FROM percentile_cont(0.5) WITHIN GROUP "
            "  (ORDER BY completed_at - created_at)), "
            "extract(epoch FROM percentile_cont(0.99) WITHIN GROUP "
            "  (ORDER BY completed_at - created_at)), "
            "avg(poll_count), "
            "extract(epoch FROM max(submitted_at) - min(created_at)) "
            "FROM image_optimization_items"
        ).fetchone()
    assert row is not None
    return {
        "done": float(row[0]),
        "span": float(row[1] or 0),
        "p50": float(row[2] or 0),
        "p99": float(row[3] or 0),
        "polls": float(row[4] or 0),
        "submit_span": float(row[5] or 0),
    }


def results_in_s3(stack: Stack) -> int:
    """How many result objects the bucket holds."""
    return sum(1 for _ in stack.storage.list_keys("results/"))


def kinds_report(sampler: ProcSampler, items: int) -> list[str]:
    lines = [
        "| process kind | processes | CPU s | CPU ms / item | peak RSS (MiB, largest process) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    total = 0.0
    for kind, stats in sampler.stats.items():
        total += stats.cpu_seconds
        lines.append(
            f"| {kind} | {stats.processes} | {stats.cpu_seconds:.1f} | "
            f"{1000 * stats.cpu_seconds / max(items, 1):.2f} | {stats.hwm_kib / 1024:.0f} |"
        )
    lines.append(f"| **total** | | {total:.1f} | {1000 * total / max(items, 1):.2f} | |")
    return lines


def rss_growth(stats: KindStats) -> tuple[float, float, float]:
    """RSS (MiB, summed over the kind) at 25 %, 50 % and 100 % of the run: flat or growing."""
    series = [rss for _, rss in stats.rss_series if rss]
    if not series:
        return 0.0, 0.0, 0.0
    pick = defaultdict(int)
    for frac in (0.25, 0.5, 1.0):
        pick[frac] = series[min(len(series) - 1, int(frac * (len(series) - 1)))]
    return pick[0.25] / 1024, pick[0.5] / 1024, pick[1.0] / 1024
