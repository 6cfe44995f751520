"""The emulator's classical image operations and output files, on generated images and
real photos: each model's output has the real model's size, format and alpha."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw

from emulator import ops
from emulator.limits import SlidingWindowLimiter, retry_after_header
from emulator.model_files import MAX_OUTPUT_PIXELS, SIZE_INPUTS, output_file
from pipeline.allowlist import ModelSpec, build_allowlist
from pipeline.model_outputs import model_output

PHOTO = Path("/work/shared/data/images/store-portraits/portrait-man-tshirt.jpg")
EXIF_ROTATED = Path("/work/shared/data/images/store-fashion/jeans-men-03-exif-rotated.jpg")
MODELS = build_allowlist()
ESRGAN = MODELS["nightmareai/real-esrgan"]
GFPGAN = MODELS["tencentarc/gfpgan"]
CODEFORMER = MODELS["sczhou/codeformer"]
NANO = MODELS["google/nano-banana"]
SDXL = MODELS["stability-ai/sdxl"]


def _pattern(width: int, height: int, mode: str = "RGB") -> Image.Image:
    image = Image.new(mode, (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((width // 4, height // 4, width // 2, height // 2), fill="red")
    draw.line((0, 0, width, height), fill="blue", width=2)
    return image


def _translucent(width: int, height: int) -> Image.Image:
    image = _pattern(width, height, "RGBA")
    image.putalpha(128)
    return image


def _file(spec: ModelSpec, image: Image.Image, params: dict[str, object]) -> Image.Image:
    result, output = ops.run_model_op(spec, image, params)
    data, ext, content_type = ops.encode(result, output)
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    assert ext == {"PNG": "png", "JPEG": "jpg"}[str(decoded.format)]
    assert content_type == {"PNG": "image/png", "JPEG": "image/jpeg"}[str(decoded.format)]
    return decoded


def test_every_allowlisted_model_says_which_inputs_decide_its_output() -> None:
    assert set(SIZE_INPUTS) == set(MODELS)


Expected = tuple[tuple[int, int], str, str]
MODEL_CASES: list[tuple[ModelSpec, dict[str, object], tuple[int, int], str, Expected]] = [
    # model, input, input size and mode, expected (size, format, mode): by hand from the
    # rules in pipeline/model_outputs.py
    (ESRGAN, {"scale": 4}, (40, 30), "RGB", ((160, 120), "PNG", "RGB")),
    (ESRGAN, {}, (40, 30), "RGBA", ((160, 120), "PNG", "RGBA")),
    (ESRGAN, {"scale": 2}, (40, 30), "RGB", ((80, 60), "PNG", "RGB")),
    (GFPGAN, {}, (500, 400), "RGB", ((1000, 800), "JPEG", "RGB")),
    (GFPGAN, {"scale": 3}, (500, 400), "RGB", ((750, 600), "JPEG", "RGB")),
    (GFPGAN, {"scale": 2}, (400, 200), "RGB", ((1600, 800), "JPEG", "RGB")),
    (GFPGAN, {"scale": 1}, (400, 200), "RGBA", ((400, 200), "PNG", "RGBA")),
    (CODEFORMER, {}, (600, 520), "RGB", ((1200, 1040), "PNG", "RGB")),
    (CODEFORMER, {"upscale": 1}, (400, 300), "RGBA", ((683, 512), "PNG", "RGB")),
    (NANO, {"aspect_ratio": "16:9", "output_format": "png"}, (400, 300), "RGB",
     ((1344, 768), "PNG", "RGB")),
    (NANO, {"aspect_ratio": "1:1", "output_format": "png"}, (400, 300), "RGBA",
     ((1024, 1024), "PNG", "RGB")),
    (NANO, {}, (400, 300), "RGB", ((1184, 864), "JPEG", "RGB")),
    (NANO, {"aspect_ratio": "match_input_image", "output_format": "jpg"}, (300, 400), "RGB",
     ((864, 1184), "JPEG", "RGB")),
    (SDXL, {}, (301, 203), "RGB", ((296, 200), "PNG", "RGB")),
    (SDXL, {"num_inference_steps": 20}, (1024, 1024), "RGBA", ((1024, 1024), "PNG", "RGB")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "params", "size", "mode", "expected"),
    MODEL_CASES,
    ids=lambda value: value.name if isinstance(value, ModelSpec) else None,
)
def test_each_model_writes_the_real_models_size_format_and_alpha(
    spec: ModelSpec,
    params: dict[str, object],
    size: tuple[int, int],
    mode: str,
    expected: Expected,
) -> None:
    source = _translucent(*size) if mode == "RGBA" else _pattern(*size)
    output = _file(spec, source, params)
    assert (output.size, output.format, output.mode) == expected


def test_the_model_files_follow_the_rules_the_size_preview_uses() -> None:
    for spec in MODELS.values():
        prompt = "x" if spec.requires_prompt else None
        payload = spec.build_input("http://files/i.jpg", prompt, {})
        for width, height, alpha in ((1183, 885, False), (250, 245, True), (640, 960, False)):
            emulated = output_file(spec, payload, width, height, alpha=alpha)
            assert emulated == model_output(spec, {}, width, height, alpha=alpha), spec.name


def test_face_restore_changes_pixels_beyond_a_plain_resize() -> None:
    source = _pattern(500, 400)
    result, _ = ops.run_model_op(GFPGAN, source, {"scale": 2})
    plain = source.resize((1000, 800), Image.Resampling.LANCZOS)
    assert ImageChops.difference(result, plain).getbbox() is not None


def test_the_edit_centre_crops_before_it_resizes() -> None:
    source = Image.new("RGB", (400, 100), "red")
    source.paste("blue", (150, 0, 250, 100))  # a blue square in the middle
    result, _ = ops.run_model_op(NANO, source, {"aspect_ratio": "1:1"})
    assert result.size == (1024, 1024)
    red, _, blue = result.getpixel((30, 512))  # RGB: a 3-tuple
    assert blue > 200 > red  # the crop kept the middle only


def test_the_edit_drops_transparency_like_the_real_model() -> None:
    result, output = ops.run_model_op(NANO, _translucent(64, 64), {"aspect_ratio": "1:1"})
    assert (result.mode, output.alpha) == ("RGB", False)


@pytest.mark.parametrize(
    ("spec", "params", "message"),
    [
        (ESRGAN, {"scale": "wide"}, "scale must be a number"),
        (ESRGAN, {"scale": True}, "scale must be a number"),
        (ESRGAN, {"scale": 0}, "scale must be in"),
        (GFPGAN, {"scale": 9}, "scale must be in"),
        (CODEFORMER, {"upscale": None}, "upscale must be a number"),
        (NANO, {"aspect_ratio": "wide"}, "aspect_ratio 'wide'"),
        (NANO, {"output_format": "webp"}, "output_format must be one of jpg, png"),
        (ESRGAN, {"scale": 0.01}, "output would be empty"),
    ],
)
def test_bad_size_inputs_are_value_errors(
    spec: ModelSpec, params: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ops.run_model_op(spec, _pattern(20, 20), params)


def test_an_output_over_the_pixel_bound_is_refused_before_any_pixel_is_made() -> None:
    assert output_file(ESRGAN, {"scale": 8}, 2000, 1000, alpha=False).width == 16_000
    assert MAX_OUTPUT_PIXELS == 16_000 * 8_000  # exactly at the bound: allowed
    with pytest.raises(ValueError, match="exceed"):
        output_file(ESRGAN, {"scale": 8}, 2001, 1000, alpha=False)


def test_an_unknown_kind_is_a_value_error() -> None:
    video = ModelSpec("acme/video", None, "video", "image", False, 1_000_000)
    with pytest.raises(ValueError, match="unknown model kind"):
        ops.run_model_op(video, _pattern(10, 10), {})


def test_a_model_without_an_entry_takes_its_scale_input() -> None:
    other = ModelSpec("acme/upscaler", None, "upscale", "image", False, 1_000_000,
                      defaults={"scale": 2})  # fmt: skip
    assert output_file(other, {"scale": 3}, 10, 20, alpha=False).width == 30
    assert output_file(other, {}, 10, 20, alpha=False).width == 20


def test_real_photo_upscales_four_times_and_edits_to_the_sixteen_by_nine_size() -> None:
    with Image.open(PHOTO) as photo:
        photo.load()
        upscaled, _ = ops.run_model_op(ESRGAN, photo, {"scale": 4})
        assert upscaled.size == (photo.width * 4, photo.height * 4)
        edited, _ = ops.run_model_op(NANO, photo, {"aspect_ratio": "16:9"})
    assert edited.size == (1344, 768)


def test_exif_orientation_is_applied_before_the_operation() -> None:
    with Image.open(EXIF_ROTATED) as photo:
        photo.load()
        stored = photo.size
        result, _ = ops.run_model_op(ESRGAN, photo, {"scale": 1})
    assert result.size == (stored[1], stored[0])


def _png_zlib_level(data: bytes) -> int:
    """FLEVEL of the first IDAT's zlib header (RFC 1950): 0 fastest (level 0-1), 2 default."""
    first_idat = data.index(b"IDAT") + 4
    return data[first_idat + 1] >> 6


