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
from pipeline.presets import Preset, encode, place, plan_geometry, render

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
        method: ``exact`` (whole image encoded) or ``sampled`` (bands, extrapolated).
        sampled_fraction: fraction of the output rows that were encoded (1.0 when exact).
        input_bytes: size of the image given, bytes.
        model: the model stage when the estimate is of model + preset, else None.
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

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (for the API and ``imageopt preview --json``)."""
        return {
            "model": self.model.as_dict() if self.model is not None else None,
            "preset": self.preset,
            "estimated_bytes": self.estimated_bytes,
            "width": self.width,
            "height": self.height,
            "content_type": self.content_type,
            "method": self.method,
            "sampled_fraction": round(self.sampled_fraction, 4),
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
    image = render(data, preset, max_pixels=max_pixels)
    size, method, fraction = estimate_encoded_size(
        image,
        preset,
        exact_below_pixels=exact_below_pixels,
        sample_fraction=sample_fraction,
        band_rows=band_rows,
    )
    return SizePreview(
        preset=preset.name,
        estimated_bytes=size,
        width=image.width,
        height=image.height,
        content_type=preset.content_type,
        method=method,
        sampled_fraction=fraction,
        input_bytes=len(data),
    )


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
) -> SizePreview:
    """Estimate what the pipeline stores for an image sent through a model, then a preset.

    Args:
        data: the image (JPEG, PNG or WebP), as uploaded.
        spec: the allowlisted model.
        params: its parameters, validated (``ModelSpec.validate``); defaults fill the rest.
        preset: the output preset, or None (the model's file is stored as it is).
        max_pixels: refuse images over this many pixels (``Settings.max_input_pixels``).
        sample_pixels: pixels of a raw model output encoded at most (the rest extrapolated).

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
        resized = source.resize(geometry.resize, Image.Resampling.LANCZOS, box=box)
        image = place(resized, geometry, preset)
        size, method, fraction = estimate_encoded_size(image, preset)
        return SizePreview(
            preset.name, size, image.width, image.height, preset.content_type, method, fraction,
            len(data), stage,
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
