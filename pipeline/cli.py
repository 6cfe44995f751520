"""``imageopt``: the one command line of the pipeline (typer). ``imageopt COMMAND --help``.

Exit codes: 0 success, 1 the work did not finish as asked (e.g. items left unfinished),
2 bad usage or bad input (typer's own, and ours for unreadable input).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline.config import Settings
from pipeline.errors import DatabaseUnavailable, PipelineError

if TYPE_CHECKING:
    from pipeline.controls import PauseState
    from pipeline.repository import Repository

app = typer.Typer(
    help="imageopt: rows in Postgres become AI-optimized images in object storage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
CLI_DATABASE_TIMEOUT_SECONDS = 5.0
"""How long a command waits for Postgres before it gives up (exit code 1), seconds."""


def _settings() -> Settings:
    return Settings()


@app.callback()
def _logging_to_stderr() -> None:
    # Log lines go to stderr (JSON, secrets redacted), so that stdout carries only a command's
    # result: `JOB=$(imageopt submit ...)` and `imageopt status --json | jq` stay parseable.
    from pydantic import ValidationError

    from pipeline.logging import configure_logging
    from pipeline.wiring import setup_logging

    try:
        setup_logging(_settings(), cache=False)  # the long-running commands cache theirs
    except ValidationError:  # the command itself reports the bad setting
        configure_logging(cache=False)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def _repository(settings: Settings) -> Iterator[Repository]:
    """A repository on a one-connection pool, closed afterwards; a database that cannot be
    reached, or a schema without this release's tables, ends the command with exit code 1 and
    a one-line error."""
    import psycopg

    from pipeline.db import create_pool
    from pipeline.repository import Repository

    try:
        pool = create_pool(
            settings.database_url,
            settings.db_schema,
            max_size=1,
            name="cli",
            open_timeout=CLI_DATABASE_TIMEOUT_SECONDS,
        )
    except psycopg.Error as exc:  # psycopg_pool.PoolTimeout is an OperationalError
        raise _fail(f"database unreachable: {type(exc).__name__}", code=1) from exc
    try:
        yield Repository(pool)
    except DatabaseUnavailable as exc:
        raise _fail(exc.message, code=1) from exc
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        raise _fail(
            f"schema {settings.db_schema} lacks this release's migrations: run `imageopt migrate`",
            code=1,
        ) from exc
    finally:
        pool.close()


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
    """Run dramatiq worker processes for the creation and/or polling queues."""
    from pipeline.metrics_server import worker_metrics_env
    from pipeline.taskqueue import CREATE_QUEUE, POLL_QUEUE

    names = {"create": CREATE_QUEUE, "poll": POLL_QUEUE}
    chosen = [q.strip() for q in queues.split(",") if q.strip()]
    if not chosen or any(q not in names for q in chosen):
        raise _fail(f"--queues must name create and/or poll, got {queues!r}")
    settings = _settings()
    nproc = processes or settings.worker_processes
    nthreads = threads or settings.worker_threads
    os.environ["IMAGEOPT_WORKER_THREADS"] = str(nthreads)
    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    os.environ.update(worker_metrics_env(settings, port))  # multiprocess metrics, before dramatiq
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "workers.actors",
        "--processes",
        str(nproc),
        "--threads",
        str(nthreads),
        "--queues",
        *[names[q] for q in chosen],
    ]
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
        latency_min=latency_min,
        latency_max=latency_max,
        failure_rate=failure_rate,
        create_rpm=create_rpm,
        read_rpm=read_rpm,
        window_seconds=window_seconds,
        token=token,
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
    from pipeline.uploads import CONTENT_TYPES, new_batch, store_upload

    storage = ObjectStorage.from_settings(settings)
    storage.ensure_bucket()
    batch = new_batch()
    items = []
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    for index, file in enumerate(files):
        content_type = CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream")
        url = store_upload(
            storage, store_id=store, batch=batch, index=index, name=file.name,
            data=file.read_bytes(), content_type=content_type,
        )  # fmt: skip
        items.append({"source_url": url})
    return items


@app.command()
def submit(
    path: Annotated[
        Path, typer.Argument(help="a folder of images, or a CSV with a source_url column")
    ],
    store: Annotated[str, typer.Option(help="the store the job belongs to")],
    model: Annotated[
        str | None, typer.Option(help="owner/name (default REPLICATE_IMAGE_MODEL)")
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="prompt for every item")] = None,
    preset: Annotated[str | None, typer.Option(help="output preset name")] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="model parameter key=value (JSON value), repeatable")
    ] = None,
    priority: Annotated[int, typer.Option(help="item priority (higher first)")] = 0,
) -> None:
    """Insert a job (one item per image or CSV row) and print its id."""
    settings = _settings()
    if not store.strip():
        raise _fail("--store must not be empty")
    if not path.exists():
        raise _fail(f"{path} does not exist")
    items = _items_from_folder(path, store, settings) if path.is_dir() else _items_from_csv(path)
    if not items:
        raise _fail(f"{path}: no images or rows found")
    for item in items:
        item.setdefault("priority", priority)
    with _repository(settings) as repo:
        job_id = repo.insert_job(
            store_id=store,
            model=model or settings.replicate_image_model,
            prompt=prompt,
            params=_parse_params(param or []),
            preset=preset,
            items=items,
        )
    typer.echo(job_id)


@app.command()
def status(
    job: Annotated[int | None, typer.Option(help="only this job")] = None,
    store: Annotated[str | None, typer.Option(help="only this store")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Item counts by status, per store and per job (the seeds' distribution query)."""
    from pipeline.quotas import quota_config
    from pipeline.reporting import status_report

    settings = _settings()
    with _repository(settings) as repo:
        report = status_report(repo, job_id=job, store_id=store, quota=quota_config(settings))
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
    for store_id, q in report.get("quotas", {}).items():
        held = (
            f"  held={q['pending_held']} PENDING until {q['frees_at']}" if q["pending_held"] else ""
        )
        typer.echo(
            f"quota {store_id:<20} used={q['used']}/{q['quota']} per "
            f"{q['window_seconds']:.0f}s  remaining={q['remaining']}{held}"
        )


