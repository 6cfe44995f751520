"""``python -m workers.launch ARGS``: dramatiq's own command line (the same ARGS as
``dramatiq``), with the pipeline's logging in dramatiq's main process too.

``imageopt worker`` runs this. dramatiq's main process never imports the actors, so run as
``dramatiq workers.actors`` it writes its own lines ("booting up", a worker that died) in its
plain-text format. Here logging is set up first (JSON, redacted, ``process: worker``) and
dramatiq is told to leave it alone (``--skip-logging``); the worker and fork processes it
forks inherit the set-up, so even their lines from before the actors are imported go the
same way, through the log pipes dramatiq reads back.

Imports only the settings and the logging set-up: anything that imported prometheus-client
here would leave this process's samples in the workers' multiprocess directory.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dramatiq import cli as dramatiq_cli

from pipeline.config import Settings
from pipeline.logging import setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    """Set up logging, then run dramatiq's CLI with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        dramatiq's exit code.
    """
    setup_logging(Settings(), process="worker")
    arguments = list(sys.argv[1:] if argv is None else argv)
    # On SIGHUP dramatiq restarts by exec'ing sys.argv: make that this module again.
    sys.argv = [sys.executable, "-m", "workers.launch", *arguments]
    parser = dramatiq_cli.make_argument_parser()  # type: ignore[no-untyped-call]
    parsed = parser.parse_args([*arguments, "--skip-logging"])
    return int(dramatiq_cli.main(parsed))  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    sys.exit(main())
