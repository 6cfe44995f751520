"""The emulator's classical image operations, on generated images and one real photo."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw

from emulator import ops
from emulator.limits import SlidingWindowLimiter, retry_after_header

PHOTO = Path("/work/shared/data/images/store-portraits/portrait-man-tshirt.jpg")
EXIF_ROTATED = Path("/work/shared/data/images/store-fashion/jeans-men-03-exif-rotated.jpg")


def _pattern(width: int, height: int, mode: str = "RGB") -> Image.Image:
    image = Image.new(mode, (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((width // 4, height // 4, width // 2, height // 2), fill="red")
    draw.line((0, 0, width, height), fill="blue", width=2)
    return image


def test_upscale_by_four_gives_four_times_each_dimension() -> None:
    result = ops.run_model_op("upscale", _pattern(40, 30), {"scale": 4})
    assert result.size == (160, 120)


def test_face_restore_uses_scale_or_upscale_and_changes_pixels() -> None:
    source = _pattern(50, 40)
    by_scale = ops.run_model_op("face_restore", source, {"scale": 2})
    by_upscale = ops.run_model_op("face_restore", source, {"upscale": 3})
    assert by_scale.size == (100, 80)
    assert by_upscale.size == (150, 120)
    plain = source.resize((100, 80), Image.Resampling.LANCZOS)
    assert ImageChops.difference(by_scale, plain).getbbox() is not None


@pytest.mark.parametrize(
    ("size", "ratio", "expected"),
    [
        ((400, 300), "16:9", (400, 225)),
        ((400, 300), "1:1", (300, 300)),
        ((300, 400), "9:16", (225, 400)),
        ((400, 300), "match_input_image", (400, 300)),
    ],
)
def test_edit_center_crops_to_the_aspect_ratio(
    size: tuple[int, int], ratio: str, expected: tuple[int, int]
) -> None:
    result = ops.run_model_op("edit", _pattern(*size), {"aspect_ratio": ratio})
    assert result.size == expected


def test_edit_keeps_transparency_of_rgba_inputs() -> None:
    source = _pattern(64, 64, "RGBA")
    source.putalpha(128)
    result = ops.run_model_op("edit", source, {"aspect_ratio": "1:1"})
    assert result.mode == "RGBA"
    assert result.getchannel("A").getextrema() == (128, 128)


def test_img2img_makes_the_longest_side_1024() -> None:
    assert ops.run_model_op("img2img", _pattern(300, 200), {}).size == (1024, 683)
    assert ops.run_model_op("img2img", _pattern(2000, 4000), {}).size == (512, 1024)


def test_unknown_kind_and_bad_ratio_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown model kind"):
        ops.run_model_op("video", _pattern(10, 10), {})
    with pytest.raises(ValueError, match="W:H"):
        ops.run_model_op("edit", _pattern(10, 10), {"aspect_ratio": "wide"})


def test_real_photo_upscales_four_times_and_crops_to_sixteen_by_nine() -> None:
    with Image.open(PHOTO) as photo:
        photo.load()
        upscaled = ops.run_model_op("upscale", photo, {"scale": 4})
        assert upscaled.size == (photo.width * 4, photo.height * 4)
        cropped = ops.run_model_op("edit", photo, {"aspect_ratio": "16:9"})
    assert abs(cropped.width / cropped.height - 16 / 9) < 0.01


def test_exif_orientation_is_applied_before_the_operation() -> None:
    with Image.open(EXIF_ROTATED) as photo:
        photo.load()
        stored = photo.size
        result = ops.run_model_op("upscale", photo, {"scale": 1})
    assert result.size == (stored[1], stored[0])


def test_encode_writes_png_by_default_and_jpeg_on_request() -> None:
    image = _pattern(20, 10, "RGBA")
    png, ext, content_type = ops.encode(image, "png")
    assert (ext, content_type) == ("png", "image/png")
    assert Image.open(io.BytesIO(png)).format == "PNG"
    jpg, ext, content_type = ops.encode(image, "jpg")
    assert (ext, content_type) == ("jpg", "image/jpeg")
    assert Image.open(io.BytesIO(jpg)).format == "JPEG"


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
    png, _, _ = ops.encode(_pattern(200, 200), "png")
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
