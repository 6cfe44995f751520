"""Validate and normalize images with Pillow: bytes in, bytes out, no I/O.

:func:`normalize_input` turns a fetched source into the image the provider receives;
:func:`inspect_output` checks what the provider sent back.

Validation (errors from :mod:`pipeline.errors`)::

    zero bytes                                          EmptySource
    no format Pillow knows (text, HTML, random bytes)   NotAnImage
    a format Pillow knows but not JPEG/PNG/WebP         UnsupportedMediaType  (GIF, BMP, TIFF)
    width * height over ``max_pixels``                  ImageTooLarge  (checked before decoding)
    Pillow's own decompression-bomb guard fired         ImageTooLarge
    identifies, but the header or pixel data breaks     ImageTruncated

Normalization choices:

* **Orientation**: the EXIF orientation is applied (``ImageOps.exif_transpose``) and the
  result is upright; the EXIF block is dropped.
* **Colour**: everything becomes 8-bit sRGB. An embedded ICC profile (CMYK, Adobe RGB,
  Display P3, grey) is converted to sRGB with LittleCMS (perceptual intent) and then dropped:
  untagged means sRGB to browsers and to the models. Without a profile (or if the profile is
  unusable) Pillow's plain conversion is used; for Adobe-style CMYK JPEGs that is the naive
  formula, which is what most viewers show for an untagged CMYK file.
* **Modes**: grey (``L``, ``1``, 16-bit) becomes ``RGB`` — the models we call expect three
  channels, and a JPEG of grey RGB costs almost nothing over grey. Palette images become
  ``RGBA`` when they declare transparency, else ``RGB``. ``LA`` becomes ``RGBA``.
* **Alpha** is kept, unless every pixel is opaque (then it is dropped).
* **Encoding**: alpha -> PNG; opaque -> JPEG quality 92 (4:2:0, optimized Huffman tables),
  including PNG sources without alpha (photos are what we get; a PNG of a 2 MP photo is
  several times larger for no visible gain).
* **Metadata**: nothing is copied (no EXIF, XMP, comments, ICC) — see Colour above.
* **Size**: downscaled with LANCZOS, keeping the aspect ratio, so that
  ``width * height <= target_max_pixels`` (the model's ``max_input_pixels``); never upscaled.
  For a JPEG that must shrink by 2x or more, ``Image.draft`` decodes at 1/2, 1/4 or 1/8
  scale in libjpeg first, which is fast and keeps decode memory small.
* **Frames**: animated PNG/WebP and multi-picture JPEG (MPO) keep their first frame.

Pillow's global state is left alone: ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay ``False``
(a :class:`~pipeline.errors.ConfigurationError` is raised otherwise, since truncation would go
undetected), and ``Image.MAX_IMAGE_PIXELS`` keeps its default as a second line of defence;
our own, per-call pixel limit is checked against the header before any pixel is decoded.

Size: the one table of image formats and every rule that reads pixels on the way in and out
(sniffing, decoding under caps, orientation, colour, modes, encoding); they share the caps and
the table, and each is a short pure function.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass

from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from pipeline.errors import (
    ConfigurationError,
    EmptySource,
    ImageTooLarge,
    ImageTruncated,
    NotAnImage,
    OutputInvalid,
    SourceError,
    UnsupportedMediaType,
)

JPEG_QUALITY = 92
"""libjpeg quality (0-100) for opaque outputs."""


@dataclass(frozen=True)
class ImageFormat:
    """One image format the pipeline accepts and writes: every name it goes by.

    Attributes:
        name: the preset's ``format`` value (``jpeg``, ``png``, ``webp``).
        pillow: Pillow's format name (``JPEG``, ``PNG``, ``WEBP``).
        content_type: the media type (IANA), e.g. ``image/jpeg``.
        extension: the extension of the objects we write, without a dot (``jpg``).
        suffixes: local file suffixes read as this format (``imageopt submit DIR``).
    """

    name: str
    pillow: str
    content_type: str
    extension: str
    suffixes: tuple[str, ...]


JPEG = ImageFormat("jpeg", "JPEG", "image/jpeg", "jpg", (".jpg", ".jpeg"))
PNG = ImageFormat("png", "PNG", "image/png", "png", (".png",))
WEBP = ImageFormat("webp", "WEBP", "image/webp", "webp", (".webp",))
IMAGE_FORMATS: tuple[ImageFormat, ...] = (JPEG, WEBP, PNG)
"""The formats accepted as sources, uploads and outputs and written by presets: JPEG, PNG and
WebP (the seed's allowlist). Every other table of formats is derived from this one."""

ALLOWED_FORMATS = tuple(fmt.pillow for fmt in IMAGE_FORMATS)
"""Pillow format names accepted. A JPEG with extra pictures (cameras' MPO) opens through the
JPEG plugin and reports format ``MPO``; it is treated as JPEG."""
ALLOWED_CONTENT_TYPES = frozenset(fmt.content_type for fmt in IMAGE_FORMATS)
"""Media types accepted for sources and uploads."""
IMAGE_SUFFIXES = frozenset(suffix for fmt in IMAGE_FORMATS for suffix in fmt.suffixes)
"""Lower-case local file suffixes taken as images."""

_BY_PILLOW = {fmt.pillow: fmt for fmt in IMAGE_FORMATS} | {"MPO": JPEG}
_BY_NAME = {fmt.name: fmt for fmt in IMAGE_FORMATS}
_BY_CONTENT_TYPE = {fmt.content_type: fmt for fmt in IMAGE_FORMATS}
_BY_SUFFIX = {suffix: fmt for fmt in IMAGE_FORMATS for suffix in fmt.suffixes}


def format_of_pillow(pillow_name: str | None) -> ImageFormat | None:
    """The format Pillow reports as ``pillow_name`` (``MPO`` is JPEG); None if not allowed."""
    return _BY_PILLOW.get(str(pillow_name))


def format_named(name: str) -> ImageFormat | None:
    """The format a preset names (``jpeg``, ``png``, ``webp``); None for any other name."""
    return _BY_NAME.get(name)


def format_of_content_type(content_type: str) -> ImageFormat | None:
    """The format of a media type (exact, lower case, no parameters); None if not allowed."""
    return _BY_CONTENT_TYPE.get(content_type)


def format_of_suffix(suffix: str) -> ImageFormat | None:
    """The format of a file suffix such as ``.JPG`` (case-insensitive); None if not an image."""
    return _BY_SUFFIX.get(suffix.lower())


# What Pillow raises on corrupt data: decoders raise OSError/ValueError, parsers SyntaxError,
# struct.error, IndexError, EOFError.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error)
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)


