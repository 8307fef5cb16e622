"""`celery pubsub queues|provision|delete` run as an operator would, against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from google.api_core import exceptions as gexc

from tests.integration.conftest import ROOT

APP = "tests.apps.ops_app"
#: What tests/apps/ops_app.py routes to, then the morgue.
ROUTED = ["default", "reports", "billing", "mail"]


@pytest.fixture
def env(project: str, emulator_host: str) -> dict[str, str]:
    return dict(os.environ, PUBSUB_EMULATOR_HOST=emulator_host, PUBSUB_JOB_QUEUE_PROJECT_ID=project,
                PYTHONPATH=str(ROOT))


def celery(env: dict[str, str], *args: str, stdin: str | None = None,
           **transport_options: object) -> subprocess.CompletedProcess:
    env = dict(env, OPS_TRANSPORT_OPTIONS=json.dumps(transport_options))
    return subprocess.run([sys.executable, "-m", "celery", "-A", APP, "pubsub", *args], cwd=ROOT,
                          env=env, input=stdin, capture_output=True, text=True, timeout=60)


def rows(output: str) -> dict[str, list[str]]:
    """The queues table: first column → the row's cells."""
    return {line.split()[0]: line.split() for line in output.splitlines()[2:] if line.strip()
            and not line.startswith(("backlog:", "missing:", "task_routes", "not included"))}


def test_queues_on_a_fresh_project_shows_each_routed_queue_missing_with_the_fix(env):
    shown = celery(env, "queues")
    assert shown.returncode == 0, shown.stderr
    table = rows(shown.stdout)
    for queue in [*ROUTED, "morgue"]:
        assert table[queue][1:3] == ["missing", "missing"], shown.stdout
    assert f"missing: {', '.join(ROUTED)}, morgue; create with 'celery -A {APP} pubsub provision'" \
        in shown.stdout
    assert "task_routes has 1 router function(s)" in shown.stdout  # route_by_size: unknowable
    assert "not included: temporary queue(s) ops_broadcast" in shown.stdout


def test_provision_creates_every_routed_queue_and_the_morgue_then_finds_them_all_existing(
        env, project, subscriber_client, publisher_client):
    first = celery(env, "provision")
    assert first.returncode == 0, first.stderr
    assert "10 created, 0 already existed." in first.stdout
    assert first.stdout.index("subscriptions/morgue: created") < \
        first.stdout.index("subscriptions/default: created")  # dead-letter target first
    for queue in ROUTED:
        subscription = subscriber_client.get_subscription(
            subscription=f"projects/{project}/subscriptions/{queue}")
        assert subscription.topic == f"projects/{project}/topics/{queue}"
        assert subscription.dead_letter_policy.dead_letter_topic == f"projects/{project}/topics/morgue"
        assert subscription.dead_letter_policy.max_delivery_attempts == 10
    morgue = subscriber_client.get_subscription(subscription=f"projects/{project}/subscriptions/morgue")
    assert not morgue.dead_letter_policy.dead_letter_topic
    assert publisher_client.get_topic(topic=f"projects/{project}/topics/morgue")

    second = celery(env, "provision")
    assert second.returncode == 0, second.stderr
    assert "0 created, 10 already existed." in second.stdout
    assert second.stdout.count(": already existed") == 10 and ": created" not in second.stdout


def test_queues_shows_each_queue_s_settings_and_an_unknown_backlog_on_the_emulator(env):
    provisioned = celery(env, "provision", ack_deadline=45, dead_letter_attempts=7)
    assert provisioned.returncode == 0, provisioned.stderr
    shown = celery(env, "queues", "-Q", "absent", ack_deadline=45, dead_letter_attempts=7)
    assert shown.returncode == 0, shown.stderr
    table = rows(shown.stdout)
    assert shown.stdout.splitlines()[1].split() == [
        "QUEUE", "TOPIC", "SUBSCRIPTION", "ACK", "DEADLINE", "DEAD", "LETTER", "RETENTION",
        "EXPIRES", "BACKLOG"]
    assert table["default"] == ["default", "default", "default", "45s", "morgue", "after", "7", "7d",
                                "never", "unknown"]
    assert table["morgue"] == ["morgue", "morgue", "morgue", "45s", "none", "7d", "never", "unknown"]
    assert table["absent"][1:3] == ["missing", "missing"]
    assert "backlog: unknown (the emulator has no Cloud Monitoring)" in shown.stdout
    assert f"missing: absent; create with 'celery -A {APP} pubsub provision'" in shown.stdout

    as_json = json.loads(celery(env, "queues", "--json", ack_deadline=30).stdout)
    default = next(queue for queue in as_json["queues"] if queue["queue"] == "default")
    assert default["ack_deadline"] == 45.0 and default["dead_letter_attempts"] == 7
    assert default["backlog"] is None and "emulator" in default["backlog_note"]
    assert default["differs_from_configuration"] == [
        "ack deadline 45s (configured: 30s)", "dead letter morgue after 7 (configured: morgue after 10)"]


