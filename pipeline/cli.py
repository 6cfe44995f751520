"""``imageopt``: the one command line of the pipeline (typer). ``imageopt COMMAND --help``.

Exit codes: 0 success, 1 the work did not finish as asked (e.g. items left unfinished),
2 bad usage or bad input (typer's own, and ours for unreadable input).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.config import Settings
from pipeline.errors import PipelineError

app = typer.Typer(
    help="imageopt: rows in Postgres become AI-optimized images in object storage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


def _settings() -> Settings:
    return Settings()


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command()
def migrate() -> None:
    """Create the schema (IMAGEOPT_DB_SCHEMA) and apply pending migrations."""
    from pipeline.migrate import migrate as run_migrations

    settings = _settings()
    applied = run_migrations(settings.database_url, settings.db_schema)
    typer.echo(f"schema {settings.db_schema}: {len(applied)} migration(s) applied")


@app.command()
def scheduler() -> None:
    """Run a scheduler (leader or standby; start as many as you like)."""
    from scheduler.main import run

    run(_settings())


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="create, poll, or create,poll")] = "create,poll",
    processes: Annotated[int | None, typer.Option(help="worker processes (IMAGEOPT_WORKER_PROCESSES)")] = None,
    threads: Annotated[int | None, typer.Option(help="threads per process (IMAGEOPT_WORKER_THREADS)")] = None,
) -> None:
    """Run dramatiq worker processes for the creation and/or polling queues."""
    from pipeline.taskqueue import CREATE_QUEUE, POLL_QUEUE

    names = {"create": CREATE_QUEUE, "poll": POLL_QUEUE}
    chosen = [q.strip() for q in queues.split(",") if q.strip()]
    if not chosen or any(q not in names for q in chosen):
        raise _fail(f"--queues must name create and/or poll, got {queues!r}")
    settings = _settings()
    nproc = processes or settings.worker_processes
    nthreads = threads or settings.worker_threads
    os.environ["IMAGEOPT_WORKER_THREADS"] = str(nthreads)
    argv = [sys.executable, "-m", "dramatiq", "workers.actors", "--processes", str(nproc),
            "--threads", str(nthreads), "--queues", *[names[q] for q in chosen]]
    os.execv(sys.executable, argv)  # noqa: S606 - replace this process with dramatiq's CLI


@app.command()
def emulator(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8088,
    latency_min: Annotated[float, typer.Option(help="seconds")] = 0.5,
    latency_max: Annotated[float, typer.Option(help="seconds")] = 2.0,
    failure_rate: Annotated[float, typer.Option(help="fraction of predictions that fail")] = 0.0,
    create_rpm: Annotated[int, typer.Option(help="its own create limit, requests/min")] = 600,
    read_rpm: Annotated[int, typer.Option(help="its own read limit, requests/min")] = 3000,
    window_seconds: Annotated[float, typer.Option(help="its rate-limit window, seconds")] = 60.0,
) -> None:
    """Run the Replicate-compatible emulator (a classical, non-AI stand-in) over HTTP."""
    from emulator.config import EmulatorConfig
    from emulator.server import serve
    from pipeline.wiring import setup_logging

    settings = _settings()
    setup_logging(settings)
    token = settings.replicate_api_token.get_secret_value() or None
    config = EmulatorConfig(
        latency_min=latency_min, latency_max=latency_max, failure_rate=failure_rate,
        create_rpm=create_rpm, read_rpm=read_rpm, window_seconds=window_seconds, token=token,
    )
    serve(host, port, config)


def _parse_params(values: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise _fail(f"--param must be key=value, got {value!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def _items_from_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "source_url" not in reader.fieldnames:
            raise _fail(f"{path}: CSV needs a source_url column")
        items: list[dict[str, Any]] = []
        for line, row in enumerate(reader, start=2):
            item: dict[str, Any] = {"source_url": (row.get("source_url") or "").strip()}
            for key in ("prompt", "model"):
                if row.get(key):
                    item[key] = row[key]
            try:
                if row.get("priority"):
                    item["priority"] = int(row["priority"])
                if row.get("params"):
                    item["params"] = json.loads(row["params"])
            except (ValueError, json.JSONDecodeError) as exc:
                raise _fail(f"{path}:{line}: {exc}") from exc
            items.append(item)
    return items


def _items_from_folder(path: Path, store: str, settings: Settings) -> list[dict[str, Any]]:
    """Upload each file to object storage and use its ``s3://`` URL as the source."""
    from pipeline.storage import ObjectStorage

    storage = ObjectStorage.from_settings(settings)
    storage.ensure_bucket()
    batch = uuid.uuid4().hex[:12]
    items = []
    for file in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
        key = f"uploads/{_safe(store)}/{batch}/{_safe(file.name)}"
        content_type = CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream")
        storage.put_bytes(key, file.read_bytes(), content_type)
        items.append({"source_url": f"s3://{settings.s3_bucket}/{key}"})
    return items


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "_"


