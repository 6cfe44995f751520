"""A broker whose Redis stops answering (a partition that drops packets without a reset)
raises after its socket timeout instead of waiting for ever (real sockets: a listener that
accepts and never answers)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis

from pipeline.taskqueue import TaskQueue, build_broker

pytestmark = pytest.mark.integration


@pytest.fixture
def black_hole() -> Iterator[str]:
    """``redis://`` URL of a listener that accepts connections and never reads or answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # the kernel completes the handshakes; nobody ever answers
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        listener.close()


@pytest.mark.timeout(30)  # without a socket timeout the enqueue would wait for ever
def test_an_enqueue_to_a_redis_that_never_answers_raises_after_the_socket_timeout(
    black_hole: str,
) -> None:
    queue = TaskQueue(build_broker(black_hole, "t", socket_timeout=0.5))
    with pytest.raises(redis.TimeoutError):
        queue.send_create([1])
