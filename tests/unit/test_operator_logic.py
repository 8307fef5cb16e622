"""Operator commands' pure logic: which queues an app routes to, the queue table, the backlog (no I/O)."""

from __future__ import annotations

import dataclasses
import datetime
from unittest import mock

import pytest
from celery import Celery
from google.api_core import exceptions as gexc
from google.cloud import monitoring_v3, pubsub_v1
from kombu import Exchange, Queue

import kombu_pubsub  # noqa: F401
from kombu_pubsub import TransportOptions
from kombu_pubsub.ops.app_queues import QueueSpec, app_queues
from kombu_pubsub.ops.morgue_tools import DEAD_LETTER_COUNT, DEAD_LETTER_SOURCE, _entry
from kombu_pubsub.ops.queue_report import (
    QueueInfo,
    drift,
    duration,
    footnotes,
    queue_info,
    row,
    table,
)
from kombu_pubsub.pubsub.backlog import Backlog, Sample, read_backlog


def route_nowhere(name, args, kwargs, options, task=None, **kw):
    return None


def make_app(**conf) -> Celery:
    app = Celery("t", broker="pubsub://proj", set_as_current=False)
    app.conf.update(conf)
    return app


@pytest.mark.parametrize(("conf", "extra", "expected", "temporary", "routers"), [
    ({}, (), ["celery", "morgue"], [], 0),
    ({"task_default_queue": "jobs"}, ("reports", "jobs"), ["jobs", "reports", "morgue"], [], 0),
    ({"task_queues": [Queue("a"), Queue("b")], "task_default_queue": "d"}, (),
     ["d", "a", "b", "morgue"], [], 0),
    ({"task_routes": {"x.one": "q1", "x.two": {"queue": "q2"}, "x.*": {"queue": Queue("q3")},
                      "x.four": {"exchange": "e"}}},
     (), ["celery", "q1", "q2", "q3", "morgue"], [], 0),
    ({"task_routes": [route_nowhere, "some.module.router", {"x.y": "q1"}]},
     (), ["celery", "q1", "morgue"], [], 2),
    ({"task_routes": {"x.dead": "morgue"}}, ("morgue",), ["celery", "morgue"], [], 0),
    ({"task_queues": [Queue("w"), Queue("tmp", auto_delete=True), Queue("mine", exclusive=True)]},
     (), ["celery", "w", "morgue"], ["tmp", "mine"], 0),
])
def test_the_queues_an_app_routes_to_come_from_its_configuration(conf, extra, expected, temporary, routers):
    found = app_queues(make_app(**conf), extra)
    assert [spec.name for spec in found.specs] == expected
    assert found.temporary == temporary
    assert found.routers == routers


def test_a_queue_bound_to_a_fanout_exchange_subscribes_to_the_exchange_topic():
    queues = [Queue("news.eu", Exchange("news", type="fanout")), Queue("direct", Exchange("ex"))]
    specs = app_queues(make_app(task_queues=queues)).specs
    assert QueueSpec("news.eu", "news") in specs
    assert QueueSpec("direct", "direct") in specs


def work_subscription(**fields) -> pubsub_v1.types.Subscription:
    values = {"name": "projects/p/subscriptions/default", "topic": "projects/p/topics/default",
              "ack_deadline_seconds": 30, "message_retention_duration": {"seconds": 604800},
              "expiration_policy": {},
              "dead_letter_policy": {"dead_letter_topic": "projects/p/topics/morgue",
                                     "max_delivery_attempts": 10}}
    values.update(fields)
    return pubsub_v1.types.Subscription(**values)


EMULATOR = Backlog({}, unknown="the emulator has no Cloud Monitoring")


def test_a_subscription_reads_as_its_settings_in_the_table():
    info = queue_info("default", "default", "default", work_subscription(), True)
    assert info == QueueInfo("default", "default", "default", True, 30.0, "morgue", 10, 604800.0, 0.0)
    assert row(info, EMULATOR) == ("default", "default", "default", "30s", "morgue after 10", "7d",
                                   "never", "unknown")
    counted = Backlog({"default": Sample(1234, datetime.datetime.now(datetime.UTC))})
    assert row(info, counted)[-1] == "1,234"


def test_a_missing_queue_shows_as_missing_with_the_fix():
    missing = queue_info("reports", "reports", "reports", None, False)
    half = queue_info("mail", "mail", "mail", None, True)
    assert row(missing, EMULATOR)[:3] == ("reports", "missing", "missing")
    assert row(half, EMULATOR)[:3] == ("mail", "mail", "missing")
    notes = footnotes([missing, half], EMULATOR, TransportOptions(), "celery -A demo_tasks")
    assert notes == ["missing: reports, mail; create with 'celery -A demo_tasks pubsub provision'"]


def test_a_subscription_the_app_does_not_route_to_is_listed_without_a_queue_name():
    other = queue_info(None, "audit", "", work_subscription(topic="projects/p/topics/mail"), True)
    assert row(other, EMULATOR)[:3] == ("-", "mail", "audit")
    assert drift(other, TransportOptions(ack_deadline=60)) == []  # not ours to judge
    assert "QUEUE -: a subscription the app does not route to (listed by --all)" in footnotes(
        [other], EMULATOR, TransportOptions(), "celery")


