"""The deferral policy for messages with an ETA (no I/O)."""

from __future__ import annotations

import datetime
import threading
import time

import pytest

from kombu_pubsub.delay import REPUBLISH_AT_ATTEMPT, Plan, Scheduler, eta_of, plan

NOW = datetime.datetime(2026, 11, 28, 12, 0, 0, tzinfo=datetime.UTC)


def envelope(eta: str | None) -> dict:
    return {"headers": {"task": "t", "eta": eta}, "properties": {}, "body": ""}


def at(seconds: float) -> str:
    return (NOW + datetime.timedelta(seconds=seconds)).isoformat()


@pytest.mark.parametrize(("eta", "attempt", "max_hop", "expected"), [
    (None, 1, 600, Plan("deliver")),
    (at(-5), 1, 600, Plan("deliver")),
    (at(0), 1, 600, Plan("deliver")),
    (at(2.5), 1, 600, Plan("hold", 2.5)),
    (at(3.0), 1, 600, Plan("hold", 3.0)),
    (at(10), 1, 600, Plan("defer", 7.0)),  # comes back 3 s early, then held
    (at(300), 1, 600, Plan("defer", 297.0)),
    (at(3600), 1, 600, Plan("defer", 600.0)),  # Pub/Sub's cap: several hops
    (at(3600), 2, 10, Plan("defer", 10.0)),
    (at(3600), REPUBLISH_AT_ATTEMPT, 600, Plan("republish", 3600.0)),  # before a dead-letter policy bites
    (at(2), REPUBLISH_AT_ATTEMPT, 600, Plan("hold", 2.0)),
    (at(4.6), 1, 600, Plan("defer", 1.0)),
    (at(3.2), 1, 600, Plan("defer", 1.0)),
    ("2026-11-28T12:05:00", 1, 600, Plan("defer", 297.0)),  # naive ETA: taken as UTC
    ("not a date", 1, 600, Plan("deliver")),
])
def test_plan_for_a_pulled_message(eta, attempt, max_hop, expected):
    assert plan(envelope(eta), NOW, attempt, max_hop) == expected


def test_no_plan_ever_defers_past_the_eta_or_beyond_the_hop():
    for seconds in [3.01, 3.5, 4, 7.3, 59.9, 600, 601.5, 86400]:
        step = plan(envelope(at(seconds)), NOW, 1, 600)
        assert step.action == "defer"
        assert 1 <= step.seconds <= min(600, max(1, seconds - 3))


def test_eta_is_read_from_protocol_2_headers():
    assert eta_of(envelope(at(60))) == NOW + datetime.timedelta(seconds=60)
    assert eta_of({"headers": {}}) is None
    assert eta_of({"headers": {"eta": 12}}) is None


def test_scheduler_runs_actions_in_time_order_and_returns_the_rest_on_stop():
    scheduler = Scheduler()
    scheduler.start()
    ran: list[str] = []
    done = threading.Event()
    now = time.monotonic()
    scheduler.call_at(now + 0.2, lambda: (ran.append("late"), done.set()))
    scheduler.call_at(now + 0.05, lambda: ran.append("early"))
    scheduler.call_at(now + 60, lambda: ran.append("never"))
    assert done.wait(5)
    assert ran == ["early", "late"]
    assert len(scheduler.stop()) == 1
    assert ran == ["early", "late"]
