"""Commands that run a process: migrate, scheduler, worker, emulator, api."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from cli.base import (
    app,
    fail,
    load_settings,
)


@app.command()
def migrate() -> None:
    """Create the schema (IMAGEOPT_DB_SCHEMA) and apply pending migrations."""
    from pipeline.migrate import migrate as run_migrations

    settings = load_settings()
    applied = run_migrations(settings.database_url, settings.db_schema)
    typer.echo(f"schema {settings.db_schema}: {len(applied)} migration(s) applied")


@app.command()
def scheduler() -> None:
    """Run a scheduler (leader or standby; start as many as you like)."""
    from scheduler.main import run

    run(load_settings())


@app.command()
def worker(
    queues: Annotated[
        str,
        typer.Option(help="create, poll (polls and webhook finishes), webhook; comma-separated"),
    ] = "create,poll",
    processes: Annotated[
        int | None, typer.Option(help="worker processes (IMAGEOPT_WORKER_PROCESSES)")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="threads per process (IMAGEOPT_WORKER_THREADS)")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="/metrics port of this group (IMAGEOPT_WORKER_METRICS_PORT)")
    ] = None,
) -> None:
    """Run dramatiq worker processes for the creation, polling and/or webhook queues."""
    from pipeline.metrics_server import worker_metrics_env
    from pipeline.taskqueue import CREATE_QUEUE, POLL_QUEUE, WEBHOOK_QUEUE

    # "poll" takes the webhook queue too: finishing with a webhook's prediction is the polling
    # service's work; "webhook" alone runs a group of its own for it.
    names = {
        "create": [CREATE_QUEUE],
        "poll": [POLL_QUEUE, WEBHOOK_QUEUE],
        "webhook": [WEBHOOK_QUEUE],
    }
    chosen = [q.strip() for q in queues.split(",") if q.strip()]
    if not chosen or any(q not in names for q in chosen):
        raise fail(f"--queues must name create, poll and/or webhook, got {queues!r}")
    dramatiq_queues = list(dict.fromkeys(name for q in chosen for name in names[q]))
    settings = load_settings()
    nproc = processes or settings.worker_processes
    nthreads = threads or settings.worker_threads
    os.environ["IMAGEOPT_WORKER_THREADS"] = str(nthreads)
    # dramatiq reads its worker timeout (an idle consumer's longest pause) from this variable;
    # the latency-path queues get their shorter pause from the broker (workers/actors.py)
    timeout_var = "dramatiq_worker_timeout"  # dramatiq's own lower-case name (dramatiq/worker.py)
    os.environ[timeout_var] = str(settings.worker_idle_fetch_wait_ms)
    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    os.environ.update(worker_metrics_env(settings, port))  # multiprocess metrics, before dramatiq
    argv = [
        sys.executable,
        "-m",
        "workers.launch",  # dramatiq's CLI, its main process logging as ours do
        "workers.actors",
        "--processes",
        str(nproc),
        "--threads",
        str(nthreads),
        "--queues",
        *dramatiq_queues,
    ]
    os.execv(sys.executable, argv)  # noqa: S606 - become dramatiq's CLI


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
    from pipeline.logging import setup_logging

    settings = load_settings()
    setup_logging(settings, process="emulator")
    token = settings.replicate_api_token.get_secret_value() or None
    config = EmulatorConfig(
        latency_min=latency_min,
        latency_max=latency_max,
        failure_rate=failure_rate,
        create_rpm=create_rpm,
        read_rpm=read_rpm,
        window_seconds=window_seconds,
        token=token,
    )
    serve(host, port, config)


@app.command("api")
def api_command(
    host: Annotated[str | None, typer.Option(help="bind address (IMAGEOPT_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (IMAGEOPT_API_PORT)")] = None,
) -> None:
    """Run the HTTP API and web console (default http://127.0.0.1:8080/)."""
    from api import serve
    from pipeline.logging import setup_logging

    settings = load_settings()
    setup_logging(settings, process="api")
    serve(settings, host or settings.api_host, port or settings.api_port)
