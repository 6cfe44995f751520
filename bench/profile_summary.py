"""Where the workers' CPU goes, by component, from py-spy's raw (collapsed) stacks.

    .venv/bin/python -m bench.profile_summary DIR [DIR ...]

``bench_e2e capacity --profile DIR`` writes one file per process (``py-spy record --gil
--format raw``: one line per distinct stack, ``frame;frame;... count``). Each sample is charged
to one component by the innermost frame that belongs to a known package (so the limiter's
Redis calls count as the limiter, not as "redis"), and the table gives each component's share
of the process's samples. ``broker`` is dramatiq itself plus the Redis calls it makes:
consuming, acknowledging and enqueueing messages, the cost that a no-op actor also pays.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

# (component, pattern on a frame's file). Samples are charged from the innermost frame
# outwards: the first frame that matches a component, or is our own code (``our code``),
# decides. Redis and socket frames match nothing, so they land with their caller (dramatiq, the
# limiter or the scheduler's queue). Stacks through the limiter are always the limiter's.
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("broker (dramatiq)", r"^dramatiq/|^pipeline/taskqueue\.py"),
    ("postgres (psycopg)", r"^psycopg|^pipeline/repository\.py|^pipeline/db\.py"),
    ("s3 (minio)", r"^minio/|^pipeline/storage\.py"),
    ("provider (httpx)", r"^httpx/|^httpcore/|^h11/|^pipeline/provider\.py"),
    ("images (Pillow)", r"^PIL/|^pipeline/images\.py|^pipeline/presets\.py"),
    ("logging (structlog)", r"^structlog/|^pipeline/logging\.py"),
    ("metrics (prometheus)", r"^prometheus_client/|^pipeline/metrics\.py"),
    ("our code", r"^pipeline/|^workers/|^scheduler/"),
)
LIMITER = re.compile(r"^pipeline/ratelimit/")
_PATTERNS = [(name, re.compile(pattern)) for name, pattern in COMPONENTS]
_FILE = re.compile(r"\(([^():]+)(?::\d+)?\)$")


def component_of(frames: list[str]) -> str:
    """The component a stack (outermost frame first, py-spy's order) is charged to."""
    files = [m.group(1) if (m := _FILE.search(f)) else "" for f in frames]
    if any(LIMITER.search(f) for f in files):
        return "rate limiter"
    for file in reversed(files):
        for name, regex in _PATTERNS:
            if regex.search(file):
                return name
    return "other (threads, queues, sockets)"


def summarize(path: Path) -> tuple[int, Counter[str]]:
    """Samples in a raw py-spy file, and samples per component."""
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, _, n = line.rpartition(" ")
        samples = int(n)
        total += samples
        counts[component_of(stack.split(";"))] += samples
    return total, counts


def main(argv: list[str]) -> None:
    for folder in argv or ["."]:
        for path in sorted(Path(folder).glob("*.txt")):
            total, counts = summarize(path)
            print(f"{path.name}: {total} samples")
            for name, n in counts.most_common():
                print(f"  {100 * n / max(total, 1):5.1f} %  {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
