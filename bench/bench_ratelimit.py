"""Benchmark of the global rate limiter against dramatiq's limiters.

Every variant (limiter kind x number of processes) gets its own Redis key namespace and its
own emulator (in its own OS process) whose create limit is the same budget over the same
rolling window, so the emulator's 429s count the overshoot as the provider would see it.
Each acquiring OS process loops until the end of the run: acquire a grant, then
``POST /v1/predictions`` (``nightmareai/real-esrgan`` with an image URL on a closed local
port: the prediction fails at once inside the emulator; only the create call matters).

Limiter kinds:

* ``gcra``: ``pipeline.ratelimit.RateLimiter.acquire_grant(timeout)``; the grant time is the
  reserved slot on Redis' clock.
* ``gcra-guard``: the same limiter enforcing the same limit over ``window + --guard``
  seconds, a margin for the jitter between the slot and the request's arrival.
* ``window``: ``dramatiq.rate_limits.WindowRateLimiter(RedisBackend, key, limit=L,
  window=W)`` used the straightforward way: ``with limiter.acquire(raise_on_failure=False) as
  ok``; on failure sleep ``--retry-sleep`` seconds and try again. The grant time is the
  local ``time.time()`` right after the successful acquire.
* ``bucket``: ``dramatiq.rate_limits.BucketRateLimiter(RedisBackend, key, limit=L,
  bucket=W*1000)``, the same loop.

All processes of a group count themselves in at a Redis barrier and start together.
``--provider replay`` skips the HTTP call (for rates an emulator on the same host cannot
serve) and counts the 429s by replaying the send instants through the emulator's limiter.

Figures per variant (``summarize``): utilization (grants in the saturated span, after
``--warmup`` seconds, over whole windows, divided by the budget for that span), overshoot
ratio (most grants in any rolling window, over the whole run, divided by the limit), the same
from the instants the POSTs were sent, the peak in any 1/60 of a window (burstiness; a
smooth limiter gives about ``limit / 60`` plus its burst), p50/p99 wait per acquire, the
429s and the POST duration.

Full runs (see docs/BENCHMARKS.md; ``REDIS_URL`` picks the Redis)::

    .venv/bin/python -m bench.bench_ratelimit --rpm 450 --window 60 --seconds 240 \
        --warmup 60 --processes 1 4 16 --kinds gcra gcra-guard window bucket \
        --guard 0.1 --retry-sleep 0.05 --concurrent
    .venv/bin/python -m bench.bench_ratelimit --rpm 45000 --window 1 --seconds 61 \
        --warmup 1 --processes 4 16 --kinds gcra gcra-guard window bucket \
        --guard 0.003 --retry-sleep 0.005 --provider replay
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from pipeline.ratelimit import Budget, RateLimiter
from pipeline.ratelimit.gcra import max_in_any_window

KINDS = ("gcra", "gcra-guard", "window", "bucket")
TOKEN = "bench-token"
MODEL = "nightmareai/real-esrgan"
START_DELAY_SECONDS = 1.0
"""From the moment every process is ready to the common start (seconds)."""


# --- pure figures ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, nearest-rank; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Figures:
    """The benchmark's figures for one variant.

    Attributes:
        grants: grants over the whole run.
        measured_windows: whole windows in the saturated span.
        utilization: grants in the saturated span / (limit x measured_windows), a fraction.
        overshoot: most grants in any rolling window (whole run, grant times) / limit.
        overshoot_sent: the same from the instants the POSTs were sent (local clock).
        peak_sixtieth: most grants in any rolling 1/60 of the window (1 s at 60 s).
        wait_p50_ms: median wait per acquire (milliseconds).
        wait_p99_ms: 99th percentile wait per acquire (milliseconds).
    """

    grants: int
    measured_windows: int
    utilization: float
    overshoot: float
    overshoot_sent: float
    peak_sixtieth: int
    wait_p50_ms: float
    wait_p99_ms: float


def summarize(
    grant_times: Sequence[float],
    sent_times: Sequence[float],
    waits: Sequence[float],
    *,
    limit: int,
    window: float,
    measure_from: float,
    measure_until: float,
) -> Figures:
    """Compute the figures of one variant.

    Args:
        grant_times: grant instants (unix seconds).
        sent_times: instants the create requests were sent (unix seconds).
        waits: seconds spent in each acquire.
        limit: grants allowed per window.
        window: the rolling window (seconds).
        measure_from: start of the saturated span (unix seconds), after the warm-up.
        measure_until: end of the run (unix seconds); the span is the whole windows in
            ``[measure_from, measure_until)``.

    Returns:
        The figures; utilization is NaN when the span holds no whole window.
    """
    windows = math.floor((measure_until - measure_from) / window + 1e-9)
    span_end = measure_from + windows * window
    in_span = sum(1 for t in grant_times if measure_from <= t < span_end)
    return Figures(
        grants=len(grant_times),
        measured_windows=windows,
        utilization=in_span / (limit * windows) if windows > 0 else math.nan,
        overshoot=max_in_any_window(grant_times, window) / limit,
        overshoot_sent=max_in_any_window(sent_times, window) / limit,
        peak_sixtieth=max_in_any_window(grant_times, window / 60.0),
        wait_p50_ms=percentile(waits, 50) * 1000.0,
        wait_p99_ms=percentile(waits, 99) * 1000.0,
    )


def replay_429s(sent_times: Sequence[float], limit: int, window: float) -> int:
    """How many of ``sent_times`` the emulator's own limiter would refuse (HTTP 429).

    Replays the instants, in order, through :class:`emulator.limits.SlidingWindowLimiter`
    (``limit`` per rolling ``window`` seconds; refused requests are not recorded), for runs
    too fast for an emulator on the same host (``--provider replay``).
    """
    from emulator.limits import SlidingWindowLimiter

    ordered = sorted(sent_times)
    clock = iter(ordered)
    limiter = SlidingWindowLimiter(limit, window, clock=lambda: next(clock))
    return sum(1 for _ in ordered if limiter.try_acquire() > 0)


def _text(value: Any) -> str:
    """A Redis reply as text (bytes or already decoded)."""
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


# --- one acquiring process ------------------------------------------------------------------


@dataclass
class WorkerResult:
    """What one acquiring process recorded (times in unix seconds, waits in seconds)."""

    grant_times: list[float] = field(default_factory=list)
    sent_times: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    post_seconds: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    attempts: int = 0


@dataclass(frozen=True)
class Variant:
    """One benchmark variant: a limiter kind and a number of acquiring processes."""

    kind: str
    processes: int
    namespace: str


@dataclass(frozen=True)
class RunParams:
    """Parameters shared by every variant of one run (seconds unless stated)."""

    rpm: int
    window: float
    burst: int
    seconds: float
    warmup: float
    retry_sleep: float
    guard: float
    redis_url: str
    provider: str = "emulator"

    @property
    def limit(self) -> int:
        """Grants per window, as :class:`Budget` computes it."""
        return Budget("create", self.rpm, self.window, self.burst).limit

    def limiter_budget(self, kind: str) -> Budget:
        """The budget the GCRA limiter enforces.

        ``gcra``: the provider's budget itself. ``gcra-guard``: the same number of grants
        over a window longer by :attr:`guard`, so that the provider's window (counted at the
        arrival of the requests) still has room when arrival jitter reorders grants that are
        exactly one window apart. The per-minute rate is lowered to keep the limit.
        """
        if kind == "gcra":
            return Budget("create", self.rpm, self.window, self.burst)
        window = self.window + self.guard
        rpm = math.ceil(self.limit * 60.0 / window - 1e-9)
        budget = Budget("create", rpm, window, self.burst)
        if budget.limit != self.limit:
            raise SystemExit(f"guard {self.guard} s: cannot keep the limit {self.limit}")
        return budget


def _dramatiq_acquirer(
    kind: str, client: redis.Redis, params: RunParams, namespace: str
) -> Callable[[WorkerResult], float]:
    """An acquire function for dramatiq's limiter ``kind``: loops until granted, returns the
    grant instant (local unix seconds)."""
    from dramatiq.rate_limits import BucketRateLimiter, WindowRateLimiter
    from dramatiq.rate_limits.backends import RedisBackend

    backend = RedisBackend(client=client)
    limiter: Any
    if kind == "window":
        if params.window != int(params.window):
            raise SystemExit("dramatiq's WindowRateLimiter needs a whole number of seconds")
        limiter = WindowRateLimiter(  # type: ignore[no-untyped-call]
            backend, f"{namespace}:window", limit=params.limit, window=int(params.window)
        )
    else:
        limiter = BucketRateLimiter(  # type: ignore[no-untyped-call]
            backend, f"{namespace}:bucket", limit=params.limit, bucket=round(params.window * 1000)
        )

    def acquire(result: WorkerResult) -> float:
        while True:
            result.attempts += 1
            with limiter.acquire(raise_on_failure=False) as acquired:
                if acquired:
                    return time.time()
            time.sleep(params.retry_sleep)

    return acquire


def acquire_loop(
    variant: Variant, params: RunParams, api_url: str, image_url: str, barrier: str
) -> WorkerResult:
    """Run in a spawned process: acquire and create predictions until the end of the run.

    Once set up, the process counts itself in ``{barrier}:ready`` and waits for the
    coordinator to write the common start (unix seconds) to ``{barrier}:start``, so that a
    slow spawn on a busy host does not eat the warm-up.
    """
    from pipeline.allowlist import build_allowlist
    from pipeline.errors import ProviderError, ProviderRateLimited, RateLimiterUnavailable
    from pipeline.logging import configure_logging
    from pipeline.provider import ProviderClient

    configure_logging("ERROR")
    client = redis.Redis.from_url(params.redis_url)
    spec = build_allowlist()[MODEL]
    provider = ProviderClient(api_url or "http://127.0.0.1:1/v1", TOKEN, timeout=30.0)
    result = WorkerResult()
    acquire: Callable[[WorkerResult], float]
    if variant.kind.startswith("gcra"):
        limiter = RateLimiter(
            client, params.limiter_budget(variant.kind), namespace=variant.namespace
        )

        def acquire(res: WorkerResult) -> float:
            res.attempts += 1
            return limiter.acquire_grant(timeout=max(30.0, 2 * params.window)).granted_at

    else:
        acquire = _dramatiq_acquirer(variant.kind, client, params, variant.namespace)
    client.incr(f"{barrier}:ready")
    while (start := client.get(f"{barrier}:start")) is None:
        time.sleep(0.05)
    start_at = float(_text(start))
    end_at = start_at + params.seconds
    time.sleep(max(0.0, start_at - time.time()))
    while time.time() < end_at:
        started = time.monotonic()
        try:
            granted_at = acquire(result)
        except (RateLimiterUnavailable, redis.RedisError) as exc:
            # The shared Redis may be busy (another suite's long script): count and go on.
            name = f"redis:{type(exc).__name__}"
            result.statuses[name] = result.statuses.get(name, 0) + 1
            time.sleep(0.1)
            continue
        result.waits.append(time.monotonic() - started)
        result.grant_times.append(granted_at)
        result.sent_times.append(time.time())
        if not api_url:  # --provider replay: the 429s are counted afterwards
            continue
        posted = time.monotonic()
        try:
            provider.create_prediction(spec, {"image": image_url})
            status = "201"
        except ProviderRateLimited:
            status = "429"
        except ProviderError as exc:
            status = type(exc).__name__
        result.post_seconds.append(time.monotonic() - posted)
        result.statuses[status] = result.statuses.get(status, 0) + 1
    provider.close()
    client.close()
    return result


# --- emulators in their own processes -------------------------------------------------------


def _emulator_main(limit: int, window: float, conn: multiprocessing.connection.Connection) -> None:
    """Run in a spawned process: one emulator; sends its URL, serves until told to stop."""
    from devstack.emulator import run_emulator
    from emulator.config import EmulatorConfig
    from pipeline.logging import configure_logging

    configure_logging("ERROR")

    config = EmulatorConfig(create_rpm=limit, read_rpm=100_000, window_seconds=window, token=TOKEN)
    with run_emulator(config) as url:
        conn.send(url)
        conn.recv()  # any message (or EOF) stops the emulator


@contextlib.contextmanager
def emulators(count: int, limit: int, window: float) -> Iterator[list[str]]:
    """Start ``count`` emulators, each in its own process; yields their API base URLs."""
    context = multiprocessing.get_context("spawn")
    started: list[tuple[multiprocessing.process.BaseProcess, Any]] = []
    try:
        for _ in range(count):
            parent, child = context.Pipe()
            proc = context.Process(target=_emulator_main, args=(limit, window, child), daemon=True)
            proc.start()
            started.append((proc, parent))
        urls = []
        for _, parent in started:
            if not parent.poll(60):
                raise RuntimeError("emulator did not start")
            urls.append(parent.recv())
        yield urls
    finally:
        for emulator_proc, pipe in started:
            with contextlib.suppress(OSError):
                pipe.send("stop")
            emulator_proc.join(timeout=20)
            if emulator_proc.is_alive():
                emulator_proc.terminate()
                emulator_proc.join(timeout=5)


def emulator_stats(api_url: str) -> dict[str, Any]:
    """``GET /_emulator/stats`` of the emulator whose API base is ``api_url``."""
    root = api_url.removesuffix("/v1")
    return dict(httpx.get(f"{root}/_emulator/stats", timeout=10).json())


def closed_port_url() -> str:
    """An image URL on a local port nobody listens on: the emulator's fetch fails at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/bench.png"


