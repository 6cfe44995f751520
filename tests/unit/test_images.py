"""Unit tests for pipeline.images: validation and normalization of real and hostile images."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageCms, ImageFile, ImageStat, JpegImagePlugin, _imaging

from pipeline.errors import (
    ConfigurationError,
    EmptySource,
    ImageTooLarge,
    ImageTruncated,
    NotAnImage,
    OutputInvalid,
    UnsupportedMediaType,
)
from pipeline.images import (
    ALLOWED_CONTENT_TYPES,
    IMAGE_FORMATS,
    IMAGE_SUFFIXES,
    JPEG,
    JPEG_QUALITY,
    _fit,
    format_named,
    format_of_content_type,
    format_of_pillow,
    format_of_suffix,
    inspect_output,
    normalize_input,
)
from pipeline.presets import parse_preset
from pipeline.uploads import content_type_of_file

CORPUS = Path("/work/shared/data/images")
BIG = 50_000_000
TWO_MP = 2_000_000


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".md")


def read(relative: str) -> bytes:
    return (CORPUS / relative).read_bytes()


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.copy()


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` RGB pixels but carries only 100 bytes of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 100))
        + chunk(b"IEND", b"")
    )


def pillow_buffers() -> int:
    """How many image buffers Pillow's allocator has handed out so far in this process."""
    return int(_imaging.get_stats()["new_count"])


# --- the real corpus ----------------------------------------------------------------------


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_corpus_photo_normalizes_to_a_valid_metadata_free_image(path: Path) -> None:
    result = normalize_input(path.read_bytes(), max_pixels=BIG, target_max_pixels=TWO_MP)

    assert result.width * result.height <= TWO_MP
    assert result.source_format in ("JPEG", "PNG", "WEBP")
    with Image.open(io.BytesIO(result.data)) as out:
        out.load()
        assert (out.width, out.height) == (result.width, result.height)
        assert out.format == {"jpg": "JPEG", "png": "PNG"}[result.extension]
        assert Image.MIME[out.format] == result.content_type
        assert out.mode == ("RGBA" if result.extension == "png" else "RGB")
        assert "icc_profile" not in out.info
        assert "exif" not in out.info
        assert len(out.getexif()) == 0


def test_the_corpus_is_present_so_the_parametrized_test_is_not_empty() -> None:
    assert len(corpus_files()) == 70


def test_exif_rotated_photo_comes_out_upright_with_swapped_dimensions() -> None:
    data = read("store-fashion/jeans-men-03-exif-rotated.jpg")
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.size == (1600, 1200)

    result = normalize_input(data, max_pixels=BIG, target_max_pixels=TWO_MP)

    assert (result.width, result.height) == (1200, 1600)
    assert (result.source_width, result.source_height) == (1200, 1600)


def test_exif_orientation_6_is_undone_in_the_right_direction() -> None:
    original = Image.open(io.BytesIO(read("store-furniture/chair-eames-black.jpg"))).convert("RGB")
    original = original.resize((400, 276))
    stored = original.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: display rotated 90 degrees clockwise
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())

    result = normalize_input(data, max_pixels=BIG, target_max_pixels=TWO_MP)

    upright = decode(result.data)
    assert upright.size == original.size
    difference = ImageStat.Stat(ImageChops.difference(upright, original)).mean
    assert max(difference) < 6, difference


def test_cmyk_jpeg_becomes_rgb_with_the_same_colours() -> None:
    data = read("store-fashion/dress-red-wrap-cmyk.jpg")
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode == "CMYK"
        naive = raw.convert("RGB")

    result = normalize_input(data, max_pixels=BIG, target_max_pixels=TWO_MP)

    out = decode(result.data)
    assert out.mode == "RGB"
    assert result.content_type == "image/jpeg"
    difference = ImageStat.Stat(ImageChops.difference(out, naive)).mean
    assert max(difference) < 4, difference


@pytest.mark.parametrize(
    "relative",
    ["store-garden/banner-pier-grayscale.jpg", "store-portraits/portrait-cameraman-gray.png"],
)
def test_grayscale_becomes_rgb_with_equal_channels(relative: str) -> None:
    result = normalize_input(read(relative), max_pixels=BIG, target_max_pixels=TWO_MP)

    out = decode(result.data)
    assert out.mode == "RGB"
    red, green, blue = out.split()
    assert ImageStat.Stat(ImageChops.difference(red, green)).mean[0] < 2
    assert ImageStat.Stat(ImageChops.difference(green, blue)).mean[0] < 2


