"""The per-caller limits at their defaults fit a person using the console, and still bound a
script: reads (``GET``/``HEAD``) count against ``IMAGEOPT_API_READ_RATE_PER_MINUTE``, anything
else against seed 002's ``IMAGEOPT_API_RATE_PER_MINUTE`` (real api server, Postgres, Redis, S3).

The console's requests are the ones ``api/static/console.js`` and ``presets.js`` send; their
counts are in docs/CONSOLE.md ("Requests and limits").
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from pipeline.storage import ObjectStorage
from tests.conftest import DATABASE_URL, settings_from
from tests.support.api import run_api, track

pytestmark = pytest.mark.integration

PHOTO = "store-food/coffee-cup.png"
HISTORY_PAGE = 5
"""Jobs on one page of the console's history (``HISTORY_PAGE`` in console.js)."""
POLL_SECONDS = 2.5
"""The console's polling interval without ``EventSource`` (console.js ``poll``)."""
POLLS_PER_MINUTE = int(60 / POLL_SECONDS)
PAGE_LOAD_READS = ("/", "/api/flags", "/api/usage", f"/api/jobs?limit={HISTORY_PAGE}",
                   "/api/presets")  # fmt: skip
"""What one console page load reads before any image (presets.js only while its panel shows)."""


@pytest.fixture
def photo(images_dir: Path) -> bytes:
    return (images_dir / PHOTO).read_bytes()


class Console:
    """A browser-like guest of the console: its cookies, ``Origin`` and CSRF header, and every
    status it was answered, as ``(method, path, status)``."""

    def __init__(self, base: str) -> None:
        self.client = track(httpx.Client(base_url=base, timeout=20, headers={"Origin": base}))
        self.answers: list[tuple[str, str, int]] = []

    def get(self, path: str) -> httpx.Response:
        response = self.client.get(path)
        self.answers.append(("GET", path, response.status_code))
        return response

    def post(self, path: str, **kwargs: object) -> httpx.Response:
        response = self.client.post(path, **kwargs)  # type: ignore[arg-type]
        self.answers.append(("POST", path, response.status_code))
        return response

    def load_page(self) -> dict[str, object]:
        """One page load: the page, then the script's reads and the history's thumbnails (each
        item's result, else its input: console.js ``renderThumb``). Returns the history."""
        answers = {path: self.get(path) for path in PAGE_LOAD_READS}
        self.client.headers["X-CSRF-Token"] = self.client.cookies["csrf_token"]
        history: dict[str, object] = answers[f"/api/jobs?limit={HISTORY_PAGE}"].json()["data"]
        self.thumbnails(history)
        return history

    def thumbnails(self, history: dict[str, object]) -> None:
        jobs = history["jobs"]
        assert isinstance(jobs, list)
        for job in jobs:
            for item in job["items"]:
                src = item["resultUrl"] or item["inputUrl"]
                if src:
                    self.get(src)

    def create(self, photo: bytes, files: int) -> int:
        images = [("image", (f"p{i}.png", photo, "image/png")) for i in range(files)]
        created = self.post("/api/jobs", data={"model": "nightmareai/real-esrgan"}, files=images)
        assert created.status_code == 201, created.text
        self.get(f"/api/jobs?limit={HISTORY_PAGE}")  # the console reloads its history
        return int(created.json()["data"]["id"])

    def refused(self) -> list[tuple[str, str, int]]:
        return [answer for answer in self.answers if answer[2] == 429]

    def count(self, method: str) -> int:
        return sum(1 for answer in self.answers if answer[0] == method)


def _finish(schema: str, storage: ObjectStorage, job_id: int, photo: bytes) -> None:
    """Set a job's items DONE with a stored result, as a worker does."""
    with psycopg.connect(DATABASE_URL, options=f"-c search_path={schema}") as conn:
        ids = [row[0] for row in conn.execute(
            "SELECT id FROM image_optimization_items WHERE job_id = %s", (job_id,))]  # fmt: skip
        for item_id in ids:
            key = f"results/console/budget/{item_id}.png"
            storage.put_bytes(key, photo, "image/png")
            conn.execute(
                "UPDATE image_optimization_items SET status = 'DONE', output_key = %s, "
                "output_width = 64, output_height = 64, output_bytes = %s, "
                "output_content_type = 'image/png', completed_at = now() WHERE id = %s",
                (key, len(photo), item_id),
            )
        conn.execute("UPDATE image_optimization_jobs SET status = 'DONE' WHERE id = %s", (job_id,))


