"""Run the fault-injection suite (tests/faults) N times and print the figures table.

    S3_ENDPOINT=127.0.0.1:18333 .venv/bin/python bench/bench_faults.py --repeats 3

The table is what docs/RELIABILITY.md records (one row per scenario, runs summed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults.figures import figures_path, load, table  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each scenario")
    parser.add_argument("-k", default="", help="pytest -k expression (a subset of scenarios)")
    args = parser.parse_args()
    env = {**os.environ, "IMAGEOPT_FAULT_REPEATS": str(args.repeats)}
    env.setdefault("IMAGEOPT_RUN_DIR", str(ROOT / ".run" / "bench"))
    os.environ["IMAGEOPT_RUN_DIR"] = env["IMAGEOPT_RUN_DIR"]
    figures_path().unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "tests/faults", "-q", "-p", "no:cacheprovider"]
    if args.k:
        command += ["-k", args.k]
    result = subprocess.run(command, cwd=ROOT, env=env, check=False)
    print(table(load()))
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
