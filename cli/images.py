"""Commands on images and output presets: presets, preset-add, preview, analyze."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.base import (
    app,
    fail,
    load_settings,
    open_repository,
)
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.allowlist import ModelSpec
    from pipeline.config import Settings
    from pipeline.presets import Preset


def _read_image(path: Path) -> bytes:
    if not path.is_file():
        raise fail(f"{path} is not a file")
    return path.read_bytes()


@app.command("presets")
def presets_command(
    store: Annotated[str | None, typer.Option(help="custom presets of this store only")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List output presets: built-in ones, then custom ones per store."""
    from pipeline.presets import list_presets

    settings = load_settings()
    with open_repository(settings) as repo:
        presets = list_presets(repo, store)
    if as_json:
        typer.echo(json.dumps(presets, indent=2, sort_keys=True))
        return
    for p in presets:
        owner = "built-in" if p["builtin"] else f"store {p['store_id']}"
        typer.echo(f"{p['name']:<20} {owner:<24} {json.dumps(p['spec'], sort_keys=True)}")


@app.command("preset-add")
def preset_add(
    store: Annotated[str, typer.Option(help="the store the preset belongs to")],
    name: Annotated[str, typer.Option(help="preset name (a-z, 0-9, - and _)")],
    spec: Annotated[str, typer.Option(help='JSON, e.g. {"format": "webp", "width": 800}')],
) -> None:
    """Add (or replace) a store's custom preset; the spec is validated first. Refused (exit
    code 2) while the CUSTOM_PRESETS_ENABLED flag is off (``imageopt flags list``)."""
    from pipeline.golive import CUSTOM_PRESETS, start_state, state_from_rows
    from pipeline.presets import add_custom_preset

    try:
        parsed = json.loads(spec)
    except json.JSONDecodeError as exc:
        raise fail(f"--spec is not JSON: {exc}") from exc
    settings = load_settings()
    try:
        start = start_state()
    except ValueError as exc:
        raise fail(str(exc)) from exc
    try:
        with open_repository(settings) as repo:
            if not state_from_rows(start, repo.golive_rows()).flag(CUSTOM_PRESETS):
                raise fail(
                    f"custom presets are disabled ({CUSTOM_PRESETS} is off); "
                    f"turn them on with: imageopt flags set {CUSTOM_PRESETS} on --reason ..."
                )
            preset = add_custom_preset(repo, store, name, parsed)
    except PipelineError as exc:
        raise fail(f"{exc.code}: {exc.message}") from exc
    typer.echo(f"preset {preset.name} saved for store {store}: {json.dumps(preset.to_spec())}")


def _preview_preset(settings: Settings, preset: str | None, store: str | None) -> Preset | None:
    """The preset of ``imageopt preview`` (built in, or the store's), None when not given."""
    from pipeline.presets import BUILTIN_PRESETS, resolve_preset

    if preset is None:
        return None
    if preset in BUILTIN_PRESETS or store is None:
        chosen = BUILTIN_PRESETS.get(preset)
        if chosen is None:
            raise fail(f"unknown built-in preset {preset!r}; give --store for custom ones")
        return chosen
    with open_repository(settings) as repo:
        return resolve_preset(repo, store, preset)


def _preview_model(settings: Settings, model: str, params: str) -> tuple[ModelSpec, dict[str, Any]]:
    """The allowlisted model and its checked parameters (a JSON object)."""
    from pipeline.wiring import allowlist

    spec = allowlist(settings).get(model)
    if spec is None:
        raise fail(f"model {model!r} is not on the allowlist")
    try:
        parsed = json.loads(params)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise fail("--params must be a JSON object")
    return spec, spec.clean_params(parsed)


@app.command()
def preview(
    image: Annotated[Path, typer.Argument(help="an image file (JPEG, PNG, WebP)")],
    preset: Annotated[
        str | None, typer.Option(help="preset name (required without --model)")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="allowlisted model: estimate its output, then the preset")
    ] = None,
    params: Annotated[str, typer.Option(help="model parameters, a JSON object")] = "{}",
    store: Annotated[str | None, typer.Option(help="store, for its custom presets")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Estimate what the pipeline stores for an image: a model's output (its real size and
    format) then a preset, or a preset applied to the image itself; nothing is run."""
    from pipeline.preview import preview_pipeline, preview_size

    settings = load_settings()
    if model is None and preset is None:
        raise fail("give --preset, --model, or both")
    data = _read_image(image)
    try:
        chosen = _preview_preset(settings, preset, store)
        if model is None:
            assert chosen is not None  # checked above
            result = preview_size(
                data, chosen, max_pixels=settings.max_input_pixels,
                max_render_pixels=settings.preview_max_render_pixels,
            )  # fmt: skip
        else:
            spec, cleaned = _preview_model(settings, model, params)
            result = preview_pipeline(
                data, spec, cleaned, chosen, max_pixels=settings.max_input_pixels,
                max_render_pixels=settings.preview_max_render_pixels,
            )  # fmt: skip
    except PipelineError as exc:
        raise fail(f"{exc.code}: {exc.message}") from exc
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    if result.model is not None:
        stage = result.model
        typer.echo(
            f"{image.name}: {stage.name} {stage.input_width}x{stage.input_height} -> "
            f"{stage.width}x{stage.height} {stage.content_type}"
        )
    method = result.method
    if result.render_size is not None:  # over IMAGEOPT_PREVIEW_MAX_RENDER_PIXELS
        method += f" from a {result.render_size[0]}x{result.render_size[1]} render"
    typer.echo(
        f"{image.name}: {result.width}x{result.height} {result.content_type} "
        f"~{result.estimated_bytes} bytes ({method}; input {result.input_bytes} bytes)"
    )


@app.command()
def analyze(
    image: Annotated[Path, typer.Argument(help="an image file (JPEG, PNG, WebP)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Dimensions, format, transparency, photo or graphic, faces; a recommended model and preset."""
    from pipeline.analysis import analyze as run_analysis

    settings = load_settings()
    try:
        result = run_analysis(_read_image(image), max_pixels=settings.max_input_pixels)
    except PipelineError as exc:
        raise fail(f"{exc.code}: {exc.message}") from exc
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    rec = result.recommendation
    faces = "unknown" if result.faces is None else str(result.faces)
    typer.echo(
        f"{image.name}: {result.width}x{result.height} {result.format} {result.mode}, "
        f"{result.kind}, transparent={result.transparent}, faces={faces}"
    )
    typer.echo(f"  model  {rec.model} {json.dumps(rec.params)}: {rec.model_reason}")
    typer.echo(f"  preset {rec.preset}: {rec.preset_reason}")
    for note in result.notes:
        typer.echo(f"  note   {note}")
    for check in result.checks_not_run:
        typer.echo(f"  not checked: {check} ({result.face_detector})")
