"""Classical image operations that stand in for the AI models (pure Pillow, no I/O).

Each allowlisted model has a ``kind`` (see :mod:`pipeline.allowlist`); :func:`run_model_op`
applies the matching operation so that outputs have the geometry the real model would give:

- ``upscale`` (Real-ESRGAN): Lanczos resize by ``scale`` plus an unsharp mask.
- ``face_restore`` (GFPGAN, CodeFormer): 3x3 median denoise, smoothing, sharpening, resize by
  ``scale`` / ``upscale``.
- ``edit`` (nano-banana): centre crop to ``aspect_ratio`` plus mild colour and contrast.
- ``img2img`` (SDXL): resize so the longest side is 1024 px plus autocontrast.

None of this is AI; it is only enough real work to give the pipeline real images back.
The module also builds the hostile outputs of the fault-injection suite.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping
from typing import Any

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

SDXL_LONG_SIDE = 1024
"""SDXL works at about one megapixel; its img2img output's longest side is 1024 px."""

PNG_COMPRESS_LEVEL = 1
"""zlib level of output PNGs: fast (a 4x upscale is tens of megapixels), a bit larger files."""

MAX_SCALE = 8
"""Largest linear scale factor accepted, to bound memory (the allowlist caps it at 4)."""


def fraction_of_ratio(ratio: str) -> tuple[int, int]:
    """Parse ``"16:9"`` into ``(16, 9)``.

    Raises:
        ValueError: not two positive integers separated by a colon.
    """
    parts = ratio.split(":")
    if len(parts) != 2:
        raise ValueError(f"aspect ratio {ratio!r} is not W:H")
    width, height = int(parts[0]), int(parts[1])
    if width <= 0 or height <= 0:
        raise ValueError(f"aspect ratio {ratio!r} must be positive")
    return width, height


def normalize_mode(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation and convert to RGB, or RGBA when there is transparency."""
    image = ImageOps.exif_transpose(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    target = "RGBA" if has_alpha else "RGB"
    return image if image.mode == target else image.convert(target)


def _scaled(image: Image.Image, scale: float) -> Image.Image:
    if not 0 < scale <= MAX_SCALE:
        raise ValueError(f"scale must be in (0, {MAX_SCALE}]")
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def upscale(image: Image.Image, scale: float) -> Image.Image:
    """Resize by ``scale`` with Lanczos, then sharpen edges with an unsharp mask.

    Args:
        image: RGB or RGBA input.
        scale: linear factor, e.g. 4 gives 4x width and 4x height.
    """
    resized = _scaled(image, scale)
    return resized.filter(ImageFilter.UnsharpMask(radius=2, percent=80, threshold=2))


def face_restore(image: Image.Image, scale: float) -> Image.Image:
    """Light denoise (3x3 median, smooth), sharpen, and resize by ``scale``."""
    denoised = image.filter(ImageFilter.MedianFilter(3)).filter(ImageFilter.SMOOTH)
    return _scaled(denoised, scale).filter(ImageFilter.SHARPEN)


def crop_to_aspect(image: Image.Image, aspect_ratio: str) -> Image.Image:
    """Centre-crop to ``aspect_ratio`` (``"16:9"``); ``"match_input_image"`` keeps the shape."""
    if aspect_ratio == "match_input_image":
        return image.copy()
    ratio_w, ratio_h = fraction_of_ratio(aspect_ratio)
    target = ratio_w / ratio_h
    width, height = image.size
    if width / height > target:
        new_width, new_height = max(1, round(height * target)), height
    else:
        new_width, new_height = width, max(1, round(width / target))
    left = (width - new_width) // 2
    top = (height - new_height) // 2
    return image.crop((left, top, left + new_width, top + new_height))


def _enhance_colours(image: Image.Image, colour: float, contrast: float) -> Image.Image:
    rgb = image.convert("RGB") if image.mode == "RGBA" else image
    enhanced = ImageEnhance.Contrast(ImageEnhance.Color(rgb).enhance(colour)).enhance(contrast)
    if image.mode == "RGBA":
        enhanced.putalpha(image.getchannel("A"))
    return enhanced


def edit(image: Image.Image, aspect_ratio: str) -> Image.Image:
    """Crop to ``aspect_ratio`` and boost colour by 10 % and contrast by 5 %."""
    return _enhance_colours(crop_to_aspect(image, aspect_ratio), colour=1.1, contrast=1.05)


def img2img(image: Image.Image) -> Image.Image:
    """Resize so the longest side is :data:`SDXL_LONG_SIDE` and stretch the contrast."""
    factor = SDXL_LONG_SIDE / max(image.size)
    resized = _scaled(image, factor)
    rgb = resized.convert("RGB")
    stretched = ImageOps.autocontrast(rgb, cutoff=1)
    if resized.mode == "RGBA":
        stretched.putalpha(resized.getchannel("A"))
    return stretched


def run_model_op(kind: str, image: Image.Image, params: Mapping[str, Any]) -> Image.Image:
    """Apply the operation of a model ``kind`` with the prediction's input ``params``.

    Args:
        kind: ``upscale`` | ``face_restore`` | ``edit`` | ``img2img``.
        image: decoded input (any mode; EXIF orientation not yet applied).
        params: the prediction's ``input`` (``scale``, ``upscale``, ``aspect_ratio``, ...).

    Raises:
        ValueError: unknown kind or a bad parameter.
    """
    image = normalize_mode(image)
    if kind == "upscale":
        return upscale(image, float(params.get("scale", 4)))
    if kind == "face_restore":
        return face_restore(image, float(params.get("scale", params.get("upscale", 2))))
    if kind == "edit":
        return edit(image, str(params.get("aspect_ratio", "match_input_image")))
    if kind == "img2img":
        return img2img(image)
    raise ValueError(f"unknown model kind {kind!r}")


def encode(image: Image.Image, output_format: str) -> tuple[bytes, str, str]:
    """Encode an image as PNG, or JPEG for ``jpg``/``jpeg``.

    Returns:
        ``(data, file extension, content type)``.
    """
    buffer = io.BytesIO()
    if output_format in ("jpg", "jpeg"):
        image.convert("RGB").save(buffer, format="JPEG", quality=90)
        return buffer.getvalue(), "jpg", "image/jpeg"
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue(), "png", "image/png"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def decompression_bomb_png(side: int = 30_000) -> bytes:
    """A valid 1-bit ``side`` x ``side`` PNG of zeros: a few hundred KB, ``side**2`` pixels.

    Built chunk by chunk (PNG spec, RFC 2083) so that no large image is ever held in memory.
    At the default 900 million pixels, Pillow refuses it on open (``DecompressionBombError``,
    above twice ``Image.MAX_IMAGE_PIXELS``).
    """
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte "None" + packed 1-bit pixels
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(side)]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def huge_png(approx_bytes: int, seed: int = 0) -> bytes:
    """A valid, incompressible RGB PNG of about ``approx_bytes`` bytes (noise, stored).

    Args:
        approx_bytes: target file size, bytes; the side is ``sqrt(approx_bytes / 3)``.
        seed: changes the noise (kept for reproducibility, the content does not matter).
    """
    side = max(1, int((approx_bytes / 3) ** 0.5))
    noise = Image.effect_noise((side, side), 128.0 + seed % 7)
    rgb = Image.merge("RGB", (noise, noise.transpose(Image.Transpose.ROTATE_90), noise))
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def truncated(data: bytes) -> bytes:
    """The first half of an encoded image (a download cut short)."""
    return data[: max(1, len(data) // 2)]
