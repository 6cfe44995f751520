"""The api's liveness from its event loop: ``GET /livez``.

Every request of the api runs on one asyncio event loop. A loop blocked by a synchronous call
answers nothing: the probe's own timeout catches that. A loop that is starved (blocked again and
again for seconds) still answers now and then, so :class:`EventLoopWatch` measures it: a task
sleeps :data:`TICK_SECONDS` at a time and records how late each wake-up was. ``/livez``
answers 503 when a wake-up within the last ``3 x IMAGEOPT_API_LIVENESS_SECONDS`` was later
than ``IMAGEOPT_API_LIVENESS_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.health import Verdict

TICK_SECONDS = 0.25
"""How often the watch wakes up; also the resolution of the measured lag."""


class EventLoopLag:
    """Late wake-ups of the loop: ``(monotonic time, seconds late)``, the recent ones."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._lags: deque[tuple[float, float]] = deque()

    def record(self, now: float, lag: float) -> None:
        """One wake-up, ``lag`` seconds after it was due."""
        self._lags.append((now, lag))
        while self._lags and now - self._lags[0][0] > 3 * self.threshold:
            self._lags.popleft()

    def verdict(self, now: float) -> Verdict:
        """503 when a recent wake-up was later than the threshold."""
        worst = max((lag for at, lag in self._lags if now - at <= 3 * self.threshold), default=0.0)
        detail = {"loop_lag_seconds": round(worst, 3), "threshold_seconds": self.threshold}
        return Verdict(worst <= self.threshold, detail)


class EventLoopWatch:
    """ASGI middleware: runs the lag-measuring task from lifespan startup to shutdown.

    Args:
        app: the wrapped app.
        threshold: ``IMAGEOPT_API_LIVENESS_SECONDS``.
    """

    def __init__(self, app: ASGIApp, threshold: float) -> None:
        self.app = app
        self.lag = EventLoopLag(threshold)
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Start the watch with the app's lifespan; give requests the lag record."""
        if scope["type"] == "lifespan" and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())
        scope.setdefault("state", {})["loop_lag"] = self.lag
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "lifespan" and self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                self._task = None

    async def _watch(self) -> None:
        while True:
            due = time.monotonic() + TICK_SECONDS
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            self.lag.record(now, max(0.0, now - due))


async def livez(request: Request) -> Response:
    """``GET /livez``: 200 while the event loop keeps time, else 503 (JSON either way)."""
    lag: Any = request.scope.get("state", {}).get("loop_lag")
    verdict = lag.verdict(time.monotonic()) if lag is not None else Verdict(True)
    body = {"status": "ok" if verdict.ok else "fail", **verdict.detail}
    return JSONResponse(
        body, status_code=200 if verdict.ok else 503, headers={"Cache-Control": "no-store"}
    )


ROUTES = [Route("/livez", livez, methods=["GET"])]
