"""Size preview: estimate the bytes a preset will produce for an image, without the pipeline.

Method (benchmarked by ``bench/bench_preview.py``, figures in docs/BENCHMARKS.md):

1. Decode and lay the image out exactly as :func:`pipeline.presets.apply_preset` does
   (orientation, sRGB, resize/crop/pad), so width, height and format are exact.
2. If the output has at most ``exact_below_pixels`` pixels (default 0.25 MP, e.g. every
   400 px thumbnail), encode it whole: the figure is exact.
3. Otherwise take full-width bands of 16 rows (32 for WebP; multiples of the JPEG MCU and
   WebP macroblock height) on that grid, evenly spread over the height (systematic sampling)
   and covering ``sample_fraction`` of the rows (1/4; 1/2 for WebP, see :data:`SAMPLING`);
   stack them into one image and encode it once. Subtract the fixed per-file overhead
   (headers, tables: the size of an encoded 16x16 crop) and scale the remaining bytes by
   ``total rows / sampled rows``. Full-width bands keep the encoder's statistics close to
   the whole image's; many thin bands keep the sampling variance low (content that fills
   only part of the height, like a padded banner, is sampled in proportion); one encode
   keeps the overhead counted once.

The preview costs one decode and resize plus encoding ``sample_fraction`` of the output.

:func:`preview_size` estimates a preset applied to the image given. :func:`preview_pipeline`
estimates what the pipeline stores for a model and a preset, in the pipeline's order:

1. the provider's input, made by the creation worker's own :func:`pipeline.images.normalize_input`
   (upright, sRGB, downscaled to the model's ``max_input_pixels``);
2. the model's output size and format from the real model's rules
   (:func:`pipeline.model_outputs.model_output`, sources there);
3. the model's pixels are unknown before it runs: a Lanczos resample of the provider's input to
   the model's output size (centre-cropped first when the model reframes) stands in for them;
4. with a preset, the preset's geometry is applied to that stand-in (one resample straight to
   the preset's size) and estimated as above; without one, the stand-in is estimated in the
   model's own format and encoder settings, by the same band sampling, the bands resampled
   from the input on demand (a x4 upscale is never held whole in memory) within a budget of
   :data:`MODEL_SAMPLE_PIXELS` pixels.

Width, height and format are the real model's; the bytes are an estimate whose error against
the pipeline's results (emulator as the provider) is measured by ``bench/bench_preview.py``.

**Render budget.** A preset's output is laid out whole before it is encoded (or sampled), and a
custom preset may ask for 8192 x 8192 with upscale (67 MP, some 270 MB as RGBA). Given
``max_render_pixels`` (the api passes ``IMAGEOPT_PREVIEW_MAX_RENDER_PIXELS``), a layout whose
resampled image or canvas is larger is made ``scale`` times smaller in both directions
(:func:`scaled_geometry`: the same crop and padding, centred as the preset centres them), its
bytes estimated as above, and once more at half that scale (a quarter of the pixels); the
full output's bytes follow ``bytes ~ pixels^k`` with ``k`` fitted on the two
(:func:`extrapolate_bytes`). ``method`` says ``downscaled`` and ``render_width`` x
``render_height`` is the larger render. Width, height and format stay exact; the bytes are
coarser than a full render's (docs/BENCHMARKS.md, "Size preview of huge presets").
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from pipeline.allowlist import ModelSpec
from pipeline.images import decode_srgb, normalize_input
from pipeline.model_outputs import ModelOutput, model_output
from pipeline.presets import Geometry, Preset, decode_for, encode, layout, place, plan_geometry

EXACT_BELOW_PIXELS = 250_000
Box = tuple[float, float, float, float]
MODEL_SAMPLE_PIXELS = 4_000_000
"""Pixels of a model's raw output encoded at most (a x4 upscale of 2 MP is 32 MP)."""
MODEL_SAMPLE_FRACTION = 0.25
MODEL_BAND_ROWS = 16
SAMPLING: dict[str, tuple[int, float]] = {"jpeg": (16, 0.25), "png": (16, 0.25), "webp": (32, 0.5)}
"""Per format: (band rows, sample fraction). WebP predicts each macroblock from the row above,
so the seams between stacked bands cost it more: taller bands and a larger sample keep its
error within target (bench/bench_preview.py: 16 rows/0.25 gave p95 21 %, 32/0.5 gives < 12 %)."""


