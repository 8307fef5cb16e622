"""Google Cloud Pub/Sub transport for Kombu and Celery.

Features
========
* Type: Virtual, asynchronous: Celery's worker runs its event loop (``asynloop``)
  with it, as with Redis and RabbitMQ; the blocking ``drain_events`` works too
  (gevent, eventlet, plain Kombu consumers).
* Supports Direct: Yes (a queue is a topic + subscription with the queue's name)
* Supports Topic: Yes: durable queues routed by the publishing connection's bindings (as
  Kombu's virtual transports do); temporary queues (events, Flower) subscribe to the
  exchange's topic and match routing keys themselves (see exchanges.py)
* Supports Fanout: Yes (one topic per exchange, one subscription per bound queue)
* Supports Priority: Yes, in steps, a higher number first (see priorities.py)
* Supports TTL: Yes, message ``expiration`` and queue ``message_ttl`` (``x-message-ttl``):
  enforced when a message is consumed; an expired one goes to the morgue (see expiry.py)

Connection String
=================
``pubsub://PROJECT``; ``pubsub://`` takes ``$PUBSUB_JOB_QUEUE_PROJECT_ID``, else
``job_queue``. ``pubsub://HOST[:PORT]/PROJECT`` (a URL with a path) also names the
API endpoint; without one, the ``api_endpoint`` option, else ``PUBSUB_EMULATOR_HOST``
(the emulator), else Google Cloud's global endpoint. A named endpoint is Google
Cloud (TLS, Application Default Credentials) when its host ends in
``googleapis.com``, an emulator otherwise; the ``emulator`` option overrides that
(see pubsub/endpoint.py). Alternates (``pubsub://A/proj;pubsub://B/proj``) fail over:
connecting to an endpoint that does not answer raises a connection error, and
Kombu moves on to the next.

Transport Options
=================
See :class:`kombu_pubsub.options.TransportOptions`: ``create_missing``,
``ack_deadline``, ``max_lease``, ``rpc_timeout`` (also accepted as
``publish_timeout``), ``fast_publish``, ``message_retention``,
``subscription_ttl``, ``temporary_ttl``, ``pull_max_messages``, ``pull_timeout``,
``ack_batch_bytes``, ``max_defer_hop``, ``dead_letter_attempts``, ``api_endpoint``,
``emulator``, ``priority_steps``.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import threading
import time
from typing import Any

import google.auth.exceptions
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from kombu.transport import virtual

from . import celery_hooks, morgue, pools
from .channel import Channel
from .engine import Delivery, Engine
from .engine.inbox import Inbox
from .errors import (
    AccessDeniedError,
    BrokerUnavailableError,
    QueueMismatchError,
    RequestError,
    ResourceMissingError,
    as_kombu_error,
    is_transient,
    missing_credentials,
)
from .exchanges import ExchangeTopics
from .options import TransportOptions, parse_url
from .priorities import Step, Steps
from .pubsub import endpoint, rpc
from .pubsub.admin import MORGUE_QUEUE, Admin, SubscriptionInfo
from .pubsub.publisher import Publisher
from .pubsub.settle_rpc import SettleRpcs
from .stats import Stats, live_transports

logger = logging.getLogger(__name__)

#: Longest wait of drain_events once the worker is told to stop, seconds: Celery's
#: blocking loop checks its stop flag only between calls.
STOPPING_WAIT = 0.05
#: Longest wait for Pub/Sub to answer the reachability check of a connect, seconds,
#: when the connection has no connect_timeout (Celery's broker_connection_timeout).
PROBE_TIMEOUT = 5.0
#: Most deliveries handed over per turn of Celery's event loop, so its other work
#: (the pool's pipes, timers, remote control) gets its turn in between.
READABLE_BATCH = 16


@dataclasses.dataclass(frozen=True)
class _Parts:
    """What a connection builds on first use (creating clients makes no RPC)."""

    publisher_client: pubsub_v1.PublisherClient
    subscriber_client: pubsub_v1.SubscriberClient
    budget: rpc.Budget
    admin: Admin
    publisher: Publisher
    engine: Engine


class Transport(virtual.Transport):
    """Kombu transport whose queues are Pub/Sub topic + subscription pairs."""

    Channel = Channel
    driver_type = "pubsub"
    driver_name = "google-cloud-pubsub"
    default_port = None
    implements = virtual.Transport.implements.extend(
        asynchronous=True,
        exchange_type=frozenset(["direct", "topic", "fanout"]),
        heartbeats=False,
    )
    # Connection errors make Celery reconnect; channel errors are reported as they are.
    connection_errors = virtual.Transport.connection_errors + (BrokerUnavailableError,)
    channel_errors = virtual.Transport.channel_errors + (
        ResourceMissingError, AccessDeniedError, RequestError, QueueMismatchError)
    # Only these are retried by kombu's Connection.ensure(); a PublishError (already
    # retried for rpc_timeout) reaches the caller at once.
    recoverable_connection_errors = (BrokerUnavailableError,)
    recoverable_channel_errors = ()

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        pools.prepare_grpc()
        celery_hooks.connect()
        self.options = TransportOptions.from_mapping(client.transport_options)
        address = parse_url(client.hostname, client.port, client.userid, client.password,
                            client.virtual_host)
        self.project = address.project
        #: The Pub/Sub API every client of this connection calls.
        self.endpoint = endpoint.resolve(address.target, self.options)
        # With alternates a connect waits at most connect_timeout, then moves on; with one
        # endpoint it waits out an outage shorter than rpc_timeout, as a publish does (a
        # retry published in a short outage must not fail at connect: Celery would reject it).
        alternates = len(getattr(client, "alt", None) or ()) > 1
        self._probe_timeout = (float(getattr(client, "connect_timeout", None) or PROBE_TIMEOUT)
                               if alternates else None)
        self.stats = Stats()
        self._pid = os.getpid()  # a forked child's copy is not its to close at exit
        live_transports.add(self)
        # Guards _parts and _closed: built on first use by whichever thread comes first.
        self._lock = threading.Lock()
        self._parts: _Parts | None = None
        self._closed = False
        #: queue name → its subscription, once ensured on this connection.
        self.subscriptions: dict[str, SubscriptionInfo] = {}
        #: queue → its priority steps' subscriptions, highest first (queues with priorities only).
        self.priority_steps: dict[str, list[Step]] = {}
        #: queue never declared here → its steps, read from its topic's label (None: none).
        self.topic_steps: dict[str, Steps | None] = {}
        self._topics: dict[str, str] = {}
        self.exchange_topics = ExchangeTopics(self)
        #: Set when the worker is told to stop: prefetched messages go back, waits are short.
        self.stopping = False
        self._released_prefetched = False
        self._loop: Any = None

    # -- parts, built on first use; a closed connection stays closed ---------------------
    def _build(self) -> _Parts:
        with self._lock:
            if self._parts is not None:
                return self._parts
            if self._closed:
                raise BrokerUnavailableError("this Pub/Sub connection was closed; open a new one")
            try:
                publisher_client = self.endpoint.publisher_client()
                subscriber_client = self.endpoint.subscriber_client()
                pull_client = self.endpoint.subscriber_client()
            except google.auth.exceptions.DefaultCredentialsError as exc:
                raise missing_credentials(exc, self.endpoint.describe()) from None
            emulator = self.endpoint.emulator
            budget = rpc.budget_for(self.endpoint.target, self.project, self.options.rpc_timeout)
            publisher = Publisher(publisher_client, self.options, budget, self.stats,
                                  route=self.endpoint)
            engine = Engine(subscriber_client, budget, self.options, self.stats, self.bury,
                            self.republish, on_stop=self.release_prefetched,
                            pull_client=pull_client, emulator=emulator,
                            settle_rpcs=SettleRpcs(subscriber_client.transport.grpc_channel))
            engine.start()
            self._parts = _Parts(publisher_client, subscriber_client, budget,
                                 Admin(self.project, self.options, publisher_client, subscriber_client,
                                       budget, emulator=emulator), publisher, engine)
            return self._parts

    @property
    def connected(self) -> bool:
        """True between the first use of the clients and close."""
        return self._parts is not None

    @property
    def subscriber(self) -> pubsub_v1.SubscriberClient:
        return self._build().subscriber_client

    @property
    def admin(self) -> Admin:
        return self._build().admin

    @property
    def budget(self) -> rpc.Budget:
        """The time bound shared by every call to this connection's endpoint and project."""
        return self._build().budget

    @property
    def publisher(self) -> Publisher:
        return self._build().publisher

    @property
    def engine(self) -> Engine:
        return self._build().engine

    def countdowns(self) -> dict[str, dict[str, Any]]:
        """Per queue, the countdowns this connection deferred or holds (nothing if never used)."""
        parts = self._parts
        return {} if parts is None else parts.engine.intake.countdowns()

    def ensure_topic(self, name: str) -> str:
        """Topic path for an exchange, created once per connection."""
        path = self._topics.get(name)
        if path is None:
            path = self._topics[name] = self.admin.ensure_topic(name)
        return path

    def bury(self, data: bytes, attributes: dict[str, str], reason: str, queue: str) -> bool:
        """Move a message to the morgue (its topic and subscription ensured); False if that failed."""
        return morgue.bury(self.publisher, self._morgue_topic, data, attributes, reason, queue,
                           self.stats)

    def _morgue_topic(self) -> str:
        info = self.subscriptions.get(MORGUE_QUEUE)
        if info is None:
            info = self.admin.ensure_subscription(MORGUE_QUEUE, MORGUE_QUEUE, temporary=False)
            self.subscriptions[MORGUE_QUEUE] = info
        return info.topic_path

    def republish(self, topic_path: str, data: bytes, attributes: dict[str, str]) -> None:
        """Publish a copy of a pulled message and wait until Pub/Sub accepted it."""
        self.publisher.publish(topic_path, data, attributes, awaited=True)

    # -- Kombu transport contract -------------------------------------------------
    @property
    def default_connection_params(self) -> dict[str, Any]:
        return {}

    def establish_connection(self) -> Transport:
        fresh = self._parts is None
        parts = self._build()
        if parts.budget.unproven:
            try:
                self._check_reachable(parts)
            except BrokerUnavailableError:
                # Kombu may now switch to an alternate URL and drop this transport
                # without closing it: stop what this connect started. A retry builds anew.
                if fresh:
                    self._discard(parts)
                raise
        return super().establish_connection()

    def _check_reachable(self, parts: _Parts) -> None:
        """Connect only once Pub/Sub answers: on a process's first connection to the endpoint,
        and after it failed to answer (one GetTopic RPC; any answer counts, even NotFound or
        PermissionDenied). It waits at most the connection's connect_timeout when the URL
        lists alternates to move on to, else what is left of rpc_timeout.

        Creating the clients makes no RPC: without this check a connect always
        succeeds, and with Pub/Sub down a worker would retry its first heartbeat
        in silence. A failed connect makes Kombu back off, or move on to the next
        alternate URL (Celery: "Cannot connect to pubsub://...: ... Trying again in
        2.00 seconds").
        """
        started = time.monotonic()
        try:
            parts.publisher_client.get_topic(
                request={"topic": f"projects/{self.project}/topics/{MORGUE_QUEUE}"},
                retry=None, timeout=parts.budget.deadline() if self._probe_timeout is None
                else min(self._probe_timeout, parts.budget.deadline()))
        except gexc.GoogleAPICallError as exc:
            if is_transient(exc):
                parts.budget.failed(started)
                raise as_kombu_error(
                    exc, f"connecting to project {self.project!r} at {self.endpoint.describe()}",
                ) from exc
        parts.budget.succeeded()

    def _discard(self, parts: _Parts) -> None:
        """Stop the engine and close the clients of a connect that failed (nothing ran on them)."""
        with self._lock:
            if self._parts is parts:
                self._parts = None
        self._close_parts(parts)

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """Consuming thread (Celery's blocking loop, plain Kombu consumers): wait for one
        message and deliver it; socket.timeout when none came within `timeout`."""
        inbox = self.engine.inbox
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            inbox.doorbell.clear()
            if self.stopping:
                self.release_prefetched()
                soon = time.monotonic() + STOPPING_WAIT
                deadline = soon if deadline is None else min(deadline, soon)
            delivery = self._take(inbox)
            if delivery is not None:
                self.deliver(delivery)
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError()
            inbox.doorbell.wait(remaining)

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        """Celery's event loop polls the inbox's doorbell and calls on_readable."""
        fd = self.engine.inbox.doorbell.fileno()
        self._loop = loop
        loop.add_reader(fd, self.on_readable, fd)

    def on_readable(self, fileno: int) -> None:
        """Event loop: deliver what is ready, a batch per turn; raise a recorded engine error."""
        if self._closed:
            return
        inbox = self.engine.inbox
        inbox.doorbell.clear()
        if self.stopping:
            self.release_prefetched()
        for _ in range(READABLE_BATCH):
            delivery = self._take(inbox)
            if delivery is None:
                return
            self.deliver(delivery)
        inbox.doorbell.ring()  # more may be ready: come back after the loop's other work

    def _take(self, inbox: Inbox) -> Delivery | None:
        """Consuming thread: the next delivery, or None; raises what the engine recorded.

        A lost connection (pulls that failed for seconds, a part that died) also marks
        the endpoint as failing, so the next connect checks it first and, when it
        still does not answer, Kombu moves on to the next alternate URL.
        """
        try:
            return inbox.take()
        except BrokerUnavailableError:
            parts = self._parts
            if parts is not None:
                parts.budget.failed(time.monotonic())
            raise

    def deliver(self, delivery: Delivery) -> None:
        """Consuming thread: hand one delivery to its channel's consumer."""
        delivery.owner.deliver(delivery)

    def stop_consuming_soon(self) -> None:
        """The worker is stopping (signal handler: no lock, one write): the consuming thread
        gives prefetched messages back on its next turn, and stops waiting long."""
        self.stopping = True
        parts = self._parts
        if parts is not None:
            parts.engine.request_stop()

    def release_prefetched(self) -> None:
        """Once the worker is stopping (the stop thread, or the consuming thread): stop pulling
        task queues and nack their messages Celery has not taken (remote control keeps going)."""
        with self._lock:
            if self._released_prefetched:
                return
            self._released_prefetched = True
        for channel in list(self.channels):
            channel.release_prefetched()

    def close_at_exit(self) -> None:
        """Interpreter exit: close this connection if the program left it open.

        Celery and Kombu close nothing at exit (a script that calls ``get()`` and
        returns never closes its result consumer), whereas an AMQP broker drops a
        departed client's auto-delete queues with its socket. Closing here does
        the same: held messages go back, temporary queues are deleted.
        """
        if self._pid == os.getpid() and self._parts is not None and not self._closed:
            self.close_connection(None)

    def close_connection(self, connection: Any) -> None:
        """Close channels (stop pulling, release messages) → the engine (send settles, stop
        leasing) → the clients."""
        super().close_connection(connection)
        with self._lock:
            parts, self._parts = self._parts, None
            self._closed = True
        if parts is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(parts.engine.inbox.doorbell.fileno())
            self._loop = None
        self._close_parts(parts)

    @staticmethod
    def _close_parts(parts: _Parts) -> None:
        """The engine (send settles, stop leasing, close the pull client) → the clients."""
        parts.engine.close()
        parts.publisher.close()
        parts.publisher_client.stop()
        parts.subscriber_client.close()


@atexit.register
def _close_at_exit() -> None:
    """Close every connection of this process still open when the interpreter exits.

    Registered after the publisher's fast-mode flush and Python's logging shutdown,
    so it runs before both (atexit runs last-registered first).
    """
    for transport in list(live_transports):
        try:
            transport.close_at_exit()
        except Exception as exc:  # noqa: BLE001 - one connection must not keep the others open
            logger.warning("Could not close a Pub/Sub connection at exit (%s); its temporary "
                           "queues expire after temporary_ttl.", exc)
