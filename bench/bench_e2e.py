"""End-to-end performance: capacity, 50,000 images at the limit, scale-out.

Every mode runs the real processes (``imageopt scheduler``, ``imageopt worker --queues create``,
``imageopt worker --queues poll``, the emulator as ``python -m emulator``) over sockets against
Postgres, Redis and the S3 server, in a database, namespace and bucket of the run's own
(:mod:`bench._harness`). Sources are 96 px JPEG copies of ``../shared/data/images`` uploaded to
the bucket (``s3://`` sources); the model is ``nightmareai/real-esrgan`` at ``scale: 1``.

    .venv/bin/python -m bench.bench_e2e capacity --items 5000 --noop-messages 10000
    .venv/bin/python -m bench.bench_e2e capacity --items 3000 --sync-wait-ms 5000
    .venv/bin/python -m bench.bench_e2e capacity --items 3000 --noop-messages 10000 --webhooks
    .venv/bin/python -m bench.bench_e2e limit --items 10000 --factor 3 --threads 16
    .venv/bin/python -m bench.bench_e2e limit --items 50000 --factor 3 --threads 16
    .venv/bin/python -m bench.bench_e2e limit --items 10000 --factor 3 --fixed-guard --guard 0.1
    .venv/bin/python -m bench.bench_e2e scaleout --items 6000 --factor 3
    (defaults: limit 50,000 items at x100; this 2-core host carries ~45 items/s, x3 at the limit)

``--profile DIR`` (capacity) writes py-spy collapsed stacks of the scheduler and workers (and of
the api with ``--webhooks``).

- **capacity**: the emulator at zero latency with no limit, our budgets very high: items/s
  insert -> DONE, CPU s and transactions per item, peak RSS per process kind; and, first, in
  the same run, a no-op dramatiq actor on the same Redis (the broker's ceiling).
- **limit**: 25 stores of uneven sizes (Zipf), create budget 450 x factor per minute, read
  budget 2400 x factor, the emulator's own limits set to the same budgets, its latency
  (2-8 s at Replicate) and our poll delays divided by the factor; completion time / physical
  limit, 429s, the provider-clock headroom (smallest span of ``limit + 1`` arrivals minus the
  window) and the guard in force (arrival correction, or ``--fixed-guard``), Jain's index per
  window while every store is backlogged, memory over time.
- **scaleout**: ``limit`` with 1, 2 and 4 worker processes per queue.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import redis

from bench._harness import (
    REDIS_URL,
    TOKEN,
    UNLIMITED_EMULATOR,
    ProcSampler,
    Stack,
    _session_pids,
    kinds_report,
    make_thumbnails,
    pipeline_stack,
    results_in_s3,
    rss_growth,
    session_of,
    shared_server_pids,
    timings,
)
from bench.profile_summary import summarize
from devstack.processes import free_port
from pipeline.config import Settings
from pipeline.taskqueue import POLL_QUEUE, WEBHOOK_QUEUE, build_broker
from pipeline.wiring import arrival_guard, redis_client

THUMB_SIDE = 96
NOOP_QUEUE = "bench-noop"  # as in bench/_noop_actor.py (not imported: it needs the env)
NOOP_ACTOR = "bench_noop"
STARTUP_SECONDS = 6.0
REAL_LATENCY = (2.0, 8.0)
"""Seconds a Real-ESRGAN prediction takes at Replicate (assumed; scaled by the factor)."""


def _int(value: Any) -> int:
    """redis-py's sync answers, typed as ``Awaitable[int] | int`` by its stubs."""
    return int(value)


# --- the broker's ceiling ------------------------------------------------------------------
def noop_ceiling(stack: Stack, messages: int, processes: int, threads: int) -> tuple[float, float]:
    """A no-op actor draining a pre-filled queue on the same Redis: messages per second, and
    CPU milliseconds per message of its worker processes."""
    broker = build_broker(REDIS_URL, stack.namespace)
    broker.declare_queue(NOOP_QUEUE)
    for i in range(messages):
        broker.enqueue(
            dramatiq.Message(
                queue_name=NOOP_QUEUE, actor_name=NOOP_ACTOR, args=(i,), kwargs={}, options={}
            )
        )
    client = redis.Redis.from_url(REDIS_URL)
    key = f"{stack.namespace}-dramatiq:{NOOP_QUEUE}"
    proc = stack.group.start(
        "noop", "bench._noop_actor", "--processes", str(processes), "--threads", str(threads),
        "--queues", NOOP_QUEUE, module="dramatiq",
    )  # fmt: skip
    try:
        while _int(client.llen(key)) >= messages:
            time.sleep(0.005)
        sampler = ProcSampler({"noop": proc.pid})
        sampler.baseline()
        started = time.monotonic()
        while True:
            acks = sum(
                _int(client.scard(k))
                for k in client.scan_iter(match=f"{stack.namespace}-dramatiq:__acks__*", count=1000)
            )
            if _int(client.llen(key)) == 0 and acks == 0:
                break
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        sampler.sample()
        return messages / elapsed, 1000 * sampler.stats["noop"].cpu_seconds / messages
    finally:
        stack.group.stop("noop")
        client.close()
        broker.close()


