"""Presence on real Redis: a process's beat is listed with its fields, expires by itself,
and a clean stop removes it at once; a real dramatiq worker's one heartbeat feeds both its
console presence and its liveness beat file, and stops feeding both when a thread dies."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker

from pipeline.health import read_worker_beats
from pipeline.presence import PresenceThread, beat, presence_key, seen
from pipeline.taskqueue import CREATE_QUEUE
from workers.health import BeatFile
from workers.heartbeat import HeartbeatOutput, WorkerHeartbeat
from workers.presence import PresenceKey

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


def _wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_one_worker_heartbeat_feeds_the_console_and_the_beat_file_and_starves_both_together(
    redis_client: redis.Redis, redis_namespace: str, tmp_path: Path
) -> None:
    broker = StubBroker()  # in-memory queues; the two outputs are real
    broker.declare_queue(CREATE_QUEUE)
    outputs: list[HeartbeatOutput] = [
        BeatFile(tmp_path),
        PresenceKey(redis_client, redis_namespace),
    ]
    broker.add_middleware(WorkerHeartbeat(outputs, interval=0.05))
    worker = dramatiq.Worker(broker, queues={CREATE_QUEUE}, worker_threads=1, worker_timeout=50)
    worker.start()
    try:

        def beats() -> tuple[float, float] | None:
            files = [b for b in read_worker_beats(tmp_path) if b.pid == os.getpid()]
            docs = [d for d in seen(redis_client, redis_namespace) if d["pid"] == os.getpid()]
            return (files[0].beat_at, docs[0]["beat_at"]) if files and docs else None

        _wait_for(lambda: beats() is not None, "the first beat in both outputs")
        (doc,) = seen(redis_client, redis_namespace)
        assert (doc["kind"], doc["queues"], doc["threads"]) == ("worker", [CREATE_QUEUE], 1)
        first = beats()
        _wait_for(lambda: beats() != first, "a second beat")

        worker.workers[0].stop()  # an actor thread ends: the process no longer does its work
        worker.workers[0].join(timeout=5)
        time.sleep(0.25)  # a beat already under way lands
        starved = beats()
        time.sleep(0.3)  # six intervals
        assert beats() == starved  # neither output beat again
    finally:
        worker.stop(timeout=5_000)
        broker.close()
    assert read_worker_beats(tmp_path) == []  # a clean stop takes both away
    assert seen(redis_client, redis_namespace) == []
