"""Test helper: a local stack (the api in a thread; scheduler and worker processes; the
emulator), all on ports the OS picks, for tests that need an item to really finish."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from devstack.emulator import run_emulator
from devstack.processes import ProcessGroup
from emulator.config import EmulatorConfig
from tests.conftest import settings_from
from tests.support.api import run_api

TOKEN = "r8_stack-test-token-41d2"


@contextlib.contextmanager
def run_stack(env: Mapping[str, str], log_dir: Path, **emulator: Any) -> Iterator[str]:
    """Serve the api (yields ``http://127.0.0.1:PORT``) in front of a scheduler, a worker
    group (create and poll queues) and the emulator, with ``env`` (a test's
    ``pipeline_env`` plus any settings); everything is stopped on exit. ``emulator``: knobs
    of :class:`EmulatorConfig` (``failure_rate=1.0``).

    Raises:
        RuntimeError: a server did not start in time.
    """
    config = EmulatorConfig(**{"latency_min": 0.05, "latency_max": 0.2, **emulator, "token": TOKEN})
    with run_emulator(config) as emulator_url:
        full = {
            **env,
            "PATH": "/usr/bin:/bin",
            "REPLICATE_BASE_URL": emulator_url,
            "REPLICATE_API_TOKEN": TOKEN,
            "IMAGEOPT_METRICS_MULTIPROC_DIR": str(log_dir / "multiproc"),
            "IMAGEOPT_POLL_INITIAL_DELAY_SECONDS": "0.2",
            "IMAGEOPT_POLL_MAX_DELAY_SECONDS": "0.5",
            "IMAGEOPT_SCHEDULER_TICK_SECONDS": "0.2",
        }
        group = ProcessGroup(env=full, log_dir=log_dir)
        try:
            group.start("scheduler", "scheduler")
            group.start("worker", "worker", "--queues", "create,poll", "--processes", "1",
                        "--threads", "4")  # fmt: skip
            with run_api(settings_from(full)) as base:
                yield base
        finally:
            group.stop_all()
