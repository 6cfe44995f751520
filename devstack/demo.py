"""``imageopt demo``: the main job on real images, end to end, with progress and a summary.

Starts the emulator, a scheduler and creation/polling workers as separate processes (as in
production), resets the demo's own schema, Redis namespace and bucket (never anything else:
:mod:`devstack.targets`), submits one job per store folder, waits until every item is
DONE or FAILED, prints a per-store summary and where the results are, and stops every process
it started. Exit 0 when every item finished (DONE or FAILED), 1 when any item was left
unfinished, 2 for a bad images folder or a target that is not the demo's.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.processes import free_port
from devstack.stack import Stack, running_stack
from devstack.targets import DemoTargets, claim_targets, resolve_targets
from pipeline.config import Settings
from pipeline.db import create_pool
from pipeline.repository import Repository
from pipeline.statuses import ItemStatus
from pipeline.storage import ObjectStorage


@dataclass(frozen=True)
class StorePlan:
    """Which model (and prompt/params) a store folder gets in the demo."""

    model: str
    prompt: str | None = None
    params: dict[str, Any] | None = None


# More than one model, as the seeds use them: upscaler for products, face restorer for
# portraits, the prompt-edit model and SDXL img2img with prompts.
PLANS: dict[str, StorePlan] = {
    "portraits": StorePlan("tencentarc/gfpgan", params={"scale": 2}),
    "food": StorePlan(
        "google/nano-banana",
        prompt="Place the product on a clean white background",
        params={"aspect_ratio": "1:1"},
    ),
    "garden": StorePlan(
        "stability-ai/sdxl",
        prompt="bright natural daylight, crisp detail",
        params={"num_inference_steps": 20},
    ),
}
DEFAULT_PLAN = StorePlan("nightmareai/real-esrgan", params={"scale": 2})


def plan_for(store_folder: str) -> StorePlan:
    """The demo's model choice for a store folder (by a keyword in its name)."""
    for keyword, plan in PLANS.items():
        if keyword in store_folder:
            return plan
    return DEFAULT_PLAN


def run_demo(
    base: Settings,
    images: Path,
    *,
    timeout: float = 600.0,
    targets: DemoTargets | None = None,
) -> int:
    """Run the demo on ``images/<store>/<files>``; returns the process exit code.

    Args:
        base: settings read from the environment; its schema, namespace and bucket are replaced
            by the demo's own.
        images: a folder of store folders of images.
        timeout: seconds to wait for every item to finish.
        targets: the demo's schema, namespace and bucket (default :func:`resolve_targets`).

    Raises:
        DemoTargetRefused: a target is not a demo name, or exists without the demo's mark
            (checked before anything is changed).
    """
    targets = targets or resolve_targets(base)
    stores = sorted(p for p in images.iterdir() if p.is_dir()) if images.is_dir() else []
    if not stores:
        print(f"error: {images} has no store folders (expected DIR/<store>/<images>)")
        return 2
    run_dir = Path(os.environ.get("IMAGEOPT_RUN_DIR", ".run")).resolve()
    port = free_port()
    token = base.replicate_api_token.get_secret_value() or "demo-token-not-secret"
    env = {
        **os.environ,
        "REPLICATE_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "REPLICATE_API_TOKEN": token,
        "IMAGEOPT_LOG_FORMAT": "json",
        # the children work in the demo's targets only, whatever the shell exported
        "IMAGEOPT_DB_SCHEMA": targets.schema,
        "IMAGEOPT_REDIS_NAMESPACE": targets.namespace,
        "S3_BUCKET": targets.bucket,
        "IMAGEOPT_METRICS_MULTIPROC_DIR": "",  # a per-process directory, never a shared one
    }
    settings = base.model_copy(
        update={
            "replicate_base_url": env["REPLICATE_BASE_URL"],
            "db_schema": targets.schema,
            "redis_namespace": targets.namespace,
            "s3_bucket": targets.bucket,
        }
    )
    for note in targets.notes:
        print(f"demo: {note}")
    print(
        f"demo: schema {settings.db_schema}, redis namespace {settings.redis_namespace}, "
        f"S3 {settings.s3_endpoint}/{settings.s3_bucket}, emulator :{port}"
    )
    claim_targets(settings, targets)

    pool = create_pool(settings.database_url, settings.db_schema, max_size=2, name="demo")
    repo = Repository(pool)
    try:
        with running_stack(env, run_dir / "logs" / "demo") as stack:
            log_dir = stack.log_dir
            stack.start_emulator(port=port, latency_min=0.5, latency_max=2.0)
            stack.start_scheduler()
            stack.start_workers("worker-create", queues="create", processes=1, threads=8)
            # one /metrics port per worker group (deploy/prometheus/prometheus.yml scrapes both)
            poll_metrics = settings.worker_metrics_port + 1 if settings.worker_metrics_port else 0
            stack.start_workers(
                "worker-poll", queues="poll", processes=1, threads=8, metrics_port=poll_metrics
            )
            started = time.monotonic()
            job_ids = _submit_all(repo, settings, stores)
            finished = _watch(repo, job_ids, started, timeout, stack)
            wall = time.monotonic() - started
            _summary(repo, settings, job_ids, wall, run_dir)
    finally:
        pool.close()
    if not finished:
        print("demo: some items did not finish in time; logs in", log_dir)
        return 1
    return 0