def test_a_person_loading_reloading_watching_and_paging_the_console_meets_no_429_at_the_defaults(
    pipeline_env: dict[str, str], photo: bytes
) -> None:
    settings = settings_from(pipeline_env)  # every limit at its default
    storage = ObjectStorage.from_settings(settings)
    try:
        with run_api(settings) as base:
            person = Console(base)
            person.load_page()
            for _ in range(HISTORY_PAGE):  # one page of history, and one more job below
                person.create(photo, files=1)
            watched = person.create(photo, files=3)
            for _ in range(3):  # reloads
                person.load_page()
            # Following the job without EventSource: a poll every 2.5 s for a whole minute.
            for _ in range(POLLS_PER_MINUTE):
                assert person.get(f"/api/jobs/{watched}").json()["data"]["final"] is False
            _finish(settings.db_schema, storage, watched, photo)
            job = person.get(f"/api/jobs/{watched}").json()["data"]
            assert job["final"] is True
            for item in job["items"]:  # the before/after slider's two images
                person.get(item["inputUrl"])
                person.get(item["resultUrl"])
            person.get("/api/usage")  # the console's usage pill after a final job
            with person.client.stream("GET", f"/api/jobs/{watched}/events") as events:
                assert "event: end" in "".join(events.iter_text())
            person.answers.append(("GET", f"/api/jobs/{watched}/events", events.status_code))
            first = person.load_page()
            older = person.get(f"/api/jobs?limit={HISTORY_PAGE}&before={first['nextBefore']}")
            person.thumbnails(older.json()["data"])
            assert [job["id"] for job in older.json()["data"]["jobs"]] == [watched - HISTORY_PAGE]
    finally:
        storage.close()
    assert person.refused() == []
    reads, writes = person.count("GET"), person.count("POST")
    # The sequence is over the old shared limit: before reads had their own budget, it met 429s.
    assert reads + writes > settings.api_rate_per_minute
    assert reads <= settings.api_read_rate_per_minute
    assert writes <= settings.api_rate_per_minute


def test_a_script_reading_past_the_default_read_budget_gets_429_with_retry_after(
    pipeline_env: dict[str, str],
) -> None:
    settings = settings_from(pipeline_env)
    with run_api(settings) as base:
        script = Console(base)
        script.client.get("/")  # a guest session, the first read
        budget = settings.api_read_rate_per_minute
        codes = [script.client.get("/api/usage").status_code for _ in range(budget)]
        refused = script.client.get("/api/jobs")
        cancel = script.client.post(
            "/api/jobs/1/cancel", headers={"X-CSRF-Token": script.client.cookies["csrf_token"]}
        )
    assert Counter(codes) == {200: settings.api_read_rate_per_minute - 1, 429: 1}
    assert codes.index(429) == settings.api_read_rate_per_minute - 1
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "rate_limited"
    assert (
        error["message"]
        == f"too many reads: {settings.api_read_rate_per_minute} per minute allowed"
    )
    assert error["details"] == {"limit": settings.api_read_rate_per_minute,
                                "retryAfter": refused.headers["retry-after"]}  # fmt: skip
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert cancel.status_code == 404  # writes have their own budget: the job does not exist


def test_concurrent_reads_over_the_read_budget_admit_exactly_the_budget(
    pipeline_env: dict[str, str],
) -> None:
    budget, sent = 20, 60
    settings = settings_from({**pipeline_env, "IMAGEOPT_API_READ_RATE_PER_MINUTE": str(budget)})
    with run_api(settings) as base:
        guest = Console(base)
        assert guest.client.get("/").status_code == 200  # read 1: the guest's cookie
        cookies = dict(guest.client.cookies)

        def read(i: int) -> int:
            path = ("/api/usage", "/api/jobs", "/api/flags", "/api/presets")[i % 4]
            return httpx.get(f"{base}{path}", cookies=cookies, timeout=20).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = Counter(pool.map(read, range(sent)))
        write = guest.client.post(
            "/api/jobs/1/cancel", headers={"X-CSRF-Token": cookies["csrf_token"]}
        )
    assert codes == {200: budget - 1, 429: sent - budget + 1}
    assert write.status_code == 404  # past the read budget, a write is still admitted
