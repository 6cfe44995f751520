"""How long a message waits in an idle dramatiq queue before a worker starts it, by
``IMAGEOPT_WORKER_FETCH_WAIT_MS`` (dramatiq's worker timeout).

dramatiq's Redis consumer that finds its queue empty (or its prefetch full) sleeps before it
looks again, doubling from 5 ms up to the worker timeout (``dramatiq/brokers/redis.py``,
``RedisConsumer.__next__``; ``dramatiq.common.compute_backoff``). At a trickle of messages,
such as the webhook queue between bursts, each message then waits for the consumer's next look:
up to the timeout, 1 s by dramatiq's default. This sends ``--rate`` messages per second for
``--seconds`` to one worker process (8 threads) per setting, on the shared Redis, and prints
the send -> start wait (one host clock).

    .venv/bin/python -m bench.bench_consumer_wait --waits 1000,100 --rate 10 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid

import dramatiq
import redis

from bench._harness import REDIS_URL, ProcSampler
from pipeline.taskqueue import build_broker

LATENCY_QUEUE = "bench-latency"  # as in bench/_latency_actor.py (not imported: it needs the env)
LATENCY_ACTOR = "bench_latency"
IDLE_SECONDS = 10.0


def measure(wait_ms: int, rate: float, seconds: float) -> tuple[list[float], float]:
    """Waits, seconds, of ``rate x seconds`` messages sent evenly to a worker whose dramatiq
    worker timeout is ``wait_ms``; and the worker's CPU while idle, ms per second (10 s)."""
    namespace = f"bench-wait-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "REDIS_URL": REDIS_URL,
        "IMAGEOPT_REDIS_NAMESPACE": namespace,
        "dramatiq_worker_timeout": str(wait_ms),
    }
    command = [sys.executable, "-m", "dramatiq", "bench._latency_actor", "--processes", "1",
               "--threads", "8", "--queues", LATENCY_QUEUE]  # fmt: skip
    worker = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    broker = build_broker(REDIS_URL, namespace)
    broker.declare_queue(LATENCY_QUEUE)
    client = redis.Redis.from_url(REDIS_URL)
    key = f"{namespace}:bench:waits"
    total = int(rate * seconds)
    try:
        time.sleep(5.0)  # the worker boots and goes idle
        sampler = ProcSampler({"worker": worker.pid})
        sampler.baseline()
        time.sleep(IDLE_SECONDS)
        sampler.sample()
        idle_ms = 1000 * sampler.stats["worker"].cpu_seconds / IDLE_SECONDS
        start = time.monotonic()
        for i in range(total):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            broker.enqueue(
                dramatiq.Message(queue_name=LATENCY_QUEUE, actor_name=LATENCY_ACTOR,
                                 args=(time.time(),), kwargs={}, options={})
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while int(client.llen(key)) < total and time.monotonic() < deadline:  # type: ignore[arg-type]
            time.sleep(0.1)
        return [float(v) for v in client.lrange(key, 0, -1)], idle_ms  # type: ignore[union-attr]
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        for found in client.scan_iter(match=f"{namespace}*", count=1000):
            client.delete(found)
        client.close()
        broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", default="1000,100", help="worker timeouts to compare, ms")
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(f"{args.rate:g} messages/s for {args.seconds:g} s, 1 worker process x 8 threads")
    print("| worker timeout (ms) | messages | wait p50 (ms) | wait p90 (ms) | wait p99 (ms) "
          "| idle worker CPU (ms/s) |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for wait_ms in (int(w) for w in args.waits.split(",")):
        found, idle_ms = measure(wait_ms, args.rate, args.seconds)
        waits = sorted(found)
        if len(waits) < 2:
            print(f"| {wait_ms} | {len(waits)} | | | | {idle_ms:.1f} |")
            continue
        cut = statistics.quantiles(waits, n=100, method="inclusive")
        print(f"| {wait_ms} | {len(waits)} | {1000 * cut[49]:.0f} | {1000 * cut[89]:.0f} | "
              f"{1000 * cut[98]:.0f} | {idle_ms:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
