"""The dispatcher of finished-item notifications (api/final_items.py): which waiters a payload
wakes; the LISTEN connection itself is tested in tests/integration/test_api_seed_routes.py."""

from __future__ import annotations

import json

from api.final_items import FinalItemWatch, application_name


def payload(schema: str, job_id: int, item_id: int = 7) -> str:
    return json.dumps(
        {"schema": schema, "item_id": item_id, "job_id": job_id, "store_id": "s", "status": "DONE"}
    )


def test_a_notification_wakes_the_waiters_of_its_job_only() -> None:
    watch = FinalItemWatch("postgresql://unused", "app")
    with watch.watching(1) as first, watch.watching(1) as second, watch.watching(2) as other:
        assert watch.dispatch(payload("app", 1)) is True
        assert first.is_set()
        assert second.is_set()
        assert not other.is_set()


def test_notifications_of_another_schema_or_malformed_wake_nobody() -> None:
    watch = FinalItemWatch("postgresql://unused", "app")
    with watch.watching(1) as event:
        for note in (payload("other", 1), "not json", "[]", '{"schema": "app"}',
                     '{"schema": "app", "job_id": "x"}', payload("app", 9)):  # fmt: skip
            assert watch.dispatch(note) is False, note
        assert not event.is_set()


def test_wake_all_wakes_every_waiter_and_leaving_forgets_the_job() -> None:
    watch = FinalItemWatch("postgresql://unused", "app")
    with watch.watching(1) as first, watch.watching(2) as second:
        watch.wake_all()
        assert first.is_set()
        assert second.is_set()
        assert watch.waiting == 2
    assert watch.waiting == 0
    assert watch.dispatch(payload("app", 1)) is False


def test_the_listeners_application_name_names_the_schema_within_postgres_limit() -> None:
    assert application_name("app") == "imageopt-api-final-items:app"
    assert len(application_name("s" * 100)) == 63