def _submit_all(repo: Repository, settings: Settings, stores: list[Path]) -> list[int]:
    storage = ObjectStorage.from_settings(settings)
    job_ids = []
    for folder in stores:
        plan = plan_for(folder.name)
        items = []
        for file in sorted(
            p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
        ):
            key = f"uploads/{folder.name}/{file.name}"
            storage.put_bytes(key, file.read_bytes(), "application/octet-stream")
            items.append({"source_url": f"s3://{settings.s3_bucket}/{key}"})
        if not items:
            continue
        job_id = repo.insert_job(
            store_id=folder.name,
            model=plan.model,
            prompt=plan.prompt,
            params=plan.params or {},
            preset=None,
            items=items,
        )
        job_ids.append(job_id)
        print(
            f"submitted job {job_id}: store {folder.name}, {len(items)} images, model {plan.model}"
        )
    return job_ids


def _watch(
    repo: Repository, job_ids: list[int], started: float, timeout: float, stack: Stack
) -> bool:
    last = ""
    while True:
        rows = repo.job_summary(job_ids)
        total = sum(int(r["total"]) for r in rows)
        done = sum(int(r["done"]) for r in rows)
        failed = sum(int(r["failed"]) for r in rows)
        canceled = sum(int(r["canceled"]) for r in rows)
        depths = repo.queue_depths()
        line = (
            f"[{time.monotonic() - started:6.1f}s] done {done}/{total}  failed {failed}  "
            + "  ".join(f"{k.lower()} {v}" for k, v in depths.items())
        )
        if line.split("]", 1)[1] != last:
            print(line, flush=True)
            last = line.split("]", 1)[1]
        if done + failed + canceled >= total:
            return True
        for death in stack.dead():
            print(f"demo: process {death}")
            return False
        if time.monotonic() - started > timeout:
            return False
        time.sleep(1.0)


def _summary(
    repo: Repository, settings: Settings, job_ids: list[int], wall: float, run_dir: Path
) -> None:
    storage = ObjectStorage.from_settings(settings)
    print()
    print(
        f"{'store':<18}{'job':>5}{'items':>7}{'done':>6}{'failed':>8}{'wall s':>9}"
        f"{'items/min':>11}  model / errors"
    )
    results: dict[str, list[dict[str, Any]]] = {}
    for row in repo.job_summary(job_ids):
        finished_at = row["last_completed_at"]
        span = (finished_at - row["created_at"]).total_seconds() if finished_at else wall
        rate = 60.0 * (int(row["done"]) + int(row["failed"])) / span if span > 0 else 0.0
        items = repo.job_items(int(row["id"]))
        codes: dict[str, int] = {}
        for item in items:
            if item["status"] == ItemStatus.FAILED:
                codes[item["error_code"]] = codes.get(item["error_code"], 0) + 1
        errors = ", ".join(f"{k}={v}" for k, v in sorted(codes.items()))
        print(
            f"{row['store_id']:<18}{row['id']:>5}{row['total']:>7}{row['done']:>6}{row['failed']:>8}"
            f"{span:>9.1f}{rate:>11.1f}  {row['model']}" + (f" / {errors}" if errors else "")
        )
        results[row["store_id"]] = [
            {
                "item_id": i["id"],
                "status": i["status"],
                "key": i["output_key"],
                "width": i["output_width"],
                "height": i["output_height"],
                "bytes": i["output_bytes"],
                "error_code": i["error_code"],
                "source_url": i["source_url"],
            }
            for i in items
        ]
    total_done = sum(
        1 for items in results.values() for i in items if i["status"] == ItemStatus.DONE
    )
    total = sum(len(items) for items in results.values())
    print(
        f"\nall stores: {total} items, {total_done} done, wall {wall:.1f} s, "
        f"{60.0 * total / wall:.1f} items/min"
    )
    print(
        f"\nresults in bucket '{settings.s3_bucket}' at {settings.s3_endpoint}, "
        "keys results/<store>/<job>/<item>.<ext>:"
    )
    for store, items in results.items():
        done = [i for i in items if i["status"] == ItemStatus.DONE]
        if done:
            sample = done[0]
            url = storage.presigned_get_url(sample["key"])
            print(
                f"  {store}: {len(done)} results, e.g. {sample['key']} "
                f"({sample['width']}x{sample['height']})"
            )
            print(f"    presigned (expires in {settings.presign_expiry_seconds} s): {url}")
    out = run_dir / "demo-results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nevery item with its key: {out}")
