"""Publishing: awaited by default (Pub/Sub accepted it before delay() returns), or fast.

Awaited: a synchronous Publish RPC (publish_rpc.py), no batching thread in the
way: a message published alone goes out at once, and threads publishing to one
topic at once share requests (convoy.py); transient errors retried until
``rpc_timeout``, then PublishError.
Fast (``fast_publish``): the client library's batcher; futures are tracked so
close() and interpreter exit flush them, and failures are logged and counted.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Hashable
from concurrent import futures

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from .. import pools
from ..errors import PublishError, as_kombu_error, is_transient
from ..options import TransportOptions
from ..stats import Stats
from . import rpc
from .publish_rpc import PublishRpc

logger = logging.getLogger(__name__)

_open_publishers: weakref.WeakSet[Publisher] = weakref.WeakSet()


class Publisher:
    """Sends encoded messages to topics for one connection."""

    def __init__(self, client: pubsub_v1.PublisherClient, options: TransportOptions,
                 budget: rpc.Budget, stats: Stats | None = None, send: PublishRpc | None = None,
                 route: Hashable | None = None) -> None:
        """`send` makes the awaited Publish RPC; by default on `client`'s own gRPC channel,
        sharing requests with the process's other publishers of the same `route` (the
        endpoint; publish_rpc.py)."""
        self._client = client
        self._send = send or PublishRpc(client.transport.grpc_channel, route)
        self._stats = stats or Stats()
        self._options = options
        self._budget = budget
        # Guards _pending and the counters (never held across an RPC): fast-mode done
        # callbacks run on the client's batch threads.
        self._lock = threading.Lock()
        self._pending: set[futures.Future] = set()
        self.published = 0
        self.failed = 0
        _open_publishers.add(self)

    def publish(self, topic_path: str, data: bytes, attributes: dict[str, str],
                awaited: bool | None = None) -> None:
        """Publish one message; awaited (the default unless fast_publish): return once Pub/Sub accepted it.

        `awaited` True or False overrides the fast_publish option for this message.
        """
        if awaited is False or (awaited is None and self._options.fast_publish):
            started = time.monotonic()
            future = self._client.publish(topic_path, data, **attributes)
            with self._lock:
                self._pending.add(future)
            future.add_done_callback(lambda done: self._on_done(done, started))
            return
        started = time.monotonic()
        deadline = self._budget.deadline()
        try:
            # Under eventlet the blocking call runs on an OS thread (pools.py).
            pools.offload(self._send, topic_path, data, attributes, deadline)
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            with self._lock:
                self.failed += 1
            self._stats.add("publish_failures")
            if is_transient(exc):
                self._budget.failed(started)
            raise _publish_error(exc, topic_path) from exc
        self._budget.succeeded()
        self._stats.observe_publish(time.monotonic() - started)
        self._stats.add("published")
        with self._lock:
            self.published += 1

    def _on_done(self, future: futures.Future, started: float) -> None:
        """Count the result of a fast-mode publish (runs on a client batch thread)."""
        failed = future.exception() is not None
        self._stats.add("publish_failures" if failed else "published")
        if not failed:
            self._stats.observe_publish(time.monotonic() - started)
        with self._lock:
            self._pending.discard(future)
            if not failed:
                self.published += 1
                return
            self.failed += 1
        logger.error("Fast-mode publish failed; the message is lost: %s", future.exception())

    def flush(self, timeout: float | None = None) -> int:
        """Wait for fast-mode messages in flight; return how many did not make it in time."""
        with self._lock:
            pending = list(self._pending)
        if not pending:
            return 0
        done, not_done = futures.wait(pending, timeout=timeout or self._options.rpc_timeout)
        if not_done:
            logger.error("%d fast-mode messages were not accepted by Pub/Sub within %.1fs "
                         "and may be lost.", len(not_done), timeout or self._options.rpc_timeout)
        return len(not_done)

    def close(self) -> None:
        """Flush fast-mode messages, then stop the client's batch threads."""
        self.flush()
        _open_publishers.discard(self)


def _publish_error(exc: BaseException, topic_path: str) -> PublishError:
    if isinstance(exc, gexc.NotFound):
        error = PublishError(
            f"topic {topic_path!r} does not exist (deleted, or the emulator restarted); "
            "declare the queue again or run 'celery pubsub provision'"
        )
        error.topic_missing = True
        return error
    if is_transient(exc):
        return PublishError(
            f"Pub/Sub did not accept a message for {topic_path!r} within the rpc_timeout: {exc}. "
            "Check that Pub/Sub is reachable (PUBSUB_EMULATOR_HOST for the emulator)."
        )
    return PublishError(str(as_kombu_error(exc, f"publishing to {topic_path!r}")))


@atexit.register
def _flush_at_exit() -> None:
    """Fast mode: deliver what is still in the batcher when the interpreter exits."""
    for publisher in list(_open_publishers):
        publisher.flush()
