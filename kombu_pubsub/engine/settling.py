"""Settling: every ack, nack and ack-deadline change, sent in order and in batches by one thread.

Callers (the consuming thread, pool threads, the leaser, pullers) only enqueue.
The settler thread sends what piled up while its previous request was in
flight, grouped per subscription and split under Pub/Sub's request limits.

Order, for one ack id (as python-pubsub's dispatcher sends them): deadline
changes first (lease extensions, deferrals), then acks, then nacks. The queue
is first in, first out, and each batch is sent in that order, so a nack is
never overtaken by an extension enqueued before it; the leaser enqueues
extensions under its own lock and settling removes the lease under that lock
first (leasing.py), so no extension is enqueued after its message's nack.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from ..errors import PubSubError
from ..pubsub import rpc
from ..stats import Stats
from .threads import EngineThread, unpatched

logger = logging.getLogger(__name__)

THREAD_NAME = "kombu-pubsub-settler"
#: Pub/Sub takes at most 2,500 ack ids in one request, whatever their size.
MAX_IDS_PER_REQUEST = 2500
#: An ack id's bytes plus protobuf framing (tag and length), per id.
ID_OVERHEAD_BYTES = 3
#: Most operations gathered into one round of requests.
MAX_BATCH = 10 * MAX_IDS_PER_REQUEST
#: While settles keep coming, gather for this long after the first to send more per
#: request, seconds: nothing against a 10-600 s ack deadline, and many fewer requests
#: (a worker acking 2,000 messages a second sends about 100 requests, not 1,000).
LINGER = 0.01
#: `seconds` of an ack (any other value is the new ack deadline; 0 is a nack).
ACK = -1


@dataclasses.dataclass(frozen=True, slots=True)
class Settle:
    """One operation on one ack id, numbered in the order it was enqueued."""

    seq: int
    subscription_path: str
    ack_id: str
    seconds: int

    @property
    def rank(self) -> int:
        """Sending order within a batch: deadline changes, then acks, then nacks."""
        return 0 if self.seconds > 0 else 1 if self.seconds == ACK else 2


_STOP = Settle(-1, "", "", 0)


class Settler(EngineThread):
    """Owns the thread that sends acknowledge / modify_ack_deadline requests."""

    def __init__(self, subscriber: pubsub_v1.SubscriberClient, budget: rpc.Budget, stats: Stats,
                 on_crash: Callable[[BaseException], None], batch_bytes: int = 400_000,
                 rpcs: Any = None) -> None:
        """`rpcs` sends the requests: anything with the client's ``acknowledge`` and
        ``modify_ack_deadline`` (pubsub/settle_rpc.py); the client itself by default."""
        super().__init__(THREAD_NAME, on_crash)
        self._subscriber = rpcs or subscriber
        self._budget = budget
        self._stats = stats
        self._batch_bytes = batch_bytes
        self._queue = unpatched("queue").SimpleQueue()
        self._seq = itertools.count()
        # subscription path → first seq still wanted: what was enqueued before the
        # subscription was deleted is dropped; a subscription re-created under the
        # same name gets its settles. Written by any thread, read by the settler.
        self._forgotten: dict[str, int] = {}
        self._linger = 0.0
        self.sent_requests = 0
        #: Seconds for the linger; a test may replace it.
        self.monotonic: Callable[[], float] = time.monotonic

    # -- enqueueing (any thread) --------------------------------------------------
    def ack(self, subscription_path: str, ack_id: str) -> None:
        self._put(subscription_path, ack_id, ACK)

    def nack(self, subscription_path: str, ack_id: str) -> None:
        """Give a message back: Pub/Sub redelivers it at once."""
        self._put(subscription_path, ack_id, 0)

    def modify(self, subscription_path: str, ack_ids: list[str], seconds: int) -> None:
        """Set the ack deadline of messages to `seconds` from now (1-600)."""
        for ack_id in ack_ids:
            self._put(subscription_path, ack_id, max(1, seconds))

    def forget(self, subscription_path: str) -> None:
        """Drop what is queued so far for a subscription about to be deleted."""
        self._forgotten[subscription_path] = next(self._seq)

    def _put(self, subscription_path: str, ack_id: str, seconds: int) -> None:
        self._queue.put(Settle(next(self._seq), subscription_path, ack_id, seconds))

    def stop(self) -> None:
        """Send everything enqueued so far, then end the thread (call join to wait)."""
        if self.alive:
            self._queue.put(_STOP)  # the thread sets _stop once it got this far
        else:
            self._stop.set()

    # -- the settler thread ---------------------------------------------------------
    def step(self) -> bool:
        """Wait for settles, gather what else is queued, send it; False after the stop marker."""
        batch, stopping = self.gather(block=True)
        self.send(batch)
        if stopping:
            self._stop.set()
        return not stopping

    def gather(self, block: bool) -> tuple[list[Settle], bool]:
        """Take what is queued (waiting for a first one if `block`); linear in its length.

        Returns the batch and whether the stop marker was among it.
        """
        queue = self._queue
        try:
            first = queue.get() if block else queue.get_nowait()
        except Exception:  # noqa: BLE001 - queue.Empty of whichever queue module
            return [], False
        if first is _STOP:
            return self._drain_rest(), True
        batch = [first]
        until = self.monotonic() + self._linger if self._linger else 0.0
        while len(batch) < MAX_BATCH:
            left = until - self.monotonic() if until else 0.0
            try:
                item = queue.get(timeout=left) if left > 0 else queue.get_nowait()
            except Exception:  # noqa: BLE001 - queue.Empty
                break
            if item is _STOP:
                return batch + self._drain_rest(), True
            batch.append(item)
        # Busy (more than one was waiting): next time gather for LINGER seconds after
        # the first, so requests grow. Idle: a lone ack goes out at once.
        self._linger = LINGER if len(batch) > 1 else 0.0
        return batch, False

    def _drain_rest(self) -> list[Settle]:
        rest = []
        while True:
            try:
                item = self._queue.get_nowait()
            except Exception:  # noqa: BLE001 - queue.Empty
                return rest
            if item is not _STOP:
                rest.append(item)

    def send(self, batch: list[Settle]) -> None:
        """Send a batch: deadline changes, then acks, then nacks; per subscription, split by size."""
        # Per group, each ack id once (a dict keeps the order): two extensions of one
        # message in a batch need one.
        groups: dict[tuple[int, str, int], dict[str, None]] = defaultdict(dict)
        for settle in batch:
            if settle.seq < self._forgotten.get(settle.subscription_path, -1):
                continue
            groups[(settle.rank, settle.subscription_path, settle.seconds)][settle.ack_id] = None
        for (_, subscription_path, seconds), ack_ids in sorted(groups.items(), key=lambda kv: kv[0][0]):
            for chunk in chunks(list(ack_ids), self._batch_bytes):
                self._send_one(subscription_path, seconds, chunk)

    def _send_one(self, subscription_path: str, seconds: int, ack_ids: list[str]) -> None:
        what = "ack" if seconds == ACK else "nack" if seconds == 0 else "ack deadline change"
        try:
            if seconds == ACK:
                rpc.call(self._subscriber.acknowledge, f"acking on {subscription_path!r}",
                         self._budget, subscription=subscription_path, ack_ids=ack_ids)
            else:
                rpc.call(self._subscriber.modify_ack_deadline,
                         f"changing ack deadlines on {subscription_path!r}", self._budget,
                         subscription=subscription_path, ack_ids=ack_ids, ack_deadline_seconds=seconds)
        except (PubSubError, gexc.GoogleAPICallError) as exc:
            logger.warning("Could not send %d %s(s) on %r: %s. Pub/Sub redelivers those messages "
                           "when their ack deadline passes.", len(ack_ids), what, subscription_path, exc)
            return
        self.sent_requests += 1
        if seconds in (ACK, 0):
            self._stats.add("acked" if seconds == ACK else "nacked", len(ack_ids))


def chunks(ack_ids: list[str], max_bytes: int) -> list[list[str]]:
    """Split ack ids into requests under `max_bytes` and MAX_IDS_PER_REQUEST ids."""
    result: list[list[str]] = []
    current: list[str] = []
    size = 0
    for ack_id in ack_ids:
        cost = len(ack_id) + ID_OVERHEAD_BYTES
        if current and (size + cost > max_bytes or len(current) >= MAX_IDS_PER_REQUEST):
            result.append(current)
            current, size = [], 0
        current.append(ack_id)
        size += cost
    if current:
        result.append(current)
    return result
