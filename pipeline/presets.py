"""Output presets: what the stored result looks like (format, size, quality), applied with Pillow.

A job names a preset (``image_optimization_jobs.preset``) and an item may override it
(``image_optimization_items.preset``). The polling worker applies it to the validated provider
output before storing; without a preset the output is stored as the provider sent it.

A preset is either **built in** (:data:`BUILTIN_PRESETS`, not stored) or **custom**: a JSON spec
stored per store in ``image_optimization_presets``, validated by :func:`parse_preset` before it
is inserted (and again when it is used, in case a row was written by hand). Custom names cannot
shadow built-in ones.

Spec fields (JSON object; unknown keys are rejected)::

    format      "jpeg" | "webp" | "png"                          required
    width       int 16..8192, box width in pixels                 optional for "contain"
    height      int 16..8192, box height in pixels                optional for "contain"
    fit         "contain" (fit inside the box, keep aspect)       default "contain"
                "cover"   (fill the box exactly, centre crop)     needs width and height
                "pad"     (fit inside, pad to the box exactly)    needs width and height
    upscale     bool, may enlarge small images ("cover" always)   default false
    quality     int 1..100 (JPEG/WebP encoder quality)            default 85
    lossless    bool, WebP only                                   default false
    background  "#rrggbb": alpha is flattened onto it, and pad    default none (JPEG: white)
                bars use it; without it PNG/WebP keep alpha and pad with transparency

What every preset does (documented in docs/FEATURES.md):

* **Metadata stripped**: no EXIF, XMP, comments or ICC profile is written.
* **Colour**: pixels are converted to sRGB through the embedded ICC profile (LittleCMS,
  perceptual intent), then the profile is dropped: untagged means sRGB to browsers.
* **Orientation**: the EXIF orientation is applied to the pixels, so the output is upright.
* **Resampling**: Lanczos (Pillow ``LANCZOS`` with ``reducing_gap=3.0``).
* **Encoders**: JPEG progressive, optimized Huffman tables, 4:2:0; WebP ``method=4``;
  PNG ``compress_level=6``.

Size: the preset model (validation of a spec, the built-ins, the store's custom presets) and
the one function that applies it, which the size preview and the polling worker both use.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image

from pipeline.errors import InvalidPreset, UnknownPreset
from pipeline.images import IMAGE_FORMATS, ImageFormat, decode_srgb, format_named

if TYPE_CHECKING:
    from pipeline.repository import Repository


class PresetSource(Protocol):
    """Where custom presets are read (:class:`pipeline.repository.Repository`)."""

    def get_preset(self, store_id: str, name: str) -> Mapping[str, Any] | None: ...


FORMATS = tuple(fmt.name for fmt in IMAGE_FORMATS)
"""Preset ``format`` values (:data:`pipeline.images.IMAGE_FORMATS`)."""

FITS = ("contain", "cover", "pad")
MIN_SIDE, MAX_SIDE = 16, 8192
"""Box sides allowed in a spec, pixels."""

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
"""Preset names: lowercase, digits, ``-`` and ``_``, 1-63 characters (same CHECK in 0002)."""

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
_KEYS = {
    "format",
    "width",
    "height",
    "fit",
    "upscale",
    "quality",
    "lossless",
    "background",
    "description",
}
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Preset:
    """One validated output preset (see the module docstring for the fields)."""

    name: str
    format: str
    width: int | None = None
    height: int | None = None
    fit: str = "contain"
    upscale: bool = False
    quality: int = 85
    lossless: bool = False
    background: str | None = None
    description: str = ""
    builtin: bool = False

    @property
    def image_format(self) -> ImageFormat:
        """The output format (names, media type, extension); ``format`` was checked on parse."""
        fmt = format_named(self.format)
        if fmt is None:
            raise InvalidPreset(f"preset {self.name} has no known format {self.format!r}")
        return fmt

    @property
    def content_type(self) -> str:
        return self.image_format.content_type

    @property
    def extension(self) -> str:
        return self.image_format.extension

    def to_spec(self) -> dict[str, Any]:
        """The JSON spec of this preset (what :func:`parse_preset` reads back)."""
        spec: dict[str, Any] = {"format": self.format, "fit": self.fit, "quality": self.quality}
        for key in ("width", "height", "background"):
            if getattr(self, key) is not None:
                spec[key] = getattr(self, key)
        if self.upscale:
            spec["upscale"] = True
        if self.lossless:
            spec["lossless"] = True
        if self.description:
            spec["description"] = self.description
        return spec


BUILTIN_PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "web-2048",
            "jpeg",
            2048,
            2048,
            quality=82,
            builtin=True,
            description="large web JPEG: longest side at most 2048 px",
        ),
        Preset(
            "webp-1600",
            "webp",
            1600,
            1600,
            quality=80,
            builtin=True,
            description="WebP, longest side at most 1600 px, alpha kept",
        ),
        Preset(
            "square-1080",
            "jpeg",
            1080,
            1080,
            fit="pad",
            upscale=True,
            quality=85,
            background="#ffffff",
            builtin=True,
            description="exactly 1080x1080 JPEG, whole image centred on white",
        ),
        Preset(
            "square-1080-crop",
            "jpeg",
            1080,
            1080,
            fit="cover",
            quality=85,
            builtin=True,
            description="exactly 1080x1080 JPEG, centre-cropped to fill",
        ),
        Preset(
            "thumb-400",
            "webp",
            400,
            400,
            quality=75,
            builtin=True,
            description="WebP thumbnail, longest side at most 400 px",
        ),
        Preset(
            "png-2048",
            "png",
            2048,
            2048,
            builtin=True,
            description="lossless PNG, longest side at most 2048 px, alpha kept",
        ),
    )
}
"""Built-in presets, by name (common e-commerce targets)."""


@dataclass(frozen=True)
class PresetOutput:
    """An encoded preset result.

    Attributes:
        data: the encoded image.
        content_type: its media type.
        extension: file extension for the object key.
        width: pixels.
        height: pixels.
    """

    data: bytes
    content_type: str
    extension: str
    width: int
    height: int


# --- validation --------------------------------------------------------------------------
def _int_in(spec: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidPreset(
            f"preset field {key!r} must be an integer from {low} to {high}", field=key
        )
    return value


def _bool(spec: Mapping[str, Any], key: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise InvalidPreset(f"preset field {key!r} must be true or false", field=key)
    return value


def check_name(name: str) -> str:
    """Check a preset name (:data:`NAME_PATTERN`).

    Raises:
        InvalidPreset: the name does not match.
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidPreset(
            f"preset name {name!r} must be 1-63 characters of a-z, 0-9, '-' and '_', "
            "starting with a letter or digit",
            field="name",
        )
    return name


