"""CPU of one request at each edge of an item's path, client and server apart.

The capacity benchmark (``bench_e2e capacity``) gives the CPU per item of each process kind;
this one gives the cost of each *request* an item makes, one edge at a time, so that the item's
cost can be rebuilt from its request mix and the floor of the design read off: what the servers
(S3, the provider, Postgres, Redis) take per item whatever our code does.

    .venv/bin/python -m bench.bench_requests --requests 2000 --threads 8

Each operation runs ``--requests`` times from this one process on ``--threads`` threads (the
workers' default, so the servers see concurrent requests as in the capacity run), against
a run of its own (:func:`bench._harness.pipeline_stack`: database, schema, Redis namespace,
bucket; the emulator in a process of its own at zero latency). *Client* CPU is this process's
``time.process_time()``; *server* CPU is ``utime + stime`` from ``/proc`` of the server's
processes (SeaweedFS' four ``weed`` processes, the emulator, the run's Postgres backends, the
Redis server), so run it on a quiet host: the shared servers' CPU counts whoever uses them.

Operations (the source is one 96 px JPEG of ``../shared/data/images``, as in the capacity run):
S3 ``put_bytes`` and ``get_bytes`` (minio); the provider's create (the emulator fetches the
input from S3 through its presigned URL, so the S3 server's share is shown too), ``GET`` of a
prediction and the output download (httpx), and the same ``GET`` with urllib3 for comparison;
one Postgres read (``Repository.get_work_item``) and one write (``record_input``, a commit),
autocommit on pooled connections, as the workers use them; one read
token from the Redis rate limiter (one Lua call). The broker's cost per message is the no-op
actor of ``bench_e2e capacity``.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis
import urllib3

from bench._harness import (
    MODEL,
    REDIS_URL,
    TOKEN,
    UNLIMITED_EMULATOR,
    Stack,
    _cpu_seconds,
    make_thumbnails,
    pipeline_stack,
    shared_server_pids,
)
from pipeline.allowlist import build_allowlist, get_model
from pipeline.db import create_pool
from pipeline.provider import ProviderClient
from pipeline.ratelimit import Budget, RateLimiter
from pipeline.repository import Repository

# Requests per item in the capacity run (docs/BENCHMARKS.md, session 5/6: 5.0-5.2
# transactions, 1.02-1.09 GETs per item); the creates' S3 GET by the provider is inside
# "provider create".
ITEM_MIX: dict[str, float] = {
    "s3 put": 2,  # the normalized input, the result
    "s3 get": 1,  # the source
    "provider create": 1,
    "provider get": 1.05,
    "provider download": 1,
    "postgres write": 4,  # claim, record_input, mark_processing, mark_done
    "postgres read": 1.1,  # the poll's row, and the scheduler's share
    "redis limiter token": 2,  # one create token, one read token
}


@dataclass(frozen=True)
class Cost:
    """Per-request CPU of one operation, milliseconds; ``servers`` by server name."""

    name: str
    client_ms: float
    servers: dict[str, float]
    wall_ms: float


def _cpu(pids: Sequence[int]) -> float:
    return sum(_cpu_seconds(pid) or 0.0 for pid in pids)


def measure(
    name: str,
    op: Callable[[int], object],
    n: int,
    servers: dict[str, Callable[[], list[int]]],
    threads: int = 1,
) -> Cost:
    """Run ``op(i)`` for i in 0..n-1 on ``threads`` threads; the client's and each server's
    CPU per call, and the wall time per call (all threads together)."""
    pids = {server: lister() for server, lister in servers.items()}
    before = {server: _cpu(p) for server, p in pids.items()}
    c0, w0 = time.process_time(), time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(op, range(n)):
            pass
    c1, w1 = time.process_time(), time.monotonic()
    time.sleep(0.2)  # let the servers' last accounting tick land
    used = {server: 1000 * (_cpu(p) - before[server]) / n for server, p in pids.items()}
    return Cost(name, 1000 * (c1 - c0) / n, used, 1000 * (w1 - w0) / n)


def run(stack: Stack, n: int, threads: int) -> list[Cost]:
    """Measure every operation of the module docstring against ``stack``, ``n`` calls each on
    ``threads`` threads."""
    m = functools.partial(measure, threads=threads)
    shared = shared_server_pids()
    s3 = {"s3": shared["s3 server (shared)"]}
    emulator_pid = stack.group.procs["emulator"].pid
    provider_servers = {"emulator": lambda: [emulator_pid], **s3}
    _, data = make_thumbnails(96, limit=1)[0]
    storage = stack.storage
    costs = [
        m("s3 put", lambda i: storage.put_bytes(f"b/{i}", data, "image/jpeg"), n, s3),
        m("s3 get", lambda i: storage.get_bytes(f"b/{i}", max_bytes=1 << 20), n, s3),
    ]
    spec = get_model(MODEL, build_allowlist())
    source_url = storage.presigned_get_url("b/0")
    ids: list[str] = []
    with ProviderClient(stack.emulator_url, TOKEN) as provider:

        def create(_: int) -> None:
            payload = spec.build_input(source_url, None, {"scale": 1})
            ids.append(provider.create_prediction(spec, payload).id)

        costs.append(m("provider create", create, n, provider_servers))
        time.sleep(1.0)  # every prediction has succeeded (zero latency)
        done = [provider.get_prediction(pid) for pid in ids[:n]]
        outputs = [p.output_urls[0] for p in done]
        costs.append(
            m("provider get", lambda i: provider.get_prediction(ids[i]), n, provider_servers)
        )
        costs.append(
            m(
                "provider download",
                lambda i: provider.download(outputs[i], max_bytes=1 << 24),
                n,
                provider_servers,
            )
        )
    host, port = stack.emulator_url.split("//", 1)[1].split("/", 1)[0].split(":")
    http = urllib3.HTTPConnectionPool(host, int(port), maxsize=threads)
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    costs.append(
        m(
            "provider get (urllib3)",
            lambda i: json.loads(
                http.request("GET", f"/v1/predictions/{ids[i]}", headers=headers).data
            ),
            n,
            provider_servers,
        )
    )
    http.close()
    stack.sources.append(f"s3://{storage.bucket}/b/0")
    stack.insert({"store-a": n})
    with stack.connect() as conn:  # QUEUED, as the scheduler leaves them for the workers
        rows = conn.execute(
            "UPDATE image_optimization_items SET status = 'QUEUED' RETURNING id"
        ).fetchall()
    items = [int(r[0]) for r in rows]
    pool = create_pool(
        stack.database_url, stack.schema, min_size=threads, max_size=threads, name="bench"
    )
    repo = Repository(pool)
    postgres = {"postgres": stack.backend_pids}
    costs.append(m("postgres read", lambda i: repo.get_work_item(items[i]), n, postgres))
    costs.append(
        m("postgres write", lambda i: repo.record_input(items[i], f"inputs/{i}.jpg"), n, postgres)
    )
    pool.close()
    client = redis.Redis.from_url(REDIS_URL)
    limiter = RateLimiter(client, Budget("read", 600_000, 1.0), namespace=stack.namespace)
    costs.append(
        m(
            "redis limiter token",
            lambda i: limiter.acquire(5.0),
            n,
            {"redis": shared["redis-server (shared)"]},
        )
    )
    client.close()
    return costs


def per_item(costs: Sequence[Cost], mix: Mapping[str, float]) -> tuple[float, dict[str, float]]:
    """An item's CPU from its request mix: (client ms, ms per server), each the sum over
    ``mix`` of requests per item x the operation's cost per request.

    Raises:
        KeyError: an operation of ``mix`` was not measured.
    """
    by_name = {c.name: c for c in costs}
    servers = sorted({s for c in costs for s in c.servers})
    client = sum(by_name[op].client_ms * n for op, n in mix.items())
    per_server = {
        s: sum(by_name[op].servers.get(s, 0.0) * n for op, n in mix.items()) for s in servers
    }
    return client, per_server


def report(costs: Sequence[Cost]) -> list[str]:
    """The per-request table and the per-item sum over :data:`ITEM_MIX` (markdown lines)."""
    servers = sorted({s for c in costs for s in c.servers})
    head = ["operation", "client ms", *(f"{s} ms" for s in servers), "wall ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + " ---: |" * len(head)]
    lines[1] = "| --- |" + " ---: |" * (len(head) - 1)
    for c in costs:
        cells = [f"{c.client_ms:.3f}", *(f"{c.servers.get(s, 0.0):.3f}" for s in servers)]
        lines.append(f"| {c.name} | " + " | ".join(cells) + f" | {c.wall_ms:.3f} |")
    client, per_server = per_item(costs, ITEM_MIX)
    server_sum = sum(per_server.values())
    lines += [
        "",
        "per item (mix " + ", ".join(f"{k} x{v:g}" for k, v in ITEM_MIX.items()) + "):",
        f"  clients {client:.2f} ms (without the broker, Pillow, logging, metrics)",
        "  servers "
        + " + ".join(f"{s} {ms:.2f}" for s, ms in per_server.items())
        + f" = {server_sum:.2f} ms",
        "  at 200 items/s 2 cores leave 10.00 ms per item; on 2 cores the servers alone allow "
        f"{2000 / server_sum:.0f} items/s, the servers and these client calls "
        f"{2000 / (server_sum + client):.0f}",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="calls per operation")
    parser.add_argument(
        "--threads", type=int, default=8, help="client threads (the workers' default: 8)"
    )
    args = parser.parse_args()
    with pipeline_stack({}) as stack:
        stack.start_emulator(**UNLIMITED_EMULATOR)
        costs = run(stack, args.requests, args.threads)
    print("\n".join(report(costs)))


if __name__ == "__main__":
    main()
