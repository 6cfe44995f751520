"""Soak: the pipeline at its create budget for M minutes, with faults at random; nothing lost.

    .venv/bin/python -m bench.soak --minutes 30 --seed 1234
    .venv/bin/python -m bench.soak --minutes 2 --seed 7        # what `make test` runs

The run starts its OWN Postgres and Redis (the embedded servers of the venv, restartable) and
uses the S3 server of ``S3_ENDPOINT`` (default the shared one, never restarted) in a bucket of
its own. A loopback TCP proxy (:mod:`devstack.tcpproxy`) sits in front of S3 and in front of
the emulator; every process talks to those through it, so the run can cut either for a few
seconds. The stack: the emulator (its limits set to our budgets), two schedulers (a leader
and a standby), a creation worker, a polling worker and the api (:mod:`devstack.stack`).

Load, time-scaled as ``bench.bench_e2e limit`` is: create budget 450 x ``--factor`` per
minute (read 2400 x factor), the emulator's latency (2-8 s at Replicate) divided by the
factor. A simulated upstream inserts jobs of 25 stores of uneven size (Zipf weights, each
wave drawn around them) in waves over the first 70 % of the run, with ``--bad-share`` of bad
rows (docs/UPSTREAM.md's columns through :func:`devstack.rows.insert_job`); 0.8 x the
budget's capacity of the whole run in total, so the pipeline is backlogged most of the time.

Two seeded schedules run meanwhile (printed, so a failing run can be replayed with its
seed): chaos about every 30 s (every ``duration / 8`` for short runs, at least 12 s) until
80 % of the run: SIGKILL of the creation worker, the polling worker, the scheduler leader,
the standby or the api (restarted 1-2 s later, as a supervisor would), a Redis restart
losing its data, a Postgres restart (fast shutdown), a network cut of 2-5 s to S3 or to the
provider; and provider faults switched on for a few seconds each: 5xx on 30 %, a 429 storm,
answers slower than the client timeout, malformed JSON on half the answers, hostile outputs.

Then the run waits until every item is final (at most ``--drain`` s after the last fault),
computes its verdicts (:mod:`bench.soak_verdicts`), prints a table, writes
``OUT/soak.json`` and the picture ``OUT/soak.png`` (:mod:`bench.soak_plot`), and exits 1 if
any verdict missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench._harness import _purge_bucket, _session_pids, _status_kib, make_thumbnails
from bench.soak_servers import OwnServers
from bench.soak_verdicts import (
    LIMITS,
    Fault,
    Sample,
    fairness,
    max_in_window,
    percentile,
    responses_429_outside,
    rss_flat,
    rss_steps,
    rss_steps_by_process,
    utilization,
    utilization_verdict,
)
from devstack import rows
from devstack.processes import free_port
from devstack.s3 import ensure_s3_server
from devstack.stack import Stack, running_stack
from devstack.tcpproxy import TcpProxy
from pipeline.errors import PredictionInputUnreachable
from pipeline.migrate import migrate
from pipeline.prediction_errors import classify_failure
from pipeline.storage import ObjectStorage

REPO = Path(__file__).resolve().parents[1]
TOKEN = "r8_SOAKRUN_5b0c2e71d9"
"""Recognizable provider token: counted if it shows up in any process's output."""
MODEL = "nightmareai/real-esrgan"
STORES = 25
REAL_LATENCY = (2.0, 8.0)
WINDOW_SECONDS = 60.0
"""The provider's window (Replicate: per minute); our limiter's too."""
KINDS = ("worker-create", "worker-poll", "scheduler", "api", "emulator")
"""Process kinds whose RSS is sampled (incarnations of a kind are summed)."""

