"""A worker's Prometheus endpoint counts what the transport does."""

from __future__ import annotations

import time

from tests.emulator import free_port
from tests.integration.conftest import run_producer, scrape, wait_until


def test_worker_metrics_count_received_acked_deferred_morgued_and_leases(start_worker, e2e_env,
                                                                         task_log):
    port = free_port()
    start_worker("-P", "threads", transport_options={"ack_deadline": 10},
                 KOMBU_PUBSUB_METRICS_PORT=str(port))
    sent = run_producer(e2e_env, """
record.delay('m1')
record.delay('m2', sleep=7)                     # held past half its 10 s deadline: extended
record.apply_async(('m3',), countdown=6)        # deferred in Pub/Sub first
flaky.delay('m4')                               # fails its retries: morgue (threads: this process)
""")
    assert sent.returncode == 0, sent.stderr
    assert len(set(task_log.wait_for("done", 3, timeout=40))) == 3
    # m1, m2, m3 once each; m4 three times (run, two retries), each from a message of its own.
    wait_until(lambda: len(task_log.tokens("start")) >= 6, timeout=20)
    runs = task_log.tokens("start")
    assert sorted(runs) == ["m1", "m2", "m3", "m4", "m4", "m4"], runs

    def settled() -> dict[str, float] | None:
        """The samples once the morgue record is out and every message is acked and let go."""
        values = scrape(port)
        done = values.get("kombu_pubsub_morgued_total", 0) >= 1 \
            and values.get("kombu_pubsub_acked_total", 0) >= len(runs) \
            and values.get("kombu_pubsub_messages_in_hand") == 0
        return values if done else None

    values = wait_until(settled, timeout=30, step=0.5) or scrape(port)
    print({k: v for k, v in values.items() if "bucket" not in k})
    assert values["kombu_pubsub_received_total"] >= len(runs)  # m3 may be pulled twice (deferred)
    assert values["kombu_pubsub_acked_total"] >= len(runs)
    assert values["kombu_pubsub_deferred_total"] >= 3  # m3's countdown, and m4's two retries
    assert values["kombu_pubsub_lease_extensions_total"] >= 1
    assert values["kombu_pubsub_morgued_total"] == 1
    assert values["kombu_pubsub_published_total"] >= 3  # the two retries and the morgue record
    assert values["kombu_pubsub_publish_latency_seconds_count"] >= 3
    assert values["kombu_pubsub_publish_failures_total"] == 0
    assert values["kombu_pubsub_messages_in_hand"] == 0  # idle: everything acked and let go
    assert values["kombu_pubsub_oldest_in_hand_seconds"] == 0


def test_oldest_message_in_hand_grows_while_a_task_runs(start_worker, e2e_env, task_log):
    port = free_port()
    start_worker("-P", "threads", KOMBU_PUBSUB_METRICS_PORT=str(port))
    run_producer(e2e_env, "record.delay('slow', sleep=6)")
    assert task_log.wait_for("start", 1, timeout=20) == ["slow"]
    time.sleep(3)
    values = scrape(port)
    assert values["kombu_pubsub_messages_in_hand"] == 1
    assert 2.5 <= values["kombu_pubsub_oldest_in_hand_seconds"] <= 15
