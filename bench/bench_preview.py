"""Size preview accuracy, in two parts.

1. **presets** (``--part presets``): for every image of the corpus and every built-in preset,
   :func:`pipeline.preview.preview_size` against the real :func:`pipeline.presets.apply_preset`
   (the preset applied to the image itself). Exit 1 if any error reaches the seed's 15 %.
2. **pipeline** (``--part pipeline``): every image sent through the real pipeline (its own
   database, Redis namespace and bucket; scheduler, workers and the emulator as processes,
   ``bench/_harness.py``), one job per model/params/preset combination, and each DONE item's
   stored bytes, width, height and type compared with
   :func:`pipeline.preview.preview_pipeline` of the same upload. The provider is the emulator:
   its outputs have the real models' sizes and formats (``emulator/model_files.py`` follows
   :mod:`pipeline.model_outputs`), but its pixels come from a filter per model
   (``emulator/ops.py``), not the model; the table names the filter, and the byte error is
   against the emulator, not the model.

Run: ``.venv/bin/python -m bench.bench_preview [IMAGES_DIR] [--part presets|pipeline|both]
[--limit N] [--combos real-esrgan:scale=2:web-2048,...]`` (default ../shared/data/images).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._harness import UNLIMITED_EMULATOR, pipeline_stack
from devstack import rows
from pipeline.allowlist import ModelSpec, build_allowlist
from pipeline.images import format_of_suffix
from pipeline.presets import BUILTIN_PRESETS, Preset, apply_preset
from pipeline.preview import preview_pipeline, preview_size

MAX_PIXELS = 50_000_000
TARGET = 15.0
DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared/data/images"
PROMPT = "the same product, studio light"
OWNERS = {
    "real-esrgan": "nightmareai/real-esrgan",
    "gfpgan": "tencentarc/gfpgan",
    "codeformer": "sczhou/codeformer",
    "nano-banana": "google/nano-banana",
    "sdxl": "stability-ai/sdxl",
}
DEFAULT_COMBOS = (
    "real-esrgan:scale=4:none,real-esrgan:scale=4:web-2048,real-esrgan:scale=2:none,"
    "real-esrgan:scale=2:web-2048,real-esrgan:scale=2:webp-1600,real-esrgan:scale=2:thumb-400,"
    "real-esrgan:scale=2:square-1080,codeformer:upscale=2:none,codeformer:upscale=2:web-2048,"
    "gfpgan:scale=2:none,nano-banana:aspect_ratio=1:1:none,sdxl::none,sdxl::web-2048"
)
EMULATOR_PIXELS = {
    "nightmareai/real-esrgan": "Lanczos + unsharp mask",
    "tencentarc/gfpgan": "median denoise, smooth, Lanczos, sharpen",
    "sczhou/codeformer": "median denoise, smooth, Lanczos, sharpen",
    "google/nano-banana": "crop to the ratio, Lanczos",
    "stability-ai/sdxl": "Lanczos + autocontrast",
}
"""What stands in for each model's pixels in the emulator (``emulator/ops.py``): the source
of the byte error against a real model, which these runs cannot measure."""


def corpus(root: Path, limit: int | None) -> list[Path]:
    """The corpus' JPEG/PNG/WebP files, sorted; every k-th one when ``limit`` is smaller."""
    files = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}
    )
    if limit is not None and limit < len(files):
        step = len(files) / limit
        files = [files[int(i * step)] for i in range(limit)]
    return files


def p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