# Time-scaled settings, as the fault suite's (docs/RELIABILITY.md), with room for a 5 s cut:
# five attempts over about 15 s of backoff.
SOAK_ENV = {
    "IMAGEOPT_MAX_ATTEMPTS": "5",
    "IMAGEOPT_BACKOFF_BASE_SECONDS": "1.0",
    "IMAGEOPT_BACKOFF_MAX_SECONDS": "8.0",
    "IMAGEOPT_SCHEDULER_TICK_SECONDS": "0.2",
    "IMAGEOPT_FETCH_TIMEOUT_SECONDS": "3",
    "IMAGEOPT_PROVIDER_TIMEOUT_SECONDS": "2",
    "IMAGEOPT_RATE_LIMIT_ACQUIRE_TIMEOUT_SECONDS": "5",
    "IMAGEOPT_DEFAULT_RETRY_AFTER_SECONDS": "1",
    "IMAGEOPT_RESCUE_INTERVAL_SECONDS": "0.5",
    "IMAGEOPT_RESCUE_QUEUED_SECONDS": "5",
    "IMAGEOPT_RESCUE_PROCESSING_SECONDS": "10",
    "IMAGEOPT_RESCUE_SUBMITTING_SECONDS": "15",
    "IMAGEOPT_HEARTBEAT_SECONDS": "5",
    "IMAGEOPT_MAX_OUTPUT_BYTES": "8000000",
    "IMAGEOPT_SOURCE_ALLOWLIST": "",
    "IMAGEOPT_SCHEDULER_METRICS_PORT": "0",
    "IMAGEOPT_WORKER_METRICS_PORT": "0",
    "IMAGEOPT_RATE_WINDOW_SECONDS": str(WINDOW_SECONDS),
    "IMAGEOPT_LOG_LEVEL": "INFO",
}
CHAOS = (
    "kill:worker-create",
    "kill:worker-poll",
    "kill:scheduler-leader",
    "kill:scheduler-standby",
    "kill:api",
    "restart:redis",
    "restart:postgres",
    "cut:s3",
    "cut:provider",
)
PROVIDER_FAULTS: dict[str, dict[str, Any]] = {
    "5xx on 30 %": {"http_5xx_rate": 0.3},
    "429 storm": {"create_rpm": 1, "read_rpm": 5, "window_seconds": 1.0},
    "answers slower than the timeout": {"slow_response_seconds": 3.0},
    "malformed JSON on half": {"malformed_json_rate": 0.5},
    "output not an image": {"output_mode": "not_image"},
    "truncated output": {"output_mode": "truncated"},
    "decompression bomb output": {"output_mode": "bomb"},
    "huge output": {"output_mode": "huge"},
}
CRASHES = ("kill:worker-create", "kill:scheduler-leader", "restart:redis", "restart:postgres")
"""Faults that may cost one extra paid prediction (a lost answer, a lost message)."""
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)")


@dataclass(frozen=True)
class Plan:
    """What the run does and when (all times in seconds from the start)."""

    minutes: float
    seed: int
    factor: float
    bad_share: float
    drain: float
    chaos: list[tuple[float, str, float]] = field(default_factory=list)
    """``(at, kind, hold)``: hold is the cut's length or the restart delay."""
    provider: list[tuple[float, str, float]] = field(default_factory=list)
    waves: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.minutes * 60.0

    @property
    def rpm(self) -> int:
        return int(450 * self.factor)

    @property
    def rate(self) -> float:
        return self.rpm / 60.0


def make_plan(minutes: float, seed: int, factor: float, bad_share: float, drain: float) -> Plan:
    """The seeded schedules (see the module docstring); the same seed, the same plan."""
    rng = random.Random(seed)
    duration = minutes * 60.0
    interval = min(30.0, max(12.0, duration / 8))
    chaos = []
    at = interval * rng.uniform(0.7, 1.0)
    while at < 0.8 * duration:
        kind = rng.choice(CHAOS)
        hold = rng.uniform(2.0, 5.0) if kind.startswith("cut") else rng.uniform(1.0, 2.0)
        chaos.append((round(at, 1), kind, round(hold, 1)))
        at += interval * rng.uniform(0.7, 1.3)
    provider = []
    at = interval * rng.uniform(0.3, 0.6)
    names = list(PROVIDER_FAULTS)
    rng.shuffle(names)
    index = 0
    while at < 0.8 * duration:
        provider.append((round(at, 1), names[index % len(names)], round(rng.uniform(3.0, 6.0), 1)))
        index += 1
        at += interval * rng.uniform(0.8, 1.4)
    weights = [1 / (i + 1) for i in range(STORES)]
    total = 0.8 * (450 * factor / 60.0) * duration
    wave_every = max(10.0, duration / 12)
    wave_times = [0.0]
    while wave_times[-1] + wave_every < 0.7 * duration:
        wave_times.append(wave_times[-1] + wave_every)
    per_wave = total / len(wave_times)
    waves = []
    for when in wave_times:
        sizes = {}
        for i, w in enumerate(weights):
            if i and rng.random() < 0.2:
                continue  # this store sends nothing in this wave
            n = round(per_wave * w / sum(weights) * rng.uniform(0.5, 1.5))
            if n:
                sizes[f"store-{i:02d}"] = n
        waves.append((round(when, 1), sizes))
    return Plan(minutes, seed, factor, bad_share, drain, chaos, provider, waves)


