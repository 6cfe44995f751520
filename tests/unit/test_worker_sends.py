"""A worker whose next message cannot be sent (Redis gone) leaves the item to the rescuer."""

from __future__ import annotations

import pytest
import redis
from structlog.testing import capture_logs

from workers.services import left_to_the_rescuer_when_redis_is_gone


def test_an_unreachable_redis_is_logged_and_swallowed() -> None:
    with capture_logs() as logs, left_to_the_rescuer_when_redis_is_gone(7):
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    assert logs == [
        {
            "event": "poll_message_not_sent",
            "item_id": 7,
            "error": "ConnectionError",
            "log_level": "warning",
        }
    ]


def test_other_errors_still_raise() -> None:
    with pytest.raises(ValueError, match="a bug"), left_to_the_rescuer_when_redis_is_gone(7):
        raise ValueError("a bug")