@app.command()
def submit(
    path: Annotated[Path, typer.Argument(help="a folder of images, or a CSV with a source_url column")],
    store: Annotated[str, typer.Option(help="the store the job belongs to")],
    model: Annotated[str | None, typer.Option(help="owner/name (default REPLICATE_IMAGE_MODEL)")] = None,
    prompt: Annotated[str | None, typer.Option(help="prompt for every item")] = None,
    preset: Annotated[str | None, typer.Option(help="output preset name")] = None,
    param: Annotated[list[str] | None, typer.Option(help="model parameter key=value (JSON value), repeatable")] = None,
    priority: Annotated[int, typer.Option(help="item priority (higher first)")] = 0,
) -> None:
    """Insert a job (one item per image or CSV row) and print its id."""
    from pipeline.db import create_pool
    from pipeline.repository import Repository

    settings = _settings()
    if not store.strip():
        raise _fail("--store must not be empty")
    if not path.exists():
        raise _fail(f"{path} does not exist")
    if path.is_dir():
        items = _items_from_folder(path, store, settings)
    else:
        items = _items_from_csv(path)
    if not items:
        raise _fail(f"{path}: no images or rows found")
    for item in items:
        item.setdefault("priority", priority)
    pool = create_pool(settings.database_url, settings.db_schema, max_size=1, name="cli")
    try:
        job_id = Repository(pool).insert_job(
            store_id=store, model=model or settings.replicate_image_model, prompt=prompt,
            params=_parse_params(param or []), preset=preset, items=items,
        )
    finally:
        pool.close()
    typer.echo(job_id)


@app.command()
def status(
    job: Annotated[int | None, typer.Option(help="only this job")] = None,
    store: Annotated[str | None, typer.Option(help="only this store")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Item counts by status, per store and per job (the seeds' distribution query)."""
    from pipeline.db import create_pool
    from pipeline.reporting import status_report
    from pipeline.repository import Repository

    settings = _settings()
    pool = create_pool(settings.database_url, settings.db_schema, max_size=1, name="cli")
    try:
        report = status_report(Repository(pool), job_id=job, store_id=store)
    finally:
        pool.close()
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    typer.echo("status      " + "  ".join(f"{k}={v}" for k, v in report["items"].items()))
    for store_id, counts in report["stores"].items():
        typer.echo(f"store {store_id:<20} " + "  ".join(f"{k}={v}" for k, v in counts.items() if v))
    for job_id, counts in report["jobs"].items():
        typer.echo(f"job   {job_id:<20} " + "  ".join(f"{k}={v}" for k, v in counts.items() if v))
    for store_id, codes in report["errors"].items():
        typer.echo(f"errors {store_id:<19} " + "  ".join(f"{k}={v}" for k, v in codes.items()))


@app.command()
def retry(
    job: Annotated[int | None, typer.Option(help="only this job")] = None,
    error_code: Annotated[str | None, typer.Option(help="only items FAILED with this code")] = None,
) -> None:
    """Send FAILED items (dead letters) back to PENDING; prints how many."""
    from pipeline.db import create_pool
    from pipeline.repository import Repository

    settings = _settings()
    pool = create_pool(settings.database_url, settings.db_schema, max_size=1, name="cli")
    try:
        ids = Repository(pool).retry_failed(job, error_code)
    finally:
        pool.close()
    typer.echo(f"{len(ids)} item(s) back to PENDING")


@app.command()
def cancel(job: Annotated[int, typer.Argument(help="job id")]) -> None:
    """Cancel a job's unfinished items (running predictions are canceled at the provider)."""
    from pipeline.db import create_pool
    from pipeline.repository import Repository
    from pipeline.wiring import provider_client

    settings = _settings()
    pool = create_pool(settings.database_url, settings.db_schema, max_size=1, name="cli")
    provider = provider_client(settings)
    try:
        rows = Repository(pool).cancel_job(job)
        for row in rows:
            if row["prediction_id"]:
                try:
                    provider.cancel_prediction(str(row["prediction_id"]))
                except PipelineError as exc:
                    typer.echo(f"warning: cancel of {row['prediction_id']} failed: {exc.code}", err=True)
    finally:
        pool.close()
        provider.close()
    typer.echo(f"{len(rows)} item(s) canceled")


@app.command()
def demo(
    images: Annotated[Path, typer.Option(help="folder laid out as DIR/<store>/<images>")] = Path("../shared/data/images"),
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 600.0,
) -> None:
    """Run the whole pipeline on a folder of store folders and print a per-store summary."""
    from pipeline.demo import run_demo

    raise typer.Exit(run_demo(_settings(), images, timeout=timeout))


def main() -> None:
    """Console-script entry point."""
    app()
