"""Priority steps: which step a priority goes to, the steps' names and label, the attribute a
publisher writes, and how a queue's steps are made or read back (no I/O)."""

from __future__ import annotations

import logging
from unittest import mock

import pytest
from google.cloud import pubsub_v1

from kombu_pubsub import naming, priorities, wire
from kombu_pubsub.errors import ConfigurationError, NamingError, QueueMismatchError
from kombu_pubsub.options import TransportOptions
from kombu_pubsub.priorities import Steps
from kombu_pubsub.pubsub.admin import STEPS_LABEL, Admin, SubscriptionInfo

TOPIC = "projects/p/topics/jobs"


@pytest.mark.parametrize(("max_priority", "configured", "expected"), [
    (9, (0, 3, 6, 9), (0, 3, 6, 9)),
    (10, (0, 3, 6, 9), (0, 3, 6, 9)),  # RabbitMQ-style 10: Kombu clamps priorities to 9
    (5, (0, 3, 6, 9), (0, 3, 5)),      # steps above the max collapse onto it
    (2, (0, 3, 6, 9), (0, 2)),
    (9, tuple(range(10)), tuple(range(10))),
    (0, (0, 3, 6, 9), None),           # no priorities
    (9, (0,), None),                   # one step: nothing to order
])
def test_a_queue_gets_the_configured_steps_up_to_its_max_priority(max_priority, configured, expected):
    steps = Steps.for_queue(max_priority, configured)
    assert (steps.values if steps else None) == expected


@pytest.mark.parametrize(("priority", "step"), [
    (0, 0), (2, 0), (3, 3), (5, 3), (6, 6), (8, 6), (9, 9),
])
def test_a_priority_goes_to_the_step_at_or_below_it(priority, step):
    assert Steps((0, 3, 6, 9)).step_of(priority) == step


def test_the_steps_label_reads_back_and_names_what_each_step_holds():
    steps = Steps((0, 3, 6, 9))
    assert steps.label == "0-3-6-9" and Steps.from_label("0-3-6-9") == steps
    for label in ["", "9", "1-3", "0-3-3", "0-12", "0-a", "3-0"]:
        assert Steps.from_label(label) is None
    assert [steps.span(step) for step in steps.values] == ["0-2", "3-5", "6-8", "9"]


@pytest.mark.parametrize(("envelope", "priority"), [
    ({"properties": {"priority": 7}}, 7), ({"properties": {"priority": 12}}, 9),
    ({"properties": {"priority": -1}}, 0), ({"properties": {"priority": "x"}}, 0),
    ({"properties": {}}, 0), ({"properties": {"priority": None}}, 0),
])
def test_a_messages_priority_is_read_as_kombu_reads_it(envelope, priority):
    assert priorities.priority_of(envelope) == priority


def test_a_message_goes_to_the_highest_step_at_or_below_its_priority():
    steps = [priorities.Step(step, rank, info(naming.step_resource_id("jobs", step)))
             for rank, step in reversed(list(enumerate((0, 3, 6, 9))))]
    assert [priorities.pick(steps, priority).step for priority in range(10)] == \
        [0, 0, 0, 3, 3, 3, 6, 6, 6, 9]


@pytest.mark.parametrize(("name", "step", "expected"), [
    ("default", 0, "default"),
    ("default", 3, "default~p3"),
    ("celery@host.pidbox", 9, "celery%40host.pidbox~p9"),
    ("p3", 6, "q~p3~p6"),
    ("1", 3, "q~1~p3"),
])
def test_step_subscriptions_are_named_after_their_queue_and_read_back(name, step, expected):
    assert naming.step_resource_id(name, step) == expected
    assert naming.split_step(expected) == (name, step)


@pytest.mark.parametrize("queue", ["p3", "q~p3", "default~p3", "a~p0", "a~p12", "x~p"])
def test_a_queue_whose_name_looks_like_a_step_is_never_read_as_one(queue):
    queue_id = naming.resource_id(queue)
    assert naming.split_step(queue_id) == (queue, 0)
    for other in ["p3", "q", "default", "a", "x"]:
        for step in range(1, 10):
            assert naming.step_resource_id(other, step) != queue_id


def test_a_step_name_over_pubsubs_limit_is_refused_with_the_fix():
    name = "x" * 253
    assert naming.step_resource_id(name, 0) == name
    with pytest.raises(NamingError, match="too long for priorities.*shorter name"):
        naming.step_resource_id(name, 3)


@pytest.mark.parametrize(("priority", "attribute"), [
    (None, None), (0, None), (1, "1"), (9, "9"), (10, "9"), ("7", "7"), ("high", None), (-2, None),
])
def test_a_publisher_writes_the_priority_attribute_only_above_zero(priority, attribute):
    envelope = {"body": "", "headers": {}, "properties": {}}
    if priority is not None:
        envelope["properties"]["priority"] = priority
    _, attributes = wire.encode(envelope)
    assert attributes.get("priority") == attribute


