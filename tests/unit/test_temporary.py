"""Temporary queues: who owns one found already there, and who deletes it when (no I/O)."""

from __future__ import annotations

import logging
import os
from unittest import mock

import pytest

from kombu_pubsub import temporary
from kombu_pubsub.exchanges import is_reply
from kombu_pubsub.pubsub.admin import Admin, SubscriptionInfo
from kombu_pubsub.temporary import HOST_LABEL, PID_LABEL, START_LABEL, Owner, TemporaryQueues, owner_of

ME = temporary.owner_labels()
OTHER_PID = str(os.getpid() + 1)


def labels(**changes: str) -> dict[str, str]:
    return {**ME, **changes}


@pytest.mark.parametrize(("found", "alive", "owner"), [
    ({}, True, Owner.UNKNOWN),
    (labels(**{PID_LABEL: "x"}), True, Owner.UNKNOWN),
    (labels(**{HOST_LABEL: "0123456789abcdef"}), False, Owner.OTHER_HOST),
    (ME, False, Owner.THIS_PROCESS),
    (labels(**{PID_LABEL: OTHER_PID, START_LABEL: "1"}), True, Owner.ALIVE),
    (labels(**{PID_LABEL: OTHER_PID, START_LABEL: "1"}), False, Owner.GONE),
    # A restarted container runs its worker under the same pid, started later.
    (labels(**{START_LABEL: "1"}), False, Owner.GONE),
], ids=["no labels", "bad pid", "other host", "this process", "live neighbour", "killed",
        "same pid restarted"])
def test_owner_of_a_queue_found_already_there(found, alive, owner):
    assert owner_of(found, alive=lambda pid, start: alive) is owner


def test_a_process_start_time_tells_a_live_process_from_a_gone_one():
    mine = temporary.process_start(os.getpid())
    assert mine and mine == temporary.process_start(os.getpid())
    assert temporary.process_start(2**22 + 1) == ""  # above Linux's pid_max: no such process
    assert temporary._alive(os.getpid(), mine)
    assert not temporary._alive(os.getpid(), str(int(mine) + 1))
    assert not temporary._alive(2**22 + 1, "")


@pytest.fixture
def admin():
    fake = mock.create_autospec(Admin, instance=True)
    fake.project = "unit"
    fake.subscription_path.side_effect = lambda name: f"projects/unit/subscriptions/{name}"
    return fake


def info(name: str, created: bool, owner: dict[str, str] | None = None) -> SubscriptionInfo:
    return SubscriptionInfo(f"projects/unit/subscriptions/{name}", f"projects/unit/topics/{name}",
                            30.0, created=created, labels=owner if owner is not None else ME)


def deleted(admin) -> list[str]:
    return [call.args[0] for call in admin.delete_queue.call_args_list]


@pytest.fixture(autouse=True)
def _empty_registry():
    temporary.registry.clear()
    yield
    temporary.registry.clear()


def test_connections_of_one_process_share_a_queue_and_the_last_to_close_deletes_it(admin, caplog):
    admin.ensure_subscription.return_value = info("reply", created=True)
    producer, consumer = TemporaryQueues(admin), TemporaryQueues(admin)
    assert producer.ensure("reply", "reply") == consumer.ensure("reply", "reply")
    assert admin.ensure_subscription.call_count == 1  # the second asked no one
    assert producer.release_all(lambda path: None) == ["reply"]
    assert deleted(admin) == []
    consumer.release_all(lambda path: None)
    assert deleted(admin) == ["reply"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_queue_this_process_made_on_another_connection_is_shared_quietly(admin, caplog):
    admin.ensure_subscription.return_value = info("reply", created=False)  # carries our labels
    queues = TemporaryQueues(admin)
    queues.ensure("reply", "reply")
    forgotten = []
    queues.release_all(forgotten.append)
    assert deleted(admin) == ["reply"] and forgotten == ["projects/unit/subscriptions/reply"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_gone_processs_leftover_is_replaced_below_warning(admin, caplog):
    caplog.set_level(logging.INFO)
    leftover = info("box", created=False, owner=labels(**{PID_LABEL: OTHER_PID, START_LABEL: "1"}))
    admin.ensure_subscription.side_effect = [leftover, info("box", created=True)]
    queues = TemporaryQueues(admin)
    assert queues.ensure("box", "celery.pidbox").created
    admin.delete_subscription.assert_called_once_with(leftover.path)
    assert "replacing it" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    queues.release_all(lambda path: None)
    assert deleted(admin) == ["box"]


@pytest.mark.parametrize("owner", [
    labels(**{PID_LABEL: str(os.getppid()), START_LABEL: temporary.process_start(os.getppid())}),
    labels(**{HOST_LABEL: "0123456789abcdef"}),
    {},
], ids=["live process", "other host", "no labels"])
def test_a_queue_another_process_may_hold_is_used_with_a_warning_and_never_deleted(admin, caplog, owner):
    admin.ensure_subscription.return_value = info("box", created=False, owner=owner)
    queues = TemporaryQueues(admin)
    queues.ensure("box", "celery.pidbox")
    queues.ensure("box", "celery.pidbox")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "-n node name" in warnings[0]
    admin.delete_subscription.assert_not_called()
    assert queues.release_all(lambda path: None) == ["box"]
    assert deleted(admin) == []


def test_a_forked_child_never_deletes_its_parents_queues(admin):
    admin.ensure_subscription.return_value = info("reply", created=True)
    inherited = TemporaryQueues(admin)
    inherited.ensure("reply", "reply")
    temporary.registry.clear()  # what os.register_at_fork runs in the child
    inherited.release_all(lambda path: None)  # the child closes its copy of the channel
    assert deleted(admin) == []


@pytest.mark.parametrize(("message", "reply"), [
    ({"headers": {}, "properties": {"correlation_id": "t1", "delivery_info": {"exchange": ""}}}, True),
    ({"headers": {"task": "add"}, "properties": {"correlation_id": "t1",
                                                 "delivery_info": {"exchange": ""}}}, False),
    ({"headers": {}, "properties": {"delivery_info": {"exchange": ""}}}, False),
    ({"headers": {}, "properties": {"correlation_id": "t1", "delivery_info": {"exchange": "jobs"}}}, False),
], ids=["rpc result", "task", "plain message", "named exchange"])
def test_what_counts_as_a_reply_whose_caller_may_have_left(message, reply):
    assert is_reply(message) is reply


def test_a_queue_deleted_on_purpose_is_created_again_by_its_next_use(admin):
    """Kombu deletes a pidbox reply queue after each reply it collected; the next call needs it."""
    admin.ensure_subscription.side_effect = [info("reply", created=True), info("reply", created=True)]
    queues, other = TemporaryQueues(admin), TemporaryQueues(admin)
    queues.ensure("reply", "reply")
    other.ensure("reply", "reply")
    queues.deleted("reply")
    assert other.ensure("reply", "reply").created
    assert admin.ensure_subscription.call_count == 2
    queues.release_all(lambda path: None)
    assert deleted(admin) == []  # the new one is the other's
    other.release_all(lambda path: None)
    assert deleted(admin) == ["reply"]
