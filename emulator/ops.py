"""Classical image operations that stand in for the AI models (pure Pillow, no I/O).

Each allowlisted model has a ``kind`` (see :mod:`pipeline.allowlist`). :func:`run_model_op`
first works out the real model's output file for this input (size, format, alpha:
:mod:`emulator.model_files`, which reads :mod:`pipeline.model_outputs`), then applies the
operation of the model's kind, straight to that size:

- ``upscale`` (Real-ESRGAN): Lanczos resize plus an unsharp mask.
- ``face_restore`` (GFPGAN, CodeFormer): 3x3 median denoise, smoothing, Lanczos resize,
  sharpening.
- ``edit`` (nano-banana): centre crop to the output's aspect ratio, Lanczos resize, mild colour
  and contrast.
- ``img2img`` (SDXL): Lanczos resize plus autocontrast.

:func:`encode` writes the file as the real model's writer does (format, PNG level, JPEG
quality). None of this is AI; it is only enough real work to give the pipeline real images
back. The module also builds the hostile outputs of the fault-injection suite.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping
from typing import Any

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from emulator.model_files import output_file
from pipeline.allowlist import ModelSpec
from pipeline.model_outputs import ModelOutput

Size = tuple[int, int]


def normalize_mode(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation and convert to RGB, or RGBA when there is transparency."""
    image = ImageOps.exif_transpose(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    target = "RGBA" if has_alpha else "RGB"
    return image if image.mode == target else image.convert(target)


def _resized(image: Image.Image, size: Size) -> Image.Image:
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def upscale(image: Image.Image, size: Size) -> Image.Image:
    """Resize to ``size`` with Lanczos, then sharpen edges with an unsharp mask.

    Args:
        image: RGB or RGBA input.
        size: ``(width, height)`` of the output, pixels.
    """
    resized = _resized(image, size)
    return resized.filter(ImageFilter.UnsharpMask(radius=2, percent=80, threshold=2))


def face_restore(image: Image.Image, size: Size) -> Image.Image:
    """Light denoise (3x3 median, smooth), resize to ``size``, sharpen."""
    denoised = image.filter(ImageFilter.MedianFilter(3)).filter(ImageFilter.SMOOTH)
    return _resized(denoised, size).filter(ImageFilter.SHARPEN)


def crop_to_aspect(image: Image.Image, aspect: Size) -> Image.Image:
    """Centre-crop to the ratio ``aspect`` = ``(width, height)``, e.g. ``(1344, 768)``."""
    target = aspect[0] / aspect[1]
    width, height = image.size
    if width / height > target:
        new_width, new_height = max(1, round(height * target)), height
    else:
        new_width, new_height = width, max(1, round(width / target))
    left = (width - new_width) // 2
    top = (height - new_height) // 2
    return image.crop((left, top, left + new_width, top + new_height))


def edit(image: Image.Image, size: Size) -> Image.Image:
    """Crop to the ratio of ``size``, resize to it, boost colour by 10 % and contrast by 5 %."""
    framed = _resized(crop_to_aspect(image, size), size).convert("RGB")
    return ImageEnhance.Contrast(ImageEnhance.Color(framed).enhance(1.1)).enhance(1.05)


def img2img(image: Image.Image, size: Size) -> Image.Image:
    """Resize to ``size`` and stretch the contrast (1 % cutoff)."""
    return ImageOps.autocontrast(_resized(image, size).convert("RGB"), cutoff=1)


def run_model_op(
    spec: ModelSpec, image: Image.Image, params: Mapping[str, Any]
) -> tuple[Image.Image, ModelOutput]:
    """Play ``spec`` on one input: the real model's output size and format, classical pixels.

    Args:
        spec: the allowlisted model (its ``kind`` picks the operation).
        image: decoded input (any mode; EXIF orientation not yet applied).
        params: the prediction's ``input`` (``scale``, ``upscale``, ``aspect_ratio``,
            ``output_format``; missing ones take the real model's default).

    Returns:
        ``(image, output)``: the image has ``output``'s size, and an alpha channel only when
        ``output.alpha`` (the real model keeps the input's transparency).

    Raises:
        ValueError: unknown kind or a bad parameter (:func:`emulator.model_files.output_file`).
    """
    image = normalize_mode(image)
    output = output_file(spec, params, image.width, image.height, alpha=image.mode == "RGBA")
    if image.mode == "RGBA" and not output.alpha:
        image = image.convert("RGB")
    size = (output.width, output.height)
    if spec.kind == "upscale":
        return upscale(image, size), output
    if spec.kind == "face_restore":
        return face_restore(image, size), output
    if spec.kind == "edit":
        return edit(image, size), output
    if spec.kind == "img2img":
        return img2img(image, size), output
    raise ValueError(f"unknown model kind {spec.kind!r}")


def encode(image: Image.Image, output: ModelOutput) -> tuple[bytes, str, str]:
    """Encode as the real model's writer does: ``output``'s format, PNG level, JPEG quality.

    Returns:
        ``(data, file extension, content type)``; the extension is ``png`` or ``jpg``.
    """
    buffer = io.BytesIO()
    if output.format == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=output.jpeg_quality)
        return buffer.getvalue(), "jpg", output.content_type
    image.save(buffer, format="PNG", compress_level=output.png_level)
    return buffer.getvalue(), "png", output.content_type


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def decompression_bomb_png(side: int = 30_000) -> bytes:
    """A valid 1-bit ``side`` x ``side`` PNG of zeros: ~110 KB at the default, ``side**2`` pixels.

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
