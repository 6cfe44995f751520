"""Each emulated model, on a running emulator over sockets with real photos from the corpus,
returns the real model's output size, format and alpha (rules and sources:
``pipeline/model_outputs.py``; the emulator's table: docs/EMULATOR.md).

The expected sizes are worked out by hand from those rules, not computed by the code under
test."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, NamedTuple

import httpx
import pytest
from PIL import Image

from devstack.emulator import run_emulator, serve_directory
from emulator.config import EmulatorConfig

pytestmark = pytest.mark.integration

IMAGES = "/work/shared/data/images"
TOKEN = "r8_model_files_token"
PORTRAIT = "store-portraits/portrait-man-tshirt.jpg"  # 640x960 JPEG
MOTORBIKE = "store-portraits/portrait-man-motorbike.jpg"  # 640x962 JPEG
TINY = "store-portraits/portrait-hopper-tiny-exif6.jpg"  # 128x128 JPEG
AVOCADO = "store-food/avocado-cutout.png"  # 400x273 PNG with alpha
CHERRIES = "store-food/cherries-cutout.png"  # 340x400 PNG with alpha
BANNER = "store-fashion/banner-boots-wide.jpg"  # 1920x793 JPEG
MUGS = "store-furniture/mugs-github.jpg"  # 1024x685 JPEG
ESRGAN, GFPGAN, CODEFORMER = "nightmareai/real-esrgan", "tencentarc/gfpgan", "sczhou/codeformer"
NANO, SDXL = "google/nano-banana", "stability-ai/sdxl"


class Case(NamedTuple):
    """One prediction and the file the real model gives for it."""

    model: str
    image: str
    extra: dict[str, Any]  # the input besides the image and the prompt
    size: tuple[int, int]
    format: str
    mode: str


CASES: dict[str, Case] = {
    "real-esrgan, default scale 4, alpha kept":
        Case(ESRGAN, AVOCADO, {}, (1600, 1092), "PNG", "RGBA"),
    "real-esrgan, scale 2":
        Case(ESRGAN, PORTRAIT, {"scale": 2}, (1280, 1920), "PNG", "RGB"),
    "gfpgan, default scale 2, under 300 px high doubled first":
        Case(GFPGAN, TINY, {}, (512, 512), "JPEG", "RGB"),
    "gfpgan, scale 3 of a JPEG":
        Case(GFPGAN, MOTORBIKE, {"scale": 3}, (960, 1443), "JPEG", "RGB"),
    "gfpgan, alpha gives a PNG":
        Case(GFPGAN, AVOCADO, {"scale": 2}, (1600, 1092), "PNG", "RGBA"),
    "codeformer, default upscale 2":
        Case(CODEFORMER, PORTRAIT, {}, (1280, 1920), "PNG", "RGB"),
    "codeformer, shorter side under 512 px enlarged first, alpha dropped":
        Case(CODEFORMER, CHERRIES, {"upscale": 1}, (512, 602), "PNG", "RGB"),
    "nano-banana, defaults: the input's ratio (2:3) and a JPEG":
        Case(NANO, PORTRAIT, {}, (832, 1248), "JPEG", "RGB"),
    "nano-banana, 16:9 PNG":
        Case(NANO, BANNER, {"aspect_ratio": "16:9", "output_format": "png"}, (1344, 768), "PNG",
             "RGB"),
    "nano-banana, 1:1 JPEG of a cutout":
        Case(NANO, AVOCADO, {"aspect_ratio": "1:1", "output_format": "jpg"}, (1024, 1024),
             "JPEG", "RGB"),
    "sdxl, the input's size floored to a multiple of 8":
        Case(SDXL, MOTORBIKE, {}, (640, 960), "PNG", "RGB"),
    "sdxl, landscape":
        Case(SDXL, MUGS, {"prompt_strength": 0.8}, (1024, 680), "PNG", "RGB"),
}  # fmt: skip
IMAGE_FIELD = {GFPGAN: "img"}
NEEDS_PROMPT = {NANO, SDXL}


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[httpx.Client, str, str]]:
    config = EmulatorConfig(token=TOKEN, latency_min=0.0, latency_max=0.05, rng_seed=3)
    with (
        serve_directory(IMAGES) as images,
        run_emulator(config) as api,
        httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=90) as http,
    ):
        yield http, api, images


def _input(model: str, url: str, extra: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {**extra}
    if model == NANO:
        body["image_input"] = [url]
    else:
        body[IMAGE_FIELD.get(model, "image")] = url
    if model in NEEDS_PROMPT:
        body["prompt"] = "the same product, studio light"
    return body


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_model_returns_the_real_models_size_format_and_alpha(
    emulator: tuple[httpx.Client, str, str], case: Case
) -> None:
    http, api, images = emulator
    response = http.post(
        f"{api}/models/{case.model}/predictions",
        json={"input": _input(case.model, f"{images}/{case.image}", case.extra)},
        headers={"Prefer": "wait=60"},
    )
    assert response.status_code == 201, response.text
    prediction = response.json()
    assert prediction["status"] == "succeeded", prediction["error"]
    output = prediction["output"]
    if case.model == SDXL:  # the real SDXL returns a list of files
        assert isinstance(output, list)
        assert len(output) == 1
        output = output[0]
    extension = {"PNG": "png", "JPEG": "jpg"}[case.format]
    assert output.endswith(f"/output.{extension}")
    file = httpx.get(output, timeout=30)
    assert file.headers["content-type"] == f"image/{case.format.lower()}"
    with Image.open(io.BytesIO(file.content)) as picture:
        picture.load()
        assert (picture.size, picture.format, picture.mode) == (case.size, case.format, case.mode)