# --- part 1: presets on the image itself ------------------------------------------------------
def presets_part(files: Sequence[Path], root: Path) -> bool:
    """Print the preset-only table; True when every error is under :data:`TARGET`."""
    print(f"{len(files)} images under {root}, {len(BUILTIN_PRESETS)} presets")
    worst: list[tuple[float, str, str, int, int, str]] = []
    all_errors: list[float] = []
    print(
        f"{'preset':<18}{'n':>4}{'sampled':>8}{'mean%':>8}{'p95%':>8}{'max%':>8}"
        f"{'preview ms':>12}{'real ms':>10}"
    )
    for preset in BUILTIN_PRESETS.values():
        errors: list[float] = []
        t_prev = t_real = 0.0
        sampled = 0
        for path in files:
            data = path.read_bytes()
            t0 = time.perf_counter()
            est = preview_size(data, preset, max_pixels=MAX_PIXELS)
            t1 = time.perf_counter()
            real = apply_preset(data, preset, max_pixels=MAX_PIXELS)
            t2 = time.perf_counter()
            t_prev += t1 - t0
            t_real += t2 - t1
            sampled += est.method == "sampled"
            assert (est.width, est.height) == (real.width, real.height), path
            err = abs(est.estimated_bytes - len(real.data)) / len(real.data) * 100
            errors.append(err)
            worst.append((err, preset.name, str(path.relative_to(root)), est.estimated_bytes,
                          len(real.data), est.method))  # fmt: skip
        all_errors.extend(errors)
        print(
            f"{preset.name:<18}{len(errors):>4}{sampled:>8}{statistics.fmean(errors):>8.2f}"
            f"{p95(errors):>8.2f}{max(errors):>8.2f}{t_prev / len(files) * 1000:>12.1f}"
            f"{t_real / len(files) * 1000:>10.1f}"
        )
    worst.sort(reverse=True)
    print("worst cases:")
    for err, name, where, est_b, real_b, method in worst[:5]:
        print(f"  {err:6.2f}%  {name:<18} {where}  estimated {est_b} real {real_b} ({method})")
    overall = max(all_errors)
    print(f"overall: mean {statistics.fmean(all_errors):.2f} %, max {overall:.2f} % "
          f"(target < {TARGET:.0f} %)")  # fmt: skip
    return overall < TARGET


# --- part 2: model + preset through the pipeline ----------------------------------------------
@dataclass(frozen=True)
class Combo:
    """One job's model, parameters and preset."""

    label: str
    spec: ModelSpec
    params: dict[str, Any]
    preset: Preset | None


def parse_combos(text: str) -> list[Combo]:
    """``model:key=value;key=value:preset`` separated by commas (``none``: no preset).

    Raises:
        SystemExit: an unknown model, parameter or preset.
    """
    models = build_allowlist()
    out = []
    for raw in filter(None, (part.strip() for part in text.split(","))):
        short, rest = raw.split(":", 1)
        settings, preset_name = rest.rsplit(":", 1)
        params: dict[str, Any] = {}
        for pair in filter(None, settings.split(";")):
            key, value = pair.split("=", 1)
            params[key] = int(value) if value.isdigit() else value
        if short not in OWNERS or (preset_name != "none" and preset_name not in BUILTIN_PRESETS):
            raise SystemExit(f"unknown model or preset in {raw!r}")
        spec = models[OWNERS[short]]
        spec.clean_params(params)
        preset = BUILTIN_PRESETS.get(preset_name)
        out.append(Combo(raw, spec, params, preset))
    return out


def _upload_sources(stack: Any, files: Sequence[Path]) -> list[str]:
    urls = []
    for i, path in enumerate(files):
        fmt = format_of_suffix(path.suffix)
        key = f"sources/{i:03d}{path.suffix.lower()}"
        stack.storage.put_bytes(key, path.read_bytes(), fmt.content_type if fmt else "image/jpeg")
        urls.append(f"s3://{stack.storage.bucket}/{key}")
    return urls


def _results(stack: Any, job_id: int) -> list[Mapping[str, Any]]:
    with stack.connect() as conn:
        found = conn.execute(
            "SELECT status, output_width, output_height, output_bytes, output_content_type, "
            "error_code "
            "FROM image_optimization_items WHERE job_id = %s ORDER BY id",
            (job_id,),
        ).fetchall()
    keys = ("status", "width", "height", "size", "content_type", "error_code")
    return [dict(zip(keys, row, strict=True)) for row in found]