def parse_preset(name: str, spec: Any, *, builtin: bool = False) -> Preset:
    """Validate a preset spec (a JSON object) and return the preset.

    Args:
        name: the preset's name.
        spec: the decoded JSON spec.
        builtin: internal; built-in presets skip the name-shadowing rule.

    Returns:
        The preset.

    Raises:
        InvalidPreset: with a message naming the offending field.
    """
    check_name(name)
    if not isinstance(spec, Mapping):
        raise InvalidPreset("preset spec must be a JSON object")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise InvalidPreset(
            f"unknown preset field(s): {', '.join(map(str, unknown))}; "
            f"allowed: {', '.join(sorted(_KEYS))}",
            field=str(unknown[0]),
        )
    fmt = spec.get("format")
    if fmt not in FORMATS:
        raise InvalidPreset(
            f"preset field 'format' must be one of {', '.join(FORMATS)}", field="format"
        )
    fit = spec.get("fit", "contain")
    if fit not in FITS:
        raise InvalidPreset(f"preset field 'fit' must be one of {', '.join(FITS)}", field="fit")
    width = _int_in(spec, "width", MIN_SIDE, MAX_SIDE)
    height = _int_in(spec, "height", MIN_SIDE, MAX_SIDE)
    if fit in ("cover", "pad") and (width is None or height is None):
        raise InvalidPreset(
            f"fit {fit!r} needs both 'width' and 'height'",
            field="width" if width is None else "height",
        )
    quality = _int_in(spec, "quality", 1, 100)
    lossless = _bool(spec, "lossless")
    if lossless and fmt != "webp":
        raise InvalidPreset(
            "preset field 'lossless' applies to format 'webp' only", field="lossless"
        )
    background = spec.get("background")
    if background is not None and (not isinstance(background, str) or not _HEX.match(background)):
        raise InvalidPreset(
            "preset field 'background' must be a colour like '#ffffff'", field="background"
        )
    description = spec.get("description", "")
    if not isinstance(description, str) or len(description) > 200:
        raise InvalidPreset(
            "preset field 'description' must be text of at most 200 characters",
            field="description",
        )
    return Preset(
        name=name,
        format=str(fmt),
        width=width,
        height=height,
        fit=str(fit),
        upscale=_bool(spec, "upscale"),
        quality=85 if quality is None else quality,
        lossless=lossless,
        background=background.lower() if background else None,
        description=description,
        builtin=builtin,
    )


