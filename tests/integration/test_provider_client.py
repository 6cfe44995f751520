"""Our ProviderClient against the emulator over sockets, and its error mapping at the edge."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import structlog

from devstack.emulator import run_emulator, serve_directory
from emulator.config import EmulatorConfig
from pipeline.allowlist import build_allowlist
from pipeline.errors import (
    OutputInvalid,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from pipeline.provider import Prediction, ProviderClient
from pipeline.ratelimit.retry_after import parse_retry_after

pytestmark = pytest.mark.integration

IMAGES = "/work/shared/data/images"
PHOTO = "store-food/avocado-cutout.png"
TOKEN = "r8_provider_client_secret_0123456789"
ALLOWLIST = build_allowlist()
ESRGAN = ALLOWLIST["nightmareai/real-esrgan"]
NANO = ALLOWLIST["google/nano-banana"]


class Setup:
    """An emulator, a file server, our client and a control-plane client."""

    def __init__(self, api: str, images: str, client: ProviderClient) -> None:
        self.api = api
        self.root = api.removesuffix("/v1")
        self.images = images
        self.client = client

    def configure(self, **changes: Any) -> None:
        response = httpx.post(f"{self.root}/_emulator/config", json=changes)
        assert response.status_code == 200, response.text

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.root}/_emulator/stats").json())

    def image_url(self, query: str = "X-Amz-Signature=abc") -> str:
        return f"{self.images}/{PHOTO}?{query}"

    def wait(self, prediction_id: str, timeout: float = 15.0) -> Prediction:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            prediction = self.client.get_prediction(prediction_id)
            if prediction.terminal:
                return prediction
            time.sleep(0.05)
        raise AssertionError(f"prediction {prediction_id} did not finish")


@pytest.fixture
def setup() -> Iterator[Setup]:
    config = EmulatorConfig(token=TOKEN, latency_min=0.05, latency_max=0.1, rng_seed=3)
    with (
        serve_directory(IMAGES) as images,
        run_emulator(config) as api,
        ProviderClient(api, TOKEN, timeout=5.0, default_retry_after=7.0) as client,
    ):
        yield Setup(api, images, client)


def _assert_token_absent(exc: BaseException) -> None:
    chain: BaseException | None = exc
    while chain is not None:
        assert TOKEN not in str(chain)
        assert TOKEN not in repr(chain)
        chain = chain.__cause__


def test_create_by_version_then_get_until_succeeded_and_download(setup: Setup) -> None:
    created = setup.client.create_prediction(
        ESRGAN, ESRGAN.build_input(setup.image_url(), None, {})
    )
    assert created.status == "starting"
    assert not created.terminal
    assert created.input["image"] == setup.image_url()
    done = setup.wait(created.id)
    assert done.status == "succeeded"
    assert done.completed_at is not None
    assert done.predict_time is not None
    assert len(done.output_urls) == 1
    data = setup.client.download(done.output_urls[0], max_bytes=50_000_000)
    assert data.startswith(b"\x89PNG")


def test_official_models_are_created_through_the_models_route(setup: Setup) -> None:
    payload = NANO.build_input(setup.image_url(), "white background", {"aspect_ratio": "4:3"})
    created = setup.client.create_prediction(NANO, payload)
    assert setup.stats()["requests_by_endpoint"] == {"create_model_prediction": 1}
    assert setup.wait(created.id).status == "succeeded"


def test_cancel_turns_a_running_prediction_canceled(setup: Setup) -> None:
    setup.configure(latency_min=5, latency_max=5)
    created = setup.client.create_prediction(ESRGAN, {"image": setup.image_url()})
    canceled = setup.client.cancel_prediction(created.id)
    assert canceled.status == "canceled"
    assert canceled.terminal


def test_find_by_image_walks_pages_and_matches_the_url_prefix(setup: Setup) -> None:
    setup.configure(page_size=2, latency_min=5, latency_max=5)
    since = datetime.now(UTC) - timedelta(seconds=1)
    wanted = setup.client.create_prediction(ESRGAN, {"image": setup.image_url("sig=1")})
    for n in range(4):
        other = f"{setup.images}/store-food/kiwi-cutout.webp?sig={n}"
        setup.client.create_prediction(ESRGAN, {"image": other})
    prefix = f"{setup.images}/{PHOTO}"
    found = setup.client.find_predictions_by_image(prefix, created_after=since)
    assert [p.id for p in found] == [wanted.id]
    assert setup.stats()["requests_by_endpoint"]["list_predictions"] == 3


def test_find_by_image_stops_at_predictions_older_than_created_after(setup: Setup) -> None:
    setup.configure(page_size=1, latency_min=5, latency_max=5)
    setup.client.create_prediction(ESRGAN, {"image": setup.image_url()})
    found = setup.client.find_predictions_by_image(
        setup.images, created_after=datetime.now(UTC) + timedelta(seconds=5)
    )
    assert found == []
    assert setup.stats()["requests_by_endpoint"]["list_predictions"] == 1


def test_find_by_image_matches_elements_of_list_inputs(setup: Setup) -> None:
    payload = NANO.build_input(setup.image_url(), "x", {})
    created = setup.client.create_prediction(NANO, payload)
    found = setup.client.find_predictions_by_image(
        f"{setup.images}/{PHOTO}", created_after=datetime.now(UTC) - timedelta(minutes=1)
    )
    assert [p.id for p in found] == [created.id]


def test_429_becomes_rate_limited_with_the_retry_after_seconds(setup: Setup) -> None:
    setup.configure(create_rpm=1, window_seconds=20)
    setup.client.create_prediction(ESRGAN, {"image": setup.image_url()})
    with pytest.raises(ProviderRateLimited) as caught:
        setup.client.create_prediction(ESRGAN, {"image": setup.image_url()})
    assert 1 <= caught.value.retry_after <= 20
    assert caught.value.transient
    assert caught.value.code == "provider_rate_limited"


def test_5xx_becomes_provider_unavailable(setup: Setup) -> None:
    setup.configure(http_5xx_rate=1.0)
    with pytest.raises(ProviderUnavailable) as caught:
        setup.client.get_prediction("abc")
    assert caught.value.transient
    assert "503" in str(caught.value)


def test_malformed_json_becomes_a_protocol_error(setup: Setup) -> None:
    setup.configure(malformed_json_rate=1.0)
    with pytest.raises(ProviderProtocolError):
        setup.client.create_prediction(ESRGAN, {"image": setup.image_url()})
    assert setup.stats()["predictions_created"] == 1


def test_a_slow_provider_becomes_provider_timeout(setup: Setup) -> None:
    setup.configure(slow_response_seconds=1.5)
    with (
        ProviderClient(setup.api, TOKEN, timeout=0.3) as impatient,
        pytest.raises(ProviderTimeout) as caught,
    ):
        impatient.get_prediction("abc")
    _assert_token_absent(caught.value)


def test_a_closed_port_becomes_provider_unavailable() -> None:
    with serve_directory(IMAGES) as root:
        dead = root
    with (
        ProviderClient(f"{dead}/v1", TOKEN, timeout=2) as client,
        pytest.raises(ProviderUnavailable) as caught,
    ):
        client.get_prediction("abc")
    _assert_token_absent(caught.value)


def test_a_wrong_token_is_rejected_and_no_token_appears_in_the_error(setup: Setup) -> None:
    wrong = TOKEN[::-1]
    with ProviderClient(setup.api, wrong) as client, pytest.raises(ProviderRejected) as caught:
        client.create_prediction(ESRGAN, {"image": setup.image_url()})
    assert "401" in str(caught.value)
    assert "authentication" in str(caught.value)
    assert not caught.value.transient
    for secret in (wrong, TOKEN):
        assert secret not in str(caught.value)
        assert secret not in repr(caught.value)


def test_an_unknown_version_is_rejected_with_the_provider_detail(setup: Setup) -> None:
    spec = ESRGAN.__class__(**{**ESRGAN.__dict__, "version": "0" * 64})
    with pytest.raises(ProviderRejected, match="Invalid version"):
        setup.client.create_prediction(spec, {"image": setup.image_url()})


def test_a_token_echoed_by_the_provider_is_redacted_from_errors_and_logs() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"detail": f"bad header {request.headers['Authorization']}", "status": 400}
        )

    client = ProviderClient("https://provider.test/v1", TOKEN, transport=httpx.MockTransport(echo))
    with structlog.testing.capture_logs() as logs, pytest.raises(ProviderRejected) as caught:
        client.get_prediction("abc")
    _assert_token_absent(caught.value)
    assert "[redacted]" in str(caught.value)
    assert logs
    assert TOKEN not in str(logs)
    client.close()


def test_requests_carry_bearer_auth_and_our_user_agent() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "p1", "status": "processing"})

    with ProviderClient(
        "https://provider.test/v1", TOKEN, transport=httpx.MockTransport(record)
    ) as client:
        client.get_prediction("p1")
    assert seen[0].url == "https://provider.test/v1/predictions/p1"
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen[0].headers["User-Agent"].startswith("imageopt/")


def test_a_2xx_without_id_or_status_is_a_protocol_error() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json={"detail": "ok"}))
    with (
        ProviderClient("https://provider.test/v1", TOKEN, transport=transport) as client,
        pytest.raises(ProviderProtocolError),
    ):
        client.get_prediction("p1")


def test_an_http_date_retry_after_is_parsed_into_seconds() -> None:
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=90)
    headers = {"Retry-After": format_datetime(later, usegmt=True)}
    transport = httpx.MockTransport(lambda _: httpx.Response(429, headers=headers, json={}))
    with (
        ProviderClient("https://provider.test/v1", TOKEN, transport=transport) as client,
        pytest.raises(ProviderRateLimited) as caught,
    ):
        client.get_prediction("p1")
    assert 85 <= caught.value.retry_after <= 90


def test_a_missing_retry_after_uses_the_default() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(429, json={}))
    client = ProviderClient(
        "https://provider.test/v1", TOKEN, transport=transport, default_retry_after=7.0
    )
    with client, pytest.raises(ProviderRateLimited) as caught:
        client.get_prediction("p1")
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("12", 12.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0),
        ("Wed, 21 Oct 2015 07:26:00 GMT", 0.0),
        ("soon", 9.0),
        (None, 9.0),
        ("", 9.0),
    ],
)
def test_retry_after_parses_seconds_and_http_dates(header: str | None, expected: float) -> None:
    now = datetime(2015, 10, 21, 7, 27, tzinfo=UTC).timestamp()
    assert parse_retry_after(header, 9.0, now=now) == expected


def test_download_over_the_cap_is_output_invalid(setup: Setup) -> None:
    created = setup.client.create_prediction(ESRGAN, {"image": setup.image_url()})
    url = setup.wait(created.id).output_urls[0]
    with pytest.raises(OutputInvalid):
        setup.client.download(url, max_bytes=1000)


def test_download_of_an_expired_output_is_output_invalid(setup: Setup) -> None:
    with pytest.raises(OutputInvalid, match="404"):
        setup.client.download(f"{setup.root}/files/nope/output.png", max_bytes=1000)


def test_download_never_sends_the_api_token() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"png")

    transport = httpx.MockTransport(record)
    with ProviderClient(
        "https://provider.test/v1", TOKEN, transport=transport, output_hosts=("delivery.test",)
    ) as client:
        assert client.download("https://cdn.delivery.test/out.png", max_bytes=10) == b"png"
    assert "Authorization" not in seen[0].headers


def test_pagination_to_another_host_is_refused() -> None:
    page: dict[str, Any] = {
        "next": "https://evil.test/v1/predictions?cursor=2",
        "previous": None,
        "results": [],
    }
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json=page))
    with (
        ProviderClient("https://provider.test/v1", TOKEN, transport=transport) as client,
        pytest.raises(ProviderProtocolError, match="another host"),
    ):
        client.find_predictions_by_image("x", created_after=datetime.now(UTC))


def test_cancel_in_an_outage_is_a_provider_error_and_path_like_ids_are_rejected(
    setup: Setup,
) -> None:
    setup.configure(http_5xx_rate=1.0)
    with pytest.raises(ProviderError):
        setup.client.cancel_prediction("abc")
    with pytest.raises(ProviderRejected):
        setup.client.get_prediction("../secrets")
