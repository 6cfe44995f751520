"""The file each emulated model returns: its size and format, as the real model's (pure).

The rules are the pipeline's own (:func:`pipeline.model_outputs.model_output`, with the
real models' sources there), so the emulator and the size preview cannot drift apart. This
module adds what only a provider needs:

* the real model's **defaults** for the inputs that decide the file (:data:`SIZE_INPUTS`),
  because a prediction's ``input`` may leave them out and Replicate then applies the model's
  own default, not our allowlist's;
* checks of those inputs, since the emulator's create validation is loose (docs/EMULATOR.md):
  a bad value fails the prediction instead of producing a file no model would;
* a bound on the output's pixels, so that a direct caller cannot make one prediction hold
  gigabytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.allowlist import ModelSpec
from pipeline.model_outputs import GEMINI_SIZES, ModelOutput, model_output

MATCH_INPUT = "match_input_image"

SIZE_INPUTS: dict[str, dict[str, Any]] = {
    "nightmareai/real-esrgan": {"scale": 4},
    "tencentarc/gfpgan": {"scale": 2},
    "sczhou/codeformer": {"upscale": 2},
    "google/nano-banana": {"aspect_ratio": MATCH_INPUT, "output_format": "jpg"},
    "stability-ai/sdxl": {},
}
"""Per model, the inputs that decide its output file, each with the real model's default.

Sources: Replicate's input schemas (Real-ESRGAN ``scale`` 4; GFPGAN ``scale`` 2, also
``cog_predict.py``; CodeFormer ``upscale`` 2; nano-banana ``output_format`` ``jpg``). The
nano-banana ``aspect_ratio`` default is not settled by the sources we have (newer Google
models on Replicate default to ``match_input_image``, a third-party copy of the schema says
``1:1``); the emulator keeps the input's framing, as it always did. The pipeline sends every
one of these explicitly (``ModelSpec.build_input`` adds the allowlist's defaults), so these
defaults only matter to callers that leave them out. SDXL's img2img size comes from the
input alone."""

MAX_SCALE = 8
"""Largest linear scale factor accepted, to bound memory (the allowlist caps it at 4)."""

MAX_OUTPUT_PIXELS = 128_000_000
"""Largest output, pixels: a x8 upscale of a 2 MP input (the largest input the pipeline sends
an upscaler, ``max_input_pixels``), under the pipeline's own output cap of 150 MP."""

OUTPUT_FORMATS = ("jpg", "png")
"""nano-banana's ``output_format`` choices (Replicate's input schema)."""


def _scale(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number")
    if not 0 < value <= MAX_SCALE:
        raise ValueError(f"{key} must be in (0, {MAX_SCALE}]")
    return float(value)


def size_inputs(spec: ModelSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs that decide ``spec``'s output, from ``params`` or the real model's default.

    Args:
        spec: the allowlisted model.
        params: the prediction's ``input`` (unchecked; other fields are ignored).

    Returns:
        One value per key of the model's :data:`SIZE_INPUTS` entry; for a model without
        one, the ``scale`` / ``upscale`` it was given (``model_output`` falls back to the
        allowlist's defaults).

    Raises:
        ValueError: a scale that is not a number in ``(0, MAX_SCALE]``, an ``aspect_ratio``
            that is neither ``match_input_image`` nor one of Gemini's ratios, or an
            ``output_format`` other than ``jpg`` / ``png``.
    """
    known = SIZE_INPUTS.get(spec.name)
    if known is None:  # a model without an entry: its scale input, else the allowlist's default
        chosen = {key: params[key] for key in ("scale", "upscale") if key in params}
    else:
        chosen = {key: params.get(key, default) for key, default in known.items()}
    for key in ("scale", "upscale"):
        if key in chosen:
            chosen[key] = _scale(key, chosen[key])
    ratio = chosen.get("aspect_ratio", MATCH_INPUT)
    if ratio != MATCH_INPUT and ratio not in GEMINI_SIZES:
        raise ValueError(f"aspect_ratio {ratio!r} is not one of the model's ratios")
    if chosen.get("output_format", "jpg") not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}")
    return chosen


def output_file(
    spec: ModelSpec, params: Mapping[str, Any], width: int, height: int, *, alpha: bool
) -> ModelOutput:
    """Size and format of the file the real ``spec`` returns for this input.

    Args:
        spec: the allowlisted model.
        params: the prediction's ``input``.
        width: the input's upright width, pixels.
        height: likewise.
        alpha: the input has an alpha channel.

    Returns:
        The real model's output (:func:`pipeline.model_outputs.model_output`).

    Raises:
        ValueError: a bad size input (:func:`size_inputs`), or an output that would be
            empty or larger than :data:`MAX_OUTPUT_PIXELS`.
    """
    output = model_output(spec, size_inputs(spec, params), width, height, alpha=alpha)
    if output.width < 1 or output.height < 1:
        raise ValueError("the output would be empty")
    if output.width * output.height > MAX_OUTPUT_PIXELS:
        raise ValueError(f"the output would exceed {MAX_OUTPUT_PIXELS} pixels")
    return output
