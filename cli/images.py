"""Commands on images and output presets: presets, preset-add, preview, analyze."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.base import (
    app,
    fail,
    load_settings,
    open_repository,
)
from pipeline.errors import PipelineError


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
    """Add (or replace) a store's custom preset; the spec is validated first."""
    from pipeline.presets import add_custom_preset

    try:
        parsed = json.loads(spec)
    except json.JSONDecodeError as exc:
        raise fail(f"--spec is not JSON: {exc}") from exc
    settings = load_settings()
    try:
        with open_repository(settings) as repo:
            preset = add_custom_preset(repo, store, name, parsed)
    except PipelineError as exc:
        raise fail(f"{exc.code}: {exc.message}") from exc
    typer.echo(f"preset {preset.name} saved for store {store}: {json.dumps(preset.to_spec())}")


@app.command()
def preview(
    image: Annotated[Path, typer.Argument(help="an image file (JPEG, PNG, WebP)")],
    preset: Annotated[str, typer.Option(help="preset name")],
    store: Annotated[str | None, typer.Option(help="store, for its custom presets")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Estimate the output size of a preset for an image, without running the pipeline."""
    from pipeline.presets import BUILTIN_PRESETS, resolve_preset
    from pipeline.preview import preview_size

    settings = load_settings()
    data = _read_image(image)
    try:
        if preset in BUILTIN_PRESETS or store is None:
            chosen = BUILTIN_PRESETS.get(preset)
            if chosen is None:
                raise fail(f"unknown built-in preset {preset!r}; give --store for custom ones")
        else:
            with open_repository(settings) as repo:
                chosen = resolve_preset(repo, store, preset)
        result = preview_size(data, chosen, max_pixels=settings.max_input_pixels)
    except PipelineError as exc:
        raise fail(f"{exc.code}: {exc.message}") from exc
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    typer.echo(
        f"{image.name}: {result.width}x{result.height} {result.content_type} "
        f"~{result.estimated_bytes} bytes ({result.method}; input {result.input_bytes} bytes)"
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