# --- the run -------------------------------------------------------------------------------
@dataclass
class Run:
    """A running soak: its stack, proxies, servers and what it recorded."""

    plan: Plan
    out: Path
    servers: OwnServers
    stack: Stack
    storage: ObjectStorage
    emulator_root: str
    s3_proxy: TcpProxy
    provider_proxy: TcpProxy
    sources: list[str]
    bad_sources: dict[str, str]
    t0: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    item_ids: list[int] = field(default_factory=list)
    bad_ids: dict[int, str] = field(default_factory=dict)
    incarnation: Counter[str] = field(default_factory=Counter)
    names: dict[str, str] = field(default_factory=dict)
    """Role (``worker-create``, ``scheduler-a``...) -> the running incarnation's name."""
    unplanned: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    supervising: threading.Lock = field(default_factory=threading.Lock)
    """Held by a planned kill until its process is out of the group, and by :meth:`watch`: a
    process killed on purpose is never seen dead in between and counted as unplanned."""
    stop: threading.Event = field(default_factory=threading.Event)

    def log(self, message: str) -> None:
        print(f"[{time.time() - self.t0:7.1f} s] {message}", flush=True)

    def connect(self) -> psycopg.Connection[Any]:
        return rows.connect(self.servers.database_url, "imageopt")

    # --- processes -------------------------------------------------------------------------
    def start_role(self, role: str) -> None:
        """Start (or restart) ``role`` as a new incarnation (a log file of its own)."""
        self.incarnation[role] += 1
        name = f"{role}.{self.incarnation[role]}"
        with self.lock:
            self.names[role] = name
        if role.startswith("scheduler"):
            self.stack.start_scheduler(name)
        elif role == "api":
            self.stack.start_api(name)
        else:
            queue = role.removeprefix("worker-")
            self.stack.start_workers(name, queues=queue, processes=1, threads=8)

    def kill_role(self, role: str) -> None:
        name = self.names[role]
        with self.supervising:
            self.stack.group.kill(name)
            self.stack.group.procs.pop(name, None)

    def leader(self) -> str | None:
        """The scheduler role that leads now (its incarnation's log says so last)."""
        for role in ("scheduler-a", "scheduler-b"):
            name = self.names[role]
            log = self.stack.log_dir / f"{name}.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            if self.stack.group.alive(name) and text.count('"leader_acquired"') > text.count(
                '"leader_released"'
            ):
                return role
        return None

    def watch(self) -> None:
        """Restart any process that exited on its own (a supervisor would), and count it."""
        with self.supervising:
            for role, name in list(self.names.items()):
                proc = self.stack.group.procs.get(name)
                if proc is not None and proc.poll() is not None:
                    self.unplanned.append(f"{name} exited {proc.returncode} on its own")
                    self.log(f"UNPLANNED: {name} exited {proc.returncode}; restarting")
                    self.stack.group.procs.pop(name, None)
                    self.start_role(role)

    # --- faults ----------------------------------------------------------------------------
    def emulator(self, **changes: Any) -> None:
        httpx.post(f"{self.emulator_root}/_emulator/config", json=changes, timeout=10)

    def normal_provider(self) -> dict[str, Any]:
        return {
            "http_5xx_rate": 0.0, "slow_response_seconds": 0.0, "malformed_json_rate": 0.0,
            "failure_rate": 0.0, "never_finish_rate": 0.0, "output_mode": "normal",
            "create_rpm": self.plan.rpm, "read_rpm": int(2400 * self.plan.factor),
            "window_seconds": WINDOW_SECONDS,
        }  # fmt: skip

    def chaos(self, kind: str, hold: float) -> None:
        start = time.time()
        detail = ""
        if kind.startswith("kill:"):
            role = kind.removeprefix("kill:")
            if role.startswith("scheduler-"):
                leader = self.leader()
                if leader is None:
                    self.log("no scheduler leads right now: killing scheduler-a")
                    leader = "scheduler-a"
                other = "scheduler-b" if leader == "scheduler-a" else "scheduler-a"
                role = leader if role == "scheduler-leader" else other
            detail = self.names[role]
            self.kill_role(role)
            time.sleep(hold)
            self.start_role(role)
        elif kind == "restart:redis":
            self.servers.kill_redis()
            time.sleep(hold)
            self.servers.start_redis()
        elif kind == "restart:postgres":
            self.servers.stop_postgres()
            time.sleep(hold)
            self.servers.start_postgres()
        elif kind.startswith("cut:"):
            proxy = self.s3_proxy if kind == "cut:s3" else self.provider_proxy
            with proxy.cut_for():
                time.sleep(hold)
        self.faults.append(Fault(kind, start, time.time(), detail))
        self.log(f"chaos {kind} {detail} for {hold} s: done")

    def provider_fault(self, name: str, hold: float) -> None:
        start = time.time()
        self.emulator(**PROVIDER_FAULTS[name])
        time.sleep(hold)
        self.emulator(**self.normal_provider())
        self.faults.append(Fault(f"provider:{name}", start, time.time()))
        self.log(f"provider fault '{name}' for {hold} s: off")

    def run_schedule(
        self, events: list[tuple[float, str, float]], act: Callable[..., None]
    ) -> None:
        for at, kind, hold in events:
            if self.stop.wait(max(0.0, self.t0 + at - time.time())):
                return
            try:
                act(kind, hold)
            except Exception as exc:  # noqa: BLE001 - a failed injection is a finding, not a crash
                self.errors.append(f"{kind}: {exc!r}")
                self.log(f"injection {kind} failed: {exc!r}")

    # --- upstream ----------------------------------------------------------------------------
    def insert_wave(self, sizes: dict[str, int], rng: random.Random) -> None:
        """Insert one job per store of ``sizes`` (items per store), removing each store from
        ``sizes`` once its job is committed."""
        bad_kinds = list(self.bad_sources)
        with self.connect() as conn:
            for store, n in list(sizes.items()):
                items: list[dict[str, Any]] = []
                bad: list[str | None] = []
                for i in range(n):
                    if rng.random() < self.plan.bad_share:
                        kind = rng.choice(bad_kinds)
                        item = {"source_url": self.bad_sources[kind]}
                        if kind == "priority -1":
                            item = {"source_url": self.sources[0], "priority": -1}
                        elif kind == "unknown model":
                            item = {"source_url": self.sources[0], "model": "nobody/none"}
                        items.append(item)
                        bad.append(kind)
                    else:
                        items.append({"source_url": self.sources[(i * 7 + n) % len(self.sources)]})
                        bad.append(None)
                job = rows.insert_job(conn, store, items, model=MODEL, params={"scale": 1})
                sizes.pop(store)  # a retry after a Postgres restart re-sends only the rest
                with self.lock:
                    self.item_ids += job.item_ids
                    for item_id, kind in zip(job.item_ids, bad, strict=True):
                        if kind:
                            self.bad_ids[item_id] = kind

    def upstream(self) -> None:
        rng = random.Random(self.plan.seed + 1)
        for at, planned in self.plan.waves:
            if self.stop.wait(max(0.0, self.t0 + at - time.time())):
                return
            sizes = dict(planned)
            for _ in range(60):  # Postgres may be restarting: upstream retries for a minute
                try:
                    self.insert_wave(sizes, rng)
                    break
                except psycopg.OperationalError:
                    time.sleep(1.0)
            else:
                self.errors.append(f"wave at +{at:g} s: Postgres refused it for 60 s")
                continue
            self.log(f"wave: {sum(planned.values())} items in {len(planned)} stores")

    # --- sampling ----------------------------------------------------------------------------
    def sample(self) -> Sample:
        s = Sample(at=time.time())
        try:
            with self.connect() as conn:
                for store, status, n in conn.execute(
                    "SELECT store_id, status, count(*) FROM image_optimization_items GROUP BY 1, 2"
                ):
                    if status in ("PENDING", "QUEUED"):
                        s.backlog[store] = s.backlog.get(store, 0) + int(n)
                    elif status == "DONE":
                        s.done += int(n)
                    elif status == "FAILED":
                        s.failed += int(n)
        except psycopg.Error:
            s.db_ok = False
        with contextlib.suppress(httpx.HTTPError, ValueError):
            stats = httpx.get(f"{self.emulator_root}/_emulator/stats", timeout=5).json()
            s.responses_429 = int(stats["responses_429"])
        if not s.responses_429 and self.samples:
            s.responses_429 = self.samples[-1].responses_429
        for name, proc in list(self.stack.group.procs.items()):
            kind = next((k for k in KINDS if name.startswith(k)), None)
            if kind is None or proc.poll() is not None:
                continue
            rss = sum(_status_kib(pid, "VmRSS") or 0 for pid in _session_pids(proc.pid))
            s.rss_kib[kind] = s.rss_kib.get(kind, 0) + rss
            s.rss_by_process_kib[name] = rss
        return s

    def sampler(self) -> None:
        while not self.stop.wait(1.0):
            self.samples.append(self.sample())
            self.watch()