@dataclass(frozen=True)
class ModelStage:
    """The model step of a pipeline preview.

    Attributes:
        name: the model (``owner/name``). params: its parameters, defaults filled in.
        input_width / input_height: what the provider receives, pixels (exact).
        width / height: the model's output, pixels (the real model's rule).
        content_type: the model's output format.
    """

    name: str
    params: Mapping[str, Any]
    input_width: int
    input_height: int
    width: int
    height: int
    content_type: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "params": dict(self.params),
            "input_width": self.input_width,
            "input_height": self.input_height,
            "width": self.width,
            "height": self.height,
            "content_type": self.content_type,
        }


@dataclass(frozen=True)
class SizePreview:
    """An estimate of a preset's output.

    Attributes:
        preset: the preset's name.
        estimated_bytes: estimated size of the encoded output, bytes.
        width: output width, pixels (exact).
        height: output height, pixels (exact).
        content_type: output media type (exact).
        method: ``exact`` (whole image encoded), ``sampled`` (bands, extrapolated) or
            ``downscaled`` (laid out smaller than the output to stay within the render budget,
            then encoded whole or sampled, and the bytes scaled up by the pixel ratio).
        sampled_fraction: fraction of the rendered rows that were encoded (1.0 when exact).
        input_bytes: size of the image given, bytes.
        model: the model stage when the estimate is of model + preset, else None.
        render_size: ``(width, height)`` the output was laid out at, pixels, when smaller than
            the output (``downscaled``); None when laid out at full size.
    """

    preset: str | None
    estimated_bytes: int
    width: int
    height: int
    content_type: str
    method: str
    sampled_fraction: float
    input_bytes: int
    model: ModelStage | None = None
    render_size: tuple[int, int] | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (for the API and ``imageopt preview --json``); ``render_width`` and
        ``render_height`` are the output's own size unless ``method`` is ``downscaled``."""
        render_width, render_height = self.render_size or (self.width, self.height)
        return {
            "model": self.model.as_dict() if self.model is not None else None,
            "preset": self.preset,
            "estimated_bytes": self.estimated_bytes,
            "width": self.width,
            "height": self.height,
            "content_type": self.content_type,
            "method": self.method,
            "sampled_fraction": round(self.sampled_fraction, 4),
            "render_width": render_width,
            "render_height": render_height,
            "input_bytes": self.input_bytes,
            "ratio": round(self.estimated_bytes / self.input_bytes, 4)
            if self.input_bytes
            else None,
        }


def _bands(height: int, fraction: float, band: int) -> list[tuple[int, int]]:
    """Bands ``(top, bottom)`` of ``band`` rows on the ``band`` grid, evenly spread over
    ``height`` and covering about ``fraction`` of it (systematic sampling)."""
    slots = height // band
    count = max(1, min(slots, math.ceil(slots * fraction)))
    step = slots / count
    return [
        (int((i + 0.5) * step) * band, int((i + 0.5) * step) * band + band) for i in range(count)
    ]


def estimate_encoded_size(
    image: Image.Image,
    preset: Preset,
    *,
    exact_below_pixels: int = EXACT_BELOW_PIXELS,
    sample_fraction: float | None = None,
    band_rows: int | None = None,
) -> tuple[int, str, float]:
    """Estimate the encoded size of an already rendered image.

    Args:
        image: the output of :func:`pipeline.presets.render`.
        preset: its preset (encoder settings).
        exact_below_pixels: outputs up to this many pixels are encoded whole (exact).
        sample_fraction: fraction of rows to encode (default: :data:`SAMPLING` by format).
        band_rows: rows per band (default: :data:`SAMPLING` by format).

    Returns:
        ``(bytes, method, sampled_fraction)``.
    """
    default_rows, default_fraction = SAMPLING[preset.format]
    band_rows = band_rows or default_rows
    sample_fraction = sample_fraction or default_fraction
    if image.width * image.height <= exact_below_pixels or image.height < 4 * band_rows:
        return len(encode(image, preset)), "exact", 1.0
    return _sampled_size(
        image.size,
        image.mode,
        lambda top, bottom: image.crop((0, top, image.width, bottom)),
        lambda picture: encode(picture, preset),
        band_rows=band_rows,
        fraction=sample_fraction,
    )


