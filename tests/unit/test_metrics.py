"""metrics.serve: a port in use gives a clear error every time, and a free one serves /metrics once."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from kombu_pubsub import ConfigurationError
from kombu_pubsub.ops import metrics
from tests.emulator import free_port


@pytest.fixture
def unserved(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process that serves no metrics yet; the collectors a test registers are removed after it.

    (The server a test starts stays up until the test process ends: prometheus'
    server thread is a daemon.)
    """
    monkeypatch.setattr(metrics, "_serving", {})
    yield
    for collector in [c for c in list(REGISTRY._collector_to_names) if isinstance(c, metrics.Collector)]:
        REGISTRY.unregister(collector)


@pytest.fixture
def port_in_use() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


@pytest.mark.usefixtures("unserved")
def test_a_port_in_use_gives_the_same_clear_error_on_every_try(port_in_use):
    for _ in range(2):  # a worker retrying, or install() and serve() in one process
        with pytest.raises(ConfigurationError, match=f"cannot serve metrics on port {port_in_use} .*"
                                                     "KOMBU_PUBSUB_METRICS_PORT"):
            metrics.serve(port_in_use, addr="127.0.0.1")


@pytest.mark.usefixtures("unserved")
def test_after_a_failed_bind_a_free_port_serves_the_metrics_once(port_in_use):
    with pytest.raises(ConfigurationError):
        metrics.serve(port_in_use, addr="127.0.0.1")
    port = free_port()
    assert metrics.serve(port, addr="127.0.0.1") == port
    assert metrics.serve(free_port(), addr="127.0.0.1") == port  # one server per process
    counters = [line for line in scrape(port).splitlines() if line.startswith("kombu_pubsub_received_total ")]
    assert counters == ["kombu_pubsub_received_total 0.0"]