# --- the pipeline --------------------------------------------------------------------------
def start_pipeline(stack: Stack, processes: int, threads: int) -> ProcSampler:
    stack.start_pipeline(processes, threads)
    time.sleep(STARTUP_SECONDS)
    for name in ("scheduler", "worker-create", "worker-poll", "emulator"):
        if not stack.group.alive(name):
            raise RuntimeError(f"{name} died:\n{stack.group.log_tail(name)}")
    sampler = ProcSampler(
        session_of(stack.group), {"postgres backends": stack.backend_pids, **shared_server_pids()}
    )
    sampler.baseline()
    sampler.start()
    return sampler


def start_profilers(stack: Stack, out_dir: str) -> list[subprocess.Popen[bytes]]:
    """``py-spy record`` (collapsed stacks, 15 s) of every worker and scheduler process."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)  # py-spy does not create it
    procs = []
    kinds = [
        k for k in ("scheduler", "worker-create", "worker-poll", "api") if k in stack.group.procs
    ]
    for kind in kinds:
        sid = stack.group.procs[kind].pid
        for pid in _session_pids(sid):
            if kind.startswith("worker") and pid == sid:
                continue  # dramatiq's main process only supervises
            command = [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--duration",
                "15",
                "--rate",
                "200",
                "--format",
                "raw",
                "--nonblocking",
                "--gil",
                "--output",
                f"{out_dir}/{kind}-{pid}.txt",
            ]
            # py-spy's errors beside its output; the child keeps its own copy of the file
            with (Path(out_dir) / f"{kind}-{pid}.err").open("wb") as errors:
                procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors))
    return procs


def broker_cpu_ms(folder: Path, sampler: ProcSampler, items: int) -> float:
    """Our processes' CPU per item spent in the broker (dramatiq and its Redis calls): each
    kind's CPU times the broker's share of that kind's profile samples
    (:mod:`bench.profile_summary`)."""
    total = 0.0
    for kind in ("scheduler", "worker-create", "worker-poll"):
        samples = broker = 0
        for path in folder.glob(f"{kind}-*.txt"):
            n, counts = summarize(path)
            samples += n
            broker += counts.get("broker (dramatiq)", 0)
        if not samples:  # a figure of 0 ms would read as "the broker costs nothing"
            raise SystemExit(f"no py-spy samples of {kind} in {folder} (see its *.err files)")
        total += sampler.stats[kind].cpu_seconds * broker / samples
    return 1000 * total / items


def capacity(args: argparse.Namespace) -> None:
    env = {
        # "No limit" as 10,000/s over a 1 s window: the limiter's cold start writes one log
        # entry per grant of the window in one Lua call (rpm x window / 60), so a budget of
        # millions per minute over 60 s would block Redis for seconds.
        "IMAGEOPT_CREATE_RPM": "600000",
        "IMAGEOPT_READ_RPM": "600000",
        "IMAGEOPT_RATE_WINDOW_SECONDS": "1",
        "IMAGEOPT_POLL_INITIAL_DELAY_SECONDS": str(args.poll_delay),
        "IMAGEOPT_POLL_MAX_DELAY_SECONDS": "1",
        "IMAGEOPT_IN_FLIGHT_BUDGET_SECONDS": "2",
        "REPLICATE_MAX_WAIT_MS": str(args.sync_wait_ms),
    }
    api_port = free_port()
    if args.webhooks:  # the api receives the emulator's webhooks; polls are the fallback
        env["IMAGEOPT_WEBHOOK_URL"] = f"http://127.0.0.1:{api_port}/api/webhooks/replicate"
    thumbs = make_thumbnails(THUMB_SIDE)
    with pipeline_stack(env, keep_logs=args.keep_logs) as stack:
        stack.upload_sources(thumbs)
        ceiling, noop_cpu_ms = noop_ceiling(stack, args.noop_messages, args.processes, args.threads)
        print(
            f"no-op actor ceiling: {ceiling:.0f} messages/s, {noop_cpu_ms:.2f} CPU ms/message "
            f"({args.noop_messages} messages, {args.processes} process x {args.threads} threads)"
        )
        stack.start_emulator(**UNLIMITED_EMULATOR)
        if args.webhooks:
            stack.group.start("api", "api", "--host", "127.0.0.1", "--port", str(api_port))
        sampler = start_pipeline(stack, args.processes, args.threads)
        tx0 = stack.transactions()
        own0 = stack.own_queries
        stack.insert({f"store-{i:02d}": args.items // args.stores for i in range(args.stores)})
        profilers = start_profilers(stack, args.profile) if args.profile else []
        total = args.stores * (args.items // args.stores)
        counts = stack.wait_final(total, timeout=args.timeout or 1800, poll=0.5)
        if args.webhooks:  # polls the rescuer sent for late webhooks are work of this run too
            wait_for_poll_messages(stack)
        sampler.stop()
        for profiler in profilers:
            profiler.wait(timeout=120)
        tx = stack.transactions() - tx0 - (stack.own_queries - own0)
        t = timings(stack)
        in_s3 = results_in_s3(stack)
        stats = stack.emulator_stats()
        finish = finished_to_done(stack)
    rate = t["done"] / t["span"] if t["span"] else 0.0
    webhook_messages = int(stats.get("webhooks", {}).get("delivered", 0))
    # with webhooks: no poll message per item; the rescuer's polls of late webhooks are counted
    # in the rows' poll_count like any poll
    messages = total * (1 + t["polls"]) + webhook_messages
    gets = int(stats["requests_by_endpoint"].get("get_prediction", 0))
    print(f"items: {total} ({counts}), results in S3: {in_s3}")
    print(
        f"throughput: {rate:.1f} items/s end to end (first insert -> last DONE {t['span']:.1f} s);"
        f" insert -> DONE p50 {t['p50']:.2f} s, p99 {t['p99']:.2f} s"
    )
    print(
        f"messages: {messages / total:.2f} per item (1 create + {t['polls']:.2f} polls"
        + (f" + {webhook_messages / total:.2f} webhooks" if args.webhooks else "")
        + f") = {messages / t['span']:.0f} messages/s"
    )
    print(
        f"provider GETs: {gets / total:.3f} per item; prediction finished -> DONE "
        f"p50 {finish[0] * 1000:.0f} ms, p99 {finish[1] * 1000:.0f} ms"
        f" ({'webhooks' if args.webhooks else 'polling'})"
    )
    print(
        f"broker ceiling / our rate: per item {ceiling / rate:.1f}x, "
        f"per message {ceiling / (messages / t['span']):.1f}x"
    )
    ours = sum(
        st.cpu_seconds
        for kind, st in sampler.stats.items()
        if kind in ("scheduler", "worker-create", "worker-poll", "api")
    )
    ours_ms = 1000 * ours / total
    print(
        f"CPU per item, ours (scheduler + workers): {ours_ms:.2f} ms = "
        f"{ours_ms / noop_cpu_ms:.1f}x a no-op message, "
        f"{ours_ms / (noop_cpu_ms * (1 + t['polls'])):.1f}x the no-op messages it takes"
    )
    print(f"transactions: {tx / total:.2f} per item (pg_stat_database, run's own database)")
    if args.profile:
        broker_ms = broker_cpu_ms(Path(args.profile), sampler, total)
        print(
            f"broker CPU per item (dramatiq's share of each kind's py-spy samples x its CPU): "
            f"{broker_ms:.2f} ms = {broker_ms / noop_cpu_ms:.1f}x a no-op message, "
            f"{broker_ms / (noop_cpu_ms * (1 + t['polls'])):.1f}x the no-op messages it takes"
        )
    print(f"emulator: 429s {stats['responses_429']}, requests {stats['requests_by_endpoint']}")
    print("\n".join(kinds_report(sampler, total)))


def wait_for_poll_messages(stack: Stack, timeout: float = 180.0) -> None:
    """Wait until the poll and webhook queues hold no message (waiting, delayed or not yet
    acknowledged: dramatiq keeps each in the queue's ``.msgs`` hash until its ack)."""
    client = redis.Redis.from_url(REDIS_URL)
    namespace = f"{stack.env['IMAGEOPT_REDIS_NAMESPACE']}-dramatiq"
    keys = [
        f"{namespace}:{queue}{suffix}.msgs"
        for queue in (POLL_QUEUE, WEBHOOK_QUEUE)
        for suffix in ("", ".DQ")
    ]
    deadline = time.monotonic() + timeout
    try:
        while sum(int(client.hlen(key)) for key in keys) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        client.close()


def finished_to_done(stack: Stack) -> tuple[float, float]:
    """p50 and p99, seconds, from each prediction's ``completed_at`` at the provider to its
    item's DONE (both on this host's clock): the emulator's predictions, read page by page
    after its stats were taken, joined to the rows by prediction id."""
    finished: dict[str, datetime] = {}
    url: str | None = f"{stack.emulator_url}/predictions"
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
        while url:
            page = client.get(url).raise_for_status().json()
            for p in page["results"]:
                if p.get("completed_at"):
                    finished[p["id"]] = datetime.fromisoformat(p["completed_at"])
            url = page.get("next")
    with stack.connect() as conn:
        stack.own_queries += 1
        rows = conn.execute(
            "SELECT prediction_id, completed_at FROM image_optimization_items WHERE status = 'DONE'"
        ).fetchall()
    lags = sorted((done - finished[pid]).total_seconds() for pid, done in rows if pid in finished)
    if not lags:
        return 0.0, 0.0
    return lags[len(lags) // 2], lags[min(len(lags) - 1, int(len(lags) * 0.99))]


# --- at the limit --------------------------------------------------------------------------
def zipf_sizes(total: int, stores: int) -> dict[str, int]:
    weights = [1 / (i + 1) for i in range(stores)]
    scale = total / sum(weights)
    sizes = [max(1, int(w * scale)) for w in weights]
    sizes[0] += total - sum(sizes)
    return {f"store-{i:02d}": n for i, n in enumerate(sizes)}


def limit_env(factor: float, window: float, guard: float, adaptive: bool) -> dict[str, str]:
    return {
        "IMAGEOPT_RATE_WINDOW_SECONDS": str(window),
        "IMAGEOPT_RATE_GUARD_SECONDS": str(guard),
        "IMAGEOPT_RATE_GUARD_ADAPTIVE": str(adaptive).lower(),
        "IMAGEOPT_CREATE_RPM": str(int(450 * factor)),
        "IMAGEOPT_READ_RPM": str(int(2400 * factor)),
        "IMAGEOPT_POLL_INITIAL_DELAY_SECONDS": f"{1.0 / factor:.4f}",
        "IMAGEOPT_POLL_MAX_DELAY_SECONDS": f"{30.0 / factor:.4f}",
    }


def fairness(stack: Stack, window: float) -> tuple[int, float, float]:
    """Jain's index of submissions per store in each ``window`` while all 25 were backlogged."""
    with stack.connect() as conn:
        rows = conn.execute(
            "SELECT store_id, submitted_at FROM image_optimization_items "
            "WHERE submitted_at IS NOT NULL"
        ).fetchall()
    by_store: dict[str, list[datetime]] = {}
    for store, at in rows:
        by_store.setdefault(store, []).append(at)
    start = min(at for ats in by_store.values() for at in ats)
    end = min(max(ats) for ats in by_store.values())  # the first store to finish
    indices = []
    w = 0
    while True:
        lo = start.timestamp() + w * window
        hi = lo + window
        if hi > end.timestamp():
            break
        counts = [sum(1 for at in ats if lo <= at.timestamp() < hi) for ats in by_store.values()]
        s, sq = sum(counts), sum(c * c for c in counts)
        indices.append(s * s / (len(counts) * sq) if sq else 0.0)
        w += 1
    if not indices:
        return 0, 0.0, 0.0
    return len(indices), min(indices), sum(indices) / len(indices)


def arrival_stamps(stack: Stack) -> list[float]:
    """Every prediction's ``created_at`` on the emulator's clock (its arrival), epoch seconds,
    sorted; read from ``GET /v1/predictions`` page by page."""
    stamps: list[float] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url: str | None = f"{stack.emulator_url}/predictions"
    with httpx.Client(headers=headers, timeout=30) as client:
        while url:
            page = client.get(url).raise_for_status().json()
            stamps += [datetime.fromisoformat(p["created_at"]).timestamp() for p in page["results"]]
            url = page.get("next")
    return sorted(stamps)


def arrival_headroom(stamps: list[float], limit: int, window: float) -> float:
    """Smallest ``stamps[i + limit] - stamps[i] - window``, seconds: how far the provider's
    rolling-window count stayed from ``limit + 1`` (negative: it saw an overshoot). Our
    limiter spaces grants ``limit`` apart by ``window + guard``; the guard minus this figure
    is the worst grant-to-arrival jitter of the run."""
    gaps = [stamps[i + limit] - stamps[i] for i in range(len(stamps) - limit)]
    return min(gaps) - window if gaps else float("inf")


def guard_in_force(stack: Stack) -> tuple[float, float]:
    """The create budget's guard the workers use at the end of the run (arrival correction,
    :mod:`pipeline.ratelimit.arrivals`) and the spread of arrival offsets over its horizon
    (what a fixed guard would have had to cover), seconds."""
    settings = Settings(**stack.env)  # type: ignore[arg-type]  # aliases, as in the workers' env
    client = redis_client(settings)
    try:
        arrivals = arrival_guard(settings, client)
        if arrivals is None:
            return settings.rate_guard_seconds, float("nan")
        guard = arrivals.current()
        offsets = arrivals.offsets
        return guard, offsets.spread if offsets is not None else float("nan")
    finally:
        client.close()


def max_in_window(stack: Stack, window: float) -> int:
    """Most ``submitted_at`` stamps in any rolling ``window`` seconds (database clock)."""
    with stack.connect() as conn:
        stamps = sorted(
            r[0].timestamp()
            for r in conn.execute(
                "SELECT submitted_at FROM image_optimization_items WHERE submitted_at IS NOT NULL"
            )
        )
    best = lo = 0
    for hi, at in enumerate(stamps):
        while at - stamps[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def at_limit(  # noqa: PLR0917 - a benchmark's knobs, called from main() only
    items: int,
    factor: float,
    processes: int,
    threads: int,
    keep_logs: bool,
    timeout: float | None,
    window: float,
    guard: float,
    adaptive: bool,
) -> dict[str, Any]:
    rpm = int(450 * factor)
    env = limit_env(factor, window, guard, adaptive)
    timeout = timeout or 2 * items / (rpm / 60.0) + 300
    thumbs = make_thumbnails(THUMB_SIDE)
    sizes = zipf_sizes(items, 25)
    with pipeline_stack(env, keep_logs=keep_logs) as stack:
        stack.upload_sources(thumbs)
        stack.start_emulator(
            latency_min=REAL_LATENCY[0] / factor,
            latency_max=REAL_LATENCY[1] / factor,
            create_rpm=rpm,
            read_rpm=int(2400 * factor),
            max_workers=2,
            max_outputs=200_000,
            max_predictions=200_000,
        )
        sampler = start_pipeline(stack, processes, threads)
        stack.insert(sizes)
        stack.wait_final(items, timeout=timeout, poll=1.0)
        sampler.stop()
        t = timings(stack)
        in_s3 = results_in_s3(stack)
        stats = stack.emulator_stats()
        fair = fairness(stack, window=250 / (rpm / 60.0))  # 10 submissions per store
        peak = max_in_window(stack, 60.0)
        headroom = arrival_headroom(arrival_stamps(stack), rpm, 60.0)
        in_force, spread = guard_in_force(stack) if adaptive else (guard, float("nan"))
    physical = items / (rpm / 60.0)
    return {
        "items": items,
        "factor": factor,
        "rpm": rpm,
        "processes": processes,
        "window": window,
        "threads": threads,
        "t": t,
        "in_s3": in_s3,
        "emulator": stats,
        "fair": fair,
        "physical": physical,
        "peak_60s": peak,
        "headroom": headroom,
        "guard": guard,
        "adaptive": adaptive,
        "guard_in_force": in_force,
        "spread": spread,
        "sampler": sampler,
    }


def print_limit(r: dict[str, Any]) -> None:
    t = r["t"]
    ratio = t["span"] / r["physical"]
    print(
        f"{r['items']} items, budget {r['rpm']}/min (x{r['factor']}), "
        f"{r['processes']} process(es) x {r['threads']} threads per queue"
    )
    print(
        f"  done {t['done']:.0f}, results in S3 {r['in_s3']}; completion {t['span']:.2f} s, "
        f"physical limit {r['physical']:.2f} s, ratio {ratio:.4f}; "
        f"throughput {t['done'] / t['span']:.1f}/s = "
        f"{100 * t['done'] / t['span'] / (r['rpm'] / 60):.1f} % of the budget"
    )
    print(
        f"  submissions: first insert -> last submitted {t['submit_span']:.2f} s = "
        f"{t['submit_span'] / r['physical']:.4f} x the physical limit; last item's tail "
        f"(completion - last submission) {t['span'] - t['submit_span']:.2f} s; "
        f"our limiter's window {r['window']} s"
    )
    print(f"  most creations in any rolling 60 s: {r['peak_60s']} (budget {r['rpm']})")
    kind = (
        f"arrival-corrected, configured {r['guard']} s; spread of arrival offsets in the last "
        f"10 min {r['spread']:.3f} s"
        if r["adaptive"]
        else "fixed"
    )
    print(
        f"  provider's clock: smallest span of {r['rpm'] + 1} consecutive creations - 60 s = "
        f"{r['headroom']:.3f} s (guard at the end {r['guard_in_force']:.3f} s, {kind})"
    )
    e = r["emulator"]
    print(f"  emulator: 429s {e['responses_429']}, requests {e['requests_by_endpoint']}")
    n, lo, mean = r["fair"]
    print(
        f"  Jain's index per window while all 25 stores backlogged: {n} windows, "
        f"min {lo:.3f}, mean {mean:.3f}"
    )
    print("\n".join("  " + line for line in kinds_report(r["sampler"], r["items"])))
    for kind, stats in r["sampler"].stats.items():
        q1, q2, q4 = rss_growth(stats)
        print(f"  RSS {kind}: {q1:.0f} / {q2:.0f} / {q4:.0f} MiB at 25 / 50 / 100 % of the run")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("capacity", "limit", "scaleout"))
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--factor", type=float, default=None)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--poll-delay", type=float, default=0.1)
    parser.add_argument("--noop-messages", type=int, default=20_000)
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for every item (default: 1800, or twice the physical limit "
        "plus 300 s at the limit)",
    )
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument(
        "--window",
        type=float,
        default=60.0,
        help="our limiter's window (IMAGEOPT_RATE_WINDOW_SECONDS); the emulator "
        "keeps 60 s, so a longer one is a safety margin against arrival jitter",
    )
    parser.add_argument(
        "--guard",
        type=float,
        default=0.3,
        help="IMAGEOPT_RATE_GUARD_SECONDS (default 0.3, the pipeline's default); with the "
        "arrival correction, the one used until it is settled",
    )
    parser.add_argument(
        "--fixed-guard",
        action="store_true",
        help="IMAGEOPT_RATE_GUARD_ADAPTIVE=false: no arrival correction, always --guard",
    )
    parser.add_argument(
        "--sync-wait-ms",
        type=int,
        default=0,
        help="capacity: REPLICATE_MAX_WAIT_MS (sync-mode creates, Prefer: wait); default 0, "
        "async creates and polls as in the pipeline's default",
    )
    parser.add_argument(
        "--webhooks",
        action="store_true",
        help="capacity: IMAGEOPT_WEBHOOK_URL set to an api process of the run (the emulator "
        "POSTs each final prediction; the scheduler's rescuer polls an item whose webhook "
        "has not come by the expected runtime plus IMAGEOPT_WEBHOOK_POLL_GRACE_SECONDS)",
    )
    parser.add_argument("--process-counts", default="1,2,4")
    parser.add_argument("--profile", default=None, help="folder for py-spy collapsed stacks")
    args = parser.parse_args()
    if args.mode == "capacity":
        args.items = args.items or 3000
        capacity(args)
        return
    # limit: one run at --processes; scaleout: one run per count of --process-counts
    if args.mode == "limit":
        items, factor, counts = args.items or 50_000, args.factor or 100, [args.processes]
    else:
        items, factor = args.items or 10_000, args.factor or 20
        counts = [int(p) for p in args.process_counts.split(",")]
    for processes in counts:
        r = at_limit(
            items,
            factor,
            processes,
            args.threads,
            args.keep_logs,
            args.timeout,
            args.window,
            args.guard,
            not args.fixed_guard,
        )
        print_limit(r)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
