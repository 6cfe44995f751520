"""How ``scripts/local_services.py`` decides between a configured, a running and an embedded
server, and the one line it prints when it cannot use one (pure logic: probes are given)."""

from __future__ import annotations

import pytest

from tests.support.sandbox import load_local_services

services = load_local_services()
Probe, Problem = services.Probe, services.Problem
POSTGRES, REDIS = services.POSTGRES, services.REDIS


def refusal(service: object, configured: bool, where: str, probe: object) -> str:
    with pytest.raises(Problem) as caught:
        services.decide(service, configured, where, probe)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_nothing_on_the_default_port_and_no_url_means_an_embedded_server() -> None:
    assert services.decide(POSTGRES, False, "127.0.0.1:5432", None) == "embed"
    assert services.decide(REDIS, False, "127.0.0.1:6379", None) == "embed"


def test_a_server_that_accepts_the_credentials_is_used_whether_configured_or_default() -> None:
    assert services.decide(POSTGRES, False, "127.0.0.1:5432", Probe("ok")) == "use"
    assert services.decide(REDIS, True, "cache:6379", Probe("ok")) == "use"


def test_a_default_postgres_that_wants_a_password_says_to_set_database_url() -> None:
    message = refusal(POSTGRES, False, "127.0.0.1:5432", Probe("refused_credentials"))
    assert message.startswith("the Postgres on 127.0.0.1:5432 refuses the default credentials")
    assert "set DATABASE_URL=postgresql://USER:PASSWORD@127.0.0.1:5432/DBNAME" in message


def test_a_default_redis_that_wants_a_password_says_to_set_redis_url() -> None:
    message = refusal(REDIS, False, "127.0.0.1:6379", Probe("refused_credentials"))
    assert "set REDIS_URL=redis://:PASSWORD@127.0.0.1:6379/0" in message


def test_a_configured_url_where_nothing_answers_says_so_and_how_to_get_an_embedded_one() -> None:
    message = refusal(POSTGRES, True, "db.internal:5432", Probe("unreachable"))
    assert message == (
        "DATABASE_URL points at db.internal:5432, where no Postgres answers: start it there, "
        "or unset DATABASE_URL to get an embedded one"
    )


def test_a_configured_url_whose_credentials_are_refused_names_the_variable() -> None:
    message = refusal(REDIS, True, "cache:6379", Probe("refused_credentials"))
    assert message.startswith("the Redis at cache:6379 refused the credentials in REDIS_URL")


def test_a_default_port_taken_by_something_else_says_what_to_do() -> None:
    message = refusal(POSTGRES, False, "127.0.0.1:5432", Probe("unusable", "not Postgres"))
    assert "(not Postgres)" in message
    assert "set DATABASE_URL" in message


@pytest.mark.parametrize(
    ("message", "sqlstate", "verdict"),
    [
        (
            'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
            'password authentication failed for user "postgres"',
            "28P01",
            "refused_credentials",
        ),
        (
            'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
            "fe_sendauth: no password supplied",
            None,
            "refused_credentials",
        ),
        (
            'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection '
            "refused\n\tIs the server running on that host and accepting TCP/IP connections?",
            None,
            "unreachable",
        ),
        ('FATAL:  database "nope" does not exist', "3D000", "unusable"),
    ],
)
def test_libpq_errors_are_classified(message: str, sqlstate: str | None, verdict: str) -> None:
    assert services.classify_postgres_error(message, sqlstate).verdict == verdict


def test_an_unparsable_database_url_is_refused_without_repeating_it() -> None:
    with pytest.raises(Problem) as caught:
        services.postgres_where("host=db password=hunter2-secret 'unterminated")
    assert "hunter2-secret" not in str(caught.value)


def test_where_a_url_points_is_host_and_port_without_credentials() -> None:
    assert services.postgres_where("postgresql://u:hunter2@db:5433/x") == "db:5433"
    assert services.postgres_where("postgresql://u@db/x") == "db:5432"
    assert services.redis_where("redis://:hunter2@cache:6380/0") == "cache:6380"
    with pytest.raises(Problem):
        services.redis_where("http://cache:6379")
