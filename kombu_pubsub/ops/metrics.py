"""Prometheus metrics for workers and producers (optional: ``pip install 'kombu-pubsub[metrics]'``).

``install(app)`` serves ``/metrics`` from each worker's main process once it is
ready, on ``port`` or ``$KOMBU_PUBSUB_METRICS_PORT`` (default 9808); ``serve()``
does the same in any process (a producer's publish latency, say). Values are
summed over every open connection of the process. With the prefork pool,
what task code does in pool processes (retries, morgue records of failed jobs)
is counted there and not exported: use ``-P threads`` to see it, or count
``task-failed`` events.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..stats import COUNTERS, live_transports

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)

DEFAULT_PORT = 9808
PORT_VARIABLE = "KOMBU_PUBSUB_METRICS_PORT"
# Guards _serving: one server, and one registration of Collector, per process.
_lock = threading.Lock()
#: "port": the port /metrics is served on, once a server bound it.
_serving: dict[str, int] = {}


def _prometheus() -> Any:
    try:
        import prometheus_client
        from prometheus_client import core
    except ImportError:
        raise ConfigurationError(
            "kombu_pubsub.ops.metrics needs prometheus-client; install it with "
            "pip install 'kombu-pubsub[metrics]'") from None
    return prometheus_client, core


class Collector:
    """Reads every open transport's Stats when Prometheus scrapes (its HTTP thread)."""

    def collect(self) -> Iterator[Any]:
        _, core = _prometheus()
        transports = [t for t in list(live_transports) if t.connected]
        totals = dict.fromkeys(COUNTERS, 0)
        buckets: dict[float, int] = {}
        latency_sum = 0.0
        for transport in transports:
            for name, value in transport.stats.counts().items():
                totals[name] += value
            cumulative, seconds = transport.stats.publish_latency()
            latency_sum += seconds
            for bound, count in cumulative:
                buckets[bound] = buckets.get(bound, 0) + count
        for name, help_text in COUNTERS.items():
            yield core.CounterMetricFamily(f"kombu_pubsub_{name}", help_text, value=totals[name])
        yield core.HistogramMetricFamily(
            "kombu_pubsub_publish_latency_seconds", "Time for Pub/Sub to accept a message.",
            buckets=[(_bound(b), c) for b, c in sorted(buckets.items())] or [("+Inf", 0)],
            sum_value=latency_sum)
        yield core.GaugeMetricFamily(
            "kombu_pubsub_messages_in_hand", "Messages leased: with Celery or being worked on.",
            value=sum(len(t.engine.leaser) for t in transports))
        yield core.GaugeMetricFamily(
            "kombu_pubsub_oldest_in_hand_seconds", "How long the longest-held message has been held.",
            value=max((t.engine.leaser.oldest_age() for t in transports), default=0.0))


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def serve(port: int | None = None, addr: str = "0.0.0.0") -> int:  # noqa: S104 - scraped from outside
    """Serve /metrics on `port` (or $KOMBU_PUBSUB_METRICS_PORT, or 9808); idempotent. Return the port.

    A port that cannot be bound raises ConfigurationError, and a later call may try again.
    """
    prometheus_client, _ = _prometheus()
    port = port if port is not None else int(os.environ.get(PORT_VARIABLE, DEFAULT_PORT))
    with _lock:
        if "port" in _serving:
            return _serving["port"]
        # Bind first: a failed bind leaves nothing registered, so a retry is a clean start.
        try:
            prometheus_client.start_http_server(port, addr=addr)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on port {port} ({exc}); give each worker on a host its "
                f"own port with {PORT_VARIABLE}") from None
        prometheus_client.REGISTRY.register(Collector())
        _serving["port"] = port
    logger.info("Serving Prometheus metrics on port %d (/metrics).", port)
    return port


def install(app: Celery, port: int | None = None) -> None:
    """Serve metrics from each worker's main process of `app` once it is ready."""
    from celery import signals

    _prometheus()  # fail at import time of the app, not in the worker

    def on_ready(sender: Any = None, **kwargs: Any) -> None:
        if sender is not None and getattr(sender, "app", app) is not app:
            return
        try:
            serve(port)
        except ConfigurationError as exc:
            logger.error("Metrics are off: %s", exc)

    signals.worker_ready.connect(on_ready, weak=False)