# --- the run --------------------------------------------------------------------------------


def run(params: RunParams, variants: list[Variant], concurrent: bool) -> list[dict[str, Any]]:
    """Run ``variants`` (all at once when ``concurrent``, else one after another)."""
    groups = [variants] if concurrent else [[v] for v in variants]
    rows: list[dict[str, Any]] = []
    for group in groups:
        rows.extend(_run_group(params, group))
    return rows


def _run_group(params: RunParams, group: list[Variant]) -> list[dict[str, Any]]:
    image_url = closed_port_url()
    context = multiprocessing.get_context("spawn")
    count = len(group) if params.provider == "emulator" else 0
    barrier = f"bench-rl-barrier-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(params.redis_url)
    with emulators(count, params.limit, params.window) as started:
        urls = started or [""] * len(group)
        total = sum(v.processes for v in group)
        with context.Pool(total) as pool:
            pending = [
                (i, pool.apply_async(acquire_loop, (v, params, urls[i], image_url, barrier)))
                for i, v in enumerate(group)
                for _ in range(v.processes)
            ]
            deadline = time.monotonic() + 300
            while int(_text(client.get(f"{barrier}:ready") or "0")) < total:
                if time.monotonic() > deadline:
                    raise RuntimeError("the acquiring processes did not start")
                time.sleep(0.1)
            start_at = time.time() + START_DELAY_SECONDS
            client.set(f"{barrier}:start", repr(start_at), ex=3600)
            print(
                f"# {', '.join(f'{v.kind}x{v.processes}' for v in group)}: "
                f"{total} processes ready, {params.seconds:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            results: dict[int, list[WorkerResult]] = {i: [] for i in range(len(group))}
            for i, res in pending:
                results[i].append(res.get(timeout=params.seconds + 600))
        stats = [emulator_stats(url) if url else {} for url in urls]
    client.delete(f"{barrier}:ready", f"{barrier}:start")
    client.close()
    rows = []
    for i, variant in enumerate(group):
        rows.append(_row(params, variant, results[i], stats[i], start_at))
        _cleanup(params.redis_url, variant.namespace)
    return rows


def _row(
    params: RunParams,
    variant: Variant,
    workers: list[WorkerResult],
    stats: dict[str, Any],
    start_at: float,
) -> dict[str, Any]:
    grant_times = [t for w in workers for t in w.grant_times]
    sent_times = [t for w in workers for t in w.sent_times]
    waits = [t for w in workers for t in w.waits]
    posts = [t for w in workers for t in w.post_seconds]
    statuses: dict[str, int] = {}
    for w in workers:
        for key, count in w.statuses.items():
            statuses[key] = statuses.get(key, 0) + count
    if not stats:
        stats = {"responses_429": replay_429s(sent_times, params.limit, params.window)}
    figures = summarize(
        grant_times,
        sent_times,
        waits,
        limit=params.limit,
        window=params.window,
        measure_from=start_at + params.warmup,
        measure_until=start_at + params.seconds,
    )
    return {
        "kind": variant.kind,
        "processes": variant.processes,
        **asdict(figures),
        "attempts": sum(w.attempts for w in workers),
        "post_p50_ms": percentile(posts, 50) * 1000.0,
        "post_p99_ms": percentile(posts, 99) * 1000.0,
        "client_statuses": statuses,
        "emulator_429": stats.get("responses_429"),
        "emulator_created": stats.get("predictions_created"),
        "start_at": start_at,
        "grant_times": sorted(grant_times),
    }


def _cleanup(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def format_table(params: RunParams, rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the rows."""
    lines = [
        f"budget {params.rpm} RPM = {params.limit} per {params.window:g} s window, "
        f"burst {params.burst}, {params.seconds:g} s run, warm-up {params.warmup:g} s, "
        f"guard {params.guard * 1000:g} ms (gcra-guard), "
        f"retry sleep {params.retry_sleep * 1000:g} ms (dramatiq kinds), "
        f"429s from the {params.provider}",
        "",
        "| limiter | procs | grants | utilization | overshoot (grant) | overshoot (sent) "
        "| peak per 1/60 window | wait p50 | wait p99 | 429s | acquire attempts "
        "| POST p50 / p99 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['processes']} | {r['grants']} | {r['utilization'] * 100:.2f} % "
            f"| {r['overshoot']:.3f} | {r['overshoot_sent']:.3f} | {r['peak_sixtieth']} "
            f"| {r['wait_p50_ms']:.0f} ms | {r['wait_p99_ms']:.0f} ms | {r['emulator_429']} "
            f"| {r['attempts']} | {r['post_p50_ms']:.0f} / {r['post_p99_ms']:.0f} ms |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (seconds unless stated)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rpm", type=int, default=450, help="budget, requests per minute")
    parser.add_argument("--window", type=float, default=60.0, help="rolling window (s)")
    parser.add_argument(
        "--burst",
        type=int,
        default=None,
        help="GCRA burst; default max(1, limit // 60), i.e. 7 at 450/60 s, 12 at 750/1 s",
    )
    parser.add_argument("--seconds", type=float, default=240.0, help="run length (s)")
    parser.add_argument("--warmup", type=float, default=60.0, help="not counted (s)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument(
        "--retry-sleep", type=float, default=0.05, help="dramatiq kinds: sleep after a refusal (s)"
    )
    parser.add_argument(
        "--guard",
        type=float,
        default=0.1,
        help="gcra-guard: the limiter's window exceeds the provider's by this much (s)",
    )
    parser.add_argument(
        "--provider",
        choices=("emulator", "replay"),
        default="emulator",
        help="emulator: POST each grant to an emulator with the same limit; replay: no HTTP, "
        "the send instants are replayed through the emulator's limiter afterwards",
    )
    parser.add_argument("--concurrent", action="store_true", help="run all variants at once")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--json", help="also write the rows and every grant time to this file")
    parser.add_argument(
        "--plot", help="also draw grants over time to this PNG (bench.ratelimit_plot)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print a Markdown table."""
    args = parse_args(argv)
    limit = Budget("create", args.rpm, args.window).limit
    params = RunParams(
        rpm=args.rpm,
        window=args.window,
        burst=args.burst if args.burst is not None else max(1, limit // 60),
        seconds=args.seconds,
        warmup=args.warmup,
        retry_sleep=args.retry_sleep,
        guard=args.guard,
        redis_url=args.redis_url,
        provider=args.provider,
    )
    run_id = uuid.uuid4().hex[:8]
    variants = [
        Variant(kind, n, f"bench-rl-{run_id}-{kind}-{n}")
        for kind in args.kinds
        for n in args.processes
    ]
    rows = run(params, variants, args.concurrent)
    table = format_table(params, rows)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M %Z')} {platform.node()} {platform.processor()} "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(table)
    result = {"params": {**asdict(params), "limit": params.limit}, "rows": rows}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(result, out)
    if args.plot:
        from bench.ratelimit_plot import draw  # matplotlib only when asked

        draw(result, Path(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
