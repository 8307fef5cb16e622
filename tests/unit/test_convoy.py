"""Awaited publishes to one topic made at the same moment share a request; a lone one goes at once."""

from __future__ import annotations

import os
import threading
import time

import pytest
from google.api_core import exceptions as gexc

from kombu_pubsub.pubsub import convoy
from kombu_pubsub.pubsub.convoy import Convoys

KEY = ("endpoint", "projects/p/topics/jobs")
#: Upper bound for threads to get where the test waits for them; never reached when it passes.
WITHIN = 5.0


class Server:
    """send_batch for a Convoys: records each request; the first waits until released."""

    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.requests: list[list[str]] = []
        self.deadlines: list[float] = []
        self.first_inside = threading.Event()
        self.release_first = threading.Event()
        self.fail_with = fail_with

    def __call__(self, messages: list[str], deadline: float) -> None:
        self.requests.append(list(messages))
        self.deadlines.append(deadline)
        if len(self.requests) == 1:
            self.first_inside.set()
            assert self.release_first.wait(WITHIN)
        if self.fail_with is not None:
            raise self.fail_with


def publish_in_threads(convoys: Convoys, server: Server, messages: list[str],
                       errors: dict[str, BaseException], deadline: float = 10.0) -> list[threading.Thread]:
    def send(message: str) -> None:
        try:
            convoys.send(KEY, message, 10, deadline, server)
        except BaseException as exc:  # noqa: BLE001 - checked by the test
            errors[message] = exc

    threads = [threading.Thread(target=send, args=(message,)) for message in messages]
    for thread in threads:
        thread.start()
    return threads


def wait_until(condition, what: str) -> None:
    ends = time.monotonic() + WITHIN
    while not condition():
        if time.monotonic() > ends:
            pytest.fail(f"not within {WITHIN}s: {what}")
        threading.Event().wait(0.001)


def test_a_lone_publish_goes_out_at_once_in_a_request_of_its_own():
    convoys, server = Convoys(), Server()
    server.release_first.set()
    convoys.send(KEY, "only", 10, 10.0, server)
    assert server.requests == [["only"]] and convoys.waiting(KEY) == 0


def test_publishes_made_while_a_request_is_in_flight_share_the_next_one():
    convoys, server, errors = Convoys(), Server(), {}
    first = publish_in_threads(convoys, server, ["first"], errors)
    assert server.first_inside.wait(WITHIN)
    others = publish_in_threads(convoys, server, [f"m{index}" for index in range(5)], errors)
    wait_until(lambda: convoys.waiting(KEY) == 5, "five publishes in line")
    server.release_first.set()
    for thread in first + others:
        thread.join(WITHIN)
    assert errors == {}
    assert server.requests[0] == ["first"]
    assert len(server.requests) == 2 and sorted(server.requests[1]) == [f"m{index}" for index in range(5)]
    assert convoys.requests == 2 and convoys.waiting(KEY) == 0


def test_other_topics_do_not_wait_for_a_request_in_flight():
    convoys, server, errors = Convoys(), Server(), {}
    first = publish_in_threads(convoys, server, ["first"], errors)
    assert server.first_inside.wait(WITHIN)
    convoys.send((KEY[0], "projects/p/topics/other"), "elsewhere", 10, 10.0, server)
    assert server.requests[1] == ["elsewhere"]  # went out while the first still waits
    server.release_first.set()
    first[0].join(WITHIN)
    assert errors == {}


def test_a_failed_request_fails_each_publish_it_carried_and_the_line_goes_on():
    boom = RuntimeError("refused")
    convoys, server, errors = Convoys(), Server(), {}
    first = publish_in_threads(convoys, server, ["first"], errors)
    assert server.first_inside.wait(WITHIN)
    others = publish_in_threads(convoys, server, ["a", "b"], errors)
    wait_until(lambda: convoys.waiting(KEY) == 2, "two publishes in line")
    server.fail_with = boom  # the shared request fails
    server.release_first.set()
    for thread in first + others:
        thread.join(WITHIN)
    assert errors == {"first": boom, "a": boom, "b": boom}  # both requests failed
    convoys.send(KEY, "later", 10, 10.0, lambda messages, deadline: None)  # the line is free again


def test_a_shared_request_gets_the_earliest_deadline_of_its_publishes():
    convoys, server, errors = Convoys(), Server(), {}
    first = publish_in_threads(convoys, server, ["first"], errors, deadline=60.0)
    assert server.first_inside.wait(WITHIN)
    later = publish_in_threads(convoys, server, ["eight"], errors, deadline=8.0)
    wait_until(lambda: convoys.waiting(KEY) == 1, "one publish in line")
    later += publish_in_threads(convoys, server, ["five"], errors, deadline=5.0)
    wait_until(lambda: convoys.waiting(KEY) == 2, "two publishes in line")
    server.release_first.set()
    for thread in first + later:
        thread.join(WITHIN)
    assert errors == {} and server.requests[1] == ["eight", "five"]
    assert 5.0 - WITHIN < server.deadlines[1] <= 5.0


def test_requests_stay_within_pub_subs_limits():
    from collections import deque

    line = deque(convoy._Rider(f"m{index}", 10, 0.0) for index in range(convoy.MAX_MESSAGES + 5))
    assert len(convoy._take(line)) == convoy.MAX_MESSAGES and len(line) == 5
    big = deque(convoy._Rider(f"b{index}", convoy.MAX_BYTES // 2, 0.0) for index in range(3))
    assert len(convoy._take(big)) == 2 and len(big) == 1
    huge = deque([convoy._Rider("huge", convoy.MAX_BYTES * 2, 0.0)])
    assert len(convoy._take(huge)) == 1  # alone, for Pub/Sub to refuse with its own error


def test_request_bytes_counts_data_and_attributes():
    assert convoy.request_bytes(b"x" * 100, {"task": "t.job"}) == 100 + 16 + 4 + 5 + 16


def test_a_publish_whose_deadline_passes_in_line_leaves_it_and_is_never_sent():
    # Pub/Sub stops answering: the request ahead may wait its own, longer deadline.
    convoys, server, errors = Convoys(), Server(), {}
    first = publish_in_threads(convoys, server, ["first"], errors, deadline=60.0)
    assert server.first_inside.wait(WITHIN)
    started = time.monotonic()
    with pytest.raises(gexc.DeadlineExceeded):
        convoys.send(KEY, "short", 10, 0.05, server)
    assert time.monotonic() - started < WITHIN and convoys.waiting(KEY) == 0
    server.release_first.set()
    first[0].join(WITHIN)
    assert errors == {} and server.requests == [["first"]]


def test_a_forked_child_does_not_wait_for_a_request_in_flight_in_its_parent():
    # A prefork pool process forked while the worker's main process had a request in flight.
    parent = convoy.shared()
    server = Server()
    first = publish_in_threads(parent, server, ["in the parent"], {})
    assert server.first_inside.wait(WITHIN)
    pid = os.fork()
    if pid == 0:  # the child: publish, exit 0 if it went out at once in a request of its own
        sent = []
        try:
            convoy.shared().send(KEY, "in the child", 10, 1.0,
                                 lambda messages, deadline: sent.append(messages))
            os._exit(0 if sent == [["in the child"]] else 1)
        except BaseException:  # noqa: BLE001 - any failure is the exit code
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    server.release_first.set()
    first[0].join(WITHIN)
    assert os.waitstatus_to_exitcode(status) == 0
