"""The inbox hands messages over only within each channel's prefetch window, and its doorbell
is readable exactly while there is something to look at."""

from __future__ import annotations

import select

import pytest

from kombu_pubsub.engine.inbox import Delivery, Inbox, Window
from kombu_pubsub.errors import BrokerUnavailableError


def readable(inbox: Inbox) -> bool:
    return bool(select.select([inbox.doorbell.fileno()], [], [], 0)[0])


def delivery(window: Window, tag: int, queue: str = "q") -> Delivery:
    return Delivery(object(), window, queue, "projects/p/subscriptions/q", f"ack-{tag}",
                    {"properties": {"delivery_tag": tag}})


@pytest.fixture
def inbox():
    inbox = Inbox()
    yield inbox
    inbox.close()


def test_the_doorbell_rings_on_arrival_and_is_quiet_once_cleared(inbox):
    window = Window(lambda: 0, inbox.ring_if_waiting)
    assert not readable(inbox)
    inbox.put_many([delivery(window, 1)])
    assert readable(inbox)
    inbox.doorbell.clear()
    assert not readable(inbox)


def test_a_ring_landing_while_the_bell_is_cleared_is_never_lost(inbox, monkeypatch):
    # A puller rings while the consuming thread drains the pipe. The bell must not end
    # up marked rung with nothing in the pipe: Celery's event loop would wait forever.
    bell = inbox.doorbell
    bell.ring()
    drain = bell._drain

    def ring_during_drain():
        bell.ring()
        drain()

    monkeypatch.setattr(bell, "_drain", ring_during_drain)
    bell.clear()
    monkeypatch.undo()
    bell.ring()  # the next arrival
    assert readable(inbox)


def test_a_full_window_holds_its_messages_back_but_not_another_channels(inbox):
    full = Window(lambda: 1, inbox.ring_if_waiting)
    other = Window(lambda: 1, inbox.ring_if_waiting)
    first, second, third = delivery(full, 1), delivery(full, 2), delivery(other, 3)
    inbox.put_many([first, second, third])
    assert inbox.take() is first
    full.handed(first, held=True)
    assert inbox.take() is third  # second waits: its channel has one unacked
    other.handed(third, held=True)
    assert inbox.take() is None
    inbox.doorbell.clear()
    assert full.settled(1) is first  # acked: room, and the doorbell says so
    assert readable(inbox)
    assert inbox.take() is second


def test_room_is_taken_on_arrival_never_reserved(inbox):
    window = Window(lambda: 3, inbox.ring_if_waiting)
    assert window.free() == 3
    inbox.put_many([delivery(window, 1), delivery(window, 2)])
    assert window.free() == 1
    taken = inbox.take()
    window.handed(taken, held=True)
    assert window.free() == 1  # one with Celery, one waiting
    assert window.settled(taken.tag) is taken
    assert window.free() == 2


def test_removed_messages_give_their_room_back(inbox):
    window = Window(lambda: 2, inbox.ring_if_waiting)
    inbox.put_many([delivery(window, 1, "a"), delivery(window, 2, "b")])
    removed = inbox.remove(lambda item: item.queue == "a")
    assert [item.tag for item in removed] == [1]
    assert window.free() == 1 and len(inbox) == 1


def test_an_error_from_a_background_thread_is_raised_by_the_next_take(inbox):
    inbox.fail(BrokerUnavailableError("gone"))
    inbox.fail(BrokerUnavailableError("second"))  # the first one wins
    assert readable(inbox)
    with pytest.raises(BrokerUnavailableError, match="gone"):
        inbox.take()
    assert inbox.take() is None


def test_no_limit_means_no_window(inbox):
    window = Window(lambda: 0, inbox.ring_if_waiting)
    assert window.free() is None and window.can_take()
    assert window.wait_for_room(0.0)
