"""Fair scheduling benchmark: tick time at scale, fairness, late-store and idle latency.

Parts (all against the real Postgres and Redis; figures go to docs/BENCHMARKS.md):

1. **tick**: ``PendingDispatcher.run_once`` at 1,000,000 finished / 100,000 PENDING / 5,000 stores
   (``bench/scheduling_data.py`` builds it with ``generate_series`` in a throwaway schema).
2. **scenario**, three variants in the same run: the real :class:`scheduler.loop.Scheduler`
   loop (leader lock, LISTEN/NOTIFY, metering on the leader's session) over a throwaway schema;
   the creation side is simulated in-process: threads pop creation messages in FIFO order (as
   the Redis queue does), claim the item, spend ``--work-ms`` (fetch + store), take a token from
   the real Redis rate limiter (create budget ``--rpm``) and mark the item PROCESSING.
   ``fair`` is the shipped PendingDispatcher; ``fifo`` a PendingDispatcher that takes the
   globally oldest PENDING items (no round-robin); ``seed`` is FIFO woken only every 5 s (no
   NOTIFY) with 5 s of budget in flight, as seed 003's "create predictions every 5 s". Measured,
   from the rows' own ``created_at``/``submitted_at`` (database clock): Jain's index of
   submissions per store in each 10 s window while every store still had PENDING items; time to
   first submission of a store inserting 1 item behind 50,000 pending; insert -> submitted
   p50/p99 when idle.
3. **polling**: the delay from a prediction finishing (latency uniform 1-3 s) to the poll that
   sees it, our backoff (1 s, x1.5) vs the seed's fixed 3 s, computed from the two schedules.

    .venv/bin/python -m bench.bench_scheduling            # about 4 minutes
    .venv/bin/python -m bench.bench_scheduling --variants ""  # the tick part alone, about 1 minute
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import queue
import random
import statistics
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis
import structlog

from bench.scheduling_data import Scale, build
from devstack.rows import insert_job, wait_until
from pipeline.allowlist import build_allowlist
from pipeline.db import connect, create_pool
from pipeline.migrate import drop_schema, migrate
from pipeline.provider import ProviderClient
from pipeline.ratelimit import Budget, RateLimiter
from pipeline.repository import Repository
from pipeline.rows import PendingItem
from scheduler.leader import SingleConnectionPool
from scheduler.loop import Scheduler, SchedulerConfig
from scheduler.metering import DispatchResult, PendingDispatcher, in_flight_limit

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
MODEL = "nightmareai/real-esrgan"
SCENARIO = ["big"] + [f"small-{i}" for i in range(9)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)]


def jain(counts: Iterable[int]) -> float:
    """Jain's fairness index: (sum x)^2 / (n * sum x^2); 1 is perfectly even."""
    xs = list(counts)
    total = sum(xs)
    return total * total / (len(xs) * sum(x * x for x in xs)) if total else 0.0


# --- 1. tick time at scale ---------------------------------------------------------------
def bench_tick(ticks: int, scale: Scale) -> None:
    started = time.monotonic()
    schema = build(DATABASE_URL, scale)
    print(
        f"tick: built {scale.finished:,} finished / {scale.pending:,} PENDING / "
        f"{scale.stores:,} stores in {time.monotonic() - started:.0f} s"
    )
    pool = create_pool(DATABASE_URL, schema, max_size=2, name="bench-tick")
    # The leader meters on its own session (scheduler.leader.SingleConnectionPool), one
    # transaction a pass.
    session = connect(DATABASE_URL, schema)
    try:
        repo = Repository(SingleConnectionPool(session))  # type: ignore[arg-type]
        capacity = 100  # 1 s of a 6,000/min budget
        meter = PendingDispatcher(
            repo=repo,
            allowlist=build_allowlist("1:1"),
            limit=scale.in_flight + capacity,
            enqueue=lambda ids: len(list(ids)),
        )
        times: list[float] = []
        for _ in range(ticks):
            t0 = time.perf_counter()
            result = meter.run_once(datetime.now(UTC))
            times.append((time.perf_counter() - t0) * 1000)
            assert result.queued == capacity, result
            with pool.connection() as conn:  # give them back, untimed
                conn.execute(
                    "UPDATE image_optimization_items SET status = 'PENDING' "
                    "WHERE status = 'QUEUED' AND queued_at IS NOT NULL"
                )
        full: list[float] = []
        for _ in range(5):
            t0 = time.perf_counter()
            repo.pending_stores()
            full.append((time.perf_counter() - t0) * 1000)
        print(
            f"tick: full metering pass queuing {capacity} items (count + next stores + heads + "
            f"mark_queued), {ticks} passes: p50 {pct(times, 50):.1f} ms, "
            f"p99 {pct(times, 99):.1f} ms, max {max(times):.1f} ms"
        )
        print(
            f"tick: for comparison, the full pending_stores scan of {scale.stores:,} stores: "
            f"p50 {pct(full, 50):.1f} ms"
        )
    finally:
        session.close()
        pool.close()
        drop_schema(DATABASE_URL, schema)