def _thread(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def soak_stack(plan: Plan, out: Path) -> Iterator[Run]:
    """Servers, proxies, bucket and processes of the run's own; all removed on exit."""
    tag = uuid.uuid4().hex[:8]
    servers = OwnServers(out / "services")
    endpoint = ensure_s3_server()
    bucket = f"soak-{tag}"
    storage = ObjectStorage(
        endpoint=endpoint.endpoint, access_key=endpoint.access_key,
        secret_key=endpoint.secret_key, bucket=bucket,
    )  # fmt: skip
    host, _, port = endpoint.endpoint.partition(":")
    s3_proxy = TcpProxy(host, int(port)).start()
    provider_proxy: TcpProxy | None = None
    try:
        servers.start()
        migrate(servers.database_url, "imageopt")
        storage.ensure_bucket()
        sources = []
        for name, data in make_thumbnails(96):
            key = f"sources/{name}"
            storage.put_bytes(key, data, "image/jpeg")
            sources.append(f"s3://{bucket}/{key}")
        storage.put_bytes("sources/notes.txt", b"not an image at all\n" * 50, "text/plain")
        bad_sources = {
            "malformed URL": "http://[::1/x.jpg",
            "file URL": "file:///etc/passwd",
            "loopback source": "http://127.0.0.1:9/x.jpg",
            "metadata address": "http://169.254.169.254/latest/meta-data",
            "text bytes": f"s3://{bucket}/sources/notes.txt",
            "priority -1": "",
            "unknown model": "",
        }
        env = {
            **os.environ,
            "DATABASE_URL": servers.database_url,
            "REDIS_URL": servers.redis_url,
            "IMAGEOPT_DB_SCHEMA": "imageopt",
            "IMAGEOPT_REDIS_NAMESPACE": f"soak-{tag}",
            "REPLICATE_API_TOKEN": TOKEN,
            "S3_ENDPOINT": s3_proxy.address,
            "S3_ACCESS_KEY": endpoint.access_key,
            "S3_SECRET_KEY": endpoint.secret_key,
            "S3_BUCKET": bucket,
            "IMAGEOPT_ITEM_MAX_AGE_SECONDS": str(int(plan.duration * 3 + 3600)),
            "IMAGEOPT_POLL_INITIAL_DELAY_SECONDS": f"{2.0 / plan.factor:.3f}",
            "IMAGEOPT_POLL_MAX_DELAY_SECONDS": f"{3.0 / plan.factor:.3f}",
            **SOAK_ENV,
        }
        with running_stack(env, out / "logs") as stack:
            eport = free_port()
            provider_proxy = TcpProxy("127.0.0.1", eport).start()
            stack.start_emulator(
                port=eport,
                public_base_url=f"http://{provider_proxy.address}",  # outputs via the proxy too
                latency_min=REAL_LATENCY[0] / plan.factor,
                latency_max=REAL_LATENCY[1] / plan.factor,
                create_rpm=plan.rpm,
                read_rpm=int(2400 * plan.factor),
                window_seconds=WINDOW_SECONDS,
                max_workers=2,
                page_size=1000,
                huge_bytes=10_000_000,
                rng_seed=plan.seed,
            )
            root = stack.emulator_url.removesuffix("/v1")
            stack.group.env = {
                **stack.group.env,
                "REPLICATE_BASE_URL": f"http://{provider_proxy.address}/v1",
            }
            yield Run(plan, out, servers, stack, storage, root, s3_proxy, provider_proxy,
                      sources, bad_sources)  # fmt: skip
    finally:
        s3_proxy.close()
        if provider_proxy is not None:
            provider_proxy.close()
        servers.stop()
        with contextlib.suppress(Exception):
            _purge_bucket(endpoint, bucket)


def execute(plan: Plan, out: Path) -> dict[str, Any]:
    """Run ``plan``; returns the recorded figures and verdicts (see :func:`verdicts`)."""
    with soak_stack(plan, out) as run:
        for role in ("scheduler-a", "scheduler-b", "worker-create", "worker-poll", "api"):
            run.start_role(role)
        run.t0 = time.time()
        threads = [
            _thread(run.sampler, "sampler"),
            _thread(run.upstream, "upstream"),
            _thread(lambda: run.run_schedule(run.plan.chaos, run.chaos), "chaos"),
            _thread(lambda: run.run_schedule(run.plan.provider, run.provider_fault), "provider"),
        ]
        for thread in threads[1:]:
            thread.join()
        last_fault = max([f.end for f in run.faults], default=run.t0)
        deadline = max(last_fault + plan.drain, run.t0 + plan.duration)
        run.log(f"faults over; waiting for every item until +{deadline - run.t0:.0f} s")
        final = set()
        while time.time() < deadline:
            with contextlib.suppress(psycopg.Error), run.connect() as conn:
                statuses = rows.item_statuses(conn, item_ids=run.item_ids)
                final = {i for i, s in statuses.items() if s in rows.FINAL}
                if len(final) == len(run.item_ids):
                    break
            time.sleep(1.0)
        run.stop.set()
        threads[0].join(timeout=10)
        run.samples.append(run.sample())
        return verdicts(run, last_fault)


def _predictions(run: Run) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    url: str | None = f"{run.emulator_root}/v1/predictions"
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        while url:
            page = client.get(url).raise_for_status().json()
            found += page["results"]
            url = page.get("next")
            if url:  # absolute URLs on the proxy's address: ask the emulator directly
                url = run.emulator_root + "/v1/" + url.split("/v1/", 1)[1]
    return found


_ITEM_IN_KEY = re.compile(r"/(\d+)\.\w+$")
_ITEM_IN_INPUT = re.compile(r"/inputs/[^/]+/\d+/(\d+)\.\w+")


def verdicts(run: Run, last_fault: float) -> dict[str, Any]:
    """Every verdict of the run (module docstring); ``ok`` False on any missed."""
    plan = run.plan
    with run.connect() as conn:
        found = {
            int(r[0]): r
            for r in conn.execute(
                "SELECT id, status, error_code, store_id, output_key, "
                "extract(epoch FROM created_at), extract(epoch FROM completed_at), "
                "extract(epoch FROM submitted_at) FROM image_optimization_items"
            )
        }
    results: Counter[int] = Counter()
    for key in run.storage.list_keys("results/"):
        match = _ITEM_IN_KEY.search(key)
        if match:
            results[int(match.group(1))] += 1
    lost = [i for i in run.item_ids if i not in found]
    lost += [i for i, r in found.items() if r[1] == "DONE" and not results.get(i)]
    stuck = [i for i, r in found.items() if r[1] not in rows.FINAL]
    duplicated = [i for i, n in results.items() if n > 1]
    predictions = _predictions(run)
    per_item: Counter[int] = Counter()
    refetched: Counter[int] = Counter()  # failed downloads of our input: new ones on purpose
    for p in predictions:
        match = _ITEM_IN_INPUT.search(json.dumps(p.get("input")))
        if not match:
            continue
        if p.get("status") == "failed" and isinstance(
            classify_failure(p.get("error")), PredictionInputUnreachable
        ):
            refetched[int(match.group(1))] += 1
        else:
            per_item[int(match.group(1))] += 1
    extra = sum(max(0, n - 1) for n in per_item.values())
    unreachable = [i for i, r in found.items() if r[2] == PredictionInputUnreachable.code]
    crashes = sum(1 for f in run.faults if f.kind in CRASHES)
    stamps = sorted(datetime.fromisoformat(p["created_at"]).timestamp() for p in predictions)
    storms = [f for f in run.faults if f.kind == "provider:429 storm"]
    outside_429 = responses_429_outside(run.samples, storms)
    peak = max_in_window(stamps, WINDOW_SECONDS)
    util, util_span = utilization(stamps, run.samples, run.faults, plan.rate)
    submissions: dict[str, list[float]] = defaultdict(list)
    for r in found.values():
        if r[7] is not None:
            submissions[r[3]].append(float(r[7]))
    jains = fairness(submissions, run.samples, window=STORES * 10 / plan.rate)
    latencies = [float(r[6]) - float(r[5]) for r in found.values() if r[1] == "DONE" and r[6]]
    bad_wrong = [
        i for i, kind in run.bad_ids.items()
        if i in found and (found[i][1] != "FAILED" or per_item.get(i, 0))
    ]  # fmt: skip
    codes = Counter(str(r[2]) for r in found.values() if r[1] == "FAILED")
    rss = {kind: rss_steps(run.samples, kind) for kind in KINDS}
    tracebacks = leaks = 0
    for log in sorted(run.stack.log_dir.glob("*.log")):
        text = log.read_text(errors="replace")
        tracebacks += len(_TRACEBACK.findall(text))
        leaks += text.count(TOKEN)
    checks = {
        "lost (a row never final, or DONE without its result)": (len(lost), len(lost) == 0),
        f"stuck ({plan.drain:.0f} s after the last fault)": (len(stuck), not stuck),
        "duplicated results (objects per item > 1)": (len(duplicated), not duplicated),
        "extra predictions / crashes (<= 1)": (
            f"{extra} / {crashes}",
            extra <= max(crashes, 0) and all(n <= 1 + crashes for n in per_item.values()),
        ),
        "provider 429s outside the storms (0)": (outside_429, outside_429 == 0),
        f"most creations in any {WINDOW_SECONDS:.0f} s, provider's clock (<= {plan.rpm})": (
            peak,
            peak <= plan.rpm,
        ),
        f"utilization between faults, backlogged (>= {LIMITS['utilization']:.0%})": (
            utilization_verdict(util, util_span)
        ),
        f"Jain's index while backlogged, mean (>= {LIMITS['jain_mean']})": (
            f"{sum(jains) / len(jains):.3f} (min {min(jains):.3f}, {len(jains)} windows)"
            if jains
            else "n/a (no window)",
            not jains or sum(jains) / len(jains) >= LIMITS["jain_mean"],
        ),
        "bad rows not FAILED or with a prediction": (len(bad_wrong), not bad_wrong),
        "FAILED because the provider could not fetch the input (0)": (
            f"{len(unreachable)} ({sum(refetched.values())} downloads failed, "
            f"{len(refetched)} items given a new prediction)",
            not unreachable,
        ),
        "processes that exited on their own": (len(run.unplanned), not run.unplanned),
        "injections that failed": (len(run.errors), not run.errors),
        "token in any process output": (leaks, leaks == 0),
    }
    for kind, steps in rss.items():
        checks[f"RSS {kind}, MiB at 10 % steps (flat)"] = (
            " ".join(f"{v:.0f}" for v in steps),
            rss_flat(steps),
        )
    return {
        "plan": {k: v for k, v in asdict(plan).items() if k != "waves"},
        "waves": len(plan.waves),
        "items": len(run.item_ids),
        "bad_rows": len(run.bad_ids),
        "done": sum(1 for r in found.values() if r[1] == "DONE"),
        "failed_by_code": dict(codes),
        "predictions": len(predictions),
        "input_download_failures": sum(refetched.values()),
        "crashes": crashes,
        "faults": [asdict(f) for f in run.faults],
        "fault_counts": dict(Counter(f.kind for f in run.faults)),
        "p50_insert_to_done": percentile(latencies, 0.5),
        "p99_insert_to_done": percentile(latencies, 0.99),
        "tracebacks": tracebacks,
        "t0": run.t0,
        "last_fault": last_fault - run.t0,
        "checks": {name: [str(v), ok] for name, (v, ok) in checks.items()},
        "rss_by_process": rss_steps_by_process(run.samples),
        "ok": all(ok for _, ok in checks.values()),
        "samples": [asdict(s) for s in run.samples],
        "creations": stamps,
        "rate": plan.rate,
        "rpm": plan.rpm,
        "logs": str(run.stack.log_dir),
        "lost_ids": lost[:50],
        "stuck_ids": stuck[:50],
    }


def print_report(report: dict[str, Any]) -> None:
    plan = report["plan"]
    print(
        f"\nsoak: {plan['minutes']} min, seed {plan['seed']}, budget {report['rpm']}/min "
        f"(x{plan['factor']}), {report['items']} items in {report['waves']} waves "
        f"({report['bad_rows']} bad rows), {report['predictions']} predictions"
    )
    print(f"faults: {report['fault_counts']} (crashes that may cost a prediction: "
          f"{report['crashes']}); last at +{report['last_fault']:.0f} s")  # fmt: skip
    print(f"DONE {report['done']}, FAILED by code {report['failed_by_code']}")
    print(
        f"insert -> DONE p50 {report['p50_insert_to_done']:.1f} s, "
        f"p99 {report['p99_insert_to_done']:.1f} s; tracebacks in the logs: {report['tracebacks']}"
    )
    print("RSS per process, MiB at 10 % steps (0: not running):")
    for name, steps in report["rss_by_process"].items():
        print(f"  {name}: " + " ".join(f"{v:.0f}" for v in steps))
    print("\n| verdict | value | ok |\n| --- | --- | --- |")
    for name, (value, ok) in report["checks"].items():
        print(f"| {name} | {value} | {'yes' if ok else '**NO**'} |")
    print(f"\n{'ALL VERDICTS MET' if report['ok'] else 'VERDICT MISSED'}; logs: {report['logs']}")


def print_plan(plan: Plan) -> None:
    print(f"seed {plan.seed}: replay with --minutes {plan.minutes:g} --seed {plan.seed} "
          f"--factor {plan.factor:g}")  # fmt: skip
    print("chaos: " + ", ".join(f"+{at:g}s {kind} ({hold:g}s)" for at, kind, hold in plan.chaos))
    print("provider: " + ", ".join(f"+{at:g}s {k} ({h:g}s)" for at, k, h in plan.provider))
    print(
        "waves: "
        + ", ".join(f"+{at:g}s {sum(s.values())} items/{len(s)} stores" for at, s in plan.waves)
    )
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0, help="0: a random one (printed)")
    parser.add_argument("--factor", type=float, default=1.0, help="budget 450 x factor / min")
    parser.add_argument("--bad-share", type=float, default=0.03)
    parser.add_argument(
        "--drain", type=float, default=None,
        help="seconds after the last fault until an item not final counts as stuck "
        "(default: 120 s, or 30 %% of the run if longer)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="default .run/soak-<seed>")
    args = parser.parse_args(argv)
    seed = args.seed or random.SystemRandom().randrange(1, 2**31)
    drain = args.drain or max(120.0, 0.3 * args.minutes * 60)
    plan = make_plan(args.minutes, seed, args.factor, args.bad_share, drain)
    out = (args.out or REPO / ".run" / f"soak-{seed}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    print_plan(plan)
    report = execute(plan, out)
    (out / "soak.json").write_text(json.dumps(report, indent=1, default=str))
    print_report(report)
    try:
        from bench.soak_plot import draw

        draw(report, out / "soak.png")
        print(f"picture: {out / 'soak.png'}")
    except ImportError as exc:  # matplotlib is a dev dependency
        print(f"no picture: {exc}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