@pytest.mark.parametrize(("subscription_id", "queue"), [
    ("jobs", "jobs"),
    ("q~1jobs", "1jobs"),  # the prefixed id of a name that starts with a digit
    ("celery%40host.celery.pidbox", "celery@host.celery.pidbox"),
    ("made~by~hand", ""),  # no queue has this id: listed, but replay refuses it
])
def test_a_dead_lettered_entry_names_the_queue_whose_subscription_it_came_from(subscription_id, queue):
    message = pubsub_v1.types.PubsubMessage(
        data=b"{}", message_id="1", publish_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        attributes={DEAD_LETTER_COUNT: "5",
                    DEAD_LETTER_SOURCE: f"projects/p/subscriptions/{subscription_id}"})
    entry = _entry(pubsub_v1.types.ReceivedMessage(ack_id="a", message=message))
    assert entry.queue == queue
    assert entry.reason == "dead-lettered after 5 delivery attempts"


def test_the_table_aligns_columns_without_trailing_spaces():
    text = table([("default", "7d"), ("a-long-name", "")], headers=("QUEUE", "RETENTION"))
    assert text.splitlines() == ["QUEUE        RETENTION", "default      7d", "a-long-name"]


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (0, "0s"), (45, "45s"), (600, "10m"), (5400, "90m"), (7200, "2h"), (86400, "1d"),
    (604800, "7d"), (90061, "90061s"),
])
def test_durations_use_the_largest_exact_unit(seconds, text):
    assert duration(seconds) == text


def test_drift_names_each_setting_that_differs_from_the_configuration():
    old = queue_info("default", "default", "default", work_subscription(
        ack_deadline_seconds=60, dead_letter_policy=None, expiration_policy=None), True)
    assert drift(old, TransportOptions()) == [
        "ack deadline 60s (configured: 30s)", "dead letter none (configured: morgue after 10)",
        "expiry default (31d) (configured: never)"]
    current = queue_info("default", "default", "default", work_subscription(), True)
    assert drift(current, TransportOptions()) == []
    assert drift(current, TransportOptions(dead_letter_attempts=0)) == [
        "dead letter morgue after 10 (configured: none)"]
    morgue = queue_info("morgue", "morgue", "morgue", work_subscription(dead_letter_policy=None), True)
    assert drift(morgue, TransportOptions()) == []  # the morgue never dead-letters to itself


def test_on_the_emulator_the_backlog_is_unknown_and_says_why():
    backlog = read_backlog("proj", emulator=True)
    assert backlog.note == "unknown (the emulator has no Cloud Monitoring)"
    assert backlog.describe("default") == "unknown" and not backlog.error


def series(subscription_id: str, *points: tuple[int, int]) -> monitoring_v3.TimeSeries:
    return monitoring_v3.TimeSeries(
        resource={"type": "pubsub_subscription", "labels": {"subscription_id": subscription_id}},
        points=[{"interval": {"end_time": {"seconds": at}}, "value": {"int64_value": count}}
                for at, count in points])


def test_cloud_monitoring_gives_the_latest_figure_of_each_subscription():
    client = mock.create_autospec(monitoring_v3.MetricServiceClient, instance=True)
    client.list_time_series.return_value = [series("default", (1_700_000_120, 7), (1_700_000_060, 9)),
                                            series("reports", (1_700_000_000, 0))]
    backlog = read_backlog("proj", client)
    assert backlog.describe("default") == "7" and backlog.describe("reports") == "0"
    assert backlog.describe("new") == "unknown (no sample yet)"
    assert "up to ~2 min stale" in backlog.note
    request = client.list_time_series.call_args.kwargs["request"]
    assert request["name"] == "projects/proj"
    assert "subscription/num_undelivered_messages" in request["filter"]


def test_without_monitoring_permission_the_error_names_the_role():
    client = mock.create_autospec(monitoring_v3.MetricServiceClient, instance=True)
    client.list_time_series.side_effect = gexc.PermissionDenied("monitoring.timeSeries.list denied")
    backlog = read_backlog("proj", client)
    assert backlog.describe("default") == "unknown"
    assert "roles/monitoring.viewer" in backlog.error and "proj" in backlog.error


def test_an_apps_queues_carry_their_max_priority_as_celery_declares_them():
    found = app_queues(make_app(task_default_queue="d", task_queue_max_priority=9,
                                task_queues=[Queue("d"), Queue("low", max_priority=3),
                                             Queue("arg", queue_arguments={"x-max-priority": 5})]),
                       ("extra",))
    assert {spec.name: spec.max_priority for spec in found.specs} == {
        "d": 9, "low": 3, "arg": 5, "extra": 9, "morgue": 0}
    plain = app_queues(make_app(task_queues=[Queue("w")]))
    assert {spec.max_priority for spec in plain.specs} == {0}


def test_a_priority_steps_row_names_the_priorities_it_holds():
    info = queue_info("jobs", "jobs~p6", "jobs", work_subscription(), True)
    cells = row(dataclasses.replace(info, priorities="6-8"), Backlog({}, "n/a"))
    assert cells[0] == "jobs [priority 6-8]" and cells[2] == "jobs~p6"
    assert row(info, Backlog({}, "n/a"))[0] == "jobs"
