"""Container health probe for every imageopt process kind: GET one URL, exit 0 on HTTP 2xx.

The image runs the api, the scheduler and the workers; each service sets
``IMAGEOPT_HEALTHCHECK_URL`` to its own ``/livez`` (api 8080, scheduler 9190, a worker group
9191), which answers from the process's work loop (``pipeline/health.py``), not from the metrics
server, so a stuck loop turns the container unhealthy. Standard library only, so the probe costs
one short-lived interpreter and no extra package.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8080/livez"


def main() -> int:
    """Probe ``IMAGEOPT_HEALTHCHECK_URL``; returns the process exit code (0 healthy, 1 not)."""
    url = os.environ.get("IMAGEOPT_HEALTHCHECK_URL", DEFAULT_URL)
    if not url.startswith(("http://127.0.0.1", "http://localhost")):
        print(f"healthcheck: refusing non-local URL {url!r}", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - local URL only
            return 0 if 200 <= response.status < 300 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
