"""``scripts/local_services.py`` against real servers: embedded PostgreSQL and Valkey started
where nothing answers (in a network namespace with only loopback, as root and as an ordinary
user) and stopped without a trace; servers that refuse the given credentials, and URLs where
nothing answers, are one line and exit status 1, never a traceback or a password."""

from __future__ import annotations

import json
import os
import pwd
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sandbox import (
    LOCAL_SERVICES,
    REPO,
    clean_env,
    in_netns,
    load_local_services,
    netns_unavailable,
    processes_in,
    run_dir,
    servers_reachable_by,
    usable_by,
)

pytestmark = pytest.mark.integration

services = load_local_services()
embedded = sys.modules["embedded_servers"]
PYTHON = sys.executable


def check(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, str(LOCAL_SERVICES), "check"],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], *secrets: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for secret in secrets:
        assert secret not in result.stdout + result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def password_servers() -> Iterator[tuple[object, object]]:
    """An embedded Postgres and Valkey of this module's own, each with a random password."""
    with run_dir() as root:
        state = root / "services" / "fixture"
        state.mkdir(parents=True)
        for directory in (root, root / "services", state):
            directory.chmod(0o755)
        try:
            yield (
                embedded.start_postgres(state, services.run_as()),
                embedded.start_valkey(state, services.run_as()),
            )
        finally:
            embedded.stop_all(state)


def test_a_postgres_that_refuses_the_credentials_in_database_url_is_one_line(
    password_servers: tuple[object, object],
) -> None:
    postgres = password_servers[0]
    where = f"127.0.0.1:{postgres.port}"  # type: ignore[attr-defined]
    for url in (
        f"postgresql://postgres@{where}/postgres",
        f"postgresql://postgres:wrong-secret-1@{where}/postgres",
    ):
        line = assert_one_line_refusal(check(DATABASE_URL=url), "wrong-secret-1")
        assert line.startswith(
            f"local-services: the Postgres at {where} refused the credentials in DATABASE_URL: "
            f"set DATABASE_URL=postgresql://USER:PASSWORD@{where}/DBNAME"
        )


def test_a_redis_that_refuses_the_credentials_in_redis_url_is_one_line(
    password_servers: tuple[object, object],
) -> None:
    valkey = password_servers[1]
    where = f"127.0.0.1:{valkey.port}"  # type: ignore[attr-defined]
    for url in (f"redis://{where}/0", f"redis://:wrong-secret-2@{where}/0"):
        line = assert_one_line_refusal(check(REDIS_URL=url), "wrong-secret-2")
        assert line.startswith(f"local-services: the Redis at {where} refused the credentials")


def test_urls_where_nothing_answers_are_one_line_each() -> None:
    port = embedded.free_port()
    line = assert_one_line_refusal(
        check(DATABASE_URL=f"postgresql://postgres:pw-secret-3@127.0.0.1:{port}/postgres"),
        "pw-secret-3",
    )
    assert line == (
        f"local-services: DATABASE_URL points at 127.0.0.1:{port}, where no Postgres answers: "
        "start it there, or unset DATABASE_URL to get an embedded one"
    )
    line = assert_one_line_refusal(check(REDIS_URL=f"redis://127.0.0.1:{port}/0"))
    assert line.startswith(f"local-services: REDIS_URL points at 127.0.0.1:{port}, where no Redis")


def test_the_servers_given_with_their_credentials_are_used(
    password_servers: tuple[object, object],
) -> None:
    postgres, valkey = password_servers
    result = check(DATABASE_URL=postgres.url, REDIS_URL=valkey.url)  # type: ignore[attr-defined]
    assert result.returncode == 0, result.stderr
    assert "answers and accepts the credentials" in result.stdout
    assert postgres.url.split("@")[0] not in result.stdout + result.stderr  # type: ignore[attr-defined]


# Runs in a network namespace where nothing answers on 5432/6379: two starts (the first one's
# shell "dies", so the second stops its left-overs), a look at what runs, then the stop.
SESSION = """
set -e
dead=$(sh -c 'echo $$')
{py} {script} start --owner "$dead" > /dev/null
{py} {script} start --owner $$ > {out}/env
. {out}/env
{py} -c '
import json, os, pathlib, psycopg, redis, urllib.parse
pg = psycopg.connect(os.environ["DATABASE_URL"])
pid = pg.execute("SELECT pg_backend_pid()").fetchone()[0]
report = {{
    "postgres": pg.execute("SHOW server_version").fetchone()[0],
    "postgres_uid": os.stat(f"/proc/{{pid}}").st_uid,
    "unix_socket": pg.execute("SHOW unix_socket_directories").fetchone()[0],
    "redis": redis.Redis.from_url(os.environ["REDIS_URL"]).info()["redis_version"],
    "redis_without_password": "",
    "urls": [os.environ["DATABASE_URL"], os.environ["REDIS_URL"]],
    "state": sorted(os.listdir(os.environ["IMAGEOPT_RUN_DIR"] + "/services")),
}}
bare = urllib.parse.urlsplit(os.environ["REDIS_URL"])
try:
    redis.Redis(host=bare.hostname, port=bare.port).ping()
except redis.AuthenticationError:
    report["redis_without_password"] = "refused"
pg.close()
pathlib.Path("{out}/report.json").write_text(json.dumps(report))
'
{py} {script} stop --owner $$
"""


@pytest.mark.slow
@pytest.mark.parametrize("as_user", ["root", "nobody"])
def test_embedded_servers_start_where_nothing_answers_and_stop_leaves_nothing(
    tmp_path: Path, as_user: str
) -> None:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    nobody = pwd.getpwnam("nobody")
    owner = nobody.pw_uid if as_user == "nobody" else None
    if owner is not None and not usable_by(nobody, PYTHON):
        pytest.skip(f"user nobody cannot run this venv's Python ({PYTHON}, e.g. under /root)")
    if not servers_reachable_by(nobody):  # as root the embedded servers run as nobody
        pytest.skip("user nobody cannot reach this clone's venv (e.g. a clone under /root)")
    with run_dir(owner) as root:
        out = root / "out"
        out.mkdir()
        if owner is not None:
            os.chown(out, owner, -1)
        session = SESSION.format(py=PYTHON, script=LOCAL_SERVICES, out=out)
        if as_user == "nobody":  # an ordinary user: the servers run as that user, no switch
            session = (
                f"exec setpriv --reuid={nobody.pw_uid} --regid={nobody.pw_gid} --clear-groups "
                f"sh -c {shlex.quote(session)}"
            )
        ns_file = tmp_path / "netns"
        result = subprocess.run(
            in_netns(session, ns_file),
            cwd=REPO,
            env=clean_env(IMAGEOPT_RUN_DIR=str(root)),
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads((out / "report.json").read_text())
        leftover_dirs = sorted(p.name for p in (root / "services").iterdir())
    assert report["postgres"].startswith("18.")
    assert report["redis"]  # Valkey answers as Redis 7.2
    assert report["postgres_uid"] == nobody.pw_uid  # as root too: initdb refuses root
    assert report["unix_socket"] == ""
    assert report["redis_without_password"] == "refused"
    assert all("@127.0.0.1:" in url for url in report["urls"])
    assert len(report["state"]) == 1  # the dead shell's servers were stopped, data deleted
    assert "stopped left-over Postgres and Valkey" in result.stderr
    assert "stopped the embedded Postgres and Valkey" in result.stderr
    for url in report["urls"]:  # passwords stay out of what is printed
        assert url.split("@")[0] not in result.stderr
    assert leftover_dirs == []
    assert processes_in(ns_file) == []
