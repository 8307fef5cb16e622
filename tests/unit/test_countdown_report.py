"""Counting pending countdowns: each worker's inspect answer, and the sum the CLI prints."""

from __future__ import annotations

import datetime

from kombu_pubsub import celery_hooks
from kombu_pubsub.ops import countdown_report
from kombu_pubsub.stats import live_transports

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC).timestamp()


class CountingTransport:
    def __init__(self, counts):
        self.counts = counts

    def countdowns(self):
        return self.counts


def test_a_worker_answers_its_countdowns_summed_over_its_connections():
    first = CountingTransport({"jobs": {"pending": 2, "held": 0, "next_eta": T0 + 60, "last_eta": T0 + 90}})
    second = CountingTransport({"jobs": {"pending": 1, "held": 1, "next_eta": T0 + 5, "last_eta": T0 + 70},
                                "mail": {"pending": 3, "held": 0, "next_eta": T0 + 9, "last_eta": T0 + 9}})
    live_transports.add(first)
    live_transports.add(second)
    try:
        answer = celery_hooks.pending_countdowns(None)
    finally:
        live_transports.discard(first)
        live_transports.discard(second)
    assert answer == {
        "jobs": {"pending": 3, "held": 1, "next_eta": "2026-01-01T00:00:05+00:00",
                 "last_eta": "2026-01-01T00:01:30+00:00"},
        "mail": {"pending": 3, "held": 0, "next_eta": "2026-01-01T00:00:09+00:00",
                 "last_eta": "2026-01-01T00:00:09+00:00"},
    }


def test_the_cli_sums_the_workers_and_names_those_that_cannot_count():
    replies = [
        {"w1@a": {"jobs": {"pending": 2, "held": 0, "next_eta": "2026-01-01T00:01:00+00:00",
                           "last_eta": "2026-01-01T00:02:00+00:00"}}},
        {"w2@b": {"jobs": {"pending": 1, "held": 1, "next_eta": "2026-01-01T00:00:30+00:00",
                           "last_eta": "2026-01-01T00:01:30+00:00"}}},
        {"w3@c": {}},
        {"old@d": {"error": "No such command: pubsub_countdowns"}},
    ]
    report = countdown_report.merge(replies)
    assert report.answered == ["w1@a", "w2@b", "w3@c"]
    assert report.without == {"old@d": "No such command: pubsub_countdowns"}
    [jobs] = report.queues
    assert (jobs.pending, jobs.held, jobs.next_eta, jobs.last_eta, jobs.workers) == (
        3, 1, "2026-01-01T00:00:30+00:00", "2026-01-01T00:02:00+00:00", ["w1@a", "w2@b"])
    text = countdown_report.render(report, 1.0)
    assert "jobs   3        1     2026-01-01 00:00:30  2026-01-01 00:02:00  2" in text
    assert "3 worker(s) answered within 1 s." in text
    assert "old@d cannot count countdowns" in text


def test_with_workers_but_nothing_pending_it_says_so():
    text = countdown_report.render(countdown_report.merge([{"w1@a": {}}]), 2.5)
    assert text.splitlines() == ["No countdowns pending.", "1 worker(s) answered within 2.5 s."]