@dataclass(frozen=True)
class ImageInfo:
    """What an image is, from its bytes.

    Attributes:
        width: pixels, as stored.
        height: pixels, as stored.
        format: Pillow's format name (``JPEG``, ``PNG``, ``WEBP``).
        content_type: the matching media type.
    """

    width: int
    height: int
    format: str
    content_type: str


@dataclass(frozen=True)
class NormalizedImage:
    """A source image ready for upload to object storage and the provider.

    Attributes:
        data: the encoded image.
        content_type: ``image/jpeg`` or ``image/png``.
        extension: ``jpg`` or ``png`` (for the object key).
        width: pixels, upright.
        height: pixels, upright.
        source_format: ``JPEG``, ``PNG`` or ``WEBP``.
        source_width: pixels of the source as displayed (after EXIF orientation, before any
            downscale).
        source_height: pixels, likewise.
    """

    data: bytes
    content_type: str
    extension: str
    width: int
    height: int
    source_format: str
    source_width: int
    source_height: int


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Identify ``data`` by its magic bytes and check its size, without decoding pixels.

    Raises:
        EmptySource, NotAnImage, UnsupportedMediaType, ImageTooLarge: see module docstring.
        ConfigurationError: ``ImageFile.LOAD_TRUNCATED_IMAGES`` was switched on somewhere.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ConfigurationError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")
    if not data:
        raise EmptySource("image is zero bytes")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError as exc:
        raise _classify_unsupported(data) from exc
    except _BOMB_ERRORS as exc:
        raise ImageTooLarge(f"image is a decompression bomb: {exc}") from exc
    except _DECODE_ERRORS as exc:
        # A plugin accepted the magic bytes, then the header broke off.
        raise ImageTruncated(f"image header is truncated or corrupt: {exc}") from exc
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageTooLarge(f"image is {width}x{height} pixels, over the {max_pixels} pixel cap")
    return image