@app.command()
def retry(
    job: Annotated[int | None, typer.Option(help="only this job")] = None,
    error_code: Annotated[str | None, typer.Option(help="only items FAILED with this code")] = None,
    item: Annotated[int | None, typer.Option(help="only this item (must be FAILED)")] = None,
) -> None:
    """Send FAILED items (dead letters) back to PENDING, attempts reset; prints how many."""
    from pipeline.cancellation import retry_item

    settings = _settings()
    with _repository(settings) as repo:
        if item is not None:
            ids = [item] if retry_item(repo, item) else []
        else:
            ids = repo.retry_failed(job, error_code)
    typer.echo(f"{len(ids)} item(s) back to PENDING")


@app.command()
def cancel(
    job: Annotated[int | None, typer.Argument(help="job id")] = None,
    item: Annotated[int | None, typer.Option(help="cancel only this item")] = None,
) -> None:
    """Cancel a job's unfinished items, or one item (--item); running predictions are canceled
    at the provider."""
    from pipeline.cancellation import cancel_item, cancel_job
    from pipeline.wiring import provider_client

    if (job is None) == (item is None):
        raise _fail("give a JOB id or --item ID (one of them)")
    settings = _settings()
    provider = provider_client(settings)
    try:
        with _repository(settings) as repo:
            results = (
                [cancel_item(repo, provider, item)]
                if item is not None
                else cancel_job(repo, provider, int(job or 0))
            )
    finally:
        provider.close()
    for result in results:
        if result.provider_canceled is False:
            typer.echo(
                f"warning: item {result.item_id}: cancel at the provider failed: "
                f"{result.error_code}",
                err=True,
            )
    if item is not None and not results[0].canceled:
        status_text = results[0].previous_status or "not found"
        typer.echo(f"item {item} not canceled ({status_text})")
        raise typer.Exit(1)
    typer.echo(f"{sum(r.canceled for r in results)} item(s) canceled")


