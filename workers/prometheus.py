"""dramatiq's Prometheus middleware, adapted: our exposition process, series ready at zero.

dramatiq 2.x does not add :class:`dramatiq.middleware.prometheus.Prometheus` by default, and
its exposition server binds ``0.0.0.0:9191``. :class:`WorkerPrometheus` keeps dramatiq's
metrics (``dramatiq_messages_total``, ``dramatiq_message_errors_total``,
``dramatiq_message_retries_total``, ``dramatiq_message_rejects_total``,
``dramatiq_messages_inprogress``, ``dramatiq_delayed_messages_inprogress``,
``dramatiq_message_duration_milliseconds``) but forks
:func:`pipeline.metrics_server.serve_worker_metrics` instead, bound to
``IMAGEOPT_METRICS_HOST`` (loopback by default), which serves ours and dramatiq's together.

Import this module only in worker processes started by ``imageopt worker`` (which sets
``PROMETHEUS_MULTIPROC_DIR`` and ``dramatiq_prom_db`` to the same directory first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.middleware.prometheus import Prometheus
from prometheus_client import CollectorRegistry, Gauge

from pipeline import metrics
from pipeline.metrics_server import serve_worker_metrics


class WorkerPrometheus(Prometheus):
    """dramatiq's Prometheus middleware with our fork and zero-initialized series."""

    @property
    def forks(self) -> list[Callable[[], int]]:
        """The one exposition process of the worker group (replaces dramatiq's)."""
        return [serve_worker_metrics]

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        """Create dramatiq's metrics, then every per-actor series at 0.

        A counter that only appears on its first increment hides the first event from
        ``rate()``/``increase()`` and leaves dashboards empty; ours start at 0 instead.
        """
        super().after_process_boot(broker)  # type: ignore[no-untyped-call]
        # dramatiq's gauge has the default multiprocess mode ("all": one series per pid, and a
        # message delayed by one process is often processed by another); sum it instead.
        self.inprogress_delayed_messages = Gauge(
            "dramatiq_delayed_messages_inprogress",
            "The number of delayed messages in memory.",
            ["queue_name", "actor_name"],
            registry=CollectorRegistry(),
            multiprocess_mode="livesum",
        )
        for name in broker.get_declared_actors():
            labels = (broker.get_actor(name).queue_name, name)
            for family in self._families():
                family.labels(*labels)
        metrics.initialize_worker_series()

    def _families(self) -> list[Any]:
        return [
            self.total_messages,
            self.total_errored_messages,
            self.total_retried_messages,
            self.total_rejected_messages,
            self.inprogress_messages,
            self.inprogress_delayed_messages,
            self.message_durations,
        ]
