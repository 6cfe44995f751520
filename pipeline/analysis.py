"""Image analysis: what an image is, and which model and preset suit it (with the reason).

Measured (pure Pillow, plus OpenCV for faces when installed):

* **dimensions** upright (after EXIF orientation) and as stored, **format**, **mode**, bytes,
  whether an ICC profile is embedded, the EXIF orientation;
* **transparency**: some pixel has alpha < 255 (an alpha channel that is opaque everywhere
  does not count);
* **photo vs graphic**: on a 128 px thumbnail of the opaque pixels, the share of distinct
  colours, leaving the most frequent (background) colour out. Photographs (noise, gradients,
  texture) have many (the corpus' 70 photos: >= 0.05); logos, icons, flat illustrations and
  screenshots have few. Threshold :data:`PHOTO_UNIQUE_RATIO`;
* **faces** (optional): OpenCV's Haar frontal-face cascade, shipped in the
  ``opencv-python-headless`` wheel (4.x; the 5.0 wheel no longer ships the cascades), run on a
  grey copy at most 800 px on its longest side. Without OpenCV ``faces`` is ``None`` and the
  reason says so. A Haar cascade finds frontal faces of about 30 px and more; it misses
  profiles and can fire on face-like texture: a hint, not a fact.

Checks that could not run are named in ``checks_not_run`` (today only ``faces``: OpenCV is the
``faces`` extra, which the Docker image ships, see the Dockerfile; a plain ``pip install`` may
lack it), and the recommendation's reason then says that faces were not checked rather than
"no faces".

Recommendation rules (first match wins), so each reason is one sentence:

* model: faces -> ``sczhou/codeformer`` (face restoration; ``upscale`` 2 when the image is
  small); otherwise ``nightmareai/real-esrgan`` with the smallest ``scale`` (1-4) that brings
  the longest side of the model's input (capped at its ``max_input_pixels``) to 2048 px;
* preset: transparency -> ``webp-1600`` (keeps alpha, far smaller than PNG); graphic ->
  ``png-2048`` (lossless, flat colours); banner (aspect >= 2:1) -> ``web-2048``; otherwise
  ``web-2048``.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image

from pipeline.allowlist import build_allowlist
from pipeline.images import decode_srgb

PHOTO_UNIQUE_RATIO = 0.04
"""Distinct colours / opaque pixels on a 128 px thumbnail at or above which an image is a photo."""
WEB_TARGET_SIDE = 2048
"""Longest side, pixels, that the recommended upscale aims at (the ``web-2048`` preset)."""
FACE_MAX_SIDE = 800
ANALYSIS_SIDE = 1024
"""Longest side, pixels, the measures work at (JPEGs are decoded at 1/2..1/8 scale to it)."""


@dataclass(frozen=True)
class Recommendation:
    """A model (with params) and a preset for an image, each with its reason."""

    model: str
    params: dict[str, Any]
    model_reason: str
    preset: str
    preset_reason: str


@dataclass(frozen=True)
class Analysis:
    """What :func:`analyze` found (JSON-ready through :meth:`as_dict`).

    Attributes:
        width: upright width, pixels. height: likewise.
        stored_width / stored_height: as stored (before EXIF orientation).
        format: ``JPEG``, ``PNG`` or ``WEBP``. mode: Pillow's mode as stored.
        bytes: size of the input. megapixels: upright, rounded to 0.01.
        has_icc_profile: an ICC profile is embedded. exif_orientation: 1-8 (1 when none).
        transparent: some pixel is not fully opaque.
        kind: ``photo`` or ``graphic``. unique_colour_ratio: the measure behind ``kind``.
        faces: frontal faces found, or None when no detector is installed.
        face_detector: what found them (or why not).
        recommendation: model and preset with reasons.
        checks_not_run: names of the checks that could not run (``faces``), each with its
            reason in the matching field (``face_detector``); empty when all ran.
    """

    width: int
    height: int
    stored_width: int
    stored_height: int
    format: str
    mode: str
    bytes: int
    megapixels: float
    has_icc_profile: bool
    exif_orientation: int
    transparent: bool
    kind: str
    unique_colour_ratio: float
    faces: int | None
    face_detector: str
    recommendation: Recommendation
    notes: list[str] = field(default_factory=list)
    checks_not_run: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the API and ``imageopt analyze --json``)."""
        return asdict(self)


def unique_colour_ratio(image: Image.Image) -> float:
    """Share of distinct colours on a 128 px thumbnail (0..1).

    Counted over the opaque pixels, leaving out the most frequent colour (a flat background,
    e.g. a product shot on white, says nothing about the subject). Grey images can only have
    256 levels, so their count is taken relative to ``min(pixels, 256)``.
    """
    thumb = image.copy()
    thumb.thumbnail((128, 128), Image.Resampling.BILINEAR)
    if thumb.mode == "RGBA":
        raw = thumb.tobytes()
        pixels = [raw[i : i + 3] for i in range(0, len(raw), 4) if raw[i + 3] >= 128]
    else:
        raw = thumb.convert("RGB").tobytes()
        pixels = [raw[i : i + 3] for i in range(0, len(raw), 3)]
    counts = Counter(pixels)
    if counts:
        background, _ = counts.most_common(1)[0]
        del counts[background]
    total = sum(counts.values())
    if total == 0:
        return 0.0
    grey = all(p[0] == p[1] == p[2] for p in counts)
    return min(1.0, len(counts) / (min(total, 256) if grey else total))


