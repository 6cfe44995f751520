"""The fault-injection harness: an isolated pipeline per test, and what it measures.

A :class:`FaultStack` is one pipeline of its own: a fresh Postgres schema (on the shared server
or on a throwaway cluster), a fresh Redis namespace (on the shared server or on a private
``redis-server``), a bucket, the emulator in-process over HTTP (with a recognizable API token),
and scheduler / worker processes started as real children. Sources are real photos uploaded to
the bucket (``s3://`` URLs), so no scenario needs the SSRF allowlist.

After a run, :meth:`FaultStack.outcome` gives, per item: final status and error code,
predictions the emulator created for it (``created_by_input``), whether its result object
exists; plus every traceback and every token occurrence found in the captured output of every
process (and in the rows' error messages). Timings are scaled down: short backoffs, polls,
timeouts and rescuer thresholds (``IMAGEOPT_RESCUE_*``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from devstack import rows
from devstack.emulator import run_emulator
from devstack.processes import ProcessGroup, free_port
from devstack.rows import FINAL
from devstack.stack import Stack, running_stack
from emulator.config import EmulatorConfig
from pipeline.migrate import drop_schema, migrate
from pipeline.storage import ObjectStorage
from tests.conftest import DATABASE_URL, REDIS_URL, settings_from
from tests.faults.figures import Figures, figures_path, record
from tests.support.rows import wait_for_status, wait_until

TOKEN = "r8_FAULTSUITE_9d41c7e2b85a"
"""Recognizable provider token: it must never show up in any captured output."""
MODEL = "nightmareai/real-esrgan"
PHOTOS = (
    "store-portraits/portrait-hopper-tiny-exif6.jpg",
    "store-food/kiwi-cutout.webp",
    "store-food/coffee-cup.png",
    "store-food/cherries-cutout.png",
    "store-food/avocado-cutout.png",
    "store-food/strawberry-cutout.png",
)
REPEATS = max(1, int(os.environ.get("IMAGEOPT_FAULT_REPEATS", "1")))
"""Repetitions of each scenario (``make test`` runs 1; the figures in docs/RELIABILITY.md more)."""
SEED = int(os.environ.get("IMAGEOPT_FAULT_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)

# Time-scaled settings: every wait in the pipeline is seconds, not minutes.
FAST_ENV = {
    "IMAGEOPT_MAX_ATTEMPTS": "3",
    "IMAGEOPT_BACKOFF_BASE_SECONDS": "0.2",
    "IMAGEOPT_BACKOFF_MAX_SECONDS": "1.0",
    "IMAGEOPT_POLL_INITIAL_DELAY_SECONDS": "0.2",
    "IMAGEOPT_POLL_MAX_DELAY_SECONDS": "0.5",
    "IMAGEOPT_SCHEDULER_TICK_SECONDS": "0.2",
    "IMAGEOPT_FETCH_TIMEOUT_SECONDS": "3",
    "IMAGEOPT_PROVIDER_TIMEOUT_SECONDS": "2",
    "IMAGEOPT_RATE_LIMIT_ACQUIRE_TIMEOUT_SECONDS": "2",
    "IMAGEOPT_DEFAULT_RETRY_AFTER_SECONDS": "1",
    "IMAGEOPT_ITEM_MAX_AGE_SECONDS": "120",
    "IMAGEOPT_RESCUE_INTERVAL_SECONDS": "0.5",
    "IMAGEOPT_RESCUE_QUEUED_SECONDS": "3",
    "IMAGEOPT_RESCUE_PROCESSING_SECONDS": "3",
    "IMAGEOPT_RESCUE_SUBMITTING_SECONDS": "8",
    "IMAGEOPT_HEARTBEAT_SECONDS": "5",
    "IMAGEOPT_LOG_LEVEL": "INFO",
}
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
_INPUT_ITEM = re.compile(r"/inputs/[^/]+/\d+/(\d+)\.\w+$")


@dataclass
class Outcome:
    """What one run of a scenario left behind (see the module docstring)."""

    rows: dict[int, dict[str, Any]]
    predictions: dict[int, int]
    stuck: list[int]
    lost: list[int]
    tracebacks: list[str]
    token_leaks: list[str]
    deaths: list[str]

    def codes(self) -> dict[int, tuple[str, str | None]]:
        """``{item_id: (status, error_code)}``."""
        return {i: (r["status"], r["error_code"]) for i, r in self.rows.items()}

    def extra_predictions(self) -> int:
        """Predictions beyond one per item that has any."""
        return sum(max(0, n - 1) for n in self.predictions.values())


@dataclass
class FaultStack:
    """One isolated pipeline; see the module docstring."""

    env: dict[str, str]
    database_url: str
    schema: str
    emulator_url: str
    storage: ObjectStorage
    processes: Stack
    log_dir: Path
    sources: dict[str, str] = field(default_factory=dict)
    item_ids: list[int] = field(default_factory=list)
    killed: set[str] = field(default_factory=set)
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))
    opened: weakref.WeakSet[psycopg.Connection[Any]] = field(default_factory=weakref.WeakSet)

    # --- processes -----------------------------------------------------------------------
    @property
    def group(self) -> ProcessGroup:
        """The scheduler and worker processes (:class:`devstack.stack.Stack`'s group)."""
        return self.processes.group

    def start_scheduler(self, name: str = "scheduler", **extra_env: str) -> None:
        self.processes.start_scheduler(name, **extra_env)

    def start_workers(self, name: str, queues: str = "create,poll", threads: int = 2) -> None:
        self.processes.start_workers(name, queues=queues, processes=1, threads=threads)

    def kill(self, name: str) -> None:
        """SIGKILL ``name``'s whole process group (a crash), and remember it was on purpose."""
        self.group.kill(name)
        self.killed.add(name)
        self.group.procs.pop(name, None)

    def leader(self, names: tuple[str, ...], timeout: float = 20.0) -> str:
        """Which of the scheduler processes ``names`` leads now (from their logs)."""

        def leading() -> str | None:
            for name in names:
                log = self.log_dir / f"{name}.log"
                text = log.read_text(errors="replace") if log.exists() else ""
                acquired = text.count('"leader_acquired"')
                released = text.count('"leader_released"')
                if self.group.alive(name) and acquired > released:
                    return name
            return None

        return wait_until(leading, timeout, f"no scheduler leader among {names}", interval=0.1)

    # --- emulator ------------------------------------------------------------------------
    def emulator(self, **changes: Any) -> None:
        """Change the emulator's knobs at runtime (``POST /_emulator/config``)."""
        root = self.emulator_url.removesuffix("/v1")
        httpx.post(f"{root}/_emulator/config", json=changes, timeout=5).raise_for_status()

    def predictions(self) -> dict[int, int]:
        """Predictions created per item id (the emulator's ``created_by_input``)."""
        root = self.emulator_url.removesuffix("/v1")
        stats = httpx.get(f"{root}/_emulator/stats", timeout=5).json()
        per_item: dict[int, int] = {}
        for url, count in stats["created_by_input"].items():
            match = _INPUT_ITEM.search(url)
            if match:
                per_item[int(match.group(1))] = per_item.get(int(match.group(1)), 0) + int(count)
        return per_item

    # --- rows ----------------------------------------------------------------------------
    def connect(self) -> psycopg.Connection[Any]:
        conn = rows.connect(self.database_url, self.schema)
        self.opened.add(conn)
        return conn

    def close_connections(self) -> None:
        """Close what :meth:`connect` opened and a scenario left open: a lock holder whose test
        failed would otherwise keep the schema's drop waiting for ever."""
        for conn in list(self.opened):
            conn.close()

    def insert(
        self,
        urls: list[str],
        *,
        store: str = "store-faults",
        model: str = MODEL,
        params: dict[str, Any] | None = None,
        item_fields: list[dict[str, Any]] | None = None,
    ) -> list[int]:
        """Insert one job with one item per URL, the way docs/UPSTREAM.md says; returns ids.

        ``item_fields`` (one dict per URL) may set ``prompt``, ``model``, ``params``,
        ``priority`` and ``store_id`` per item.
        """
        fields = item_fields or [{} for _ in urls]
        items = [{"source_url": url, **extra} for url, extra in zip(urls, fields, strict=True)]
        with self.connect() as conn:
            job = rows.insert_job(
                conn, store, items, model=model,
                params=params if params is not None else {"scale": 2},
            )  # fmt: skip
        self.item_ids.extend(job.item_ids)
        return job.item_ids

    def good(self, count: int) -> list[str]:
        """``count`` source URLs of real photos (cycling through the small ones)."""
        names = list(self.sources)
        return [self.sources[names[i % len(names)]] for i in range(count)]

    def statuses(self) -> dict[int, str]:
        with self.connect() as conn:
            return rows.item_statuses(conn, item_ids=self.item_ids)

    def wait_final(self, timeout: float, ids: list[int] | None = None) -> bool:
        """Wait until every item (or ``ids``) is final; False on timeout (they are stuck)."""
        wanted = set(ids or self.item_ids)

        def final() -> bool:
            try:
                statuses = self.statuses()
            except psycopg.OperationalError:
                return False  # our own Postgres may be restarting
            return all(statuses.get(i) in FINAL for i in wanted)

        try:
            rows.wait_until(final, timeout, "", interval=0.2)
        except TimeoutError:
            return False
        return True

    def wait_started(self, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` items have reached a worker (so a fault lands mid-run)."""
        started = ("SUBMITTING", "PROCESSING", "DONE", "FAILED")
        wait_until(
            lambda: sum(s in started for s in self.statuses().values()) >= count,
            timeout,
            f"fewer than {count} items started",
        )

    def wait_status(self, status: str, count: int, timeout: float) -> list[int]:
        """Wait until at least ``count`` items are in ``status``; returns their ids."""
        reached = wait_for_status(
            self.schema, item_ids=self.item_ids, statuses=(status,), count=count,
            timeout=timeout, database_url=self.database_url,
        )  # fmt: skip
        return [i for i, s in reached.items() if s == status]

    # --- the verdict ---------------------------------------------------------------------
    def outcome(self, timeout: float) -> Outcome:
        """Wait for every item to be final (up to ``timeout`` s), stop every process, measure."""
        self.wait_final(timeout)
        deaths = [
            f"{name} exited {proc.returncode} on its own"
            for name, proc in self.group.procs.items()
            if proc.poll() is not None
        ]
        for name in list(self.group.procs):
            code = self.group.stop(name)
            if code not in (0, None, -15):
                deaths.append(f"{name} exited {code} when stopped")
        with self.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT id, status, error_code, error_message, output_key, prediction_id "
                "FROM image_optimization_items WHERE id = ANY(%s)",
                (self.item_ids,),
            )
            found = {int(r["id"]): dict(r) for r in cur.fetchall()}
        lost = [i for i in self.item_ids if i not in found]
        lost += [
            i
            for i, r in found.items()
            if r["status"] == "DONE"
            and not (r["output_key"] and self.storage.exists(r["output_key"]))
        ]
        stuck = [i for i, r in found.items() if r["status"] not in FINAL]
        tracebacks: list[str] = []
        leaks: list[str] = []
        for log in sorted(self.log_dir.glob("*.log")):
            text = log.read_text(errors="replace")
            for match in _TRACEBACK.finditer(text):
                tracebacks.append(f"{log.name}: {text[match.start() : match.start() + 1500]}")
            if TOKEN in text:
                leaks.append(log.name)
        leaks += [
            f"item {i} error_message" for i, r in found.items() if TOKEN in str(r["error_message"])
        ]
        return Outcome(found, self.predictions(), stuck, lost, tracebacks, leaks, deaths)


def assert_sound(
    stack: FaultStack,
    out: Outcome,
    *,
    scenario: str,
    crashes: int = 0,
    expected: Mapping[int, tuple[str, str | None]] | None = None,
    allowed_codes: tuple[str | None, ...] = (None,),
    command: str,
) -> None:
    """The assertions every scenario shares, after recording its figures.

    Args:
        stack: the stack that ran.
        out: its outcome.
        scenario: the name in docs/RELIABILITY.md's table.
        crashes: injected crashes (each may cost at most one extra prediction).
        expected: exact ``(status, error_code)`` per item where the scenario knows it.
        allowed_codes: error codes a FAILED item without an exact expectation may carry.
        command: the command that reproduces it.
    """
    record(
        Figures(
            scenario=scenario,
            items=len(out.rows),
            lost=len(out.lost),
            stuck=len(out.stuck),
            crashes=crashes,
            extra_predictions=out.extra_predictions(),
            unhandled=len(out.tracebacks) + len(out.deaths),
            token_leaks=len(out.token_leaks),
            command=command,
            seed=SEED,
        )
    )
    details = f"seed={SEED} logs in {stack.log_dir}"
    assert not out.stuck, f"stuck: {[(i, out.rows[i]['status']) for i in out.stuck]} {details}"
    assert not out.lost, f"lost: {out.lost} {details}"
    assert not out.deaths, f"{out.deaths} {details}"
    assert not out.tracebacks, "\n\n".join(out.tracebacks[:3])
    assert not out.token_leaks, f"token leaked into {out.token_leaks}"
    expected = expected or {}
    for item_id, row in out.rows.items():
        got = (row["status"], row["error_code"])
        if item_id in expected:
            assert got == expected[item_id], (item_id, got, row["error_message"], details)
        elif row["status"] == "FAILED":
            assert row["error_code"] in allowed_codes, (item_id, got, row["error_message"])
        else:
            assert row["status"] == "DONE", (item_id, got)
    for item_id, row in out.rows.items():
        made = out.predictions.get(item_id, 0)
        if row["status"] == "DONE":
            assert made >= 1, (item_id, "DONE without a prediction")
        assert made <= 1 + crashes, (item_id, made, crashes)
    assert out.extra_predictions() <= crashes, (out.predictions, crashes)


def assert_all_done(
    stack: FaultStack, *, scenario: str, command: str, crashes: int = 0, timeout: float = 60.0
) -> Outcome:
    """Wait up to ``timeout`` s for the outcome, :func:`assert_sound` it, require every item
    DONE, and return it (for the scenario's own checks)."""
    out = stack.outcome(timeout=timeout)
    assert_sound(stack, out, scenario=scenario, crashes=crashes, command=command)
    assert all(row["status"] == "DONE" for row in out.rows.values()), out.codes()
    return out


@pytest.fixture
def photos(images_dir: Path) -> list[Path]:
    return [images_dir / name for name in PHOTOS]


@contextlib.contextmanager
def _stack(
    tmp_path: Path,
    photos: list[Path],
    s3_settings: dict[str, str],
    *,
    database_url: str,
    redis_url: str,
    extra_env: dict[str, str] | None = None,
    emulator: EmulatorConfig | None = None,
) -> Iterator[FaultStack]:
    schema = f"f_{uuid.uuid4().hex[:12]}"
    namespace = f"f-{uuid.uuid4().hex[:12]}"
    migrate(database_url, schema)
    config = emulator or EmulatorConfig(latency_min=0.05, latency_max=0.3, rng_seed=SEED)
    config = dataclasses.replace(config, token=TOKEN)
    try:
        with run_emulator(config) as url:
            env = {
                **os.environ,
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "IMAGEOPT_DB_SCHEMA": schema,
                "IMAGEOPT_REDIS_NAMESPACE": namespace,
                "IMAGEOPT_SOURCE_ALLOWLIST": "",
                "REPLICATE_BASE_URL": url,
                "REPLICATE_API_TOKEN": TOKEN,
                **s3_settings,
                **FAST_ENV,
                **(extra_env or {}),
            }
            storage = ObjectStorage.from_settings(settings_from(env))
            sources = {}
            for path in photos:
                key = f"sources/{namespace}/{path.name}"
                storage.put_bytes(key, path.read_bytes(), "application/octet-stream")
                sources[path.name] = f"s3://{storage.bucket}/{key}"
            log_dir = figures_path().parent / "logs" / schema  # kept for post-mortems
            with running_stack(env, log_dir) as processes:
                stack = FaultStack(env, database_url, schema, url, storage, processes, log_dir,
                                   sources)  # fmt: skip
                try:
                    yield stack
                finally:
                    stack.close_connections()
    finally:
        with contextlib.suppress(psycopg.Error):
            drop_schema(database_url, schema)
        _clean_redis(redis_url, namespace)


def _clean_redis(url: str, namespace: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        for pattern in (f"{namespace}:*", f"{namespace}-dramatiq*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
    except redis.RedisError:
        pass  # a private server may be gone already
    finally:
        client.close()


@pytest.fixture
def make_stack(tmp_path: Path, photos: list[Path], s3_settings: dict[str, str]) -> Iterator[Any]:
    """A factory of :class:`FaultStack` (one per call, all torn down after the test)."""
    with contextlib.ExitStack() as exits:

        def make(
            *,
            database_url: str = DATABASE_URL,
            redis_url: str = REDIS_URL,
            extra_env: dict[str, str] | None = None,
            emulator: EmulatorConfig | None = None,
        ) -> FaultStack:
            return exits.enter_context(
                _stack(
                    tmp_path / uuid.uuid4().hex[:6],
                    photos,
                    s3_settings,
                    database_url=database_url,
                    redis_url=redis_url,
                    extra_env=extra_env,
                    emulator=emulator,
                )
            )

        yield make


# --- private servers (never the shared Redis or Postgres) ---------------------------------
@dataclass
class PrivateRedis:
    """A ``redis-server`` of this test's own, that may be restarted (losing everything)."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server not on PATH")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return
            time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(free_port(), tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@dataclass
class PrivatePostgres:
    """A throwaway Postgres cluster of this test's own (``initdb`` + ``pg_ctl``).

    As root, the binaries run as the ``postgres`` user (initdb refuses root).
    """

    bindir: Path
    datadir: Path
    port: int
    run_as: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, binary: str, *args: str) -> None:
        subprocess.run(
            [*self.run_as, str(self.bindir / binary), *args], check=True, capture_output=True
        )

    def _ctl(self, *args: str) -> None:
        log = str(self.datadir.parent / "pg.log")
        self._run("pg_ctl", "-D", str(self.datadir), "-w", "-t", "30", "-l", log, *args)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "--no-sync")

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.datadir} -c fsync=off"
        self._ctl("-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        pytest.skip("no Postgres server binaries under /usr/lib/postgresql")
    base = Path(tempfile.mkdtemp(prefix="imageopt-faults-pg-"))
    run_as: tuple[str, ...] = ()
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = ("runuser", "-u", "postgres", "--")
    server = PrivatePostgres(bins[-1].parent, base / "pgdata", free_port(), run_as)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