def _jpeg_luma_table_sum(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as image:
        return sum(image.quantization[0])  # JpegImageFile only


def test_png_and_jpeg_are_written_with_the_models_encoder_settings() -> None:
    image = _pattern(64, 64)
    opencv_png = model_output(ESRGAN, {"scale": 1}, 64, 64, alpha=False)  # zlib level 1
    pillow_png = model_output(SDXL, {}, 64, 64, alpha=False)  # Pillow's level 6
    assert _png_zlib_level(ops.encode(image, opencv_png)[0]) == 0
    assert _png_zlib_level(ops.encode(image, pillow_png)[0]) == 2
    opencv_jpeg = model_output(GFPGAN, {"scale": 2}, 32, 32, alpha=False)  # quality 95
    gemini_jpeg = model_output(NANO, {"output_format": "jpg"}, 32, 32, alpha=False)  # 90
    finer = _jpeg_luma_table_sum(ops.encode(image, opencv_jpeg)[0])
    coarser = _jpeg_luma_table_sum(ops.encode(image, gemini_jpeg)[0])
    assert finer < coarser


def test_the_bomb_is_small_in_bytes_and_refused_by_pillow() -> None:
    bomb = ops.decompression_bomb_png()
    assert len(bomb) < 1_000_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb))


def test_a_small_bomb_is_a_valid_png_of_the_stated_size() -> None:
    with Image.open(io.BytesIO(ops.decompression_bomb_png(side=100))) as image:
        image.load()
        assert image.size == (100, 100)
        assert image.getextrema() == (0, 0)