def count_faces(image: Image.Image) -> tuple[int | None, str]:
    """Frontal faces found by OpenCV's Haar cascade, or ``(None, reason)`` without OpenCV."""
    try:
        import cv2  # noqa: PLC0415 - optional dependency
        import numpy as np  # noqa: PLC0415 - comes with OpenCV
    except ImportError:
        return None, "no detector: install opencv-python-headless<5 to count faces"
    # cv2's stubs lack the ``data`` submodule the wheel ships (cv2/data/__init__.py).
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        return None, f"no detector: OpenCV {cv2.__version__} ships no Haar cascades"
    grey = image.convert("L")
    scale = min(1.0, FACE_MAX_SIDE / max(grey.size))
    if scale < 1.0:
        grey = grey.resize(
            (max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
            Image.Resampling.BILINEAR,
        )
    side = max(32, min(grey.size) // 10)
    found = cascade.detectMultiScale(
        np.asarray(grey), scaleFactor=1.1, minNeighbors=8, minSize=(side, side)
    )
    return len(found), f"opencv {cv2.__version__} haarcascade_frontalface_default"


def recommend(
    *, width: int, height: int, transparent: bool, kind: str, faces: int | None
) -> Recommendation:
    """Pick a model and a preset by the rules of the module docstring (pure)."""
    allowlist = build_allowlist()
    long_side = max(width, height)
    if faces:
        spec = allowlist["sczhou/codeformer"]
        upscale = 2 if long_side < WEB_TARGET_SIDE else 1
        model, params = spec.name, {"upscale": upscale}
        model_reason = f"{faces} face(s) detected: face restoration" + (
            f", x{upscale} to approach {WEB_TARGET_SIDE} px" if upscale > 1 else ""
        )
    else:
        spec = allowlist["nightmareai/real-esrgan"]
        cap = math.sqrt(min(1.0, spec.max_input_pixels / (width * height)))
        effective = long_side * cap
        scale = max(1, min(4, math.ceil(WEB_TARGET_SIDE / effective)))
        model, params = spec.name, {"scale": scale}
        lead = "no faces" if faces == 0 else "faces not checked"
        model_reason = (
            f"{lead}; the model gets at most {effective:.0f} px on the longest side, "
            f"x{scale} gives {effective * scale:.0f} px (aim: {WEB_TARGET_SIDE} px, at most x4)"
            if scale > 1
            else f"{lead}; {effective:.0f} px is already web size: x1 cleans up only"
        )
    if transparent:
        preset, preset_reason = (
            "webp-1600",
            "transparent: WebP keeps alpha at a fraction of PNG's size",
        )
    elif kind == "graphic":
        preset, preset_reason = (
            "png-2048",
            "graphic (few colours): lossless PNG keeps flat areas crisp",
        )
    elif max(width, height) >= 2 * min(width, height):
        preset, preset_reason = "web-2048", "banner (aspect >= 2:1): a wide web JPEG, not a square"
    else:
        preset, preset_reason = "web-2048", "opaque photo: a 2048 px progressive JPEG for the web"
    return Recommendation(model, params, model_reason, preset, preset_reason)


def analyze(data: bytes, *, max_pixels: int, detect_faces: bool = True) -> Analysis:
    """Analyze an image and recommend a model and a preset.

    Args:
        data: JPEG, PNG or WebP bytes.
        max_pixels: refuse images over this many pixels (``Settings.max_input_pixels``).
        detect_faces: run the face detector when it is installed.

    Returns:
        The analysis.

    Raises:
        EmptySource, NotAnImage, UnsupportedMediaType, ImageTooLarge, ImageTruncated: the input
            is not a usable image.
    """
    with Image.open(io.BytesIO(data)) as head:
        fmt = "JPEG" if head.format == "MPO" else str(head.format)
        stored_w, stored_h = head.size
        mode = head.mode
        icc = bool(head.info.get("icc_profile"))
        orientation = int(head.getexif().get(0x0112, 1) or 1)
    # Every measure below works on at most ANALYSIS_SIDE px: decode JPEGs at reduced scale.
    draft = min(1.0, ANALYSIS_SIDE / max(stored_w, stored_h, 1))
    image = decode_srgb(data, max_pixels=max_pixels, draft_scale=draft)
    width, height = (stored_h, stored_w) if orientation in (5, 6, 7, 8) else (stored_w, stored_h)
    transparent = image.mode == "RGBA"
    ratio = unique_colour_ratio(image)
    kind = "photo" if ratio >= PHOTO_UNIQUE_RATIO else "graphic"
    notes: list[str] = []
    if detect_faces:
        faces, detector = count_faces(image)
    else:
        faces, detector = None, "not run"
    if mode == "CMYK":
        notes.append("CMYK source: converted to sRGB" + (" via its ICC profile" if icc else ""))
    if orientation != 1:
        notes.append(f"EXIF orientation {orientation}: pixels are turned upright")
    return Analysis(
        width=width,
        height=height,
        stored_width=stored_w,
        stored_height=stored_h,
        format=fmt,
        mode=mode,
        bytes=len(data),
        megapixels=round(width * height / 1_000_000, 2),
        has_icc_profile=icc,
        exif_orientation=orientation,
        transparent=transparent,
        kind=kind,
        unique_colour_ratio=round(ratio, 4),
        faces=faces,
        face_detector=detector,
        recommendation=recommend(
            width=width, height=height, transparent=transparent, kind=kind, faces=faces
        ),
        notes=notes,
        checks_not_run=["faces"] if faces is None else [],
    )
