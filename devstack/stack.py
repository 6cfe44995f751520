"""The whole stack as processes: emulator, scheduler, workers and api, started and all stopped.

The demo, the benchmarks, the fault suite and the tests that run the pipeline end to end start
their processes through one :class:`Stack` (a :class:`devstack.processes.ProcessGroup` with
the arguments each process kind takes), inside :func:`running_stack`, which stops every child
it started on the way out, whatever happened (no strays).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack.processes import ProcessGroup, free_port, wait_http

STARTUP_TIMEOUT_SECONDS = 30.0


@dataclass
class Stack:
    """Processes sharing one environment; see the module docstring.

    Args:
        group: the children (their environment is ``group.env``; :meth:`start_emulator`
            points ``REPLICATE_BASE_URL`` of later children at the emulator it starts).
    """

    group: ProcessGroup
    emulator_url: str = ""

    @property
    def env(self) -> Mapping[str, str]:
        return self.group.env

    @property
    def log_dir(self) -> Path:
        return self.group.log_dir

    def start_emulator(
        self, name: str = "emulator", *, port: int | None = None, **config: object
    ) -> str:
        """Start ``python -m emulator`` on a free port with ``config`` as its flags
        (:class:`emulator.config.EmulatorConfig` field names; the token comes from
        ``REPLICATE_API_TOKEN``) and wait until it answers.

        Args:
            port: the port to bind (default: a free one).

        Returns:
            The API base URL (``http://127.0.0.1:PORT/v1``), also set as later children's
            ``REPLICATE_BASE_URL``.

        Raises:
            TimeoutError: it did not answer within :data:`STARTUP_TIMEOUT_SECONDS`.
        """
        port = port or free_port()
        flags: list[str] = ["--port", str(port)]
        for key, value in config.items():
            flags += [f"--{key.replace('_', '-')}", str(value)]
        self.group.start(name, *flags, module="emulator")
        self.emulator_url = f"http://127.0.0.1:{port}/v1"
        self.group.env = {**self.group.env, "REPLICATE_BASE_URL": self.emulator_url}
        wait_http(f"http://127.0.0.1:{port}/_emulator/stats", timeout=STARTUP_TIMEOUT_SECONDS)
        return self.emulator_url

    def start_scheduler(self, name: str = "scheduler", **extra_env: str) -> None:
        """Start ``imageopt scheduler`` (``extra_env`` on top of the stack's environment)."""
        self.group.start(name, "scheduler", extra_env=extra_env)

    def start_workers(
        self,
        name: str = "worker",
        *,
        queues: str = "create,poll",
        processes: int | None = None,
        threads: int = 4,
        metrics_port: int | None = None,
    ) -> None:
        """Start ``imageopt worker`` (dramatiq) for ``queues`` with ``processes`` x ``threads``.

        Args:
            processes: its ``--processes`` (default: ``IMAGEOPT_WORKER_PROCESSES``).
            metrics_port: its ``--metrics-port`` (default: ``IMAGEOPT_WORKER_METRICS_PORT``).
        """
        args = ["worker", "--queues", queues, "--threads", str(threads)]
        if processes is not None:
            args += ["--processes", str(processes)]
        if metrics_port is not None:
            args += ["--metrics-port", str(metrics_port)]
        self.group.start(name, *args)

    def start_api(self, name: str = "api") -> str:
        """Start ``imageopt api`` on a free port of 127.0.0.1 and wait for ``/healthz``.

        Returns:
            The root URL (``http://127.0.0.1:PORT``).

        Raises:
            TimeoutError: it did not answer within :data:`STARTUP_TIMEOUT_SECONDS`.
        """
        port = free_port()
        self.group.start(name, "api", "--host", "127.0.0.1", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", timeout=STARTUP_TIMEOUT_SECONDS)
        return base

    def dead(self) -> list[str]:
        """Names of the children that exited on their own (with their last log lines)."""
        return [
            f"{name} exited early:\n{self.group.log_tail(name)}"
            for name in list(self.group.procs)
            if not self.group.alive(name)
        ]


@contextlib.contextmanager
def running_stack(env: Mapping[str, str], log_dir: Path) -> Iterator[Stack]:
    """A :class:`Stack` whose children get ``env`` (on top of nothing) and write their logs to
    ``log_dir/<name>.log``; every child still running is stopped on exit (SIGTERM, then
    SIGKILL of its process group)."""
    stack = Stack(ProcessGroup(env=dict(env), log_dir=log_dir))
    try:
        yield stack
    finally:
        stack.group.stop_all()
