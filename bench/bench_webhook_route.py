"""The api's cost per provider webhook: CPU of the ``imageopt api`` process per delivery.

Starts an api with webhooks on (``IMAGEOPT_WEBHOOK_URL``, ``REPLICATE_WEBHOOK_SECRET``) in a
database, namespace and bucket of the run's own (:mod:`bench._harness`), then POSTs
``--requests`` signed "prediction succeeded" webhooks, each with its own ``webhook-id`` and
item, from ``--threads`` client threads, as the emulator (and Replicate) would. Each is
verified, claimed in Redis and queued on the webhook queue (no worker takes them). Prints the
api's CPU ms per delivery (``/proc``, its whole process) and the deliveries per second.

    .venv/bin/python -m bench.bench_webhook_route --requests 3000 --threads 8
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench._harness import ProcSampler, pipeline_stack
from devstack.processes import free_port
from pipeline.webhooks import new_secret, signed_headers

OUTPUT = "http://127.0.0.1:1/files/p/output.png"


def body(item_id: int) -> bytes:
    """A final prediction as Replicate POSTs it (input and logs included, as they are sent)."""
    return json.dumps(
        {
            "id": f"p{item_id:08d}",
            "status": "succeeded",
            "output": OUTPUT,
            "error": None,
            "input": {"image": "http://127.0.0.1:1/in.png", "scale": 1},
            "logs": "succeeded\n",
            "created_at": "2026-01-01T00:00:00.000000Z",
            "completed_at": "2026-01-01T00:00:01.500000Z",
            "metrics": {"predict_time": 1.25},
        }
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    secret = new_secret()
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/webhooks/replicate"
    env = {"IMAGEOPT_WEBHOOK_URL": url, "REPLICATE_WEBHOOK_SECRET": secret}
    with pipeline_stack(env) as stack, httpx.Client(timeout=30) as client:
        proc = stack.group.start("api", "api", "--host", "127.0.0.1", "--port", str(port))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

        def post(item_id: int) -> int:
            data = body(item_id)
            headers = signed_headers(secret, f"msg_{item_id}", data)
            headers["content-type"] = "application/json"
            return client.post(f"{url}?item={item_id}", content=data, headers=headers).status_code

        post(10**9)  # the first delivery builds the receiver: not counted
        sampler = ProcSampler({"api": proc.pid})
        sampler.baseline()
        started = time.monotonic()
        with ThreadPoolExecutor(args.threads) as pool:
            statuses = list(pool.map(post, range(1, args.requests + 1)))
        elapsed = time.monotonic() - started
        sampler.sample()
    accepted = statuses.count(202)
    cpu_ms = 1000 * sampler.stats["api"].cpu_seconds / args.requests
    print(
        f"{args.requests} webhooks, {args.threads} client threads: {accepted} accepted, "
        f"{args.requests / elapsed:.0f} per second, api CPU {cpu_ms:.2f} ms per webhook"
    )


if __name__ == "__main__":
    main()
