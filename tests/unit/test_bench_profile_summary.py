"""``bench.profile_summary``: each py-spy sample is charged to the right component."""

from __future__ import annotations

from pathlib import Path

from bench.profile_summary import component_of, summarize

ACTOR = [
    "_bootstrap (threading.py:1002)",
    "process_message (dramatiq/worker.py:480)",
    "__call__ (dramatiq/actor.py:180)",
    "poll_prediction (workers/actors.py:76)",
]


def test_the_innermost_known_frame_decides() -> None:
    assert component_of([*ACTOR, "run (workers/polling.py:90)"]) == "our code"
    assert (
        component_of([*ACTOR, "put_bytes (pipeline/storage.py:270)", "urlopen (urllib3/x.py:1)"])
        == "s3 (minio)"
    )
    assert (
        component_of([*ACTOR, "_request (pipeline/provider.py:330)", "send (httpx/_client.py:9)"])
        == "provider (httpx)"
    )
    assert component_of(ACTOR[:2]) == "broker (dramatiq)"  # consuming, acking


def test_the_limiter_owns_its_redis_calls_and_the_queue_owns_enqueues() -> None:
    limiter = [*ACTOR, "acquire (pipeline/ratelimit/limiter.py:80)", "evalsha (redis/core.py:1)"]
    enqueue = [
        *ACTOR,
        "send_poll (pipeline/taskqueue.py:66)",
        "enqueue (dramatiq/brokers/redis.py:150)",
        "execute_command (redis/client.py:1)",
    ]
    assert component_of(limiter) == "rate limiter"
    assert component_of(enqueue) == "broker (dramatiq)"
    assert component_of(["<module> (other.py:1)"]) == "other (threads, queues, sockets)"


def test_summarize_counts_samples_per_component(tmp_path: Path) -> None:
    raw = tmp_path / "worker-poll-1.txt"
    raw.write_text(
        ";".join([*ACTOR, "run (workers/polling.py:90)"]) + " 3\n" + ";".join(ACTOR[:2]) + " 1\n"
    )
    total, counts = summarize(raw)
    assert total == 4
    assert counts == {"our code": 3, "broker (dramatiq)": 1}
