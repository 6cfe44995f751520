"""The size preview of a huge custom preset over HTTP (real Postgres, Redis, S3; the api under
uvicorn): a store's 8192 x 8192 upscaling preset is laid out within
``IMAGEOPT_PREVIEW_MAX_RENDER_PIXELS`` inside the api, with and without a model, and the answer
says so (``method: downscaled``, ``renderWidth`` x ``renderHeight``) while keeping the exact
output size; a preset within the budget is rendered at full size; ``imageopt preview`` keeps
the same budget and says so too."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from pipeline.presets import add_custom_preset
from pipeline.repository import Repository
from tests.support.api import HIGH_LIMITS, store_client

pytestmark = pytest.mark.integration

BUDGET = 2_000_000
PHOTO = "store-food/coffee-cup.png"  # 600 x 400
POSTER = {"format": "jpeg", "width": 8192, "height": 8192, "fit": "contain", "upscale": True}


@pytest.fixture
def api_env(pipeline_env: dict[str, str]) -> dict[str, str]:
    """The shared ``api`` and ``repo`` fixtures (tests/support/api_fixtures.py) use these."""
    return {
        **pipeline_env,
        **HIGH_LIMITS,
        "IMAGEOPT_API_PRESET_WRITES_PER_MINUTE": "1000",
        "IMAGEOPT_PREVIEW_MAX_RENDER_PIXELS": str(BUDGET),
    }


@pytest.fixture
def photo(images_dir: Path) -> bytes:
    return (images_dir / PHOTO).read_bytes()


def test_a_huge_custom_preset_is_previewed_within_the_render_budget(
    api: str, repo: Repository, photo: bytes
) -> None:
    shop = store_client(api, repo, "shop-1")
    created = shop.post("/api/presets", json={"name": "poster", "spec": POSTER})
    assert created.status_code == 201, created.text
    files = {"image": ("coffee.png", photo, "image/png")}

    alone = shop.post("/api/preview", files=files, data={"preset": "poster"})
    with_model = shop.post(
        "/api/preview", files=files,
        data={"preset": "poster", "model": "nightmareai/real-esrgan", "params": '{"scale": 2}'},
    )  # fmt: skip

    for response in (alone, with_model):
        assert response.status_code == 200, response.text
        preview = response.json()["data"]
        assert (preview["width"], preview["height"]) == (8192, 5461)  # 3:2, exact
        assert preview["method"] == "downscaled"
        rendered = preview["renderWidth"] * preview["renderHeight"]
        assert BUDGET * 0.99 < rendered <= BUDGET
        assert preview["renderWidth"] / preview["renderHeight"] == pytest.approx(1.5, rel=0.01)
        assert preview["estimatedBytes"] > 0


def test_a_preset_within_the_budget_is_rendered_at_its_full_size(
    api: str, repo: Repository, photo: bytes
) -> None:
    shop = store_client(api, repo, "shop-1")
    files = {"image": ("coffee.png", photo, "image/png")}

    response = shop.post("/api/preview", files=files, data={"preset": "web-2048"})

    assert response.status_code == 200, response.text
    preview = response.json()["data"]
    assert preview["method"] in ("exact", "sampled")
    assert (preview["renderWidth"], preview["renderHeight"]) == (
        preview["width"], preview["height"],
    )  # fmt: skip


def test_the_cli_preview_of_a_huge_preset_keeps_the_budget_and_names_the_render(
    repo: Repository, api_env: dict[str, str], images_dir: Path
) -> None:
    add_custom_preset(repo, "shop-1", "poster", POSTER)
    photo = str(images_dir / PHOTO)

    line = CliRunner().invoke(
        app, ["preview", photo, "--preset", "poster", "--store", "shop-1"], env=api_env
    )

    assert line.exit_code == 0, line.output
    words = line.stdout.split()
    assert words[1:3] == ["8192x5461", "image/jpeg"]
    assert "(downscaled from a " in line.stdout
    width, height = (int(n) for n in words[words.index("render;") - 1].split("x"))
    assert width * height <= BUDGET