def _sampled_size(
    size: tuple[int, int],
    mode: str,
    rows_of: Callable[[int, int], Image.Image],
    encoder: Callable[[Image.Image], bytes],
    *,
    band_rows: int,
    fraction: float,
) -> tuple[int, str, float]:
    """Band-sampled estimate (module docstring, step 3) of an image of ``size`` whose rows
    ``top..bottom`` ``rows_of`` renders; ``(bytes, "sampled", sampled_fraction)``."""
    width, height = size
    bands = _bands(height, fraction, band_rows)
    sample = Image.new(mode, (width, band_rows * len(bands)))
    for i, (top, bottom) in enumerate(bands):
        sample.paste(rows_of(top, bottom), (0, i * band_rows))
    overhead = len(encoder(rows_of(0, band_rows).crop((0, 0, min(width, band_rows), band_rows))))
    content = max(0, len(encoder(sample)) - overhead)
    rows = sample.height
    return round(overhead + content * height / rows), "sampled", rows / height


def preview_size(
    data: bytes,
    preset: Preset,
    *,
    max_pixels: int,
    exact_below_pixels: int = EXACT_BELOW_PIXELS,
    sample_fraction: float | None = None,
    band_rows: int | None = None,
    max_render_pixels: int | None = None,
) -> SizePreview:
    """Estimate the output of ``preset`` for an image, without running the pipeline.

    Args:
        data: the image (JPEG, PNG or WebP).
        preset: a preset from :func:`pipeline.presets.resolve_preset` or ``BUILTIN_PRESETS``.
        max_pixels: refuse images over this many pixels (``Settings.max_input_pixels``).
        exact_below_pixels: outputs up to this many pixels are encoded whole (exact).
        sample_fraction: fraction of output rows to encode otherwise (0 < f <= 1; default by
            format, :data:`SAMPLING`).
        band_rows: height of each sampled band, pixels (a multiple of 16, the JPEG MCU / WebP
            macroblock height; default by format).
        max_render_pixels: lay the output out at most this many pixels (the module
            docstring's render budget); None: always at full size.

    Returns:
        The estimate, with exact dimensions and media type.

    Raises:
        EmptySource, NotAnImage, UnsupportedMediaType, ImageTooLarge, ImageTruncated: the input
            is not a usable image.
    """
    if (sample_fraction is not None and not 0 < sample_fraction <= 1) or (
        band_rows is not None and band_rows < 1
    ):
        raise ValueError("sample_fraction must be in (0, 1] and band_rows >= 1")
    decoded = decode_for(data, preset, max_pixels=max_pixels)
    geometry = plan_geometry(decoded.width, decoded.height, preset)

    def lay_out(at: Geometry) -> Image.Image:
        if at == geometry:
            return layout(decoded, preset)  # what the pipeline's render does, exactly
        return place(decoded.resize(at.resize, Image.Resampling.LANCZOS), at, preset)

    def estimate(image: Image.Image) -> tuple[int, str, float]:
        return estimate_encoded_size(
            image,
            preset,
            exact_below_pixels=exact_below_pixels,
            sample_fraction=sample_fraction,
            band_rows=band_rows,
        )

    size, method, fraction, render_size = _estimate_within(
        lay_out, estimate, geometry, max_render_pixels
    )
    return SizePreview(
        preset=preset.name,
        estimated_bytes=size,
        width=geometry.canvas[0],
        height=geometry.canvas[1],
        content_type=preset.content_type,
        method=method,
        sampled_fraction=fraction,
        input_bytes=len(data),
        render_size=render_size,
    )


def render_scale(geometry: Geometry, max_render_pixels: int | None) -> float:
    """The linear scale that brings a layout's largest image (the resampled one, or the canvas)
    within ``max_render_pixels``: 1.0 when it is within already, or without a budget (pure)."""
    largest = max(geometry.resize[0] * geometry.resize[1], geometry.canvas[0] * geometry.canvas[1])
    if max_render_pixels is None or largest <= max_render_pixels:
        return 1.0
    return math.sqrt(max_render_pixels / largest)


