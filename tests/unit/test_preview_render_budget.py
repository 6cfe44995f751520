"""The size preview's render budget (pure logic): a layout larger than the budget is made smaller
with the same crop and padding, centred, never over the budget; a preview of a huge preset says
``downscaled``, keeps the exact output size and reports the smaller render; a preset within the
budget is laid out at full size as before."""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image

from pipeline.presets import Geometry, parse_preset, plan_geometry
from pipeline.preview import extrapolate_bytes, preview_size, render_scale, scaled_geometry

MAX_PIXELS = 50_000_000
BUDGET = 1_000_000


def _photo(width: int, height: int) -> bytes:
    """A small image with some structure (a gradient with a stripe), as PNG."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image.paste((200, 40, 40), (0, height // 3, width, height // 3 + max(1, height // 10)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _pixels(size: tuple[int, int]) -> int:
    return size[0] * size[1]


@pytest.mark.parametrize(
    ("spec", "source"),
    [
        ({"format": "png", "width": 8192, "height": 8192, "fit": "cover", "upscale": True},
         (600, 400)),
        ({"format": "webp", "width": 8192, "height": 4096, "fit": "pad", "upscale": True},
         (400, 600)),
        ({"format": "jpeg", "width": 8192, "height": 8192, "fit": "pad"}, (3000, 1000)),
        ({"format": "jpeg", "width": 8192, "upscale": True}, (600, 400)),
    ],
)  # fmt: skip
def test_a_scaled_layout_keeps_its_crop_and_padding_centred_and_stays_within_the_budget(
    spec: dict[str, object], source: tuple[int, int]
) -> None:
    preset = parse_preset("huge", spec)
    full = plan_geometry(*source, preset)
    scale = render_scale(full, BUDGET)
    small = scaled_geometry(full, scale)

    assert scale < 1
    assert max(_pixels(small.resize), _pixels(small.canvas)) <= BUDGET
    assert small.canvas[0] / small.canvas[1] == pytest.approx(
        full.canvas[0] / full.canvas[1], rel=0.01
    )
    if small.crop is not None:
        left, top, right, bottom = small.crop
        assert (right - left, bottom - top) == small.canvas
        assert abs(left - (small.resize[0] - right)) <= 1
        assert abs(top - (small.resize[1] - bottom)) <= 1
    else:
        x, y = small.offset
        assert abs(x - (small.canvas[0] - small.resize[0] - x)) <= 1
        assert abs(y - (small.canvas[1] - small.resize[1] - y)) <= 1


def test_a_layout_within_the_budget_or_without_one_is_not_scaled() -> None:
    geometry = Geometry((1000, 800), None, (1000, 800), (0, 0))
    assert render_scale(geometry, 800_000) == 1.0
    assert render_scale(geometry, None) == 1.0
    assert render_scale(geometry, 799_999) == pytest.approx(math.sqrt(799_999 / 800_000))


def test_a_preview_of_a_huge_preset_is_downscaled_and_says_so() -> None:
    preset = parse_preset(
        "huge", {"format": "png", "width": 8192, "height": 8192, "fit": "cover", "upscale": True}
    )
    data = _photo(600, 400)

    preview = preview_size(data, preset, max_pixels=MAX_PIXELS, max_render_pixels=BUDGET)
    shown = preview.as_dict()

    assert (preview.width, preview.height, preview.method) == (8192, 8192, "downscaled")
    assert shown["render_width"] == shown["render_height"]
    render = (int(str(shown["render_width"])), int(str(shown["render_height"])))
    assert _pixels(render) <= BUDGET
    # the budget bounds the resampled image, 12288 x 8192 before the cover crop: 1/10 of it
    assert render[0] >= 810
    # bytes extrapolated by the pixel ratio from what the render encoded to
    assert preview.estimated_bytes > 0


def test_a_preset_within_the_budget_is_laid_out_at_full_size_as_before() -> None:
    preset = parse_preset("small", {"format": "jpeg", "width": 800, "fit": "contain"})
    data = _photo(1200, 900)

    bounded = preview_size(data, preset, max_pixels=MAX_PIXELS, max_render_pixels=BUDGET)
    unbounded = preview_size(data, preset, max_pixels=MAX_PIXELS)

    assert bounded == unbounded
    assert bounded.method in ("exact", "sampled")
    shown = bounded.as_dict()
    assert (shown["render_width"], shown["render_height"]) == (800, 600)


def test_bytes_are_extrapolated_by_the_exponent_the_two_renders_show_within_its_bounds() -> None:
    # bytes x 2 when pixels x 4: k = 0.5, so 16 x the pixels of the larger render is 4 x bytes
    assert extrapolate_bytes((4_000, 2_000), (1_000, 1_000), 64_000) == 8_000
    # bytes in proportion to pixels: k = 1
    assert extrapolate_bytes((4_000, 4_000), (1_000, 1_000), 64_000) == 64_000
    # fits outside the bounds are clamped: more bytes at fewer pixels means k = 0.5 ...
    assert extrapolate_bytes((4_000, 1_000), (1_000, 2_000), 16_000) == 2_000
    # ... and bytes growing faster than pixels means k = 1
    assert extrapolate_bytes((4_000, 8_000), (1_000, 1_000), 8_000) == 16_000
    # a render that encodes to nothing gives no fit: k = 1
    assert extrapolate_bytes((4_000, 100), (1_000, 0), 8_000) == 200