SEND = "from tests.apps.ops_app import app\napp.send_task('ops.bill', queue='billing')\nprint('sent')"


def test_provision_works_when_the_app_has_create_missing_off(env):
    off = dict(env, OPS_TRANSPORT_OPTIONS=json.dumps({"create_missing": False}))
    before = subprocess.run([sys.executable, "-c", SEND], cwd=ROOT, env=off, capture_output=True,
                            text=True, timeout=60)
    assert before.returncode != 0 and "ResourceMissingError" in before.stderr
    assert "celery pubsub provision" in before.stderr

    provisioned = celery(env, "provision", create_missing=False)
    assert provisioned.returncode == 0, provisioned.stderr
    assert "10 created, 0 already existed." in provisioned.stdout
    after = subprocess.run([sys.executable, "-c", SEND], cwd=ROOT, env=off, capture_output=True,
                           text=True, timeout=60)
    assert after.stdout.strip() == "sent", after.stderr


def gone(call, **request) -> bool:
    try:
        call(**request)
    except gexc.NotFound:
        return True
    return False


def test_delete_asks_first_removes_the_queue_and_guards_the_morgue(
        env, project, subscriber_client, publisher_client):
    assert celery(env, "provision").returncode == 0
    reports = f"projects/{project}/subscriptions/reports"

    declined = celery(env, "delete", "reports", stdin="n\n")
    assert declined.returncode == 1 and "Aborted" in declined.stderr
    assert f"Delete {reports} and projects/{project}/topics/reports?" in declined.stdout
    assert not gone(subscriber_client.get_subscription, subscription=reports)

    confirmed = celery(env, "delete", "reports", stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert f"subscription {reports}: deleted" in confirmed.stdout
    assert gone(subscriber_client.get_subscription, subscription=reports)
    assert gone(publisher_client.get_topic, topic=f"projects/{project}/topics/reports")

    again = celery(env, "delete", "reports", "--yes")
    assert again.returncode == 1
    assert "queue 'reports' does not exist" in again.stderr and "pubsub queues --all" in again.stderr

    morgue = f"projects/{project}/subscriptions/morgue"
    refused = celery(env, "delete", "morgue", "--yes")
    assert refused.returncode == 1 and "add --force" in refused.stderr
    assert not gone(subscriber_client.get_subscription, subscription=morgue)
    forced = celery(env, "delete", "morgue", "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert gone(subscriber_client.get_subscription, subscription=morgue)


def test_a_queue_with_priorities_is_provisioned_shown_and_deleted_step_by_step(
        env, project, subscriber_client):
    env = dict(env, OPS_MAX_PRIORITY="9")
    made = celery(env, "provision", "--queue", "urgent")
    assert made.returncode == 0, made.stderr
    assert "subscriptions/urgent~p9: created (priority 9)" in made.stdout
    assert "subscriptions/urgent: created (priority 0-2)" in made.stdout
    morgue = subscriber_client.get_subscription(subscription=f"projects/{project}/subscriptions/morgue")
    assert not morgue.filter  # the morgue never has priorities

    shown = celery(env, "queues", "--queue", "urgent")
    assert shown.returncode == 0, shown.stderr
    lines = [line.split() for line in shown.stdout.splitlines() if line.startswith("urgent ")]
    assert [(cells[2], cells[4]) for cells in lines] == [
        ("9]", "urgent~p9"), ("6-8]", "urgent~p6"), ("3-5]", "urgent~p3"), ("0-2]", "urgent")]
    assert "urgent differs" not in shown.stdout

    deleted = celery(env, "delete", "urgent", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    for subscription in ["urgent", "urgent~p3", "urgent~p6", "urgent~p9"]:
        with pytest.raises(gexc.NotFound):
            subscriber_client.get_subscription(
                subscription=f"projects/{project}/subscriptions/{subscription}")
    assert "topic projects/" in deleted.stdout and "urgent: deleted" in deleted.stdout
