"""The picture of one limiter benchmark run: grants over time, ours beside dramatiq's.

One panel per process count (1, 4, 16 saturating processes), one line per limiter
(``gcra``, ``gcra-guard``, dramatiq's ``window`` and ``bucket``):

1. grants per second (1 s bins), against the budget's steady rate (limit / window);
2. the rolling count over the window divided by the limit: above 1 is an overshoot the
   provider answers with 429s.

The warm-up is shaded. Input: the ``--json`` file of :mod:`bench.bench_ratelimit`.

    .venv/bin/python -m bench.ratelimit_plot /tmp/rl450.json docs/ratelimit-450rpm.png
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

COLORS = {"gcra": "tab:blue", "gcra-guard": "tab:cyan", "window": "tab:red", "bucket": "tab:orange"}


def per_second(times: list[float], start: float, seconds: float) -> list[int]:
    """Grants in each 1 s bin from ``start`` (``times`` sorted, unix seconds)."""
    return [
        bisect.bisect_left(times, start + i + 1) - bisect.bisect_left(times, start + i)
        for i in range(int(seconds))
    ]


def rolling(times: list[float], start: float, seconds: float, window: float) -> list[float]:
    """Grants in the ``window`` s ending at each whole second from ``start``."""
    return [
        float(
            bisect.bisect_right(times, start + i) - bisect.bisect_right(times, start + i - window)
        )
        for i in range(int(seconds) + 1)
    ]


def draw(run: dict[str, Any], path: Path) -> None:
    """Write the picture of ``run`` (``{"params": ..., "rows": [...]}``) to ``path``."""
    params, rows = run["params"], run["rows"]
    limit, window = float(params["limit"]), float(params["window"])
    seconds, warmup = float(params["seconds"]), float(params["warmup"])
    counts = sorted({int(r["processes"]) for r in rows})
    fig, axes = plt.subplots(2, len(counts), figsize=(5 * len(counts), 7), squeeze=False)
    for col, procs in enumerate(counts):
        top, low = axes[0][col], axes[1][col]
        for row in (r for r in rows if int(r["processes"]) == procs):
            times = [float(t) for t in row["grant_times"]]
            start = float(row["start_at"])
            color = COLORS.get(row["kind"], "tab:gray")
            top.plot(per_second(times, start, seconds), color=color, linewidth=0.8,
                     label=row["kind"])  # fmt: skip
            low.plot(
                [v / limit for v in rolling(times, start, seconds, window)],
                color=color,
                linewidth=1.0,
                label=f"{row['kind']} (max {row['overshoot']:.3f})",
            )
        top.axhline(limit / window, color="black", linestyle=":", label="budget / s")
        low.axhline(1.0, color="black", linestyle=":")
        for ax in (top, low):
            ax.axvspan(0, warmup, color="tab:gray", alpha=0.12, linewidth=0)
        top.set_title(f"{procs} process{'es' if procs > 1 else ''}")
        top.set_ylabel("grants per second")
        low.set_ylabel(f"rolling {window:g} s / limit")
        low.set_xlabel("seconds since the start (grey: warm-up)")
        low.set_ylim(0, 1.3)
        top.legend(fontsize=7, loc="upper right")
        low.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{params['rpm']} requests per {window:g} s: our GCRA beside dramatiq's limiters")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
