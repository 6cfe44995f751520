"""Size preview accuracy: for every image of the corpus and every built-in preset, compare
:func:`pipeline.preview.preview_size` with the real :func:`pipeline.presets.apply_preset`.

Run: ``.venv/bin/python bench/bench_preview.py [IMAGES_DIR]`` (default ../shared/data/images).
Prints one line per preset (count, mean/p95/max absolute error %, time of preview vs real)
and the worst cases; exits 1 if any error reaches the seed's 15 % target.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from pipeline.presets import BUILTIN_PRESETS, apply_preset
from pipeline.preview import preview_size

MAX_PIXELS = 50_000_000
TARGET = 15.0


def main() -> int:
    root = Path(
        sys.argv[1]
        if len(sys.argv) > 1
        else Path(__file__).resolve().parents[2] / "shared/data/images"
    )
    files = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}
    )
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
            worst.append(
                (
                    err,
                    preset.name,
                    str(path.relative_to(root)),
                    est.estimated_bytes,
                    len(real.data),
                    est.method,
                )
            )
        all_errors.extend(errors)
        errors.sort()
        p95 = errors[min(len(errors) - 1, int(0.95 * len(errors)))]
        print(
            f"{preset.name:<18}{len(errors):>4}{sampled:>8}{statistics.fmean(errors):>8.2f}"
            f"{p95:>8.2f}{max(errors):>8.2f}{t_prev / len(files) * 1000:>12.1f}"
            f"{t_real / len(files) * 1000:>10.1f}"
        )
    worst.sort(reverse=True)
    print("worst cases:")
    for err, name, path, est_b, real_b, method in worst[:5]:
        print(f"  {err:6.2f}%  {name:<18} {path}  estimated {est_b} real {real_b} ({method})")
    overall = max(all_errors)
    print(
        f"overall: mean {statistics.fmean(all_errors):.2f} %, max {overall:.2f} % "
        f"(target < {TARGET:.0f} %)"
    )
    return 0 if overall < TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
