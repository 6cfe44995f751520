"""The picture of one soak run (matplotlib, a dev dependency): three panels over time.

1. throughput: items DONE and FAILED per 5 s (from the run's samples);
2. budget use: creations at the provider per 5 s over the budget's share, and the rolling
   60 s count over the per-window budget (provider's clock);
3. backlog (PENDING + QUEUED) of each of the 25 stores.

Every fault is marked where it struck: a shaded span with its name on the top panel.

    .venv/bin/python -m bench.soak_plot .run/soak-SEED/soak.json docs/soak-SEED.png
"""

from __future__ import annotations

import bisect
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

BIN_SECONDS = 5.0
COLORS = {"kill": "tab:red", "restart": "tab:purple", "cut": "tab:orange", "provider": "tab:gray"}


def draw(report: dict[str, Any], path: Path) -> None:
    """Write the picture of ``report`` (:func:`bench.soak.verdicts`' dict) to ``path``."""
    t0 = float(report["t0"])
    samples = report["samples"]
    at = [float(s["at"]) - t0 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(13, 10), sharex=True)
    top, mid, low = axes
    # 1. throughput per bin
    edges: list[float] = []
    done_rate: list[float] = []
    failed_rate: list[float] = []
    last = None
    for t, s in zip(at, samples, strict=True):
        if not s["db_ok"]:
            continue
        if last is None or t - last[0] >= BIN_SECONDS:
            if last is not None:
                span = t - last[0]
                edges.append(t)
                done_rate.append((s["done"] - last[1]) / span)
                failed_rate.append((s["failed"] - last[2]) / span)
            last = (t, s["done"], s["failed"])
    top.plot(edges, done_rate, label="DONE / s", color="tab:green")
    top.plot(edges, failed_rate, label="FAILED / s", color="tab:red", alpha=0.6)
    top.axhline(report["rate"], color="black", linestyle=":", label="budget / s")
    top.set_ylabel("items / s")
    top.legend(loc="upper right", fontsize=8)
    top.set_title(
        f"soak {report['plan']['minutes']:g} min, seed {report['plan']['seed']}, "
        f"budget {report['rpm']}/min: {'all verdicts met' if report['ok'] else 'VERDICT MISSED'}"
    )
    # 2. budget use
    stamps = [float(x) - t0 for x in report["creations"]]
    end = max(at[-1] if at else 0.0, stamps[-1] if stamps else 0.0)
    bins = [i * BIN_SECONDS for i in range(int(end / BIN_SECONDS) + 1)]
    per_bin = [
        (bisect.bisect_left(stamps, b + BIN_SECONDS) - bisect.bisect_left(stamps, b))
        / (report["rate"] * BIN_SECONDS)
        for b in bins
    ]
    rolling = [
        (bisect.bisect_right(stamps, b) - bisect.bisect_right(stamps, b - 60.0)) / report["rpm"]
        for b in bins
    ]
    mid.plot(bins, per_bin, label=f"creations per {BIN_SECONDS:g} s / budget", color="tab:blue")
    mid.plot(bins, rolling, label="rolling 60 s / budget (must stay <= 1)", color="black")
    mid.axhline(1.0, color="black", linestyle=":")
    mid.set_ylabel("share of the budget")
    mid.set_ylim(0, 1.6)
    mid.legend(loc="upper right", fontsize=8)
    # 3. backlog per store
    stores = sorted({st for s in samples for st in s["backlog"]})
    for store in stores:
        low.plot(
            [t for t, s in zip(at, samples, strict=True) if s["db_ok"]],
            [s["backlog"].get(store, 0) for s in samples if s["db_ok"]],
            linewidth=0.8,
        )
    low.set_ylabel("backlog per store (25 lines)")
    low.set_xlabel("seconds since the start")
    for fault in report["faults"]:
        family = fault["kind"].split(":", 1)[0]
        color = COLORS.get(family, "tab:gray")
        start, stop = float(fault["start"]) - t0, float(fault["end"]) - t0
        for ax in axes:
            ax.axvspan(start, max(stop, start + 0.5), color=color, alpha=0.15, linewidth=0)
        top.annotate(
            fault["kind"].split(":", 1)[1],
            (start, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=6,
            va="top",
            color=color,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