@pytest.mark.parametrize(
    "relative",
    [
        "store-food/apricot-cutout.png",
        "store-food/strawberry-cutout.png",
        "store-food/kiwi-cutout.webp",
    ],
)
def test_cutouts_keep_their_transparency_as_png(relative: str) -> None:
    result = normalize_input(read(relative), max_pixels=BIG, target_max_pixels=TWO_MP)

    assert (result.content_type, result.extension) == ("image/png", "png")
    out = decode(result.data)
    assert out.mode == "RGBA"
    assert out.getchannel("A").getextrema() == (0, 255)


def test_opaque_png_photo_becomes_jpeg() -> None:
    result = normalize_input(
        read("store-food/coffee-cup.png"), max_pixels=BIG, target_max_pixels=TWO_MP
    )

    assert (result.content_type, result.extension, result.source_format) == (
        "image/jpeg",
        "jpg",
        "PNG",
    )


def test_rgba_with_only_opaque_pixels_drops_the_alpha_channel() -> None:
    data = encode(Image.new("RGBA", (64, 48), (10, 200, 30, 255)), "PNG")

    result = normalize_input(data, max_pixels=BIG, target_max_pixels=TWO_MP)

    assert result.content_type == "image/jpeg"


def test_palette_png_with_transparency_becomes_rgba_png() -> None:
    image = Image.new("P", (32, 32), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (0, 0, 16, 32))
    data = encode(image, "PNG", transparency=0)

    result = normalize_input(data, max_pixels=BIG, target_max_pixels=TWO_MP)

    out = decode(result.data)
    assert out.mode == "RGBA"
    assert out.getpixel((24, 5))[3] == 0  # type: ignore[index]
    assert out.getpixel((5, 5)) == (0, 0, 255, 255)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    data = encode(Image.new("I;16", (40, 40), 32768), "PNG")

    result = normalize_input(data, max_pixels=BIG, target_max_pixels=TWO_MP)

    red, green, blue = decode(result.data).getpixel((20, 20))  # type: ignore[misc]
    assert 120 <= red <= 136
    assert red == green == blue


def test_icc_tagged_alpha_image_is_converted_and_untagged() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = Image.new("RGBA", (50, 50), (200, 100, 50, 0))
    image.paste((200, 100, 50, 255), (0, 0, 25, 50))
    data = encode(image, "PNG", icc_profile=srgb)

    result = normalize_input(data, max_pixels=BIG, target_max_pixels=TWO_MP)

    out = decode(result.data)
    assert "icc_profile" not in out.info
    assert out.mode == "RGBA"
    red, green, blue, alpha = out.getpixel((10, 10))  # type: ignore[misc]
    assert alpha == 255
    assert abs(red - 200) <= 2
    assert abs(green - 100) <= 2
    assert abs(blue - 50) <= 2


def test_camera_original_is_downscaled_under_the_target_keeping_its_aspect() -> None:
    data = read("store-garden/hero-rock-garden-camera.jpg")

    result = normalize_input(data, max_pixels=BIG, target_max_pixels=TWO_MP)

    assert (result.source_width, result.source_height) == (3648, 2736)
    assert result.width * result.height <= TWO_MP
    assert result.width * result.height > 0.99 * TWO_MP
    assert abs(result.width / result.height - 3648 / 2736) < 0.002


def test_big_jpeg_is_decoded_at_reduced_scale() -> None:
    data = read("store-garden/hero-rock-garden-camera.jpg")
    calls: list[tuple[int, int]] = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(
        self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None
    ) -> object:
        result = original_draft(self, mode, size)
        calls.append(self.size)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
        normalize_input(data, max_pixels=BIG, target_max_pixels=500_000)

    assert calls == [(912, 684)]  # 3648x2736 decoded at 1/4 scale


def test_small_images_are_never_upscaled() -> None:
    data = read("store-portraits/portrait-hopper-tiny-exif6.jpg")

    result = normalize_input(data, max_pixels=BIG, target_max_pixels=TWO_MP)

    assert (result.width, result.height) == (128, 128)


def test_jpeg_output_uses_the_documented_quality() -> None:
    assert JPEG_QUALITY == 92
    result = normalize_input(
        read("store-furniture/chair-balloon.jpg"), max_pixels=BIG, target_max_pixels=TWO_MP
    )
    with Image.open(io.BytesIO(result.data)) as out:
        assert isinstance(out, JpegImagePlugin.JpegImageFile)
        # libjpeg's q92 luminance table starts with 3 (q75 would be 8, q100 would be 1).
        assert out.quantization[0][0] == 3


