"""Shared parts of the ``imageopt`` command line: the typer app, settings, errors, Postgres.

Exit codes: 0 success, 1 the work did not finish as asked (e.g. items left unfinished),
2 bad usage or bad input (typer's own, and ours for unreadable input).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from pipeline.config import Settings
from pipeline.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from pipeline.repository import Repository

app = typer.Typer(
    help="imageopt: rows in Postgres become AI-optimized images in object storage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CLI_DATABASE_TIMEOUT_SECONDS = 5.0
"""How long a command waits for Postgres before it gives up (exit code 1), seconds."""


def load_settings() -> Settings:
    return Settings()


@app.callback()
def _logging_to_stderr() -> None:
    # Log lines go to stderr (JSON, secrets redacted), so that stdout carries only a command's
    # result: `JOB=$(imageopt submit ...)` and `imageopt status --json | jq` stay parseable.
    from pydantic import ValidationError

    from pipeline.logging import configure_logging, setup_logging

    try:
        # long-running commands set up their own (their process kind, cached loggers)
        setup_logging(load_settings(), process="cli", cache=False)
    except ValidationError:  # the command itself reports the bad setting
        configure_logging(cache=False)


def actor() -> str:
    """Who runs this command, for a switch's ``changed_by`` and the audit log (OS user and
    host)."""
    import getpass
    import os
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"[:200]


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def open_repository(settings: Settings) -> Iterator[Repository]:
    """A repository on a one-connection pool, closed afterwards; a database that cannot be
    reached, or a schema without this release's tables, ends the command with exit code 1 and
    a one-line error; a value Postgres refuses to store, with exit code 2."""
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
        raise fail(f"database unreachable: {type(exc).__name__}", code=1) from exc
    try:
        yield Repository(pool)
    except DatabaseUnavailable as exc:
        raise fail(exc.message, code=1) from exc
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        raise fail(
            f"schema {settings.db_schema} lacks this release's migrations: run `imageopt migrate`",
            code=1,
        ) from exc
    except (psycopg.DataError, UnicodeEncodeError) as exc:  # input the checks did not foresee
        raise fail(
            f"a value cannot be stored ({type(exc).__name__}): look for NUL characters, "
            "invalid text or numbers out of range in the input"
        ) from exc
    finally:
        pool.close()