def test_the_huge_output_is_a_valid_image_of_about_the_requested_size() -> None:
    data = ops.huge_png(300_000)
    assert 250_000 < len(data) < 350_000
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.mode == "RGB"


def test_a_truncated_image_fails_to_decode() -> None:
    png, _, _ = ops.encode(_pattern(200, 200), model_output(SDXL, {}, 200, 200, alpha=False))
    with pytest.raises(OSError, match=r"truncated|broken|image file"):  # noqa: PT012 - open+load
        image = Image.open(io.BytesIO(ops.truncated(png)))
        image.load()


def test_the_limiter_refuses_beyond_the_limit_and_says_when_a_slot_frees() -> None:
    now = [100.0]
    limiter = SlidingWindowLimiter(2, 10.0, clock=lambda: now[0])
    assert limiter.try_acquire() == 0.0
    now[0] = 103.0
    assert limiter.try_acquire() == 0.0
    assert limiter.try_acquire() == pytest.approx(7.0)
    now[0] = 110.0
    assert limiter.try_acquire() == 0.0
    assert limiter.in_window() == 2


def test_lowering_the_limit_waits_for_enough_slots_to_expire() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(3, 60.0, clock=lambda: now[0])
    for second in (0.0, 1.0, 2.0):
        now[0] = second
        limiter.try_acquire()
    limiter.configure(1, 60.0)
    now[0] = 30.0
    assert limiter.try_acquire() == pytest.approx(32.0)


def test_retry_after_is_a_whole_number_of_at_least_one_second() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(7.2) == "8"