@given(
    width=st.integers(1, 20_000),
    height=st.integers(1, 20_000),
    target=st.integers(1, 60_000_000),
)
def test_fit_never_exceeds_the_target_never_upscales_and_keeps_the_aspect(
    width: int, height: int, target: int
) -> None:
    new_w, new_h = _fit(width, height, target)

    assert 1 <= new_w <= width
    assert 1 <= new_h <= height
    if width * height <= target:
        assert (new_w, new_h) == (width, height)
    else:
        assert new_w * new_h <= target
        if min(new_w, new_h) >= 20:
            assert abs(new_w / new_h - width / height) / (width / height) < 0.1


# --- hostile and broken inputs ------------------------------------------------------------


def test_a_text_file_named_jpg_is_not_an_image() -> None:
    with pytest.raises(NotAnImage):
        normalize_input(
            b"<html><body>Not found</body></html>\n", max_pixels=BIG, target_max_pixels=TWO_MP
        )


def test_zero_bytes_are_an_empty_source() -> None:
    with pytest.raises(EmptySource):
        normalize_input(b"", max_pixels=BIG, target_max_pixels=TWO_MP)


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_a_jpeg_cut_short_is_truncated(fraction: float) -> None:
    data = read("store-garden/plant-bonsai.jpg")

    with pytest.raises(ImageTruncated):
        normalize_input(data[: int(len(data) * fraction)], max_pixels=BIG, target_max_pixels=TWO_MP)


def test_a_jpeg_cut_inside_its_header_is_truncated() -> None:
    data = read("store-garden/plant-bonsai.jpg")

    with pytest.raises(ImageTruncated):
        normalize_input(data[:300], max_pixels=BIG, target_max_pixels=TWO_MP)


def test_a_truncated_camera_original_is_caught_even_when_decoded_at_reduced_scale() -> None:
    data = read("store-garden/hero-rock-garden-camera.jpg")

    with pytest.raises(ImageTruncated):
        normalize_input(data[: len(data) // 2], max_pixels=BIG, target_max_pixels=500_000)


def test_a_png_cut_short_is_truncated() -> None:
    data = read("store-food/apricot-cutout.png")

    with pytest.raises(ImageTruncated):
        normalize_input(data[: len(data) // 2], max_pixels=BIG, target_max_pixels=TWO_MP)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_formats_outside_jpeg_png_webp_are_unsupported(fmt: str) -> None:
    data = encode(Image.new("RGB", (20, 20), (1, 2, 3)), fmt)

    with pytest.raises(UnsupportedMediaType, match=fmt):
        normalize_input(data, max_pixels=BIG, target_max_pixels=TWO_MP)


@pytest.mark.parametrize(
    ("side", "cause"),
    [
        (9_000, None),  # 81 MP: our own cap (50 MP) fires first
        (12_000, Image.DecompressionBombWarning),  # 144 MP: Pillow warns (an error under pytest)
        (20_000, Image.DecompressionBombError),  # 400 MP: Pillow refuses
    ],
)
def test_a_decompression_bomb_is_refused_without_decoding_it(
    side: int, cause: type[Exception] | None
) -> None:
    bomb = png_header_only(side, side)
    before = pillow_buffers()

    # Decoding would fail as truncated (100 bytes of pixel data), so ImageTooLarge means the
    # size was judged from the header alone.
    with pytest.raises(ImageTooLarge) as caught:
        normalize_input(bomb, max_pixels=BIG, target_max_pixels=TWO_MP)

    assert pillow_buffers() == before
    if cause is None:
        assert caught.value.__cause__ is None
    else:
        assert isinstance(caught.value.__cause__, cause)


def test_a_decompression_bomb_allocates_no_pixel_buffer() -> None:
    bomb = png_header_only(9_000, 9_000)
    before = pillow_buffers()

    with pytest.raises(ImageTooLarge):
        normalize_input(bomb, max_pixels=BIG, target_max_pixels=TWO_MP)

    assert pillow_buffers() == before
    # The same file within the cap does reach the decoder (and fails there, as truncated).
    with pytest.raises(ImageTruncated):
        normalize_input(png_header_only(200, 200), max_pixels=BIG, target_max_pixels=TWO_MP)
    assert pillow_buffers() > before


def test_the_pixel_cap_applies_to_real_photos_too() -> None:
    with pytest.raises(ImageTooLarge):
        normalize_input(
            read("store-garden/hero-rock-garden-camera.jpg"),
            max_pixels=9_000_000,
            target_max_pixels=TWO_MP,
        )


def test_pillow_global_state_is_left_alone() -> None:
    max_pixels = Image.MAX_IMAGE_PIXELS
    normalize_input(
        read("store-food/kiwi-cutout.webp"), max_pixels=1_000_000, target_max_pixels=10_000
    )

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert max_pixels == Image.MAX_IMAGE_PIXELS


def test_load_truncated_images_switched_on_elsewhere_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)

    with pytest.raises(ConfigurationError):
        normalize_input(
            read("store-garden/plant-bonsai.jpg"), max_pixels=BIG, target_max_pixels=TWO_MP
        )


def test_invalid_pixel_limits_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="positive"):
        normalize_input(b"x", max_pixels=0, target_max_pixels=TWO_MP)


# --- provider outputs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "fmt", "content_type", "size"),
    [
        ("store-garden/hero-rock-garden-camera.jpg", "JPEG", "image/jpeg", (3648, 2736)),
        ("store-food/apricot-cutout.png", "PNG", "image/png", (384, 400)),
        ("store-furniture/stool-wooden.webp", "WEBP", "image/webp", (1067, 1600)),
    ],
)
def test_inspect_output_reports_size_format_and_type_of_good_outputs(
    relative: str, fmt: str, content_type: str, size: tuple[int, int]
) -> None:
    info = inspect_output(read(relative), max_pixels=150_000_000)

    assert (info.width, info.height) == size
    assert (info.format, info.content_type) == (fmt, content_type)


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (b"", EmptySource),
        (b'{"detail": "error"}', NotAnImage),
        (encode(Image.new("RGB", (8, 8)), "GIF"), UnsupportedMediaType),
        (png_header_only(9_000, 9_000), ImageTooLarge),
    ],
    ids=["empty", "json", "gif", "too-large"],
)
def test_inspect_output_rejects_bad_outputs_as_output_invalid(
    data: bytes, cause: type[Exception]
) -> None:
    with pytest.raises(OutputInvalid) as caught:
        inspect_output(data, max_pixels=50_000_000)

    assert isinstance(caught.value.__cause__, cause)


