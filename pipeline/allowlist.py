"""The model allowlist: the one place that says which provider models an item may use.

Validation (before any provider call), the provider client (which endpoint, which input
fields) and the emulator (which image operation) all read this table.

Sources: the seeds (``002_…txt``: Real-ESRGAN 4x, GFPGAN, CodeFormer; ``000_…txt``:
``REPLICATE_IMAGE_MODEL=google/nano-banana`` with ``REPLICATE_DEFAULT_ASPECT_RATIO``; seed
"SDXL default steps set to 20 (provider cap)") and the models' input schemas on Replicate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import InvalidParams, MissingPrompt, UnknownModel

Params = Mapping[str, Any]

ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
SDXL_MAX_STEPS = 20


@dataclass(frozen=True)
class ModelSpec:
    """One allowlisted model.

    Attributes:
        name: ``owner/name`` as on Replicate.
        version: pinned version id, or ``None`` for an official model (created through
            ``POST /v1/models/{owner}/{name}/predictions``).
        kind: ``upscale`` | ``face_restore`` | ``edit`` | ``img2img`` (the emulator's operation).
        image_field: the input field that carries the image URL.
        requires_prompt: items without a prompt fail with ``invalid_params``.
        max_input_pixels: inputs are downscaled to at most this many pixels before upload, so
            that e.g. a 4x upscale of a 10 MP photo stays bounded.
        allowed_params: param name -> validator returning the cleaned value (raises ValueError).
    """

    name: str
    version: str | None
    kind: str
    image_field: str
    requires_prompt: bool
    max_input_pixels: int
    allowed_params: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def build_input(self, image_url: str, prompt: str | None, params: Params) -> dict[str, Any]:
        """Map an item to this model's prediction ``input`` object.

        Args:
            image_url: URL the provider can fetch the normalized input from (presigned).
            prompt: the item's prompt (or the job's default), may be ``None``.
            params: extra model parameters from the item row (``params`` jsonb).

        Returns:
            The JSON object to send as ``input``.

        Raises:
            InvalidParams: unknown parameter or bad value.
            MissingPrompt: the model needs a prompt and there is none.
        """
        cleaned = self.validate(prompt, params)
        payload: dict[str, Any] = {**self.defaults, **cleaned}
        if self.kind == "edit":
            payload["image_input"] = [image_url]
        else:
            payload[self.image_field] = image_url
        if prompt:
            payload["prompt"] = prompt
        return payload

    def validate(self, prompt: str | None, params: Params) -> dict[str, Any]:
        """Check prompt and params against this model without building the payload.

        Raises:
            InvalidParams: unknown parameter, bad value, or missing prompt.
        """
        if self.requires_prompt and not (prompt and prompt.strip()):
            raise MissingPrompt(f"model {self.name} needs a prompt")
        return self.clean_params(params)

    def clean_params(self, params: Params) -> dict[str, Any]:
        """Check params against this model (no prompt check; the size preview needs none).

        Raises:
            InvalidParams: unknown parameter or bad value.
        """
        cleaned: dict[str, Any] = {}
        for key, value in params.items():
            check = self.allowed_params.get(key)
            if check is None:
                raise InvalidParams(f"model {self.name} does not accept parameter {key!r}")
            try:
                cleaned[key] = check(value)
            except (TypeError, ValueError) as exc:
                raise InvalidParams(f"parameter {key!r} for {self.name}: {exc}") from exc
        return cleaned

    def output_scale(self, params: Params) -> float:
        """Linear scale factor of the output relative to the input (1.0 when unchanged)."""
        merged = {**self.defaults, **params}
        for key in ("scale", "upscale"):
            if key in merged:
                return float(merged[key])
        return 1.0

    def parameters(self) -> list[dict[str, Any]]:
        """Each allowed parameter with its type, limits and default, sorted by name.

        Returns:
            ``[{"name", "type": "integer"|"number"|"boolean"|"string", "min"?, "max"?,
            "choices"?, "default"}]``; ``default`` is the value sent when the item gives
            none (``None``: the provider's own default). Limits are the validators' own.
        """
        out = []
        for name in sorted(self.allowed_params):
            describe = getattr(self.allowed_params[name], "describe", None)
            shape = describe() if describe is not None else {"type": "string"}
            out.append({"name": name, **shape, "default": self.defaults.get(name)})
        return out


@dataclass(frozen=True)
class IntRange:
    """An integer parameter in ``[low, high]`` (both inclusive)."""

    low: int
    high: int

    def __call__(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        if not self.low <= value <= self.high:
            raise ValueError(f"must be between {self.low} and {self.high}")
        return value

    def describe(self) -> dict[str, Any]:
        """``{"type": "integer", "min": low, "max": high}`` (the API's parameter shape)."""
        return {"type": "integer", "min": self.low, "max": self.high}


@dataclass(frozen=True)
class FloatRange:
    """A number parameter in ``[low, high]`` (both inclusive)."""

    low: float
    high: float

    def __call__(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        if not self.low <= float(value) <= self.high:
            raise ValueError(f"must be between {self.low} and {self.high}")
        return float(value)

    def describe(self) -> dict[str, Any]:
        """``{"type": "number", "min": low, "max": high}``."""
        return {"type": "number", "min": self.low, "max": self.high}


@dataclass(frozen=True)
class Boolean:
    """A true/false parameter."""

    def __call__(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value

    def describe(self) -> dict[str, Any]:
        """``{"type": "boolean"}``."""
        return {"type": "boolean"}


@dataclass(frozen=True)
class OneOf:
    """A parameter that takes one of a fixed set of strings."""

    choices: tuple[str, ...]

    def __call__(self, value: Any) -> str:
        if value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        return str(value)

    def describe(self) -> dict[str, Any]:
        """``{"type": "string", "choices": [...]}``."""
        return {"type": "string", "choices": list(self.choices)}


def _int_range(low: int, high: int) -> IntRange:
    return IntRange(low, high)


def _float_range(low: float, high: float) -> FloatRange:
    return FloatRange(low, high)


_boolean = Boolean()


def _one_of(*choices: str) -> OneOf:
    return OneOf(tuple(choices))


_steps_capped = IntRange(1, SDXL_MAX_STEPS)


_MP = 1_000_000


def build_allowlist(default_aspect_ratio: str = "1:1") -> dict[str, ModelSpec]:
    """Return the allowlist keyed by ``owner/name``.

    Args:
        default_aspect_ratio: ``REPLICATE_DEFAULT_ASPECT_RATIO`` for the prompt-edit model.
    """
    specs = [
        ModelSpec(
            name="nightmareai/real-esrgan",
            version="f121d640bd286e1fdc67f9799164c1d5be36ff74576ee11c803ae5b665dd46aa",
            kind="upscale",
            image_field="image",
            requires_prompt=False,
            max_input_pixels=2 * _MP,
            allowed_params={"scale": _int_range(1, 4), "face_enhance": _boolean},
            defaults={"scale": 4, "face_enhance": False},
        ),
        ModelSpec(
            name="tencentarc/gfpgan",
            version="0fbacf7afc6c144e5be9767cff80f25aff23e52b0708f17e20f9879b2f21516c",
            kind="face_restore",
            image_field="img",
            requires_prompt=False,
            max_input_pixels=2 * _MP,
            allowed_params={"scale": _int_range(1, 4), "version": _one_of("v1.3", "v1.4")},
            defaults={"scale": 2, "version": "v1.4"},
        ),
        ModelSpec(
            name="sczhou/codeformer",
            version="7de2ea26c616d5bf2245ad0d5e24f0ff9a6204578a5c876db121142c3b9f7e5e",
            kind="face_restore",
            image_field="image",
            requires_prompt=False,
            max_input_pixels=2 * _MP,
            allowed_params={
                "upscale": _int_range(1, 4),
                "codeformer_fidelity": _float_range(0.0, 1.0),
                "background_enhance": _boolean,
                "face_upsample": _boolean,
            },
            defaults={"upscale": 2, "codeformer_fidelity": 0.5},
        ),
        ModelSpec(
            name="google/nano-banana",
            version=None,
            kind="edit",
            image_field="image_input",
            requires_prompt=True,
            max_input_pixels=4 * _MP,
            allowed_params={
                "aspect_ratio": _one_of("match_input_image", *ASPECT_RATIOS),
                "output_format": _one_of("jpg", "png"),
            },
            defaults={"aspect_ratio": default_aspect_ratio, "output_format": "png"},
        ),
        ModelSpec(
            name="stability-ai/sdxl",
            version="39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b",
            kind="img2img",
            image_field="image",
            requires_prompt=True,
            max_input_pixels=1 * _MP + 48_576,
            allowed_params={
                "num_inference_steps": _steps_capped,
                "prompt_strength": _float_range(0.0, 1.0),
                "guidance_scale": _float_range(1.0, 50.0),
                "seed": _int_range(0, 2**31 - 1),
            },
            defaults={"num_inference_steps": SDXL_MAX_STEPS, "prompt_strength": 0.8},
        ),
    ]
    return {spec.name: spec for spec in specs}


def get_model(name: str, allowlist: Mapping[str, ModelSpec]) -> ModelSpec:
    """Look a model up by ``owner/name``.

    Raises:
        UnknownModel: the name is not on the allowlist.
    """
    try:
        return allowlist[name]
    except KeyError:
        raise UnknownModel(f"model {name!r} is not on the allowlist") from None
