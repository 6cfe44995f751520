"""The real models' output geometry and the model + preset size preview (pure logic).

The geometry rules are the models' own code (sources in ``pipeline/model_outputs.py``); the
preview is checked against the geometry the pipeline's own steps produce, and its bytes against
the same stand-in encoded whole (the sampling's own error; the error against the pipeline's
results is ``bench/bench_preview.py``'s).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from pipeline.allowlist import build_allowlist
from pipeline.images import normalize_input
from pipeline.model_outputs import GEMINI_SIZES, model_output, nearest_ratio
from pipeline.presets import BUILTIN_PRESETS, plan_geometry
from pipeline.preview import preview_pipeline

MAX_PIXELS = 50_000_000
MODELS = build_allowlist()
PHOTO = "store-fashion/banner-boots-wide.jpg"  # 1920x793


@pytest.mark.parametrize(
    ("model", "params", "size", "alpha", "expected"),
    [
        ("nightmareai/real-esrgan", {}, (1000, 700), False, (4000, 2800, "png")),
        ("nightmareai/real-esrgan", {"scale": 2}, (1001, 333), True, (2002, 666, "png")),
        ("tencentarc/gfpgan", {}, (800, 600), False, (1600, 1200, "jpeg")),
        ("tencentarc/gfpgan", {"scale": 3}, (800, 600), False, (1200, 900, "jpeg")),
        # under 300 px high: doubled first, then x2 (scale 2) or scale/2 of the doubled input
        ("tencentarc/gfpgan", {"scale": 2}, (400, 200), True, (1600, 800, "png")),
        ("tencentarc/gfpgan", {"scale": 1}, (400, 200), False, (400, 200, "jpeg")),
        ("sczhou/codeformer", {}, (1200, 800), False, (2400, 1600, "png")),
        ("sczhou/codeformer", {"upscale": 1}, (400, 300), False, (683, 512, "png")),
        ("google/nano-banana", {"aspect_ratio": "16:9"}, (500, 500), False, (1344, 768, "png")),
        ("google/nano-banana", {"output_format": "jpg"}, (900, 1600), False, (1024, 1024, "jpeg")),
        ("google/nano-banana", {"aspect_ratio": "match_input_image"}, (900, 1600), False,
         (768, 1344, "png")),
        ("stability-ai/sdxl", {}, (1183, 885), False, (1176, 880, "png")),
    ],
)  # fmt: skip
def test_each_model_gives_its_documented_output_size_and_format(
    model: str,
    params: dict[str, object],
    size: tuple[int, int],
    alpha: bool,
    expected: tuple[int, int, str],
) -> None:
    spec = MODELS[model]
    out = model_output(spec, {**spec.defaults, **params}, *size, alpha=alpha)
    assert (out.width, out.height, out.format) == expected


def test_nearest_ratio_picks_the_listed_ratio_closest_to_the_input() -> None:
    assert nearest_ratio(1920, 1080) == "16:9"
    assert nearest_ratio(1000, 1010) == "1:1"
    assert nearest_ratio(3000, 1200) == "21:9"
    assert set(GEMINI_SIZES) <= {"match_input_image", *MODELS["google/nano-banana"]
                                 .allowed_params["aspect_ratio"].describe()["choices"]}  # fmt: skip


def _provider_input(data: bytes, model: str) -> tuple[int, int]:
    normalized = normalize_input(
        data, max_pixels=MAX_PIXELS, target_max_pixels=MODELS[model].max_input_pixels
    )
    return normalized.width, normalized.height


def test_preview_of_an_upscale_without_preset_is_the_models_png_of_four_times_the_input(
    images_dir: Path,
) -> None:
    data = (images_dir / PHOTO).read_bytes()
    spec = MODELS["nightmareai/real-esrgan"]
    est = preview_pipeline(data, spec, {}, None, max_pixels=MAX_PIXELS)
    width, height = _provider_input(data, spec.name)
    assert (est.width, est.height) == (4 * width, 4 * height)
    assert est.content_type == "image/png"
    assert est.preset is None
    assert est.model is not None
    assert (est.model.input_width, est.model.input_height) == (width, height)
    assert est.model.params == {"scale": 4, "face_enhance": False}
    assert est.method == "sampled"
    assert est.sampled_fraction < 0.25  # within the pixel budget, not a quarter of 10 MP
    # The preview of the model's file is far larger than the preset-only figure was.
    assert est.estimated_bytes > 5 * len(data)
    as_dict = est.as_dict()
    assert as_dict["model"] == est.model.as_dict()


def test_preview_with_a_preset_has_the_presets_exact_geometry_on_the_models_output(
    images_dir: Path,
) -> None:
    data = (images_dir / PHOTO).read_bytes()
    spec = MODELS["nightmareai/real-esrgan"]
    width, height = _provider_input(data, spec.name)
    for name in ("web-2048", "square-1080", "thumb-400", "square-1080-crop"):
        preset = BUILTIN_PRESETS[name]
        est = preview_pipeline(data, spec, {"scale": 2}, preset, max_pixels=MAX_PIXELS)
        canvas = plan_geometry(2 * width, 2 * height, preset).canvas
        assert (est.width, est.height) == canvas, name
        assert est.content_type == preset.content_type
        assert est.preset == name


def test_a_small_pixel_budget_stays_close_to_a_quarter_sample_of_the_models_file(
    images_dir: Path,
) -> None:
    data = (images_dir / PHOTO).read_bytes()
    spec = MODELS["sczhou/codeformer"]
    sampled = preview_pipeline(data, spec, {}, None, max_pixels=MAX_PIXELS, sample_pixels=500_000)
    quarter = preview_pipeline(data, spec, {}, None, max_pixels=MAX_PIXELS, sample_pixels=10**9)
    assert sampled.sampled_fraction < 0.2 < quarter.sampled_fraction
    assert abs(sampled.estimated_bytes - quarter.estimated_bytes) / quarter.estimated_bytes < 0.1


def test_prompt_edit_model_reframes_to_its_fixed_size(images_dir: Path) -> None:
    data = (images_dir / PHOTO).read_bytes()
    spec = MODELS["google/nano-banana"]
    est = preview_pipeline(data, spec, {"output_format": "jpg"}, None, max_pixels=MAX_PIXELS)
    assert (est.width, est.height, est.content_type) == (1024, 1024, "image/jpeg")
    with Image.open(io.BytesIO(data)) as image:
        assert image.size != (est.width, est.height)