def _classify_unsupported(data: bytes) -> SourceError:
    """Tell a known-but-unsupported format from bytes that are no image at all."""
    try:
        with Image.open(io.BytesIO(data)) as other:
            fmt = other.format
    except _BOMB_ERRORS:
        return UnsupportedMediaType("image format is not JPEG, PNG or WebP")
    except (UnidentifiedImageError, *_DECODE_ERRORS):
        return NotAnImage("bytes are not an image Pillow can identify")
    return UnsupportedMediaType(f"image format {fmt} is not JPEG, PNG or WebP")


def _decode(image: Image.Image) -> None:
    """Decode all pixel data.

    Raises:
        ImageTruncated: the data ends early or is corrupt.
    """
    try:
        image.load()
    except _BOMB_ERRORS as exc:
        raise ImageTooLarge(f"image is a decompression bomb: {exc}") from exc
    except _DECODE_ERRORS as exc:
        raise ImageTruncated(f"image data is truncated or corrupt: {exc}") from exc


def _fit(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """Largest size with the same aspect ratio and ``w * h <= max_pixels``; never larger."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    new_w, new_h = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    while new_w * new_h > max_pixels:  # float rounding at the edge
        if new_w >= new_h:
            new_w -= 1
        else:
            new_h -= 1
    return new_w, new_h


def _transpose(image: Image.Image) -> None:
    """Apply the EXIF orientation in place; unreadable EXIF is ignored rather than fatal."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except (*_DECODE_ERRORS, KeyError, TypeError, UserWarning):
        # Corrupt EXIF is common in the wild (UserWarning when warnings are errors).
        return


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _basic_mode(image: Image.Image) -> Image.Image:
    """Expand palette, bilevel, 16-bit and premultiplied modes to L, RGB, RGBA or CMYK."""
    mode = image.mode
    if mode in ("L", "RGB", "RGBA", "CMYK") and "transparency" not in image.info:
        return image
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grey: Pillow's convert to L clips at 255, so scale 0..65535 to 0..255.
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if _has_alpha(image):
        return image.convert("RGBA")
    return image.convert("RGB" if mode in ("P", "YCbCr", "LAB", "HSV", "RGBX") else "L")


def _to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert to 8-bit sRGB ``RGB``/``RGBA``, through the ICC profile when there is one."""
    target = "RGBA" if image.mode == "RGBA" else "RGB"
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(
                image,
                source,
                ImageCms.createProfile("sRGB"),
                renderingIntent=ImageCms.Intent.PERCEPTUAL,
                outputMode=target,
            )
        except (ImageCms.PyCMSError, *_DECODE_ERRORS):
            converted = None  # unusable or mismatched profile: plain conversion below
        if converted is not None:
            return converted
    return image if image.mode == target else image.convert(target)


def _drop_opaque_alpha(image: Image.Image) -> Image.Image:
    if image.mode == "RGBA":
        low, _high = image.getchannel("A").getextrema()
        if isinstance(low, int | float) and low >= 255:
            return image.convert("RGB")
    return image


def _canonical(pillow_name: str | None) -> str:
    """Pillow's format name with ``MPO`` read as ``JPEG`` (other names unchanged)."""
    fmt = format_of_pillow(pillow_name)
    return fmt.pillow if fmt is not None else str(pillow_name)


def _encode(image: Image.Image) -> tuple[bytes, str, str]:
    out = io.BytesIO()
    image.info = {}  # strip metadata: PNG would otherwise copy the old ICC profile
    if image.mode == "RGBA":
        image.save(out, format=PNG.pillow, compress_level=6)
        return out.getvalue(), PNG.content_type, PNG.extension
    image.save(out, format=JPEG.pillow, quality=JPEG_QUALITY, optimize=True)
    return out.getvalue(), JPEG.content_type, JPEG.extension


def normalize_input(data: bytes, *, max_pixels: int, target_max_pixels: int) -> NormalizedImage:
    """Validate a source image and produce the provider's input.

    Args:
        data: the fetched bytes.
        max_pixels: refuse sources over this many pixels (``Settings.max_input_pixels``).
        target_max_pixels: downscale to at most this many pixels
            (``ModelSpec.max_input_pixels``).

    Returns:
        The upright, sRGB, metadata-free image (JPEG, or PNG when it has alpha).

    Raises:
        EmptySource, NotAnImage, UnsupportedMediaType, ImageTooLarge, ImageTruncated: see the
            module docstring.
    """
    if max_pixels < 1 or target_max_pixels < 1:
        raise ValueError("pixel limits must be positive")
    with _open(data, max_pixels) as image:
        source_format = _canonical(image.format)
        stored_w, stored_h = image.size
        icc = image.info.get("icc_profile")
        goal_w, goal_h = _fit(stored_w, stored_h, target_max_pixels)
        if image.format in ("JPEG", "MPO") and (stored_w >= 2 * goal_w):
            image.draft(None, (goal_w, goal_h))  # libjpeg DCT scaling, result >= goal
        _decode(image)
        decoded_size = image.size
        _transpose(image)
        turned = image.size != decoded_size
        source_w, source_h = (stored_h, stored_w) if turned else (stored_w, stored_h)
        work = _basic_mode(image)
        goal = _fit(work.width, work.height, target_max_pixels)
        if goal != work.size:
            work = work.resize(goal, Image.Resampling.LANCZOS, reducing_gap=3.0)
        work = _drop_opaque_alpha(_to_srgb(work, icc if isinstance(icc, bytes) else None))
        encoded, content_type, extension = _encode(work)
        return NormalizedImage(
            data=encoded,
            content_type=content_type,
            extension=extension,
            width=work.width,
            height=work.height,
            source_format=source_format,
            source_width=source_w,
            source_height=source_h,
        )


def inspect_output(data: bytes, *, max_pixels: int) -> ImageInfo:
    """Validate a provider output: a whole JPEG, PNG or WebP within the pixel cap.

    The pixel data is decoded in full (JPEGs at 1/8 scale, which still reads every byte), so
    a truncated download is caught here.

    Args:
        data: the downloaded output.
        max_pixels: ``Settings.max_output_pixels``.

    Returns:
        Size (as stored), format and content type.

    Raises:
        OutputInvalid: for any of the validation errors of :func:`normalize_input`; the
            original error is the ``__cause__``.
    """
    try:
        with _open(data, max_pixels) as image:
            width, height = image.size
            fmt = _canonical(image.format)
            if fmt == JPEG.pillow:
                image.draft(None, (max(1, width // 8), max(1, height // 8)))
            _decode(image)
    except SourceError as exc:
        raise OutputInvalid(f"provider output rejected ({exc.code}): {exc.message}") from exc
    content_type = _BY_PILLOW[fmt].content_type
    return ImageInfo(width=width, height=height, format=fmt, content_type=content_type)


def decode_srgb(data: bytes, *, max_pixels: int, draft_scale: float = 1.0) -> Image.Image:
    """Decode an image to upright 8-bit sRGB, as :func:`normalize_input` does, without encoding.

    Used by output presets, the size preview and image analysis. The same rules as
    the module docstring: EXIF orientation applied, ICC profile converted to sRGB and dropped,
    modes expanded to ``RGB``/``RGBA``, an alpha channel that is opaque everywhere dropped,
    no metadata kept (``info`` is empty).

    Args:
        data: encoded JPEG, PNG or WebP.
        max_pixels: refuse images over this many pixels (checked before decoding).
        draft_scale: linear scale (0 < s <= 1) the caller will shrink to; a JPEG is then
            decoded by libjpeg at 1/2, 1/4 or 1/8 scale, never below ``draft_scale``.

    Returns:
        A loaded image the caller owns (mode ``RGB`` or ``RGBA``).

    Raises:
        EmptySource, NotAnImage, UnsupportedMediaType, ImageTooLarge, ImageTruncated: see the
            module docstring.
    """
    with _open(data, max_pixels) as image:
        icc = image.info.get("icc_profile")
        stored_w, stored_h = image.size
        if image.format in ("JPEG", "MPO") and draft_scale <= 0.5:
            goal = (
                max(1, math.ceil(stored_w * draft_scale)),
                max(1, math.ceil(stored_h * draft_scale)),
            )
            image.draft(None, goal)  # libjpeg DCT scaling, result >= goal
        _decode(image)
        _transpose(image)
        work = _drop_opaque_alpha(
            _to_srgb(_basic_mode(image), icc if isinstance(icc, bytes) else None)
        )
        if work is image:
            work = image.copy()
        work.info = {}
        return work
