"""Presence on real Redis: a process's beat is listed with its fields, expires by itself,
and a clean stop removes it at once."""

from __future__ import annotations

import os
import socket
import time

import pytest
import redis

from pipeline.presence import PresenceThread, beat, presence_key, seen

pytestmark = pytest.mark.integration


def test_a_beat_is_listed_expires_by_itself_and_a_clean_stop_removes_it(
    redis_client: redis.Redis, redis_namespace: str
) -> None:
    beat(redis_client, redis_namespace, "worker", {"queues": ["imageopt-create"]}, 1.0)
    (doc,) = seen(redis_client, redis_namespace)
    assert (doc["kind"], doc["pid"], doc["queues"]) == ("worker", os.getpid(), ["imageopt-create"])
    key = presence_key(redis_namespace, "worker", socket.gethostname(), os.getpid())
    assert 0 < int(redis_client.pttl(key)) <= 20_000  # type: ignore[arg-type]
    assert seen(redis_client, "another-namespace") == []

    thread = PresenceThread(redis_client, redis_namespace, "scheduler",
                            info=lambda: {"leader": True}, interval=0.05)  # fmt: skip
    thread.start()
    kinds: set[str] = set()
    for _ in range(200):
        kinds = {str(d["kind"]) for d in seen(redis_client, redis_namespace)}
        if "scheduler" in kinds:
            break
        time.sleep(0.02)  # the thread's first beat: wait for it, up to 4 s
    assert kinds == {"worker", "scheduler"}
    thread.close()
    assert [d["kind"] for d in seen(redis_client, redis_namespace)] == ["worker"]