def scaled_geometry(geometry: Geometry, scale: float) -> Geometry:
    """The same layout ``scale`` times smaller in both directions (0 < scale < 1; pure).

    Sizes are rounded down (so the budget :func:`render_scale` computed holds) and never below
    one pixel; the crop (``cover``) and the padding (``pad``) stay centred, as
    :func:`pipeline.presets.plan_geometry` centres them.
    """

    def down(value: int) -> int:
        return max(1, int(value * scale))

    resize = (down(geometry.resize[0]), down(geometry.resize[1]))
    canvas = (down(geometry.canvas[0]), down(geometry.canvas[1]))
    if geometry.crop is not None:
        left, top = (resize[0] - canvas[0]) // 2, (resize[1] - canvas[1]) // 2
        return Geometry(resize, (left, top, left + canvas[0], top + canvas[1]), canvas, (0, 0))
    if canvas != resize:
        offset = ((canvas[0] - resize[0]) // 2, (canvas[1] - resize[1]) // 2)
        return Geometry(resize, None, canvas, offset)
    return Geometry(resize, None, canvas, (0, 0))


def _estimate_within(
    lay_out: Callable[[Geometry], Image.Image],
    estimate: Callable[[Image.Image], tuple[int, str, float]],
    geometry: Geometry,
    max_render_pixels: int | None,
) -> tuple[int, str, float, tuple[int, int] | None]:
    """Estimate a layout's encoded bytes within the render budget (module docstring).

    Args:
        lay_out: renders the layout at a geometry (the full one, or a scaled one).
        estimate: ``(bytes, method, sampled_fraction)`` of a rendered image.
        geometry: the full layout.
        max_render_pixels: the budget (None: none).

    Returns:
        ``(bytes, method, sampled_fraction, render_size)``; ``render_size`` is None when the
        layout was rendered at full size, else the size of the larger of the two renders.
    """
    scale = render_scale(geometry, max_render_pixels)
    if scale >= 1:
        size, method, fraction = estimate(lay_out(geometry))
        return size, method, fraction, None
    image = lay_out(scaled_geometry(geometry, scale))
    rendered = image.size
    size, _, fraction = estimate(image)
    del image  # the second render is a quarter of the first: the peak stays the first's
    half = lay_out(scaled_geometry(geometry, scale / 2))
    size_half, _, _ = estimate(half)
    full = extrapolate_bytes(
        (_pixels(rendered), size), (_pixels(half.size), size_half), _pixels(geometry.canvas)
    )
    return full, "downscaled", fraction, rendered


def _pixels(size: tuple[int, int]) -> int:
    return size[0] * size[1]


EXPONENT_RANGE = (0.5, 1.0)
"""Bounds of the fitted exponent of bytes ~ pixels^k: 1 is bytes per pixel unchanged, 0.5 bytes
growing with the side length only (measured on the corpus: 0.69 to 0.79 for 8192 px upscales)."""


def extrapolate_bytes(larger: tuple[int, int], smaller: tuple[int, int], pixels: int) -> int:
    """Bytes at ``pixels`` from two renders of one layout, ``(pixels, bytes)`` each (pure).

    Encoded bytes grow slower than pixels when an image is enlarged (resampled pixels carry no
    new detail), so a straight pixel ratio overshoots (by 19 to 68 % for 8192 px upscales of
    the corpus, docs/BENCHMARKS.md); the exponent ``k`` of ``bytes ~ pixels^k`` is fitted on
    the two renders (clamped to :data:`EXPONENT_RANGE`) and applied from the larger one.
    """
    (p1, b1), (p2, b2) = larger, smaller
    k = EXPONENT_RANGE[1]
    if p1 > p2 > 0 and b1 > 0 and b2 > 0:
        fitted = math.log(b1 / b2) / math.log(p1 / p2)
        k = min(EXPONENT_RANGE[1], max(EXPONENT_RANGE[0], fitted))
    return round(b1 * math.pow(pixels / p1, k))


# --- model + preset -----------------------------------------------------------------------------
def _reframe_box(width: int, height: int, aspect: tuple[int, int] | None) -> Box:
    """The centre box of a ``width x height`` input with the model's aspect (whole when None)."""
    if aspect is None:
        return (0.0, 0.0, float(width), float(height))
    target = aspect[0] / aspect[1]
    if width / height > target:
        cut = (width - height * target) / 2
        return (cut, 0.0, width - cut, float(height))
    cut = (height - width / target) / 2
    return (0.0, cut, float(width), height - cut)


def _model_encoder(out: ModelOutput) -> Callable[[Image.Image], bytes]:
    """Encode as the model's own writer does (format, PNG level, JPEG quality)."""

    def run(picture: Image.Image) -> bytes:
        buffer = io.BytesIO()
        if out.format == "jpeg":
            rgb = picture if picture.mode == "RGB" else picture.convert("RGB")
            rgb.save(buffer, format="JPEG", quality=out.jpeg_quality)
        else:
            picture.save(buffer, format="PNG", compress_level=out.png_level)
        return buffer.getvalue()

    return run


def preview_pipeline(
    data: bytes,
    spec: ModelSpec,
    params: Mapping[str, Any],
    preset: Preset | None,
    *,
    max_pixels: int,
    sample_pixels: int = MODEL_SAMPLE_PIXELS,
    max_render_pixels: int | None = None,
) -> SizePreview:
    """Estimate what the pipeline stores for an image sent through a model, then a preset.

    Args:
        data: the image (JPEG, PNG or WebP), as uploaded.
        spec: the allowlisted model.
        params: its parameters, validated (``ModelSpec.validate``); defaults fill the rest.
        preset: the output preset, or None (the model's file is stored as it is).
        max_pixels: refuse images over this many pixels (``Settings.max_input_pixels``).
        sample_pixels: pixels of a raw model output encoded at most (the rest extrapolated).
        max_render_pixels: lay a preset's output out at most this many pixels (the module
            docstring's render budget); None: always at full size. The model's own file is
            rendered band by band within ``sample_pixels`` already.

    Returns:
        The estimate: width, height and media type of the stored file (the real model's rules,
        :mod:`pipeline.model_outputs`, then the preset's exact geometry), its bytes (estimated,
        module docstring), and the model stage.

    Raises:
        EmptySource, NotAnImage, UnsupportedMediaType, ImageTooLarge, ImageTruncated: the input
            is not a usable image.
    """
    normalized = normalize_input(
        data, max_pixels=max_pixels, target_max_pixels=spec.max_input_pixels
    )
    source = decode_srgb(normalized.data, max_pixels=max_pixels)
    merged = {**spec.defaults, **params}
    out = model_output(spec, merged, source.width, source.height, alpha=source.mode == "RGBA")
    if not out.alpha and source.mode != "RGB":
        source = source.convert("RGB")  # the model writes three channels
    box = _reframe_box(source.width, source.height, out.aspect)
    stage = ModelStage(
        spec.name, merged, source.width, source.height, out.width, out.height, out.content_type
    )
    if preset is not None:
        geometry = plan_geometry(out.width, out.height, preset)

        def lay_out(at: Geometry) -> Image.Image:
            return place(source.resize(at.resize, Image.Resampling.LANCZOS, box=box), at, preset)

        size, method, fraction, render_size = _estimate_within(
            lay_out, lambda image: estimate_encoded_size(image, preset), geometry,
            max_render_pixels,
        )  # fmt: skip
        return SizePreview(
            preset.name, size, geometry.canvas[0], geometry.canvas[1], preset.content_type,
            method, fraction, len(data), stage, render_size,
        )  # fmt: skip
    size, method, fraction = _estimate_model_file(source, box, out, sample_pixels)
    return SizePreview(
        None, size, out.width, out.height, out.content_type, method, fraction, len(data), stage
    )


def _estimate_model_file(
    source: Image.Image, box: Box, out: ModelOutput, sample_pixels: int
) -> tuple[int, str, float]:
    """Bytes of the model's own file, its stand-in rendered band by band from ``source``."""
    encoder = _model_encoder(out)
    left, top, right, bottom = box
    step = (bottom - top) / out.height

    def rows_of(first: int, last: int) -> Image.Image:
        region = (left, top + first * step, right, top + last * step)
        return source.resize((out.width, last - first), Image.Resampling.LANCZOS, box=region)

    pixels = out.width * out.height
    if pixels <= EXACT_BELOW_PIXELS or out.height < 4 * MODEL_BAND_ROWS:
        return len(encoder(rows_of(0, out.height))), "exact", 1.0
    fraction = min(
        MODEL_SAMPLE_FRACTION, max(sample_pixels / pixels, 4 * MODEL_BAND_ROWS / out.height)
    )
    return _sampled_size(
        (out.width, out.height), source.mode, rows_of, encoder,
        band_rows=MODEL_BAND_ROWS, fraction=fraction,
    )  # fmt: skip
