"""Scheduler memory over time: RSS of the leader (and a standby) against a deep backlog.

The real processes (emulator, ``imageopt scheduler`` x 1 or 2, a creation and a polling worker)
in a database, Redis namespace and bucket of the run's own (:func:`bench._harness.pipeline_stack`),
at the create budget of ``bench.bench_e2e limit`` x ``--factor`` (faults: ``--faults``). A
backlog of 25 stores (Zipf sizes) is inserted at the start, and a new job per store every
``--wave`` seconds (as an upstream keeps inserting), each wave 1.2 x the budget's capacity over
the wave, so the backlog never drains. Every ``--interval`` s it prints each scheduler's
``VmRSS`` and ``RssAnon`` (``/proc/<pid>/status``), its glibc thread arenas (count:resident
MiB, :func:`arenas`) and the items done so far; at the end, per scheduler, the mean RSS over
+20-80 s and over the last minute, and the slope over the second half (least squares, MiB per
10 minutes). The names are the roles at the start: with ``--faults`` they swap.

    .venv/bin/python -m bench.bench_scheduler_memory --minutes 12
    .venv/bin/python -m bench.bench_scheduler_memory --minutes 12 --standby
    .venv/bin/python -m bench.bench_scheduler_memory --minutes 12 --standby --arena-max 2
    .venv/bin/python -m bench.bench_scheduler_memory --minutes 12 --memtrace .run/memtrace

``--memtrace DIR`` turns on :mod:`pipeline.memtrace` in the leader (tracemalloc and gc type
counts dumped every minute to DIR); its RSS figures then include the tracing's own cost.
``--arena-max N`` runs the schedulers with ``MALLOC_ARENA_MAX=N`` (glibc's malloc arenas).
``--faults S``: every S seconds, in turn, the run database's sessions are terminated
(``pg_terminate_backend``, as a Postgres restart cuts them: the leader loses its lock and leads
again, or the standby takes over) and the schedulers' Redis is cut for 3 s (a
:class:`devstack.tcpproxy.TcpProxy` in front of it, their only way to Redis), so the schedulers
live through the soak's faults without being restarted.

    .venv/bin/python -m bench.bench_scheduler_memory --minutes 12 --standby --faults 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import psycopg

from bench._harness import (
    BASE_DATABASE_URL,
    REDIS_URL,
    Stack,
    _status_kib,
    make_thumbnails,
    pipeline_stack,
)
from bench.bench_e2e import REAL_LATENCY, THUMB_SIDE, limit_env, zipf_sizes
from bench.soak import SOAK_ENV
from devstack.tcpproxy import TcpProxy

REDIS_CUT_SECONDS = 3.0
SOAK_TIMING = {
    key: SOAK_ENV[key]
    for key in (
        "IMAGEOPT_SCHEDULER_TICK_SECONDS",
        "IMAGEOPT_RESCUE_INTERVAL_SECONDS",
        "IMAGEOPT_RESCUE_QUEUED_SECONDS",
        "IMAGEOPT_RESCUE_PROCESSING_SECONDS",
        "IMAGEOPT_RESCUE_SUBMITTING_SECONDS",
        "IMAGEOPT_HEARTBEAT_SECONDS",
        "IMAGEOPT_PROVIDER_TIMEOUT_SECONDS",
        "IMAGEOPT_LOG_LEVEL",
    )
}
"""``--soak-settings``: the scheduler's cadences of ``bench.soak`` (a 0.2 s tick, a rescue pass
every 0.5 s, a heartbeat every 5 s), many more passes per minute than the defaults."""


ARENA_ALIGN = 64 * 2**20
"""glibc maps each thread arena's heap at a multiple of ``HEAP_MAX_SIZE`` (64 MiB on 64-bit,
glibc ``malloc/arena.c``); the main arena is ``[heap]``."""


def arenas(pid: int) -> tuple[int, float]:
    """How many glibc thread arenas ``pid`` has (anonymous mappings starting at a multiple of
    :data:`ARENA_ALIGN`), and their resident MiB, from ``/proc/<pid>/smaps`` (0, 0.0 if gone).
    A heuristic: another 64 MiB-aligned anonymous mapping would be counted too."""
    count, kib, in_arena = 0, 0, False
    try:
        with open(f"/proc/{pid}/smaps") as handle:
            for line in handle:
                head = line.split()
                if "-" in head[0] and not head[0].endswith(":"):
                    start = int(head[0].split("-")[0], 16)
                    in_arena = len(head) == 5 and start % ARENA_ALIGN == 0  # no pathname
                    count += in_arena
                elif in_arena and head[0] == "Rss:":
                    kib += int(head[1])
    except OSError:
        return 0, 0.0
    return count, kib / 1024


class Faults:
    """The faults of ``--faults``, struck in turn (see the module docstring).

    Args:
        stack: the run (only its own database's sessions are ended).
        proxy: the schedulers' way to Redis.
    """

    def __init__(self, stack: Stack, proxy: TcpProxy) -> None:
        self._stack = stack
        self._proxy = proxy
        self.counts = {"sessions terminated": 0, "redis cuts": 0}

    def strike(self) -> None:
        if sum(self.counts.values()) % 2 == 0:
            with psycopg.connect(BASE_DATABASE_URL, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (self._stack.database,),
                )
            self.counts["sessions terminated"] += 1
        else:
            with self._proxy.cut_for():
                time.sleep(REDIS_CUT_SECONDS)
            self.counts["redis cuts"] += 1


def slope_per_10min(series: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, MiB)`` points, in MiB per 10 minutes (0 for < 2
    points)."""
    if len(series) < 2:
        return 0.0
    xs = [t for t, _ in series]
    ys = [v for _, v in series]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--factor", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--wave", type=float, default=60.0, help="seconds between inserts")
    parser.add_argument("--standby", action="store_true", help="start a second scheduler")
    parser.add_argument("--arena-max", type=int, default=0, help="MALLOC_ARENA_MAX (0: unset)")
    parser.add_argument("--memtrace", default="", help="folder for the leader's memtrace dumps")
    parser.add_argument("--faults", type=float, default=0.0, help="seconds between faults")
    parser.add_argument(
        "--soak-settings", action="store_true", help="the soak's scheduler settings (SOAK_TIMING)"
    )
    return parser.parse_args()