def pipeline_part(files: Sequence[Path], combos: Sequence[Combo], timeout: float) -> bool:
    """Run every combo through the pipeline, print the comparison; True unless items failed."""
    print(f"\npipeline: {len(files)} images x {len(combos)} combinations, emulator as provider")
    env = {"IMAGEOPT_SCHEDULER_TICK_SECONDS": "0.2", "IMAGEOPT_POLL_INITIAL_DELAY_SECONDS": "0.2",
           "IMAGEOPT_POLL_MAX_DELAY_SECONDS": "1.0"}  # fmt: skip
    with pipeline_stack(env) as stack:
        urls = _upload_sources(stack, files)
        stack.start_emulator(**UNLIMITED_EMULATOR)
        stack.start_pipeline(processes=1, threads=2)
        jobs = []
        with stack.connect() as conn:
            for i, combo in enumerate(combos):
                prompt = PROMPT if combo.spec.requires_prompt else None
                preset = combo.preset.name if combo.preset else None
                job = rows.insert_job(
                    conn, f"bench-{i:02d}", urls, model=combo.spec.name, params=combo.params,
                    prompt=prompt, preset=preset,
                )  # fmt: skip
                jobs.append(job.job_id)
        started = time.monotonic()
        stack.wait_final(len(files) * len(combos), timeout=timeout, poll=1.0)
        print(f"pipeline done in {time.monotonic() - started:.0f} s")
        results = [_results(stack, job_id) for job_id in jobs]
    return _compare(files, combos, results)


def _compare(
    files: Sequence[Path], combos: Sequence[Combo], results: Sequence[Sequence[Mapping[str, Any]]]
) -> bool:
    print("| model, params, preset | done | size = model's | type = | mean abs % | p95 % | max % "
          "| mean signed % | preview ms | emulator's pixels |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    clean = True
    same_errors: list[float] = []
    worst: list[tuple[float, str, str, int, int]] = []
    for combo, found in zip(combos, results, strict=True):
        errors: list[float] = []
        same_size = same_type = done = 0
        spent = 0.0
        for path, row in zip(files, found, strict=True):
            if row["status"] != "DONE":
                clean = False
                print(f"  {combo.label} {path.name}: {row['status']} {row['error_code']}")
                continue
            done += 1
            t0 = time.perf_counter()
            est = preview_pipeline(path.read_bytes(), combo.spec, combo.params, combo.preset,
                                   max_pixels=MAX_PIXELS)  # fmt: skip
            spent += time.perf_counter() - t0
            same_size += (est.width, est.height) == (row["width"], row["height"])
            same_type += est.content_type == row["content_type"]
            errors.append((est.estimated_bytes - row["size"]) / row["size"] * 100)
            worst.append(
                (abs(errors[-1]), combo.label, path.name, est.estimated_bytes, row["size"])
            )
        if not errors:
            continue
        absolute = [abs(e) for e in errors]
        pixels = EMULATOR_PIXELS.get(combo.spec.name, "?")
        if same_size == same_type == done:
            same_errors.extend(absolute)
        else:  # only where the emulator is the model do the worst cases say something
            worst = [w for w in worst if w[1] != combo.label]
        print(
            f"| {combo.label} | {done}/{len(files)} | {same_size}/{done} | {same_type}/{done} "
            f"| {statistics.fmean(absolute):.1f} | {p95(absolute):.1f} | {max(absolute):.1f} "
            f"| {statistics.fmean(errors):+.1f} | {spent / done * 1000:.0f} | {pixels} |"
        )
    if same_errors:
        print(
            "combinations where the emulator gives the model's size and format: "
            f"mean {statistics.fmean(same_errors):.1f} %, p95 {p95(same_errors):.1f} %, "
            f"max {max(same_errors):.1f} % of stored bytes (target < {TARGET:.0f} %)"
        )
        print("worst cases there:")
        for err, label, name, est_b, real_b in sorted(worst, reverse=True)[:5]:
            print(f"  {err:6.1f}%  {label}  {name}  estimated {est_b} stored {real_b}")
    return clean


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("images", nargs="?", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--part", choices=("presets", "pipeline", "both"), default="both")
    parser.add_argument("--limit", type=int, default=None, help="at most N images (spread)")
    parser.add_argument("--combos", default=DEFAULT_COMBOS)
    parser.add_argument("--timeout", type=float, default=3600.0, help="pipeline wait, seconds")
    args = parser.parse_args(argv)
    files = corpus(args.images, args.limit)
    ok = True
    if args.part in ("presets", "both"):
        ok = presets_part(files, args.images) and ok
    if args.part in ("pipeline", "both"):
        ok = pipeline_part(files, parse_combos(args.combos), args.timeout) and ok
    print(json.dumps({"images": len(files), "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