@pytest.mark.parametrize(
    "relative", ["store-garden/hero-rock-garden-camera.jpg", "store-food/apricot-cutout.png"]
)
def test_inspect_output_catches_a_truncated_download(relative: str) -> None:
    data = read(relative)

    with pytest.raises(OutputInvalid) as caught:
        inspect_output(data[: len(data) * 2 // 3], max_pixels=150_000_000)

    assert isinstance(caught.value.__cause__, ImageTruncated)


def test_every_name_of_each_image_format_leads_back_to_it() -> None:
    for fmt in IMAGE_FORMATS:
        assert format_of_pillow(fmt.pillow) is fmt
        assert format_named(fmt.name) is fmt
        assert format_of_content_type(fmt.content_type) is fmt
        for suffix in fmt.suffixes:
            assert format_of_suffix(suffix.upper()) is fmt
    assert {"image/jpeg", "image/png", "image/webp"} == ALLOWED_CONTENT_TYPES
    assert {".jpg", ".jpeg", ".png", ".webp"} == IMAGE_SUFFIXES


def test_a_camera_mpo_is_a_jpeg_and_other_formats_are_none() -> None:
    assert format_of_pillow("MPO") is JPEG
    assert format_of_pillow("GIF") is None
    assert format_of_content_type("image/gif") is None
    assert format_of_suffix(".tiff") is None
    assert format_named("JPEG") is None  # preset names are lower case


def test_presets_uploads_and_normalized_inputs_use_the_one_table() -> None:
    for fmt in IMAGE_FORMATS:
        preset = parse_preset("p", {"format": fmt.name})
        assert (preset.content_type, preset.extension) == (fmt.content_type, fmt.extension)
        for suffix in fmt.suffixes:
            assert content_type_of_file(f"photo{suffix.upper()}") == fmt.content_type
    assert content_type_of_file("notes.txt") == "application/octet-stream"
    opaque = normalize_input(
        encode(Image.new("RGB", (8, 8)), "PNG"), max_pixels=BIG, target_max_pixels=TWO_MP
    )
    assert (opaque.content_type, opaque.extension) == (JPEG.content_type, JPEG.extension)
