"""``pipeline.pollhints``: median runtimes shared between processes through a real Redis."""

from __future__ import annotations

import socket

import pytest
import redis

from pipeline.pollhints import RuntimeHints
from pipeline.pollplan import RuntimeWindow

pytestmark = pytest.mark.integration


def hints(redis_client: redis.Redis, namespace: str, min_samples: int = 3) -> RuntimeHints:
    return RuntimeHints(
        redis_client,
        namespace,
        initial=1.0,
        maximum=30.0,
        window=RuntimeWindow(size=50, min_samples=min_samples),
    )


def test_a_creation_process_reads_the_median_a_polling_process_saw(
    redis_client: redis.Redis, redis_namespace: str
) -> None:
    poller, creator = hints(redis_client, redis_namespace), hints(redis_client, redis_namespace)
    assert creator.first_delay("acme/model") == 1.0  # nothing known yet: the initial delay

    key = f"{redis_namespace}:poll:runtime"
    poller.observe("acme/model", 3.0)
    poller.observe("acme/model", 5.0)
    assert redis_client.hget(key, "acme/model") is None  # two runtimes: too few for a median
    poller.observe("acme/model", 4.0)
    assert redis_client.hget(key, "acme/model") == b"4.000"
    poller.observe("acme/model", 10.0)
    poller.observe("acme/model", 10.0)
    assert redis_client.hget(key, "acme/model") == b"4.000"  # published at most every 5 s
    assert 0 < int(redis_client.ttl(key)) <= 86_400

    assert hints(redis_client, redis_namespace).first_delay("acme/model") == 4.0
    assert hints(redis_client, redis_namespace).first_delay("acme/other") == 1.0


def test_a_long_median_is_capped_at_the_maximum_delay(
    redis_client: redis.Redis, redis_namespace: str
) -> None:
    redis_client.hset(f"{redis_namespace}:poll:runtime", "slow/model", "600")
    assert hints(redis_client, redis_namespace).first_delay("slow/model") == 30.0


def test_garbage_in_the_hash_falls_back_to_the_initial_delay(
    redis_client: redis.Redis, redis_namespace: str
) -> None:
    redis_client.hset(f"{redis_namespace}:poll:runtime", "acme/model", "soon")
    assert hints(redis_client, redis_namespace).first_delay("acme/model") == 1.0


def test_without_redis_the_initial_delay_applies_and_nothing_raises() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    offline = hints(dead, "nowhere", min_samples=1)
    offline.observe("acme/model", 4.0)  # the publish fails quietly
    assert offline.first_delay("acme/model") == 1.0
    dead.close()


def test_the_scheduler_reads_every_models_median_and_skips_garbage(
    redis_client: redis.Redis, redis_namespace: str
) -> None:
    key = f"{redis_namespace}:poll:runtime"
    redis_client.hset(key, mapping={"acme/model": "4.000", "slow/model": "600", "bad/model": "x"})
    assert hints(redis_client, redis_namespace).medians() == {
        "acme/model": 4.0,
        "slow/model": 600.0,
    }
    assert hints(redis_client, f"{redis_namespace}-empty").medians() == {}