@pytest.mark.parametrize(("raw", "expected"), [
    ("0,3,6,9", (0, 3, 6, 9)), ([0, 5], (0, 5)), ("9, 0, 4", (0, 4, 9)), ([0], (0,)),
])
def test_priority_steps_are_read_from_lists_or_strings(raw, expected):
    assert TransportOptions.from_mapping({"priority_steps": raw}).priority_steps == expected


@pytest.mark.parametrize("raw", [[1, 2], [0, 10], [0, 3, 3], "a,b", 5, []])
def test_bad_priority_steps_name_the_option_and_what_is_accepted(raw):
    with pytest.raises(ConfigurationError, match="priority_steps"):
        TransportOptions.from_mapping({"priority_steps": raw})


def test_the_max_priority_comes_from_the_queue_arguments():
    assert priorities.max_priority({"arguments": {"x-max-priority": 10}}) == 10
    assert priorities.max_priority({"arguments": None}) == 0
    assert priorities.max_priority(None) == 0


# -- making and reading a queue's steps (autospec Admin) -------------------------------------
def info(path: str, label: str = "") -> SubscriptionInfo:
    return SubscriptionInfo(f"projects/p/subscriptions/{path}", f"projects/p/topics/{path}", 30.0,
                            labels={STEPS_LABEL: label} if label else {})


def labelled(label: str) -> pubsub_v1.types.Subscription:
    return pubsub_v1.types.Subscription(name="projects/p/subscriptions/jobs", topic=TOPIC,
                                        labels={STEPS_LABEL: label} if label else {})


@pytest.fixture
def admin():
    fake = mock.create_autospec(Admin, instance=True)

    def ensure(name, topic, *, temporary, step=0, labels=None):
        return info(naming.step_resource_id(name, step), (labels or {}).get(STEPS_LABEL, ""))

    fake.ensure_subscription.side_effect = ensure
    return fake


def test_a_new_queue_with_priorities_gets_a_topic_and_subscription_per_step_its_own_last(admin):
    admin.find_subscription.return_value = None
    steps = priorities.ensure(admin, "jobs", Steps((0, 3, 6, 9)))
    assert [(step.step, step.rank) for step in steps] == [(9, 3), (6, 2), (3, 1), (0, 0)]
    calls = [(call.kwargs["step"], call.kwargs["labels"])
             for call in admin.ensure_subscription.call_args_list]
    assert calls == [(9, None), (6, None), (3, None), (0, {STEPS_LABEL: "0-3-6-9"})]
    assert [step.info.topic_path for step in steps] == [
        "projects/p/topics/jobs~p9", "projects/p/topics/jobs~p6", "projects/p/topics/jobs~p3",
        "projects/p/topics/jobs"]


def test_a_queue_without_priorities_costs_one_subscription_and_no_extra_call(admin):
    steps = priorities.ensure(admin, "jobs", None)
    assert len(steps) == 1 and steps[0].info.steps_label == ""
    assert admin.mock_calls == [mock.call.ensure_subscription("jobs", "jobs", temporary=False)]


def test_a_queue_that_exists_without_priorities_cannot_gain_them(admin):
    admin.find_subscription.return_value = labelled("")
    with pytest.raises(QueueMismatchError, match="without them.*celery pubsub delete jobs"):
        priorities.ensure(admin, "jobs", Steps((0, 3, 6, 9)))
    admin.ensure_subscription.assert_not_called()


def test_a_queue_that_exists_with_priorities_keeps_its_own_steps(admin, caplog):
    def ensure(name, topic, *, temporary, step=0, labels=None):
        return info(naming.step_resource_id(name, step), "0-5" if step == 0 else "")

    admin.ensure_subscription.side_effect = ensure
    # Declared without priorities (a producer, a worker without task_queue_max_priority).
    assert [step.step for step in priorities.ensure(admin, "jobs", None)] == [5, 0]
    # Declared with other steps: the existing ones win, and a WARNING says so.
    admin.find_subscription.return_value = labelled("0-5")
    with caplog.at_level(logging.WARNING):
        steps = priorities.ensure(admin, "jobs", Steps((0, 3, 6, 9)))
    assert [step.step for step in steps] == [5, 0]
    assert "exists with priority steps [0, 5], not the configured [0, 3, 6, 9]" in caplog.text


def test_a_queue_bound_to_an_exchange_topic_has_no_steps(admin):
    steps = priorities.ensure(admin, "jobs", Steps((0, 9)), topic="broadcast")
    assert len(steps) == 1
    admin.find_subscription.assert_not_called()