# --- lookup ------------------------------------------------------------------------------
def resolve_preset(repo: PresetSource, store_id: str, name: str) -> Preset:
    """Find a preset by name: built-in first, then the store's custom presets.

    Raises:
        UnknownPreset: no such preset for this store.
        InvalidPreset: the stored spec no longer validates (written by hand).
    """
    if name in BUILTIN_PRESETS:
        return BUILTIN_PRESETS[name]
    row = repo.get_preset(store_id, name)
    if row is None:
        raise UnknownPreset(
            f"preset {name!r} is neither built in nor defined for store {store_id!r}"
        )
    return parse_preset(name, row["spec"])


def add_custom_preset(repo: Repository, store_id: str, name: str, spec: Any) -> Preset:
    """Validate and store (insert or replace) a store's custom preset.

    Raises:
        InvalidPreset: bad name, bad spec, empty store id, or a built-in name.
    """
    if not isinstance(store_id, str) or not store_id.strip():
        raise InvalidPreset("store_id must not be empty")
    if name in BUILTIN_PRESETS:
        raise InvalidPreset(f"preset name {name!r} is built in; choose another name")
    preset = parse_preset(name, spec)
    repo.upsert_preset(store_id, name, preset.to_spec())
    return preset


def list_presets(
    repo: Repository | None = None, store_id: str | None = None
) -> list[dict[str, Any]]:
    """Built-in presets, then custom ones (of ``store_id``, or all stores), as JSON-ready dicts.

    Each dict: ``name``, ``store_id`` (None for built-in), ``builtin``, ``spec``.
    """
    out: list[dict[str, Any]] = [
        {"name": p.name, "store_id": None, "builtin": True, "spec": p.to_spec()}
        for p in BUILTIN_PRESETS.values()
    ]
    if repo is not None:
        out.extend(
            {
                "name": r["name"],
                "store_id": r["store_id"],
                "builtin": False,
                "spec": dict(r["spec"]),
            }
            for r in repo.list_presets(store_id)
        )
    return out


