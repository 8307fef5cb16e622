"""Awaited publishes to one topic made at the same moment share one Publish request.

A web app's threads (or a worker's) each call ``delay()`` and each wait for
Pub/Sub's answer. One request per message costs a gRPC call in the process
and a request on the server for every message; under load those, not the
network, set the rate. So while a request to a topic is in flight, other
publishes to that topic wait in line, and when it returns the next request
carries all of them (up to Pub/Sub's limits). A publish made alone goes out at
once, as before: nothing waits for company.

The caller whose request returned hands the next one to the first publish in
line, which sends it on its own thread; so every caller returns as soon as its
own message was accepted (or failed: then every message of that request fails
alike, and each caller gets the error). Each message keeps its own deadline:
a shared request gets the earliest of theirs, and a publish still in line
when its deadline passes leaves it with DeadlineExceeded, so no caller waits
longer for a request ahead of it than it would for its own.

Requests are grouped per ``(route, topic)``: a route names one endpoint (the
connection's target and credentials), so messages of several connections to
the same endpoint share requests, and nothing crosses to another endpoint.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from google.api_core import exceptions as gexc

from ..pools import environment, os_threading

#: Pub/Sub's limits on one Publish request: 1,000 messages, 10 MB.
MAX_MESSAGES = 1000
MAX_BYTES = 9_000_000
#: Protobuf framing per message and attribute, bytes (an upper bound).
FRAMING_BYTES = 16

#: Send one request: (messages, deadline seconds) → None; raises what the call raised.
SendBatch = Callable[[list[Any], float], None]


def request_bytes(data: bytes, attributes: dict[str, str]) -> int:
    """An upper bound of what one message adds to a Publish request, bytes."""
    return len(data) + FRAMING_BYTES + sum(len(key) + len(value) + FRAMING_BYTES
                                           for key, value in attributes.items())


@dataclasses.dataclass(eq=False, slots=True)
class _Rider:
    """One publish waiting for its request."""

    message: Any
    size: int
    ends: float
    done: Any = None
    error: BaseException | None = None
    lead: list[_Rider] | None = None
    """Set when this publish is to send the next request, carrying these."""


class Convoys:
    """Per (route, topic): whether a request is in flight, and the publishes waiting for the next.

    Any thread, and many at once; under gevent the waits are cooperative, under
    eventlet publishes run on OS threads (pools.offload) and so do these locks.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._threading = os_threading()
        self._clock = clock
        # Guards _lines. A key is present while a request of its line is in flight.
        self._lock = self._threading.Lock()
        self._lines: dict[Hashable, deque[_Rider]] = {}
        self.requests = 0

    def send(self, key: Hashable, message: Any, size: int, deadline: float, send_batch: SendBatch) -> None:
        """Publish `message` (`size` bytes on the wire) within `deadline` seconds; return once
        accepted, or raise what its request raised."""
        rider = _Rider(message, size, self._clock() + deadline)
        with self._lock:
            line = self._lines.get(key)
            if line is None:
                self._lines[key] = deque()
                batch: list[_Rider] | None = [rider]
            else:
                rider.done = self._threading.Event()
                line.append(rider)
                batch = None
        if batch is None:
            if not rider.done.wait(max(0.0, rider.ends - self._clock())):
                self._leave_line(key, rider)
            rider.done.wait()  # taken into a request, bounded by this publish's deadline too
            batch = rider.lead
        if batch is not None:
            self._drive(key, batch, send_batch)
        if rider.error is not None:
            raise rider.error

    def _leave_line(self, key: Hashable, rider: _Rider) -> None:
        """The deadline passed while `rider` waited: out of the line with DeadlineExceeded,
        unless a request took it meanwhile (that request ends within its deadline)."""
        with self._lock:
            line = self._lines.get(key)
            if line is None or rider not in line:
                return
            line.remove(rider)
        raise gexc.DeadlineExceeded(
            "the publish waited for the request ahead of it to the same topic until its "
            "deadline passed")

    def waiting(self, key: Hashable) -> int:
        """How many publishes wait for the next request of `key`."""
        with self._lock:
            line = self._lines.get(key)
            return len(line) if line is not None else 0

    def _drive(self, key: Hashable, batch: list[_Rider], send_batch: SendBatch) -> None:
        """Send one request for `batch` (its first rider is the calling thread's), then wake
        its riders and hand the next request to the first in line."""
        deadline = min(rider.ends for rider in batch) - self._clock()
        try:
            self.requests += 1
            send_batch([rider.message for rider in batch], deadline)
        except BaseException as exc:  # noqa: BLE001 - each caller raises it
            for rider in batch:
                rider.error = exc
        with self._lock:
            line = self._lines[key]
            following = _take(line) if line else None
            if following is None:
                del self._lines[key]
        for rider in batch[1:]:
            rider.done.set()
        if following is not None:
            following[0].lead = following
            following[0].done.set()


def _take(line: deque[_Rider]) -> list[_Rider]:
    """The next request's riders, oldest first, within Pub/Sub's limits (at least one)."""
    batch = [line.popleft()]
    size = batch[0].size
    while line and len(batch) < MAX_MESSAGES and size + line[0].size <= MAX_BYTES:
        rider = line.popleft()
        size += rider.size
        batch.append(rider)
    return batch


_shared: dict[str, Convoys] = {}


def shared() -> Convoys:
    """The process's convoys (one per threading environment, made on first use)."""
    kind = environment()
    convoys = _shared.get(kind)
    if convoys is None:
        convoys = _shared.setdefault(kind, Convoys())
    return convoys


def _forget_after_fork() -> None:
    """A forked child (a prefork pool process) starts with no line: a request in flight
    in the parent when it forked has no thread here to finish it, and its lock may be held."""
    _shared.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
