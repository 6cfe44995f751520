"""The emulator over real sockets, driven by the official ``replicate`` client and raw httpx."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image, UnidentifiedImageError
from replicate.client import Client
from replicate.exceptions import ReplicateError

from devstack.emulator import run_emulator, serve_directory
from emulator.config import EmulatorConfig
from pipeline.allowlist import build_allowlist
from tests.support.rows import wait_until

pytestmark = pytest.mark.integration

IMAGES = "/work/shared/data/images"
PHOTO = "store-portraits/portrait-man-tshirt.jpg"  # 640x960: a 4x upscale stays quick
TOKEN = "r8_emulator_test_token"
ALLOWLIST = build_allowlist()
ESRGAN = ALLOWLIST["nightmareai/real-esrgan"]
ESRGAN_VERSION = str(ESRGAN.version)


class Emulator:
    """A running emulator plus handy URLs and a control-plane client."""

    def __init__(self, api: str, images: str) -> None:
        self.api = api
        self.root = api.removesuffix("/v1")
        self.images = images
        self.http = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def configure(self, **changes: Any) -> None:
        response = self.http.post(f"{self.root}/_emulator/config", json=changes)
        assert response.status_code == 200, response.text

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get(f"{self.root}/_emulator/stats").json())

    def image_url(self, path: str = PHOTO, query: str = "X-Amz-Signature=abc") -> str:
        return f"{self.images}/{path}?{query}"

    def wait(self, prediction_id: str, timeout: float = 15.0) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            body = dict(self.http.get(f"{self.api}/predictions/{prediction_id}").json())
            return body if body["status"] in ("succeeded", "failed", "canceled") else None

        return wait_until(finished, timeout, f"prediction {prediction_id} did not finish")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    config = EmulatorConfig(token=TOKEN, latency_min=0.05, latency_max=0.15, rng_seed=7)
    with serve_directory(IMAGES) as images, run_emulator(config) as api:
        helper = Emulator(api, images)
        yield helper
        helper.http.close()


@pytest.fixture
def official(emulator: Emulator) -> Iterator[Client]:
    """The official client; it has no close(), so we own (and close) its transport."""
    transport = httpx.HTTPTransport()
    yield Client(api_token=TOKEN, base_url=emulator.root, transport=transport)
    transport.close()


def _photo_size(path: str = PHOTO) -> tuple[int, int]:
    with Image.open(f"{IMAGES}/{path}") as image:
        return image.size


def _download_image(url: str) -> Image.Image:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def test_real_esrgan_by_version_gives_an_image_four_times_larger(
    emulator: Emulator, official: Client
) -> None:
    prediction = official.predictions.create(
        version=ESRGAN_VERSION, input={"image": emulator.image_url(), "scale": 4}
    )
    initial_status: str = prediction.status
    assert initial_status in ("starting", "processing")
    assert prediction.urls is not None
    assert prediction.urls["get"] == f"{emulator.api}/predictions/{prediction.id}"
    prediction.wait()
    assert prediction.status == "succeeded", prediction.error
    assert prediction.version == ESRGAN.version
    assert prediction.model == "nightmareai/real-esrgan"
    assert isinstance(prediction.output, str)
    assert prediction.metrics is not None
    assert prediction.metrics["predict_time"] > 0
    width, height = _photo_size()
    assert _download_image(prediction.output).size == (width * 4, height * 4)


def test_nano_banana_by_model_draws_the_fixed_size_of_the_requested_aspect_ratio(
    emulator: Emulator, official: Client
) -> None:
    prediction = official.models.predictions.create(
        model="google/nano-banana",
        input={
            "prompt": "clean white background",
            "image_input": [emulator.image_url()],
            "aspect_ratio": "16:9",
            "output_format": "jpg",
        },
    )
    prediction.wait()
    assert prediction.status == "succeeded", prediction.error
    assert isinstance(prediction.output, str)
    assert prediction.output.endswith("/output.jpg")
    output = _download_image(prediction.output)
    assert output.format == "JPEG"
    assert output.size == (1344, 768)  # Gemini's 16:9 size (pipeline/model_outputs.py)


def test_version_may_be_given_as_owner_name_colon_id(emulator: Emulator) -> None:
    body = {"version": f"{ESRGAN.name}:{ESRGAN.version}", "input": {"image": emulator.image_url()}}
    response = emulator.http.post(f"{emulator.api}/predictions", json=body)
    assert response.status_code == 201
    assert response.json()["model"] == ESRGAN.name


def test_sdxl_output_is_a_list_with_one_url_and_the_inputs_size(emulator: Emulator) -> None:
    sdxl = ALLOWLIST["stability-ai/sdxl"]
    body = {"version": sdxl.version, "input": {"image": emulator.image_url(), "prompt": "x"}}
    created = emulator.http.post(f"{emulator.api}/predictions", json=body).json()
    done = emulator.wait(created["id"])
    assert isinstance(done["output"], list)
    assert len(done["output"]) == 1
    assert _download_image(done["output"][0]).size == _photo_size()  # 640x960: multiples of 8


def test_a_wrong_or_missing_token_is_answered_401(emulator: Emulator) -> None:
    with httpx.HTTPTransport() as transport:
        wrong = Client(api_token="not-the-token", base_url=emulator.root, transport=transport)
        with pytest.raises(ReplicateError) as caught:
            wrong.predictions.create(version=ESRGAN_VERSION, input={"image": emulator.image_url()})
    assert caught.value.status == 401
    missing = httpx.get(f"{emulator.api}/predictions/abc")
    assert missing.status_code == 401
    assert missing.json()["status"] == 401


def test_the_token_scheme_is_accepted_like_bearer(emulator: Emulator) -> None:
    response = httpx.get(f"{emulator.api}/predictions", headers={"Authorization": f"Token {TOKEN}"})
    assert response.status_code == 200


def test_creating_beyond_create_rpm_is_answered_429_with_retry_after(
    emulator: Emulator, official: Client
) -> None:
    emulator.configure(create_rpm=2, window_seconds=30)
    for _ in range(2):
        official.predictions.create(version=ESRGAN_VERSION, input={"image": emulator.image_url()})
    with pytest.raises(ReplicateError) as caught:
        official.predictions.create(version=ESRGAN_VERSION, input={"image": emulator.image_url()})
    assert caught.value.status == 429
    raw = emulator.http.post(
        f"{emulator.api}/predictions",
        json={"version": ESRGAN.version, "input": {"image": emulator.image_url()}},
    )
    assert raw.status_code == 429
    assert 1 <= int(raw.headers["Retry-After"]) <= 30
    assert raw.json()["title"] == "Request was throttled."
    stats = emulator.stats()
    assert stats["responses_429"] == 2
    assert stats["predictions_created"] == 2


def test_reads_have_their_own_budget(emulator: Emulator) -> None:
    emulator.configure(read_rpm=1, create_rpm=100)
    assert emulator.http.get(f"{emulator.api}/predictions").status_code == 200
    assert emulator.http.get(f"{emulator.api}/predictions").status_code == 429
    body = {"version": ESRGAN.version, "input": {"image": emulator.image_url()}}
    assert emulator.http.post(f"{emulator.api}/predictions", json=body).status_code == 201


def test_stats_count_predictions_by_input_url_without_query_string(emulator: Emulator) -> None:
    body = {"version": ESRGAN.version, "input": {"image": emulator.image_url(query="sig=1")}}
    emulator.http.post(f"{emulator.api}/predictions", json=body)
    body["input"] = {"image": emulator.image_url(query="sig=2")}
    emulator.http.post(f"{emulator.api}/predictions", json=body)
    stats = emulator.stats()
    assert stats["predictions_created"] == 2
    assert stats["created_by_input"] == {f"{emulator.images}/{PHOTO}": 2}
    assert stats["requests_by_endpoint"]["create_prediction"] == 2


def test_unknown_model_is_404_and_unknown_version_is_422(emulator: Emulator) -> None:
    unknown_model = emulator.http.post(
        f"{emulator.api}/models/acme/unknown/predictions", json={"input": {}}
    )
    assert unknown_model.status_code == 404
    bad_version = emulator.http.post(
        f"{emulator.api}/predictions", json={"version": "deadbeef", "input": {}}
    )
    assert bad_version.status_code == 422
    assert bad_version.json()["detail"] == "Invalid version or not permitted"


def test_an_input_without_its_image_field_is_422(emulator: Emulator) -> None:
    response = emulator.http.post(
        f"{emulator.api}/models/google/nano-banana/predictions",
        json={"input": {"prompt": "x", "image": emulator.image_url()}},
    )
    assert response.status_code == 422
    assert "image_input" in response.json()["detail"]
    assert emulator.stats()["predictions_created"] == 0


def test_an_unreachable_input_ends_failed_with_an_error(emulator: Emulator) -> None:
    body = {"version": ESRGAN.version, "input": {"image": emulator.image_url("missing.jpg")}}
    created = emulator.http.post(f"{emulator.api}/predictions", json=body).json()
    done = emulator.wait(created["id"])
    assert done["status"] == "failed"
    assert "HTTP 404" in done["error"]


def test_a_running_prediction_can_be_canceled(emulator: Emulator, official: Client) -> None:
    emulator.configure(latency_min=5, latency_max=5)
    prediction = official.predictions.create(
        version=ESRGAN_VERSION, input={"image": emulator.image_url()}
    )
    prediction.cancel()
    prediction.reload()
    assert prediction.status == "canceled"
    assert emulator.stats()["status_counts"] == {"canceled": 1}


def test_listing_pages_newest_first_with_a_cursor(emulator: Emulator, official: Client) -> None:
    emulator.configure(page_size=2)
    created = [
        official.predictions.create(
            version=ESRGAN_VERSION, input={"image": emulator.image_url(query=f"n={n}")}
        ).id
        for n in range(5)
    ]
    seen: list[str] = []
    page = official.predictions.list()
    while True:
        seen.extend(prediction.id for prediction in page)
        if page.next is None:
            break
        page = official.predictions.list(cursor=page.next)
    assert seen == list(reversed(created))


def test_failure_rate_one_fails_every_prediction(emulator: Emulator) -> None:
    emulator.configure(failure_rate=1.0)
    body = {"version": ESRGAN.version, "input": {"image": emulator.image_url()}}
    created = emulator.http.post(f"{emulator.api}/predictions", json=body).json()
    done = emulator.wait(created["id"])
    assert done["status"] == "failed"
    assert done["error"]


def test_never_finish_keeps_a_prediction_processing(emulator: Emulator) -> None:
    emulator.configure(never_finish_rate=1.0, latency_min=0.0, latency_max=0.0)
    body = {"version": ESRGAN.version, "input": {"image": emulator.image_url()}}
    created = emulator.http.post(f"{emulator.api}/predictions", json=body).json()
    # A prediction created after it, with the same zero latency, that does finish: once the
    # emulator counts it finished, the first one's timers have fired too (same event loop,
    # armed earlier), so "still processing" is the emulator's answer, not a slow start.
    emulator.configure(never_finish_rate=0.0)
    later = emulator.http.post(f"{emulator.api}/predictions", json=body).json()
    wait_until(
        lambda: emulator.stats()["status_counts"].get("succeeded") == 1,
        60,  # an upper bound only (a loaded CI host), the wait ends as soon as it holds
        "the later prediction not counted finished",
    )
    current = emulator.http.get(f"{emulator.api}/predictions/{created['id']}").json()
    assert current["status"] == "processing"
    assert emulator.stats()["status_counts"] == {"processing": 1, "succeeded": 1}
    assert emulator.wait(later["id"])["status"] == "succeeded"


def test_http_5xx_rate_answers_503_without_creating(emulator: Emulator) -> None:
    emulator.configure(http_5xx_rate=1.0)
    body = {"version": ESRGAN.version, "input": {"image": emulator.image_url()}}
    response = emulator.http.post(f"{emulator.api}/predictions", json=body)
    assert response.status_code == 503
    assert emulator.stats()["predictions_created"] == 0


def test_malformed_json_still_creates_the_prediction(emulator: Emulator) -> None:
    emulator.configure(malformed_json_rate=1.0)
    body = {"version": ESRGAN.version, "input": {"image": emulator.image_url()}}
    response = emulator.http.post(f"{emulator.api}/predictions", json=body)
    assert response.status_code == 201
    with pytest.raises(ValueError, match=r"Expecting|Unterminated|delimiter"):
        response.json()
    assert emulator.stats()["predictions_created"] == 1


def test_prefer_wait_holds_the_create_answer_until_the_prediction_is_done(
    emulator: Emulator,
) -> None:
    body = {"version": ESRGAN.version, "input": {"image": emulator.image_url(), "scale": 2}}
    response = emulator.http.post(
        f"{emulator.api}/predictions", json=body, headers={"Prefer": "wait=10"}
    )
    assert response.status_code == 201
    assert response.json()["status"] == "succeeded"


def test_prefer_wait_shorter_than_the_prediction_answers_it_running_after_the_wait(
    emulator: Emulator,
) -> None:
    emulator.configure(latency_min=4, latency_max=4)
    body = {"version": ESRGAN.version, "input": {"image": emulator.image_url(), "scale": 2}}
    started = time.monotonic()
    response = emulator.http.post(
        f"{emulator.api}/predictions", json=body, headers={"Prefer": "wait=1"}
    )
    held = time.monotonic() - started
    assert response.status_code == 201
    assert response.json()["status"] in ("starting", "processing")
    assert held >= 1.0  # held for the wait, not answered at once


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("not_image", "unidentified"), ("truncated", "truncated"), ("bomb", "bomb")],
)
def test_output_modes_serve_hostile_files(emulator: Emulator, mode: str, expected: str) -> None:
    body = {"version": ESRGAN.version, "input": {"image": emulator.image_url(), "scale": 1}}
    done = emulator.wait(emulator.http.post(f"{emulator.api}/predictions", json=body).json()["id"])
    emulator.configure(output_mode=mode)
    data = httpx.get(done["output"], timeout=30).content
    outcome = "ok"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Image.DecompressionBombError:
        outcome = "bomb"
    except UnidentifiedImageError:
        outcome = "unidentified"
    except OSError:
        outcome = "truncated"
    assert outcome == expected


def test_the_huge_output_mode_serves_a_large_valid_image(emulator: Emulator) -> None:
    emulator.configure(huge_bytes=2_000_000)
    body = {"version": ESRGAN.version, "input": {"image": emulator.image_url(), "scale": 1}}
    done = emulator.wait(emulator.http.post(f"{emulator.api}/predictions", json=body).json()["id"])
    emulator.configure(output_mode="huge")
    response = httpx.get(done["output"], timeout=30)
    assert len(response.content) > 1_900_000
    assert Image.open(io.BytesIO(response.content)).format == "PNG"


def test_runtime_config_rejects_fixed_or_invalid_fields(emulator: Emulator) -> None:
    fixed = emulator.http.post(f"{emulator.root}/_emulator/config", json={"max_workers": 2})
    assert fixed.status_code == 422
    invalid = emulator.http.post(f"{emulator.root}/_emulator/config", json={"failure_rate": 2})
    assert invalid.status_code == 422
    shown = emulator.http.get(f"{emulator.root}/_emulator/config").json()
    assert shown["token"] == "set"
    assert TOKEN not in str(shown)


def test_reset_forgets_predictions_and_restores_the_startup_config(emulator: Emulator) -> None:
    emulator.configure(create_rpm=1)
    body = {"version": ESRGAN.version, "input": {"image": emulator.image_url()}}
    emulator.http.post(f"{emulator.api}/predictions", json=body)
    assert emulator.http.post(f"{emulator.api}/predictions", json=body).status_code == 429
    emulator.http.post(f"{emulator.root}/_emulator/reset")
    assert emulator.stats()["predictions_created"] == 0
    assert emulator.http.post(f"{emulator.api}/predictions", json=body).status_code == 201
    assert emulator.http.post(f"{emulator.api}/predictions", json=body).status_code == 201


def test_unknown_routes_answer_replicate_style_json(emulator: Emulator) -> None:
    response = emulator.http.get(f"{emulator.api}/nothing-here")
    assert response.status_code == 404
    assert response.json()["status"] == 404


def test_the_official_client_reads_models_versions_and_the_webhook_secret(
    emulator: Emulator, official: Client
) -> None:
    model = official.models.get("nightmareai/real-esrgan")
    assert (model.owner, model.name) == ("nightmareai", "real-esrgan")
    assert model.latest_version is not None
    assert model.latest_version.id == ESRGAN_VERSION
    versions = list(model.versions.list())
    assert [v.id for v in versions] == [ESRGAN_VERSION]
    assert model.versions.get(ESRGAN_VERSION).id == ESRGAN_VERSION
    official_model = official.models.get("google/nano-banana")  # no pinned version
    assert official_model.latest_version is not None
    with pytest.raises(ReplicateError):
        official.models.get("nobody/nothing")
    secret = official.webhooks.default.secret()
    assert secret.key is not None
    assert secret.key.startswith("whsec_")


def test_a_data_url_input_up_to_256_kb_is_accepted_and_a_larger_one_refused(
    emulator: Emulator, official: Client
) -> None:
    image = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 30)).save(image, "PNG")
    small = "data:image/png;base64," + base64.b64encode(image.getvalue()).decode()
    prediction = official.predictions.create(
        version=ESRGAN_VERSION, input={"image": small, "scale": 2}
    )
    prediction.wait()
    assert prediction.status == "succeeded", prediction.error
    assert isinstance(prediction.output, str)
    assert _download_image(prediction.output).size == (64, 48)
    big = (
        "data:application/octet-stream;base64,"
        + base64.b64encode(b"\0" * (256 * 1024 + 1)).decode()
    )
    with pytest.raises(ReplicateError) as refused:
        official.predictions.create(version=ESRGAN_VERSION, input={"image": big})
    assert refused.value.status == 422