def start_processes(stack: Stack, args: argparse.Namespace, redis_url: str) -> dict[str, int]:
    """The emulator, the schedulers (through ``redis_url``) and the workers, with a backlog of
    three minutes of budget inserted first; the schedulers' pids by name."""
    rpm = int(450 * args.factor)
    stack.upload_sources(make_thumbnails(THUMB_SIDE, limit=32))
    stack.start_emulator(
        latency_min=REAL_LATENCY[0] / args.factor,
        latency_max=REAL_LATENCY[1] / args.factor,
        create_rpm=rpm,
        read_rpm=int(2400 * args.factor),
        max_workers=2,
        max_outputs=200_000,
        max_predictions=200_000,
    )
    stack.insert(zipf_sizes(3 * rpm, 25))
    sched_env = {"REDIS_URL": redis_url}
    if args.arena_max:
        sched_env["MALLOC_ARENA_MAX"] = str(args.arena_max)
    leader_env = dict(sched_env)
    if args.memtrace:
        leader_env["IMAGEOPT_MEMTRACE_DIR"] = str(Path(args.memtrace).resolve())
        leader_env["IMAGEOPT_MEMTRACE_SECONDS"] = "60"
    stack.processes.start_scheduler("leader", **leader_env)
    names = ["leader"]
    if args.standby:
        time.sleep(3)  # the first one started takes the lock
        stack.processes.start_scheduler("standby", **sched_env)
        names.append("standby")
    for queue in ("create", "poll"):
        stack.processes.start_workers(f"worker-{queue}", queues=queue, processes=1, threads=8)
    return {name: stack.group.procs[name].pid for name in names}


def sample(
    stack: Stack, args: argparse.Namespace, pids: dict[str, int], faults: Faults
) -> dict[str, list[tuple[float, float]]]:
    """Print each scheduler's RSS every ``--interval`` s for ``--minutes``, inserting a wave
    every ``--wave`` s and striking a fault every ``--faults`` s; the ``(s, MiB)`` series."""
    wave_items = int(1.2 * 450 * args.factor * args.wave / 60)
    print(
        f"budget {int(450 * args.factor)}/min (x{args.factor}), waves of {wave_items} items "
        f"every {args.wave:.0f} s, MALLOC_ARENA_MAX={args.arena_max or 'unset'}, "
        f"memtrace={'on' if args.memtrace else 'off'}, faults every {args.faults or '-'} s, "
        f"soak settings {'on' if args.soak_settings else 'off'}"
    )
    print("t(s) " + " ".join(f"{n}_rss {n}_anon {n}_arenas" for n in pids) + " done pending")
    series: dict[str, list[tuple[float, float]]] = {n: [] for n in pids}
    started = time.monotonic()
    next_wave = started + args.wave
    next_fault = started + (args.faults or float("inf"))
    while (elapsed := time.monotonic() - started) < args.minutes * 60:
        deaths = stack.processes.dead()
        if deaths:
            raise SystemExit("\n".join(deaths))
        if time.monotonic() >= next_wave:
            stack.insert(zipf_sizes(wave_items, 25))
            next_wave += args.wave
        if time.monotonic() >= next_fault:
            faults.strike()
            next_fault += args.faults
        with stack.connect() as conn:  # a new session each time: the faults end old ones
            counts = stack.status_counts(conn)
        cells = []
        for name, pid in pids.items():
            rss = (_status_kib(pid, "VmRSS") or 0) / 1024
            anon = (_status_kib(pid, "RssAnon") or 0) / 1024
            series[name].append((elapsed, rss))
            count, arena_mib = arenas(pid)
            cells.append(f"{rss:7.1f} {anon:7.1f} {count:2d}:{arena_mib:5.1f}")
        print(
            f"{elapsed:5.0f} {' '.join(cells)} {counts.get('DONE', 0):6d}"
            f" {counts.get('PENDING', 0):6d}",
            flush=True,
        )
        time.sleep(max(0.0, args.interval - (time.monotonic() - started - elapsed)))
    return series


def main() -> None:
    args = parse()
    host, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].split(":")
    proxy = TcpProxy(host, int(port)).start()
    try:
        env = limit_env(args.factor, 60.0, 0.25, True) | (SOAK_TIMING if args.soak_settings else {})
        with pipeline_stack(env) as stack:
            faults = Faults(stack, proxy)
            pids = start_processes(stack, args, REDIS_URL.replace(f"{host}:{port}", proxy.address))
            series = sample(stack, args, pids, faults)
    finally:
        proxy.close()
    print("faults: " + ", ".join(f"{k} {v}" for k, v in faults.counts.items()))
    for name, points in series.items():
        first = [v for t, v in points if 20 <= t < 80]  # a standby's start-up is not its size
        last = [v for t, v in points if t >= points[-1][0] - 60]
        half = [(t, v) for t, v in points if t >= points[-1][0] / 2]
        print(
            f"{name}: RSS at +20-80 s {statistics.fmean(first):.1f} MiB, last minute "
            f"{statistics.fmean(last):.1f} MiB, max {max(v for _, v in points):.1f} MiB, "
            f"slope over the second half {slope_per_10min(half):+.1f} MiB / 10 min"
        )


if __name__ == "__main__":
    main()
