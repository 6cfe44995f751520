"""Figures of the fault-injection suite: one JSON line per scenario run, and the table.

Each run appends a line to ``$IMAGEOPT_RUN_DIR/faults/figures.jsonl`` (default
``.run/faults/figures.jsonl``); ``bench/bench_faults.py`` runs the suite with repetitions and
prints :func:`table` over those lines, which is what docs/RELIABILITY.md shows.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Figures:
    """One run of one scenario.

    Attributes:
        scenario: name as in docs/RELIABILITY.md.
        items: items the run inserted.
        lost: items gone, or DONE without their result object (target 0).
        stuck: items not final when the run's deadline passed (target 0).
        crashes: crashes injected on purpose (SIGKILLs, restarts).
        extra_predictions: predictions beyond one per item (target <= crashes).
        unhandled: tracebacks in captured output plus processes that died on their own.
        token_leaks: outputs (logs, rows) containing the provider token (target 0).
        command: what reproduces it.
        seed: the random seed of the run.
    """

    scenario: str
    items: int
    lost: int
    stuck: int
    crashes: int
    extra_predictions: int
    unhandled: int
    token_leaks: int
    command: str
    seed: int


def figures_path() -> Path:
    run_dir = Path(os.environ.get("IMAGEOPT_RUN_DIR", ROOT / ".run"))
    return run_dir / "faults" / "figures.jsonl"


def record(figures: Figures) -> None:
    """Append one run's figures to :func:`figures_path`."""
    path = figures_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(dataclasses.asdict(figures)) + "\n")


def load(path: Path | None = None) -> list[Figures]:
    """Every recorded run (an absent file is no runs)."""
    path = path or figures_path()
    if not path.exists():
        return []
    return [Figures(**json.loads(line)) for line in path.read_text().splitlines() if line]


def table(runs: Iterable[Figures]) -> str:
    """The markdown table of docs/RELIABILITY.md, one row per scenario (runs summed)."""
    by_scenario: dict[str, list[Figures]] = {}
    for run in runs:
        by_scenario.setdefault(run.scenario, []).append(run)
    lines = [
        "| scenario | runs | items | lost | stuck | crashes | extra predictions per crash "
        "| unhandled errors | token leaks | command |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, group in by_scenario.items():
        crashes = sum(r.crashes for r in group)
        extra = sum(r.extra_predictions for r in group)
        per_crash = f"{extra / crashes:.2f} ({extra})" if crashes else f"n/a ({extra})"
        lines.append(
            f"| {name} | {len(group)} | {sum(r.items for r in group)} "
            f"| {sum(r.lost for r in group)} | {sum(r.stuck for r in group)} | {crashes} "
            f"| {per_crash} | {sum(r.unhandled for r in group)} "
            f"| {sum(r.token_leaks for r in group)} | `{group[0].command}` |"
        )
    return "\n".join(lines)
