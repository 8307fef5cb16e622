"""Prefetch accounting: fair shares of the room, waiting for room, stopping."""

from __future__ import annotations

import threading
import time
from typing import Any

from kombu_pubsub.prefetch import Prefetch

DELIVERY: Any = object()  # Prefetch only keeps deliveries, never looks inside


def reserve(prefetch: Prefetch, limit: int, pullers: int = 1, most: int = 100,
            stop: bool = False) -> int:
    return prefetch.reserve(lambda: limit, lambda: pullers, most, lambda: stop)


def test_no_limit_returns_the_most_a_pull_may_take_and_reserves_nothing() -> None:
    prefetch = Prefetch()
    assert reserve(prefetch, 0, most=100) == 100
    assert reserve(prefetch, 3) == 3  # nothing was reserved by the unlimited call


def test_the_room_is_split_fairly_between_pullers_rounded_up_and_capped() -> None:
    prefetch = Prefetch()
    assert reserve(prefetch, 10, pullers=3) == 4
    assert reserve(prefetch, 10, pullers=3) == 2  # 6 left: a third, rounded up
    assert reserve(prefetch, 10, pullers=3, most=1) == 1
    assert reserve(prefetch, 10, pullers=1) == 3
    assert reserve(prefetch, 10, stop=True) == 0


def test_buffered_and_held_messages_count_against_the_limit_until_settled() -> None:
    prefetch = Prefetch()
    assert reserve(prefetch, 3) == 3
    prefetch.pulled(reserved=3, arrived=2)  # a pull of 3 brought 2
    prefetch.taken("t1", DELIVERY)          # one went to Celery
    assert prefetch.holds("t1")
    assert reserve(prefetch, 3) == 1        # 1 buffered + 1 with Celery
    prefetch.unreserve(1)
    prefetch.taken("t2", None)              # no_ack: not held
    assert not prefetch.holds("t2")
    assert prefetch.settled("t1") is DELIVERY
    assert prefetch.settled("t1") is None
    assert reserve(prefetch, 3) == 3


def test_a_waiting_puller_gets_room_when_a_message_is_settled() -> None:
    prefetch = Prefetch()
    assert reserve(prefetch, 1) == 1
    prefetch.pulled(reserved=1, arrived=1)
    prefetch.taken("t", DELIVERY)
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(reserve(prefetch, 1)))
    waiter.start()
    time.sleep(0.2)
    assert got == []  # no room: it waits
    prefetch.settled("t")
    waiter.join(0.5)  # well under the 1 s re-check: the settle woke it
    assert got == [1]


def test_a_waiting_puller_told_to_stop_returns_zero_when_woken() -> None:
    prefetch = Prefetch()
    prefetch.buffered(1)
    stop = threading.Event()
    got: list[int] = []
    waiter = threading.Thread(
        target=lambda: got.append(prefetch.reserve(lambda: 1, lambda: 1, 100, stop.is_set)))
    waiter.start()
    time.sleep(0.2)
    stop.set()
    prefetch.wake()
    waiter.join(0.5)
    assert got == [0]
