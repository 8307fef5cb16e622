"""Fakes for driving the engine step by step: autospec GAPIC clients, a fake clock, fake pulls."""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from google.cloud import pubsub_v1

from kombu_pubsub.engine import Consumer, Engine
from kombu_pubsub.engine.clock import FakeClock
from kombu_pubsub.options import TransportOptions
from kombu_pubsub.pubsub.admin import SubscriptionInfo
from kombu_pubsub.pubsub.rpc import Budget
from kombu_pubsub.stats import Stats

SUBSCRIPTION = "projects/p/subscriptions/jobs"
TOPIC = "projects/p/topics/jobs"


def envelope(body: Any = None, eta: datetime.datetime | None = None, task: str = "t.job") -> dict:
    """A Kombu envelope as Celery publishes a task (protocol 2, JSON)."""
    headers: dict[str, Any] = {"task": task, "id": "id-1"}
    if eta is not None:
        headers["eta"] = eta.isoformat()
    raw = json.dumps(body if body is not None else [[], {}, {}]).encode()
    return {"body": base64.b64encode(raw).decode(), "content-type": "application/json",
            "content-encoding": "utf-8", "headers": headers,
            "properties": {"body_encoding": "base64", "delivery_info": {"routing_key": "jobs"}}}


def received(ack_id: str, payload: dict | bytes, attempt: int = 0,
             published: datetime.datetime | None = None, attributes: dict | None = None) -> Any:
    """A ReceivedMessage as a pull returns it (published: Pub/Sub's publish time)."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    message = pubsub_v1.types.PubsubMessage(data=data, attributes={"kombu_pubsub": "1", **(attributes or {})})
    if published is not None:
        message.publish_time = published
    return pubsub_v1.types.ReceivedMessage(ack_id=ack_id, delivery_attempt=attempt, message=message)


class FakeCall:
    """A pull in flight that the test answers, fails or sees cancelled."""

    def __init__(self, subscription_path: str, max_messages: int) -> None:
        self.subscription_path = subscription_path
        self.max_messages = max_messages
        self.cancelled = False
        self.messages: list[Any] | None = []
        self.error: BaseException | None = None
        #: Runs while the pull "waits on the server", before it returns.
        self.while_waiting: Any = None
        #: The server had answered already: a cancel comes too late.
        self.answered = False

    def received(self) -> list[Any] | None:
        if self.while_waiting is not None:
            self.while_waiting()
        if self.error is not None:
            raise self.error
        return None if self.cancelled and not self.answered else self.messages

    def cancel(self) -> None:
        self.cancelled = True


class FakePulls:
    """start_pull for the engine: records each pull; `next` answers the next one."""

    def __init__(self) -> None:
        self.calls: list[FakeCall] = []
        self.answers: list[tuple[list[Any] | None, BaseException | None, Any]] = []

    def answer(self, messages: list[Any] | None = None, error: BaseException | None = None,
               while_waiting: Any = None) -> None:
        self.answers.append((messages or [], error, while_waiting))

    def __call__(self, subscription_path: str, max_messages: int, timeout: float) -> FakeCall:
        call = FakeCall(subscription_path, max_messages)
        call.timeout = timeout
        if self.answers:
            call.messages, call.error, call.while_waiting = self.answers.pop(0)
        self.calls.append(call)
        return call


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def subscriber() -> Any:
    return mock.create_autospec(pubsub_v1.SubscriberClient, instance=True)


@pytest.fixture
def pulls() -> FakePulls:
    return FakePulls()


@pytest.fixture
def buried() -> list[tuple[str, str]]:
    """(reason, queue) of every message the engine buried."""
    return []


@pytest.fixture
def republished() -> list[str]:
    return []


@pytest.fixture
def republished_attributes() -> list[dict]:
    """The attributes of each copy the engine re-published."""
    return []


@pytest.fixture
def engine(subscriber, clock, pulls, buried, republished, republished_attributes,
           no_installed_apps) -> Iterator[Engine]:
    """An engine whose threads are never started: the test drives each part."""
    def bury(data: bytes, attributes: dict, reason: str, queue: str) -> bool:
        buried.append((reason, queue))
        return True

    def republish(topic_path: str, data: bytes, attributes: dict) -> None:
        republished.append(topic_path)
        republished_attributes.append(attributes)

    options = TransportOptions(ack_deadline=30, max_lease=600, pull_max_messages=100)
    yield Engine(subscriber, Budget(5.0), options, Stats(), bury, republish, clock=clock,
                 start_pull=pulls, launch=lambda part: None)


def consumer_for(engine: Engine, limit: int = 4, queue: str = "jobs", wanted=None) -> Consumer:
    """A consumer of `queue` on a channel whose prefetch count is `limit`."""
    tags = iter(range(1, 10_000))
    window = engine.window(lambda: limit)
    info = SubscriptionInfo(SUBSCRIPTION.replace("jobs", queue), TOPIC.replace("jobs", queue), 30.0)
    return Consumer(object(), queue, info, window, lambda: next(tags), wanted or (lambda payload: True))


def sent(subscriber: Any) -> list[tuple[str, list[str], int]]:
    """Every settle request the fake client got, in order: (kind, ack ids, seconds)."""
    requests = []
    for call in subscriber.mock_calls:
        name, _, kwargs = call
        request = kwargs.get("request", {})
        if name == "acknowledge":
            requests.append(("ack", list(request["ack_ids"]), -1))
        elif name == "modify_ack_deadline":
            requests.append(("modify", list(request["ack_ids"]), request["ack_deadline_seconds"]))
    return requests
