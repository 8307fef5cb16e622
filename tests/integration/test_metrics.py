"""A worker's Prometheus endpoint counts what the transport does."""

from __future__ import annotations

import time
import urllib.request

from tests.emulator import free_port
from tests.integration.conftest import run_producer


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("kombu_pubsub_") and " " in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_worker_metrics_count_received_acked_deferred_morgued_and_leases(start_worker, e2e_env,
                                                                         task_log):
    port = free_port()
    start_worker("-P", "threads", transport_options={"ack_deadline": 10},
                 KOMBU_PUBSUB_METRICS_PORT=str(port))
    run_producer(e2e_env, """
record.delay('m1')
record.delay('m2', sleep=7)                     # held past half its 10 s deadline: extended
record.apply_async(('m3',), countdown=6)        # deferred in Pub/Sub first
flaky.delay('m4')                               # fails its retries: morgue (threads: this process)
""")
    assert len(set(task_log.wait_for("done", 3, timeout=40))) == 3
    deadline = time.monotonic() + 30
    while True:
        values = scrape(port)
        if values.get("kombu_pubsub_morgued_total", 0) >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print({k: v for k, v in values.items() if "bucket" not in k})
    assert values["kombu_pubsub_received_total"] >= 4
    assert values["kombu_pubsub_acked_total"] >= 3
    assert values["kombu_pubsub_deferred_total"] >= 1
    assert values["kombu_pubsub_lease_extensions_total"] >= 1
    assert values["kombu_pubsub_morgued_total"] >= 1
    assert values["kombu_pubsub_published_total"] >= 1  # retries and the morgue record
    assert values["kombu_pubsub_publish_latency_seconds_count"] >= 1
    assert values["kombu_pubsub_messages_in_hand"] >= 0
    assert values["kombu_pubsub_oldest_in_hand_seconds"] >= 0


def test_oldest_message_in_hand_grows_while_a_task_runs(start_worker, e2e_env, task_log):
    port = free_port()
    start_worker("-P", "threads", KOMBU_PUBSUB_METRICS_PORT=str(port))
    run_producer(e2e_env, "record.delay('slow', sleep=6)")
    task_log.wait_for("start", 1, timeout=20)
    time.sleep(3)
    values = scrape(port)
    assert values["kombu_pubsub_messages_in_hand"] == 1
    assert 2.5 <= values["kombu_pubsub_oldest_in_hand_seconds"] <= 15
