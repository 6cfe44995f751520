"""Both consoles' sign-ins over HTTP (real Postgres, Redis, S3; the api under uvicorn): a browser
that opens ``/ops`` with a guest's or a store's session is sent to the operator sign-in page
while API clients keep their JSON 403, and every sign-in attempt is counted in
``imageopt_api_sign_ins_total{console, outcome}`` on the api's ``/metrics``."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from api.auth import create_api_key
from api.operator_auth import LOGIN_ATTEMPTS_PER_MINUTE, create_operator_key
from pipeline.repository import Repository
from tests.support.api import HIGH_LIMITS, track
from tests.support.prometheus import samples

pytestmark = pytest.mark.integration

STORE_SIGN_INS_PER_MINUTE = 3
HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
"""What a browser's address bar sends as ``Accept``."""
WRONG = "iok_00000000_wrong"


@pytest.fixture
def api_env(pipeline_env: dict[str, str]) -> dict[str, str]:
    """The shared ``api`` and ``repo`` fixtures (tests/support/api_fixtures.py) use these."""
    return {
        **pipeline_env,
        **HIGH_LIMITS,
        "IMAGEOPT_API_SIGN_IN_ATTEMPTS_PER_MINUTE": str(STORE_SIGN_INS_PER_MINUTE),
    }


def browser(api: str, login_page: str = "/") -> httpx.Client:
    """A browser-like client: opens ``login_page`` (its cookies: guest, CSRF), then sends the
    Origin and the CSRF header on every request."""
    client = track(httpx.Client(base_url=api, timeout=20, headers={"Origin": api}))
    assert client.get(login_page).status_code == 200
    client.headers["X-CSRF-Token"] = client.cookies["csrf_token"]
    return client


def sign_in_counts(api: str) -> Counter[tuple[str, str]]:
    """``imageopt_api_sign_ins_total`` by ``(console, outcome)``, from the api's ``/metrics``."""
    text = httpx.get(f"{api}/metrics").text
    return Counter(
        {
            (s.labels["console"], s.labels["outcome"]): s.value
            for s in samples(text, "imageopt_api_sign_ins_total")
        }
    )


def test_a_browser_with_a_guest_or_store_session_opening_ops_goes_to_the_sign_in_page(
    api: str, repo: Repository
) -> None:
    key, _ = create_api_key(repo, "shop-1")
    guest = browser(api)

    as_page = guest.get("/ops", headers={"Accept": HTML})
    as_json = guest.get("/ops", headers={"Accept": "application/json"})

    assert (as_page.status_code, as_page.headers["location"]) == (303, "/ops/login")
    assert as_page.headers["cache-control"] == "no-store"
    assert as_json.status_code == 403
    assert as_json.json()["error"]["type"] == "forbidden"
    assert guest.get("/ops", headers={"Accept": HTML}, follow_redirects=True).url.path == (
        "/ops/login"
    )

    store = browser(api)
    assert store.post("/api/session", json={"key": key}).status_code == 200
    opened = store.get("/ops", headers={"Accept": HTML})
    assert (opened.status_code, opened.headers["location"]) == (303, "/ops/login")

    # a script with a store's key asked for HTML is still an API client: 403 in JSON
    scripted = httpx.get(f"{api}/ops", headers={"Accept": HTML, "Authorization": f"Bearer {key}"})
    assert scripted.status_code == 403
    assert scripted.json()["error"]["type"] == "forbidden"


def test_sign_ins_of_both_consoles_are_counted_by_console_and_outcome(
    api: str, repo: Repository
) -> None:
    store_key, _ = create_api_key(repo, "shop-1")
    operator_key, _ = create_operator_key(repo, "alice")
    before = sign_in_counts(api)

    store = browser(api)
    assert store.post("/api/session", json={"key": ""}).status_code == 400  # not counted
    store_codes = [store.post("/api/session", json={"key": k}).status_code
                   for k in (store_key, WRONG, operator_key, WRONG, store_key)]  # fmt: skip
    ops = browser(api, "/ops/login")
    assert ops.post("/ops/login", json={"key": ""}).status_code == 400  # not counted
    ops_keys = [operator_key, store_key] + [WRONG] * (LOGIN_ATTEMPTS_PER_MINUTE - 2) + [WRONG]
    ops_codes = [ops.post("/ops/login", json={"key": k}).status_code for k in ops_keys]

    assert store_codes == [200, 401, 401, 429, 429]
    assert ops_codes == [200, 403] + [401] * (LOGIN_ATTEMPTS_PER_MINUTE - 2) + [429]
    counted = sign_in_counts(api)
    counted.subtract(before)
    assert +counted == Counter(
        {
            ("store", "ok"): 1,
            ("store", "refused"): 2,
            ("store", "limited"): 2,
            ("operator", "ok"): 1,
            ("operator", "refused"): LOGIN_ATTEMPTS_PER_MINUTE - 1,
            ("operator", "limited"): 1,
        }
    )
    assert set(before) >= {(c, o) for c in ("store", "operator")
                           for o in ("ok", "refused", "limited")}  # fmt: skip


def test_concurrent_sign_ins_over_the_limit_are_counted_once_each_as_refused_or_limited(
    api: str,
) -> None:
    store = browser(api)
    before = sign_in_counts(api)

    def attempt(_: int) -> int:
        return store.post("/api/session", json={"key": WRONG}).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = Counter(pool.map(attempt, range(STORE_SIGN_INS_PER_MINUTE + 10)))

    assert codes == Counter({401: STORE_SIGN_INS_PER_MINUTE, 429: 10})
    counted = sign_in_counts(api)
    counted.subtract(before)
    assert +counted == Counter(
        {("store", "refused"): STORE_SIGN_INS_PER_MINUTE, ("store", "limited"): 10}
    )
