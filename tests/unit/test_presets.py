"""Output presets, size preview and analysis on real photos (pure logic: bytes in, bytes out)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from pipeline.analysis import analyze, recommend
from pipeline.errors import InvalidPreset
from pipeline.presets import BUILTIN_PRESETS, apply_preset, parse_preset, plan_geometry
from pipeline.preview import preview_size

MAX_PIXELS = 50_000_000
SAMPLES = [
    "store-fashion/jeans-men-03-exif-rotated.jpg",  # EXIF orientation 6, stored 1600x1200
    "store-fashion/dress-red-wrap-cmyk.jpg",  # CMYK
    "store-fashion/banner-boots-wide.jpg",  # ICC profile, 1920x793
    "store-food/kiwi-cutout.webp",  # WebP with alpha
    "store-portraits/portrait-cameraman-gray.png",  # grey
]
FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "png": "PNG"}


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("name", sorted(BUILTIN_PRESETS))
@pytest.mark.parametrize("sample", SAMPLES)
def test_builtin_preset_output_has_promised_format_size_and_no_metadata(
    images_dir: Path, name: str, sample: str
) -> None:
    preset = BUILTIN_PRESETS[name]
    data = (images_dir / sample).read_bytes()
    out = apply_preset(data, preset, max_pixels=MAX_PIXELS)
    image = _open(out.data)
    assert image.format == FORMATS[preset.format]
    assert out.content_type == Image.MIME[image.format]
    assert image.size == (out.width, out.height)
    assert preset.width is not None
    assert preset.height is not None
    if preset.fit in ("pad", "cover"):
        assert image.size == (preset.width, preset.height)
    else:
        assert image.width <= preset.width
        assert image.height <= preset.height
    assert not image.getexif(), "EXIF must be stripped"
    assert "icc_profile" not in image.info, "ICC profile must be converted to sRGB and dropped"
    assert "exif" not in image.info
    assert "xmp" not in image.info
    if preset.format == "jpeg":
        assert image.mode in ("RGB", "L")


def test_camera_original_loses_its_maker_exif(images_dir: Path) -> None:
    data = (images_dir / "store-garden/hero-rock-garden-camera.jpg").read_bytes()
    assert _open(data).getexif()  # 3648x2736 with maker EXIF
    image = _open(apply_preset(data, BUILTIN_PRESETS["web-2048"], max_pixels=MAX_PIXELS).data)
    assert image.size == (2048, 1536)
    assert not image.getexif()
    assert "icc_profile" not in image.info


def test_exif_rotated_photo_comes_out_upright(images_dir: Path) -> None:
    data = (images_dir / "store-fashion/jeans-men-03-exif-rotated.jpg").read_bytes()
    out = apply_preset(data, BUILTIN_PRESETS["thumb-400"], max_pixels=MAX_PIXELS)
    assert (out.width, out.height) == (300, 400)  # stored 1600x1200, displayed 1200x1600


def test_alpha_is_kept_in_webp_and_flattened_on_white_in_jpeg(images_dir: Path) -> None:
    data = (images_dir / "store-food/apricot-cutout.png").read_bytes()
    webp = _open(apply_preset(data, BUILTIN_PRESETS["webp-1600"], max_pixels=MAX_PIXELS).data)
    assert webp.mode == "RGBA"
    assert webp.getchannel("A").getextrema()[0] == 0
    jpeg = _open(apply_preset(data, BUILTIN_PRESETS["square-1080"], max_pixels=MAX_PIXELS).data)
    assert jpeg.mode == "RGB"
    corner = jpeg.getpixel((2, 2))
    assert isinstance(corner, tuple)
    assert min(corner) >= 250  # transparent corner became the white background


def test_custom_pad_preset_with_background_colours_the_bars(images_dir: Path) -> None:
    preset = parse_preset(
        "banner-sq",
        {"format": "png", "width": 600, "height": 600, "fit": "pad", "background": "#FF0000"},
    )
    data = (images_dir / "store-fashion/banner-boots-wide.jpg").read_bytes()
    image = _open(apply_preset(data, preset, max_pixels=MAX_PIXELS).data)
    assert image.size == (600, 600)
    assert image.convert("RGB").getpixel((300, 5)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("spec", "message", "field"),
    [
        ([], "JSON object", "spec"),
        ({"format": "gif"}, "'format'", "format"),
        ({"format": "jpeg", "quality": 0}, "'quality'", "quality"),
        ({"format": "jpeg", "quality": "high"}, "'quality'", "quality"),
        ({"format": "jpeg", "width": 10}, "'width'", "width"),
        ({"format": "jpeg", "width": 9000}, "'width'", "width"),
        ({"format": "jpeg", "fit": "cover", "width": 500}, "needs both", "height"),
        ({"format": "jpeg", "fit": "pad", "height": 500}, "needs both", "width"),
        ({"format": "jpeg", "fit": "stretch"}, "'fit'", "fit"),
        ({"format": "jpeg", "background": "white"}, "'background'", "background"),
        ({"format": "png", "lossless": True}, "'lossless'", "lossless"),
        ({"format": "jpeg", "upscale": "yes"}, "'upscale'", "upscale"),
        ({"format": "jpeg", "colour": "srgb"}, "unknown preset field", "colour"),
        ({"format": "jpeg", "description": 5}, "'description'", "description"),
    ],
)
def test_custom_preset_validation_rejects_bad_specs_with_a_clear_error(
    spec: object, message: str, field: str
) -> None:
    with pytest.raises(InvalidPreset, match=message) as caught:
        parse_preset("mine", spec)
    assert caught.value.code == "invalid_preset"
    assert caught.value.field == field


@pytest.mark.parametrize("name", ["", "Has Space", "UPPER", "-lead", "x" * 64, "a/b"])
def test_custom_preset_names_are_checked(name: str) -> None:
    with pytest.raises(InvalidPreset, match="preset name") as caught:
        parse_preset(name, {"format": "jpeg"})
    assert caught.value.field == "name"


def test_spec_round_trips() -> None:
    for preset in BUILTIN_PRESETS.values():
        again = parse_preset(preset.name, preset.to_spec(), builtin=True)
        assert again == preset


def test_geometry_contain_never_upscales_unless_asked() -> None:
    small = parse_preset("p", {"format": "jpeg", "width": 1000, "height": 1000})
    assert plan_geometry(400, 200, small).canvas == (400, 200)
    big = parse_preset("p", {"format": "jpeg", "width": 1000, "height": 1000, "upscale": True})
    assert plan_geometry(400, 200, big).canvas == (1000, 500)
    cover = parse_preset("p", {"format": "jpeg", "width": 300, "height": 300, "fit": "cover"})
    geometry = plan_geometry(400, 200, cover)
    assert geometry.canvas == (300, 300)
    assert geometry.resize == (600, 300)


@pytest.mark.parametrize("name", ["web-2048", "webp-1600", "square-1080", "png-2048"])
def test_size_preview_is_within_15_percent_on_a_large_photo(images_dir: Path, name: str) -> None:
    data = (images_dir / "store-fashion/beanie-green.jpg").read_bytes()
    preset = BUILTIN_PRESETS[name]
    estimate = preview_size(data, preset, max_pixels=MAX_PIXELS)
    real = apply_preset(data, preset, max_pixels=MAX_PIXELS)
    assert estimate.method == "sampled"
    assert (estimate.width, estimate.height) == (real.width, real.height)
    assert abs(estimate.estimated_bytes - len(real.data)) / len(real.data) < 0.15


def test_size_preview_is_exact_for_thumbnails(images_dir: Path) -> None:
    data = (images_dir / "store-food/coffee-cup.png").read_bytes()
    preset = BUILTIN_PRESETS["thumb-400"]
    estimate = preview_size(data, preset, max_pixels=MAX_PIXELS)
    assert estimate.method == "exact"
    assert estimate.estimated_bytes == len(apply_preset(data, preset, max_pixels=MAX_PIXELS).data)


def test_analysis_of_real_photos(images_dir: Path) -> None:
    cutout = analyze(
        (images_dir / "store-food/apricot-cutout.png").read_bytes(), max_pixels=MAX_PIXELS
    )
    assert (cutout.width, cutout.height, cutout.format) == (384, 400, "PNG")
    assert cutout.transparent
    assert cutout.kind == "photo"
    assert cutout.recommendation.preset == "webp-1600"
    assert cutout.recommendation.model == "nightmareai/real-esrgan"
    assert cutout.recommendation.params == {"scale": 4}
    rotated = analyze(
        (images_dir / "store-fashion/jeans-men-03-exif-rotated.jpg").read_bytes(),
        max_pixels=MAX_PIXELS,
    )
    assert (rotated.width, rotated.height) == (1200, 1600)
    assert rotated.exif_orientation == 6
    assert not rotated.transparent
    portrait = analyze(
        (images_dir / "store-portraits/portrait-man-tshirt.jpg").read_bytes(), max_pixels=MAX_PIXELS
    )
    if portrait.faces is not None:  # OpenCV installed
        assert portrait.faces >= 1
        assert portrait.recommendation.model == "sczhou/codeformer"


def test_a_flat_drawing_is_a_graphic() -> None:
    image = Image.new("RGB", (600, 400), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((50, 50, 300, 300), fill=(200, 30, 30))
    draw.ellipse((320, 80, 560, 320), fill=(20, 90, 200))
    out = io.BytesIO()
    image.save(out, format="PNG")
    result = analyze(out.getvalue(), max_pixels=MAX_PIXELS, detect_faces=False)
    assert result.kind == "graphic"
    assert result.recommendation.preset == "png-2048"


def test_recommendation_without_faces_scales_to_web_size() -> None:
    rec = recommend(width=500, height=500, transparent=False, kind="photo", faces=0)
    assert rec.params == {"scale": 4}
    assert rec.preset == "web-2048"
    rec = recommend(width=3000, height=2000, transparent=False, kind="photo", faces=None)
    assert rec.params == {"scale": 2}  # input capped at 2 MP -> 1732 px -> x2