@app.command("api")
def api_command(
    host: Annotated[str | None, typer.Option(help="bind address (IMAGEOPT_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (IMAGEOPT_API_PORT)")] = None,
) -> None:
    """Run the HTTP API and web console (default http://127.0.0.1:8080/)."""
    from pipeline.api import serve
    from pipeline.wiring import setup_logging

    settings = _settings()
    setup_logging(settings)
    serve(settings, host or settings.api_host, port or settings.api_port)


api_key_app = typer.Typer(help="API keys of stores (docs/API.md).", no_args_is_help=True)
app.add_typer(api_key_app, name="api-key")


@api_key_app.command("create")
def api_key_create(
    store: Annotated[str, typer.Option(help="the store the key acts for")],
    name: Annotated[str | None, typer.Option(help="a label to tell keys apart")] = None,
) -> None:
    """Create an API key for a store and print it (shown once; only its hash is stored)."""
    from pipeline.api.auth import create_api_key

    settings = _settings()
    if not store.strip():
        raise _fail("--store must not be empty")
    if store == settings.api_guest_store:
        raise _fail(f"{store!r} is the console guests' store (IMAGEOPT_API_GUEST_STORE)")
    with _repository(settings) as repo:
        key, key_id = create_api_key(repo, store, name)
    typer.echo(f"key id {key_id} for store {store} (shown once, keep it secret):", err=True)
    typer.echo(key)


@api_key_app.command("list")
def api_key_list(
    store: Annotated[str | None, typer.Option(help="only this store")] = None,
) -> None:
    """List API keys (id, store, prefix, label, created, last used, revoked); never the key."""
    settings = _settings()
    with _repository(settings) as repo:
        rows = repo.api_list_keys(store)
    for row in rows:
        state = "revoked" if row["revoked_at"] else "live"
        typer.echo(
            f"{row['id']:>6}  {row['store_id']:<20} iok_{row['key_prefix']}_…  {state:<7} "
            f"{row['name'] or '-':<16} created {row['created_at']:%Y-%m-%d} "
            f"used {row['last_used_at'] or '-'}"
        )


@api_key_app.command("revoke")
def api_key_revoke(key_id: Annotated[int, typer.Argument(help="key id (from list)")]) -> None:
    """Revoke an API key at once."""
    settings = _settings()
    with _repository(settings) as repo:
        revoked = repo.api_revoke_key(key_id)
    if not revoked:
        raise _fail(f"no live key with id {key_id}", code=1)
    typer.echo(f"key {key_id} revoked")


@app.command()
def demo(
    images: Annotated[Path, typer.Option(help="folder laid out as DIR/<store>/<images>")] = Path(
        "../shared/data/images"
    ),
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 600.0,
    schema: Annotated[
        str | None, typer.Option(help="the demo's own schema; its name must contain 'demo'")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="the demo's own Redis namespace; must contain 'demo'")
    ] = None,
    bucket: Annotated[
        str | None, typer.Option(help="the demo's own S3 bucket; must contain 'demo'")
    ] = None,
) -> None:
    """Run the whole pipeline on a folder of store folders and print a per-store summary.

    Only in a schema, Redis namespace and bucket of its own, marked as the demo's.
    """
    from pipeline.demo import run_demo
    from pipeline.demo_targets import DemoTargetRefused, resolve_targets

    settings = _settings()
    try:
        targets = resolve_targets(settings, schema=schema, namespace=namespace, bucket=bucket)
        code = run_demo(settings, images, timeout=timeout, targets=targets)
    except DemoTargetRefused as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(code)


# --- issue 7: presets, size preview, analysis, quotas, retention -----------------------------
def _read_image(path: Path) -> bytes:
    if not path.is_file():
        raise _fail(f"{path} is not a file")
    return path.read_bytes()