# --- 2. the scenario ---------------------------------------------------------------------
class FifoDispatcher(PendingDispatcher):
    """Plain FIFO: the globally oldest PENDING items, whatever their store (comparison only)."""

    def run_once(self, now: datetime) -> DispatchResult:
        in_flight = self._repo.count_in_flight()
        capacity = self._limit - in_flight
        if capacity <= 0:
            return DispatchResult(0, 0, in_flight, self._limit)
        stores = [s for s, _ in self._repo.pending_stores()]
        rows: list[PendingItem] = self._repo.pending_heads(stores, capacity, now)
        rows.sort(key=lambda r: (r.created_at, r.id))
        valid = [r.id for r in rows[:capacity]]
        moved = set(self._repo.mark_queued(valid))
        sent = self._enqueue([i for i in valid if i in moved])
        return DispatchResult(sent, 0, in_flight, self._limit)


class VariantScheduler(Scheduler):
    """The real loop with a swappable PendingDispatcher and, for the seed, no NOTIFY wake-up."""

    def __init__(self, *, fifo: bool, notify: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fifo = fifo
        self._notify = notify

    def _wait_for_notify(self, listener: psycopg.Connection[Any], timeout: float) -> None:
        if self._notify:
            super()._wait_for_notify(listener, timeout)
        else:
            time.sleep(timeout)


class SimQueue:
    """Stands in for the Redis creation queue (FIFO) and the poll queue (ignored)."""

    def __init__(self) -> None:
        self.create: queue.Queue[int] = queue.Queue()

    def send_create(self, ids: Iterable[int]) -> int:
        n = 0
        for item_id in ids:
            self.create.put(int(item_id))
            n += 1
        return n

    def send_poll(self, item_id: int, delay_seconds: float = 0.0) -> None:
        """Polling is not simulated (part 3 computes it)."""

    def queue_lengths(self) -> dict[str, int]:
        return {"create": self.create.qsize()}

    def pending_create_items(self) -> Counter[int]:
        """Creation messages no simulated worker has taken yet, per item id (the leader's
        takeover step reads them, as it reads dramatiq's Redis queues)."""
        with self.create.mutex:
            return Counter(self.create.queue)


def sim_workers(  # noqa: PLR0917 - bench helper
    repo: Repository,
    q: SimQueue,
    limiter: RateLimiter,
    threads: int,
    work_s: float,
    stop: threading.Event,
) -> list[threading.Thread]:
    def work() -> None:
        while not stop.is_set():
            try:
                item_id = q.create.get(timeout=0.2)
            except queue.Empty:
                continue
            if repo.claim_work_item(item_id) is None:
                continue
            time.sleep(work_s)  # fetch, validate, store the input
            limiter.acquire(timeout=60)
            repo.mark_processing(item_id, f"sim-{item_id}")

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    return workers


def insert(conn: psycopg.Connection[Any], store: str, count: int) -> None:
    urls = [f"https://img.example/{store}/{g}.jpg" for g in range(1, count + 1)]
    insert_job(conn, store, urls, model=MODEL)


def run_variant(  # noqa: PLR0912, PLR0915 - one scenario, read top to bottom
    name: str, args: argparse.Namespace
) -> dict[str, Any]:
    fifo, notify = {"fair": (False, True), "fifo": (True, True), "seed": (True, False)}[name]
    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    migrate(DATABASE_URL, schema)
    budget_s = 5.0 if name == "seed" else args.budget_seconds
    limit = in_flight_limit(args.rpm, budget_s, 4)
    tick = 5.0 if name == "seed" else 1.0
    config = SchedulerConfig(
        database_url=DATABASE_URL,
        schema=schema,
        in_flight_limit=limit,
        tick=tick,
        busy_tick=5.0 if name == "seed" else 0.1,
    )
    sim = SimQueue()
    client = redis.Redis.from_url(REDIS_URL)
    limiter = RateLimiter(client, Budget("create", args.rpm, 60.0), namespace=namespace)
    scheduler = VariantScheduler(
        fifo=fifo,
        notify=notify,
        config=config,
        queue=sim,  # type: ignore[arg-type]
        provider=ProviderClient("http://127.0.0.1:9/v1", ""),
        storage=None,
        allowlist=build_allowlist("1:1"),
    )
    if fifo:  # swap the PendingDispatcher class the loop builds
        import scheduler.loop as scheduling_module

        original = scheduling_module.PendingDispatcher
        scheduling_module.PendingDispatcher = FifoDispatcher  # type: ignore[misc]
    pool = create_pool(DATABASE_URL, schema, max_size=args.threads + 2, name="bench-sim")
    repo = Repository(pool)
    stop = threading.Event()
    sched_stop = threading.Event()
    out: dict[str, Any] = {"variant": name, "limit": limit}
    conn = psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}", autocommit=True)
    try:
        workers = sim_workers(repo, sim, limiter, args.threads, args.work_ms / 1000, stop)
        thread = threading.Thread(target=scheduler.run, args=(sched_stop,), daemon=True)
        thread.start()
        wait_until(
            lambda: scheduler.is_leader or not thread.is_alive(), 30, "the scheduler did not lead"
        )
        if not thread.is_alive():
            raise RuntimeError("the scheduler thread died (its traceback is above)")
        # (a) idle: insert -> submitted
        idle: list[float] = []
        insert(conn, "warmup", 1)  # first grant of a cold limiter, first connections
        time.sleep(6.0 if name == "seed" else 1.0)
        for _ in range(args.idle_samples):
            insert(conn, "idle", 1)
            time.sleep(random.uniform(0.25, 0.45))
        time.sleep(2.0 if name != "seed" else 6.0)
        for (delay,) in conn.execute(
            "SELECT extract(epoch FROM submitted_at - created_at) FROM image_optimization_items "
            "WHERE store_id = 'idle' AND submitted_at IS NOT NULL"
        ):
            idle.append(float(delay))
        missing = args.idle_samples - len(idle)
        out["idle_p50"], out["idle_p99"] = pct(idle, 50), pct(idle, 99)
        out["idle_missing"] = missing
        # (b) 10 stores backlogged: one with 10,000, nine with 200 (big inserted first)
        t0 = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        with conn.transaction():  # all ten stores backlogged from the same instant
            insert(conn, "big", 10_000)
            for i in range(9):
                insert(conn, f"small-{i}", 200)
        deadline = time.monotonic() + args.scenario_seconds
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(DISTINCT store_id) FROM image_optimization_items "
                "WHERE status = 'PENDING' AND store_id = ANY(%s)",
                (SCENARIO,),
            ).fetchone()
            if row is not None and row[0] < 10:
                break
            time.sleep(0.5)
        rows = conn.execute(
            "SELECT store_id, extract(epoch FROM submitted_at - %s) FROM image_optimization_items "
            "WHERE store_id = ANY(%s) AND submitted_at IS NOT NULL",
            (t0, SCENARIO),
        ).fetchall()
        last = {s: max(float(t) for st, t in rows if st == s) for s in {r[0] for r in rows}}
        ends = conn.execute(
            "SELECT min(extract(epoch FROM x.t - %s)) FROM (SELECT store_id, max(submitted_at) t "
            "FROM image_optimization_items WHERE store_id = ANY(%s) GROUP BY store_id "
            "HAVING count(*) FILTER (WHERE status = 'PENDING') = 0) x",
            (t0, SCENARIO),
        ).fetchone()
        backlogged_until = (
            float(ends[0])
            if ends and ends[0] is not None
            else float(max(last.values()) if last else 0.0)
        )
        windows: list[float] = []
        stores = SCENARIO
        for w in range(int(backlogged_until // 10)):
            counts = defaultdict(int)
            for store, t in rows:
                if w * 10 <= float(t) < (w + 1) * 10:
                    counts[store] += 1
            windows.append(jain(counts[s] for s in stores))
        out["jain_windows"] = windows
        out["backlogged_s"] = backlogged_until
        out["throughput"] = len([1 for _, t in rows if float(t) < backlogged_until]) / max(
            backlogged_until, 1e-9
        )
        # (c) a late store behind 50,000 pending of another
        conn.execute(
            "UPDATE image_optimization_items SET status = 'CANCELED' WHERE status = 'PENDING'"
        )
        insert(conn, "huge", 50_000)
        time.sleep(3.0)
        for _ in range(args.late_samples):
            insert(conn, "late", 1)
            time.sleep(4.0 if name != "seed" else 8.0)
        late = [
            float(r[0])
            for r in conn.execute(
                "SELECT extract(epoch FROM submitted_at - created_at) "
                "FROM image_optimization_items WHERE store_id = 'late' AND submitted_at IS NOT NULL"
            )
        ]
        out["late"] = late
        out["late_wait"] = 4.0 if name != "seed" else 8.0
        out["late_missing"] = args.late_samples - len(late)
    finally:
        sched_stop.set()
        stop.set()
        thread.join(timeout=15)
        for w in workers:
            w.join(timeout=5)
        if fifo:
            scheduling_module.PendingDispatcher = original  # type: ignore[misc]
        conn.close()
        pool.close()
        try:
            limiter.reset()
            client.close()
        finally:  # never leave the throwaway schema behind, even if Redis is unwell
            drop_schema(DATABASE_URL, schema)
    return out


def report(out: dict[str, Any]) -> None:
    w = out["jain_windows"]
    late = out["late"]
    print(
        f"{out['variant']}: in-flight limit {out['limit']}; backlogged for "
        f"{out['backlogged_s']:.0f} s at {out['throughput']:.0f} submissions/s"
    )
    print(
        f"  Jain per 10 s window while all 10 stores backlogged ({len(w)} windows): "
        + (f"min {min(w):.3f}, mean {statistics.fmean(w):.3f}" if w else "no full window")
    )
    print(
        "  late store behind 50,000: first submission "
        + (f"{statistics.median(late):.2f} s median, {max(late):.2f} s max" if late else "none")
        + f" ({len(late)} samples, {out['late_missing']} not submitted within the "
        f"{out['late_wait']:.0f} s waited)"
    )
    print(
        f"  idle insert -> submitted: p50 {out['idle_p50'] * 1000:.0f} ms, "
        f"p99 {out['idle_p99'] * 1000:.0f} ms ({out['idle_missing']} not submitted in time)"
    )


# --- 3. polling schedules ----------------------------------------------------------------
def bench_polling(samples: int = 100_000) -> None:
    rng = random.Random(4)

    def ours(latency: float) -> float:
        t, delay = 1.0, 1.0
        while t < latency:
            delay = min(delay * 1.5, 30.0)
            t += delay
        return t - latency

    def seed(latency: float) -> float:
        return math.ceil(latency / 3.0) * 3.0 - latency

    for name, fn in (("backoff 1 s x1.5", ours), ("seed fixed 3 s", seed)):
        delays = [fn(rng.uniform(1.0, 3.0)) for _ in range(samples)]
        print(
            f"polling {name}: prediction finished -> seen, "
            f"mean {statistics.fmean(delays):.2f} s, p99 {pct(delays, 99):.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rpm", type=int, default=6000, help="create budget, per minute")
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=2.0,
        help="IMAGEOPT_IN_FLIGHT_BUDGET_SECONDS (default: the setting's default)",
    )
    parser.add_argument("--threads", type=int, default=16, help="simulated worker threads")
    parser.add_argument("--work-ms", type=float, default=20.0, help="simulated fetch + store")
    parser.add_argument("--scenario-seconds", type=float, default=40.0)
    parser.add_argument("--idle-samples", type=int, default=100)
    parser.add_argument("--late-samples", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=50)
    parser.add_argument(
        "--tick-scale",
        default=f"{Scale.finished},{Scale.pending},{Scale.stores}",
        help="tick: FINISHED,PENDING,STORES rows of the data set (bench/scheduling_data.py)",
    )
    parser.add_argument("--variants", default="fair,fifo,seed", help="'' for none (tick only)")
    parser.add_argument("--skip-tick", action="store_true")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(
        f"bench_scheduling {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"create budget {args.rpm}/min, {args.threads} simulated workers, "
        f"{args.work_ms:.0f} ms work each"
    )
    for variant in filter(None, args.variants.split(",")):
        report(run_variant(variant, args))
    bench_polling()
    if not args.skip_tick:
        finished, pending, stores = (int(n) for n in args.tick_scale.split(","))
        bench_tick(args.ticks, Scale(finished, pending, stores))


if __name__ == "__main__":
    main()
