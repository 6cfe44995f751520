"""What each allowlisted model returns: output width, height and format for a given input (pure).

The size preview (:mod:`pipeline.preview`) needs the geometry of the *real* models, not of the
emulator that plays them locally (docs/EMULATOR.md). Each rule below is read from the model's
own prediction code or documentation:

* ``nightmareai/real-esrgan``: ``RealESRGANer.enhance(img, outscale=scale)`` resizes the
  network's x4 output to ``(int(w * scale), int(h * scale))`` (xinntao/Real-ESRGAN,
  ``realesrgan/utils.py``); the Replicate model's ``predict.py`` writes ``output.png`` with
  OpenCV, alpha kept. Its input is described as "Factor to scale image by", default 4.
* ``tencentarc/gfpgan``: ``cog_predict.py`` (TencentARC/GFPGAN): an input less than 300 px
  high is first doubled; GFPGAN upsamples x2; for ``scale != 2`` the result is resized to
  ``(int(w * scale / 2), int(h * scale / 2))`` of the (doubled) input. The file keeps the
  input's extension (``out.<ext>``): our opaque inputs are JPEG (``pipeline.images``), so the
  output is a JPEG written by OpenCV (quality 95, its default); RGBA inputs give a PNG.
* ``sczhou/codeformer``: ``predict.py`` and ``FaceRestoreHelper.read_image``
  (sczhou/CodeFormer): an input whose shorter side is under 512 px is scaled so that it is
  512 px (``cv2.resize`` with ``fx = fy = 512 / min(h, w)``); the output is
  ``int(h * upscale) x int(w * upscale)`` of that, three channels, ``output.png``.
* ``google/nano-banana`` (Gemini 2.5 Flash Image): a fixed size per aspect ratio, about one
  megapixel (Google's image-generation documentation, ai.google.dev/gemini-api/docs/
  image-generation: 1:1 1024x1024 ... 16:9 1344x768, 21:9 1536x672; the 16:9 and 9:16 sizes
  are also quoted by zilliz.com's Nano Banana FAQ). ``match_input_image`` takes the listed
  ratio nearest the input's. ``output_format`` ``jpg`` or ``png`` (Replicate's input schema).
* ``stability-ai/sdxl``: in img2img mode ``predict.py`` (replicate/cog-sdxl) sets
  ``width, height = image.width, image.height``; the diffusers image processor floors both to
  a multiple of 8 (the VAE's scale factor); each output is saved as ``out-<i>.png`` by Pillow.

PNG encoders: OpenCV's default for PNG is zlib level 1 ("best speed", OpenCV's
``IMWRITE_PNG_COMPRESSION`` documentation); Pillow's default is level 6. The quality of
nano-banana's JPEGs is not documented: :data:`UNKNOWN_JPEG_QUALITY` is assumed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.allowlist import ModelSpec

GEMINI_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}
"""Gemini 2.5 Flash Image output size per aspect ratio (width, height), pixels."""

OPENCV_PNG_LEVEL = 1
PILLOW_PNG_LEVEL = 6
OPENCV_JPEG_QUALITY = 95
UNKNOWN_JPEG_QUALITY = 90
GFPGAN_SMALL_HEIGHT = 300
CODEFORMER_MIN_SIDE = 512
SDXL_MULTIPLE = 8


@dataclass(frozen=True)
class ModelOutput:
    """The file a model returns for one input.

    Attributes:
        width: pixels. height: pixels.
        format: ``png`` or ``jpeg``.
        alpha: the file keeps the input's transparency (PNG only).
        png_level: zlib level of the model's PNG encoder (PNG only).
        jpeg_quality: the model's JPEG quality (JPEG only).
        aspect: the ``(width, height)`` ratio the model frames the picture to, or None when
            it keeps the input's framing (only the prompt-edit model reframes).
    """

    width: int
    height: int
    format: str
    alpha: bool = False
    png_level: int = OPENCV_PNG_LEVEL
    jpeg_quality: int = OPENCV_JPEG_QUALITY
    aspect: tuple[int, int] | None = None

    @property
    def content_type(self) -> str:
        return "image/png" if self.format == "png" else "image/jpeg"


Rule = Callable[[ModelSpec, Mapping[str, Any], int, int, bool], ModelOutput]


def _real_esrgan(
    spec: ModelSpec, params: Mapping[str, Any], width: int, height: int, alpha: bool
) -> ModelOutput:
    scale = spec.output_scale(params)
    return ModelOutput(int(width * scale), int(height * scale), "png", alpha=alpha)


def _gfpgan(
    spec: ModelSpec, params: Mapping[str, Any], width: int, height: int, alpha: bool
) -> ModelOutput:
    scale = spec.output_scale(params)
    if height < GFPGAN_SMALL_HEIGHT:
        width, height = width * 2, height * 2
    if scale == 2:  # GFPGAN's own x2: no resize follows
        size = (width * 2, height * 2)
    else:
        size = (int(width * scale / 2), int(height * scale / 2))
    fmt = "png" if alpha else "jpeg"
    return ModelOutput(*size, fmt, alpha=alpha)


def _codeformer(
    spec: ModelSpec, params: Mapping[str, Any], width: int, height: int, alpha: bool
) -> ModelOutput:
    upscale = int(spec.output_scale(params))
    shorter = min(width, height)
    if shorter < CODEFORMER_MIN_SIDE:
        factor = CODEFORMER_MIN_SIDE / shorter
        width, height = round(width * factor), round(height * factor)
    return ModelOutput(int(width * upscale), int(height * upscale), "png")


def nearest_ratio(width: int, height: int) -> str:
    """The Gemini aspect ratio (a key of :data:`GEMINI_SIZES`) nearest ``width / height``."""
    own = width / height
    return min(GEMINI_SIZES, key=lambda r: abs(GEMINI_SIZES[r][0] / GEMINI_SIZES[r][1] - own))


def _nano_banana(
    spec: ModelSpec, params: Mapping[str, Any], width: int, height: int, alpha: bool
) -> ModelOutput:
    merged = {**spec.defaults, **params}
    ratio = str(merged.get("aspect_ratio", "match_input_image"))
    if ratio not in GEMINI_SIZES:
        ratio = nearest_ratio(width, height)
    out_w, out_h = GEMINI_SIZES[ratio]
    fmt = "jpeg" if merged.get("output_format") == "jpg" else "png"
    return ModelOutput(
        out_w, out_h, fmt, png_level=PILLOW_PNG_LEVEL, jpeg_quality=UNKNOWN_JPEG_QUALITY,
        aspect=(out_w, out_h),
    )  # fmt: skip


def _sdxl(
    spec: ModelSpec, params: Mapping[str, Any], width: int, height: int, alpha: bool
) -> ModelOutput:
    floor = SDXL_MULTIPLE
    return ModelOutput(
        max(floor, width // floor * floor),
        max(floor, height // floor * floor),
        "png",
        png_level=PILLOW_PNG_LEVEL,
    )


def _by_scale(
    spec: ModelSpec, params: Mapping[str, Any], width: int, height: int, alpha: bool
) -> ModelOutput:
    """A model without a rule of its own: its scale parameter, a PNG."""
    scale = spec.output_scale(params)
    return ModelOutput(int(width * scale), int(height * scale), "png", alpha=alpha)


RULES: dict[str, Rule] = {
    "nightmareai/real-esrgan": _real_esrgan,
    "tencentarc/gfpgan": _gfpgan,
    "sczhou/codeformer": _codeformer,
    "google/nano-banana": _nano_banana,
    "stability-ai/sdxl": _sdxl,
}


def model_output(
    spec: ModelSpec, params: Mapping[str, Any], width: int, height: int, *, alpha: bool
) -> ModelOutput:
    """The output a model gives for an input of ``width x height`` pixels.

    Args:
        spec: the allowlisted model.
        params: the item's model parameters, already validated (``ModelSpec.validate``);
            the model's defaults fill the rest.
        width: the provider's input width, pixels (after :func:`pipeline.images.normalize_input`).
        height: likewise.
        alpha: the input has transparency (it is a PNG then).

    Returns:
        Size and format of the model's file (rules and sources: module docstring).
    """
    rule = RULES.get(spec.name, _by_scale)
    return rule(spec, params, width, height, alpha)