@app.command("presets")
def presets_command(
    store: Annotated[str | None, typer.Option(help="custom presets of this store only")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List output presets: built-in ones, then custom ones per store."""
    from pipeline.presets import list_presets

    settings = _settings()
    with _repository(settings) as repo:
        presets = list_presets(repo, store)
    if as_json:
        typer.echo(json.dumps(presets, indent=2, sort_keys=True))
        return
    for p in presets:
        owner = "built-in" if p["builtin"] else f"store {p['store_id']}"
        typer.echo(f"{p['name']:<20} {owner:<24} {json.dumps(p['spec'], sort_keys=True)}")


@app.command("preset-add")
def preset_add(
    store: Annotated[str, typer.Option(help="the store the preset belongs to")],
    name: Annotated[str, typer.Option(help="preset name (a-z, 0-9, - and _)")],
    spec: Annotated[str, typer.Option(help='JSON, e.g. {"format": "webp", "width": 800}')],
) -> None:
    """Add (or replace) a store's custom preset; the spec is validated first."""
    from pipeline.presets import add_custom_preset

    try:
        parsed = json.loads(spec)
    except json.JSONDecodeError as exc:
        raise _fail(f"--spec is not JSON: {exc}") from exc
    settings = _settings()
    try:
        with _repository(settings) as repo:
            preset = add_custom_preset(repo, store, name, parsed)
    except PipelineError as exc:
        raise _fail(f"{exc.code}: {exc.message}") from exc
    typer.echo(f"preset {preset.name} saved for store {store}: {json.dumps(preset.to_spec())}")


@app.command()
def preview(
    image: Annotated[Path, typer.Argument(help="an image file (JPEG, PNG, WebP)")],
    preset: Annotated[str, typer.Option(help="preset name")],
    store: Annotated[str | None, typer.Option(help="store, for its custom presets")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Estimate the output size of a preset for an image, without running the pipeline."""
    from pipeline.presets import BUILTIN_PRESETS, resolve_preset
    from pipeline.preview import preview_size

    settings = _settings()
    data = _read_image(image)
    try:
        if preset in BUILTIN_PRESETS or store is None:
            chosen = BUILTIN_PRESETS.get(preset)
            if chosen is None:
                raise _fail(f"unknown built-in preset {preset!r}; give --store for custom ones")
        else:
            with _repository(settings) as repo:
                chosen = resolve_preset(repo, store, preset)
        result = preview_size(data, chosen, max_pixels=settings.max_input_pixels)
    except PipelineError as exc:
        raise _fail(f"{exc.code}: {exc.message}") from exc
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    typer.echo(
        f"{image.name}: {result.width}x{result.height} {result.content_type} "
        f"~{result.estimated_bytes} bytes ({result.method}; input {result.input_bytes} bytes)"
    )


@app.command()
def analyze(
    image: Annotated[Path, typer.Argument(help="an image file (JPEG, PNG, WebP)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Dimensions, format, transparency, photo or graphic, faces; a recommended model and preset."""
    from pipeline.analysis import analyze as run_analysis

    settings = _settings()
    try:
        result = run_analysis(_read_image(image), max_pixels=settings.max_input_pixels)
    except PipelineError as exc:
        raise _fail(f"{exc.code}: {exc.message}") from exc
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    rec = result.recommendation
    faces = "unknown" if result.faces is None else str(result.faces)
    typer.echo(
        f"{image.name}: {result.width}x{result.height} {result.format} {result.mode}, "
        f"{result.kind}, transparent={result.transparent}, faces={faces}"
    )
    typer.echo(f"  model  {rec.model} {json.dumps(rec.params)}: {rec.model_reason}")
    typer.echo(f"  preset {rec.preset}: {rec.preset_reason}")
    for note in result.notes:
        typer.echo(f"  note   {note}")


@app.command()
def quota(
    store: Annotated[str, typer.Option(help="the store")],
    limit: Annotated[
        int | None, typer.Option(help="items per window; omit for the default")
    ] = None,
) -> None:
    """Set a store's quota of items per rolling window (IMAGEOPT_QUOTA_WINDOW_SECONDS)."""
    if limit is not None and limit < 1:
        raise _fail("--limit must be 1 or more (omit it to use IMAGEOPT_DEFAULT_DAILY_ITEM_QUOTA)")
    settings = _settings()
    with _repository(settings) as repo:
        repo.set_store_quota(store, limit)
    typer.echo(f"store {store}: quota {limit if limit is not None else 'default'}")


@app.command()
def retention(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only count what is due")] = False,
) -> None:
    """Delete old inputs, outputs and rows now (IMAGEOPT_RETENTION_*); prints the counts."""
    from datetime import UTC, datetime

    from pipeline.retention import Retention, retention_config
    from pipeline.storage import ObjectStorage

    settings = _settings()
    with _repository(settings) as repo:
        result = Retention(
            repo=repo,
            storage=ObjectStorage.from_settings(settings),
            config=retention_config(settings, dry_run=dry_run or None),
        ).run_once(datetime.now(UTC))
    verb = "due" if result.dry_run else "deleted"
    typer.echo(
        f"{verb}: inputs={result.inputs_deleted} outputs={result.outputs_deleted} "
        f"jobs={result.jobs_deleted} items={result.items_deleted}"
        + (f" storage_errors={result.storage_errors}" if result.storage_errors else "")
    )
    if result.storage_errors:
        raise typer.Exit(1)


submissions_app = typer.Typer(
    help="Pause and resume submissions while the pipeline runs (docs/SCHEDULING.md).",
    no_args_is_help=True,
)
app.add_typer(submissions_app, name="submissions")


def _operator() -> str:
    """Who runs this command, for the switch's ``changed_by`` (OS user and host)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"[:200]


def _set_submissions_paused(paused: bool, reason: str | None) -> None:
    from pipeline.controls import SUBMISSIONS_PAUSED, pause_state

    if reason is not None and len(reason) > 500:
        raise _fail("--reason must be at most 500 characters")
    with _repository(_settings()) as repo:
        changed = repo.set_control(
            SUBMISSIONS_PAUSED, paused, reason=reason, changed_by=_operator()
        )  # the new row, or None when it already was so: then read the one in force
        state = pause_state(False, changed or repo.get_control(SUBMISSIONS_PAUSED))
    word = "paused" if paused else "resumed"
    already = "" if changed is not None else "already "
    typer.echo(f"submissions {already}{word}" + _describe(state))


def _describe(state: PauseState) -> str:
    if not state.paused:
        return ""
    parts = [f" since {state.changed_at:%Y-%m-%d %H:%M:%S %Z}" if state.changed_at else ""]
    if state.changed_by:
        parts.append(f" by {state.changed_by}")
    if state.reason:
        parts.append(f": {state.reason}")
    return "".join(parts)


@submissions_app.command("pause")
def submissions_pause(
    reason: Annotated[
        str | None, typer.Option(help="why (shown by status and in the leader's log)")
    ] = None,
) -> None:
    """Stop metering new items at once: they stay PENDING; QUEUED and PROCESSING ones finish."""
    _set_submissions_paused(True, reason)


@submissions_app.command("resume")
def submissions_resume() -> None:
    """Meter again where it stopped (IMAGEOPT_SUBMISSIONS_PAUSED=true still pauses)."""
    _set_submissions_paused(False, None)


@submissions_app.command("status")
def submissions_status() -> None:
    """Print whether the switch pauses submissions; exit 0 when running, 3 when paused."""
    from pipeline.controls import SUBMISSIONS_PAUSED, pause_state

    with _repository(_settings()) as repo:
        state = pause_state(False, repo.get_control(SUBMISSIONS_PAUSED))
    if state.paused:
        typer.echo("submissions paused" + _describe(state))
        raise typer.Exit(3)
    typer.echo(
        "submissions running (the switch is off; IMAGEOPT_SUBMISSIONS_PAUSED is per process)"
    )


def main() -> None:
    """Console-script entry point."""
    app()
