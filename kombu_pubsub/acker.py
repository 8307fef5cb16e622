"""Acks, nacks and lease extensions, sent in batches from one thread.

Callers (the consuming thread, pool threads, the leaser) only enqueue; the
acker thread sends whatever piled up while its previous request was in
flight, grouped per subscription and split under Pub/Sub's 512 KiB request
limit. No artificial wait: an idle acker sends a lone ack at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from .errors import PubSubError
from .options import TransportOptions
from .pubsub import rpc
from .stats import Stats

logger = logging.getLogger(__name__)

THREAD_NAME = "kombu-pubsub-acker"
#: Pub/Sub takes at most 2,500 ack ids in one request, whatever their size.
MAX_IDS_PER_REQUEST = 2500
#: An ack id's bytes plus protobuf framing (tag and length), per id.
ID_OVERHEAD_BYTES = 3
ACK = -1  # "seconds" value marking an ack rather than a deadline change
#: While acks keep coming, wait this long after the first to send more per request,
#: seconds: nothing against a 10-600 s ack deadline, and ten times fewer requests.
LINGER = 0.01
_STOP = ("", "", 0)


class Acker:
    """Owns the thread that sends acknowledge / modify_ack_deadline requests."""

    def __init__(self, subscriber: pubsub_v1.SubscriberClient, options: TransportOptions,
                 budget: rpc.Budget, stats: Stats | None = None) -> None:
        self._subscriber = subscriber
        self._stats = stats or Stats()
        self._budget = budget
        self._options = options
        self._queue: queue.SimpleQueue[tuple[str, str, int]] = queue.SimpleQueue()
        # Guards _thread (start/stop may be called from different threads).
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Subscriptions we deleted (temporary queues): what is still queued for them is
        # moot. Only the acker thread reads it; adding is atomic.
        self._deleted: set[str] = set()
        self.sent_requests = 0

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
                self._thread.start()

    def ack(self, subscription_path: str, ack_id: str) -> None:
        """Queue an ack (any thread)."""
        self._queue.put((subscription_path, ack_id, ACK))

    def modify(self, subscription_path: str, ack_ids: list[str], seconds: int) -> None:
        """Queue a deadline change; 0 seconds is a nack (any thread)."""
        for ack_id in ack_ids:
            self._queue.put((subscription_path, ack_id, seconds))

    def forget(self, subscription_path: str) -> None:
        """Drop what is still queued for a subscription about to be deleted (any thread)."""
        self._deleted.add(subscription_path)

    def stop(self, timeout: float = 10.0) -> None:
        """Send everything queued so far, then end the thread. Idempotent."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    def _run(self) -> None:
        """Acker thread: take what is queued, send it, repeat until told to stop."""
        stopping = False
        linger = 0.0
        while not stopping:
            batch = [self._queue.get()]
            gather_until = time.monotonic() + linger
            while len(batch) < 10 * MAX_IDS_PER_REQUEST:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, gather_until - time.monotonic()))
                                 if _STOP not in batch and time.monotonic() < gather_until
                                 else self._queue.get_nowait())
                except queue.Empty:
                    break
            # Busy (more than one item was waiting): linger next time so requests grow.
            # Idle: a lone ack goes out at once. Settling frees prefetch room before the
            # request is sent, so a linger never holds up pulling.
            linger = LINGER if len(batch) > 1 else 0.0
            if _STOP in batch:
                stopping = True
                batch = [item for item in batch if item != _STOP]
            self.send(batch)

    def send(self, batch: list[tuple[str, str, int]]) -> None:
        """Send a batch now, grouped per subscription and kind, split by bytes."""
        groups: dict[tuple[str, int], list[str]] = defaultdict(list)
        for subscription_path, ack_id, seconds in batch:
            if subscription_path in self._deleted:
                continue
            groups[(subscription_path, seconds)].append(ack_id)
        for (subscription_path, seconds), ack_ids in groups.items():
            for chunk in _chunks(ack_ids, self._options.ack_batch_bytes):
                self._send_one(subscription_path, seconds, chunk)

    def _send_one(self, subscription_path: str, seconds: int, ack_ids: list[str]) -> None:
        what = "ack" if seconds == ACK else "nack" if seconds == 0 else "lease extension"
        try:
            if seconds == ACK:
                rpc.call(self._subscriber.acknowledge, f"acking on {subscription_path!r}",
                         self._budget, subscription=subscription_path,
                         ack_ids=ack_ids)
            else:
                rpc.call(self._subscriber.modify_ack_deadline,
                         f"changing ack deadlines on {subscription_path!r}",
                         self._budget, subscription=subscription_path,
                         ack_ids=ack_ids, ack_deadline_seconds=seconds)
            self.sent_requests += 1
            if seconds in (ACK, 0):
                self._stats.add("acked" if seconds == ACK else "nacked", len(ack_ids))
        except (PubSubError, gexc.GoogleAPICallError) as exc:
            logger.warning("Could not send %d %s(s) on %r: %s. Pub/Sub will redeliver those "
                           "messages when their deadline passes.", len(ack_ids), what,
                           subscription_path, exc)


def _chunks(ack_ids: list[str], max_bytes: int) -> list[list[str]]:
    """Split ack ids into requests under `max_bytes` and MAX_IDS_PER_REQUEST ids."""
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for ack_id in ack_ids:
        cost = len(ack_id) + ID_OVERHEAD_BYTES
        if current and (size + cost > max_bytes or len(current) >= MAX_IDS_PER_REQUEST):
            chunks.append(current)
            current, size = [], 0
        current.append(ack_id)
        size += cost
    if current:
        chunks.append(current)
    return chunks