# --- geometry and rendering ----------------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """How a ``w x h`` image becomes the preset's output.

    Attributes:
        resize: size to resample to.
        crop: box ``(left, top, right, bottom)`` cut from the resized image, or None.
        canvas: final size.
        offset: where the (cropped) image sits on the canvas.
    """

    resize: tuple[int, int]
    crop: tuple[int, int, int, int] | None
    canvas: tuple[int, int]
    offset: tuple[int, int]


def plan_geometry(width: int, height: int, preset: Preset) -> Geometry:
    """Compute resize, crop and canvas for an upright ``width x height`` image (pure)."""
    box_w = preset.width or math.inf
    box_h = preset.height or math.inf
    if preset.fit == "cover":
        assert preset.width is not None
        assert preset.height is not None
        scale = max(box_w / width, box_h / height)
        rw, rh = max(preset.width, round(width * scale)), max(preset.height, round(height * scale))
        left, top = (rw - preset.width) // 2, (rh - preset.height) // 2
        return Geometry(
            (rw, rh),
            (left, top, left + preset.width, top + preset.height),
            (preset.width, preset.height),
            (0, 0),
        )
    scale = min(box_w / width, box_h / height)
    if not preset.upscale:
        scale = min(scale, 1.0)
    if math.isinf(scale):
        scale = 1.0
    rw = max(1, min(round(width * scale), int(min(box_w, 10**9))))
    rh = max(1, min(round(height * scale), int(min(box_h, 10**9))))
    if preset.fit == "pad":
        assert preset.width is not None
        assert preset.height is not None
        offset = ((preset.width - rw) // 2, (preset.height - rh) // 2)
        return Geometry((rw, rh), None, (preset.width, preset.height), offset)
    return Geometry((rw, rh), None, (rw, rh), (0, 0))


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return (int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16))


def render(data: bytes, preset: Preset, *, max_pixels: int) -> Image.Image:
    """Decode ``data`` and lay it out as the preset says, ready to encode (no encoding).

    Raises:
        EmptySource, NotAnImage, UnsupportedMediaType, ImageTooLarge, ImageTruncated: from
            :func:`pipeline.images.decode_srgb`.
    """
    return layout(decode_for(data, preset, max_pixels=max_pixels), preset)


def decode_for(data: bytes, preset: Preset, *, max_pixels: int) -> Image.Image:
    """Decode ``data`` upright and sRGB, as :func:`render` does before the layout (JPEG drafts
    at the output's scale when that is smaller).

    Raises:
        EmptySource, NotAnImage, UnsupportedMediaType, ImageTooLarge, ImageTruncated: from
            :func:`pipeline.images.decode_srgb`.
    """
    scale = _draft_scale(data, preset, max_pixels)
    return decode_srgb(data, max_pixels=max_pixels, draft_scale=scale)


def _draft_scale(data: bytes, preset: Preset, max_pixels: int) -> float:
    """Linear scale of the output relative to the stored image (1.0 when unknown)."""
    try:
        with Image.open(io.BytesIO(data)) as head:
            w, h = head.size
    except (OSError, ValueError, SyntaxError):
        return 1.0  # decode_srgb raises the proper error
    if w * h > max_pixels:
        return 1.0
    # The EXIF orientation may swap the axes: take the larger scale of both readings.
    as_stored = plan_geometry(w, h, preset).resize[0] / w
    turned = plan_geometry(h, w, preset).resize[0] / h
    return min(1.0, max(as_stored, turned))


def layout(image: Image.Image, preset: Preset) -> Image.Image:
    """Resize, crop or pad an upright sRGB image (``RGB``/``RGBA``) as the preset says."""
    geometry = plan_geometry(image.width, image.height, preset)
    work = image
    if geometry.resize != work.size:
        work = work.resize(geometry.resize, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return place(work, geometry, preset)


def place(work: Image.Image, geometry: Geometry, preset: Preset) -> Image.Image:
    """Crop, flatten and pad an image already resized to ``geometry.resize`` (the steps of
    :func:`layout` after resampling; the size preview resamples on its own)."""
    if geometry.crop is not None:
        work = work.crop(geometry.crop)
    alpha_out = preset.format != "jpeg" and preset.background is None
    background = _rgb(preset.background) if preset.background else _WHITE
    if work.mode == "RGBA" and not alpha_out:
        flat = Image.new("RGB", work.size, background)
        flat.paste(work, mask=work.getchannel("A"))
        work = flat
    if geometry.canvas != work.size:
        if alpha_out:
            canvas = Image.new("RGBA", geometry.canvas, (0, 0, 0, 0))
            canvas.paste(work.convert("RGBA"), geometry.offset)
        else:
            canvas = Image.new("RGB", geometry.canvas, background)
            canvas.paste(work, geometry.offset)
        work = canvas
    work.info = {}
    return work


def encode(image: Image.Image, preset: Preset) -> bytes:
    """Encode a rendered image with the preset's encoder settings; no metadata is written."""
    out = io.BytesIO()
    image.info = {}
    if preset.format == "jpeg":
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        rgb.save(
            out,
            format="JPEG",
            quality=preset.quality,
            optimize=True,
            progressive=True,
            subsampling="4:2:0",
        )
    elif preset.format == "webp":
        image.save(out, format="WEBP", quality=preset.quality, lossless=preset.lossless, method=4)
    else:
        image.save(out, format="PNG", compress_level=6)
    return out.getvalue()


def apply_preset(data: bytes, preset: Preset, *, max_pixels: int) -> PresetOutput:
    """Turn an image into the preset's output.

    Args:
        data: a JPEG, PNG or WebP (e.g. the validated provider output).
        preset: the preset.
        max_pixels: refuse inputs over this many pixels (``Settings.max_output_pixels``).

    Returns:
        The encoded output with its size and media type.

    Raises:
        EmptySource, NotAnImage, UnsupportedMediaType, ImageTooLarge, ImageTruncated: the input
            is not a usable image.
    """
    image = render(data, preset, max_pixels=max_pixels)
    encoded = encode(image, preset)
    return PresetOutput(encoded, preset.content_type, preset.extension, image.width, image.height)
