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
It estimates the preset applied to the image given; the pipeline applies the preset to the
model's output, which differs (an upscaler adds detail): preview the model output for that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from pipeline.presets import Preset, encode, render

EXACT_BELOW_PIXELS = 250_000
SAMPLING: dict[str, tuple[int, float]] = {"jpeg": (16, 0.25), "png": (16, 0.25), "webp": (32, 0.5)}
"""Per format: (band rows, sample fraction). WebP predicts each macroblock from the row above,
so the seams between stacked bands cost it more: taller bands and a larger sample keep its
error within target (bench/bench_preview.py: 16 rows/0.25 gave p95 21 %, 32/0.5 gives < 12 %)."""


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
    """

    preset: str
    estimated_bytes: int
    width: int
    height: int
    content_type: str
    method: str
    sampled_fraction: float
    input_bytes: int

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (for the API and ``imageopt preview --json``)."""
        return {
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
    bands = _bands(image.height, sample_fraction, band_rows)
    sample = Image.new(image.mode, (image.width, band_rows * len(bands)))
    for i, (top, bottom) in enumerate(bands):
        sample.paste(image.crop((0, top, image.width, bottom)), (0, i * band_rows))
    overhead = len(encode(image.crop((0, 0, min(image.width, band_rows), band_rows)), preset))
    content = max(0, len(encode(sample, preset)) - overhead)
    rows = sample.height
    return round(overhead + content * image.height / rows), "sampled", rows / image.height


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
