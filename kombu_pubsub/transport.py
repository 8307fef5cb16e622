"""Google Cloud Pub/Sub transport for Kombu and Celery.

Features
========
* Type: Virtual
* Supports Direct: Yes (a queue is a topic + subscription with the queue's name)
* Supports Topic: Yes: durable queues routed by the publishing connection's bindings (as
  Kombu's virtual transports do); temporary queues (events, Flower) subscribe to the
  exchange's topic and match routing keys themselves (see exchanges.py)
* Supports Fanout: Yes (one topic per exchange, one subscription per bound queue)
* Supports Priority: No
* Supports TTL: No

Connection String
=================
``pubsub://PROJECT``; ``pubsub://`` takes ``$PUBSUB_JOB_QUEUE_PROJECT_ID``, else
``job_queue``. The emulator is used when ``PUBSUB_EMULATOR_HOST`` is set, Google
Cloud with Application Default Credentials otherwise.

Transport Options
=================
See :class:`kombu_pubsub.options.TransportOptions` (and the README table):
``create_missing``, ``ack_deadline``, ``max_lease``, ``publish_timeout``,
``fast_publish``, ``message_retention``, ``subscription_ttl``, ``temporary_ttl``,
``pull_max_messages``, ``pull_timeout``, ``ack_batch_bytes``, ``max_defer_hop``,
``dead_letter_attempts``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import google.auth.exceptions
from celery import signals
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from kombu.transport import virtual

from .acker import Acker
from .channel import Channel
from .consumer import ReadyBuffer
from .delay import Scheduler
from .errors import (
    BrokerUnavailableError,
    ConfigurationError,
    ResourceMissingError,
    as_kombu_error,
    is_transient,
)
from .exchanges import ExchangeTopics
from .leaser import Leaser
from .options import TransportOptions, project_from_url
from .pubsub import rpc
from .pubsub.admin import MORGUE_QUEUE, Admin, SubscriptionInfo
from .pubsub.publisher import Publisher
from .stats import Stats, live_transports

logger = logging.getLogger(__name__)

#: Longest wait at close for pulls in flight to hand back what was just released, seconds.
RELEASE_GRACE = 2.0
#: Longest wait of drain_events once the worker is told to stop, seconds (see release_prefetched).
STOPPING_WAIT = 0.05
#: Longest wait for Pub/Sub to answer the reachability check of a reconnect, seconds.
PROBE_TIMEOUT = 5.0


class Transport(virtual.Transport):
    """Kombu transport whose queues are Pub/Sub topic + subscription pairs."""

    Channel = Channel
    driver_type = "pubsub"
    driver_name = "google-cloud-pubsub"
    default_port = None
    implements = virtual.Transport.implements.extend(
        asynchronous=False,
        exchange_type=frozenset(["direct", "topic", "fanout"]),
        heartbeats=False,
    )
    # Connection errors make Celery reconnect; channel errors are reported as they are.
    connection_errors = virtual.Transport.connection_errors + (BrokerUnavailableError,)
    channel_errors = virtual.Transport.channel_errors + (ResourceMissingError,)
    # Only these are retried by kombu's Connection.ensure(); a PublishError (already
    # retried for publish_timeout) reaches the caller at once.
    recoverable_connection_errors = (BrokerUnavailableError,)
    recoverable_channel_errors = ()

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.options = TransportOptions.from_mapping(client.transport_options)
        self.project = project_from_url(client.hostname, client.port, client.userid,
                                        client.password, client.virtual_host)
        self.ready = ReadyBuffer()
        self.stats = Stats()
        live_transports.add(self)
        # Guards the lazily built clients and helpers below.
        self._lock = threading.Lock()
        self._clients: tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient] | None = None
        self._admin: Admin | None = None
        self._publisher: Publisher | None = None
        self._acker: Acker | None = None
        self._leaser: Leaser | None = None
        self._budget: rpc.Budget | None = None
        self.scheduler = Scheduler()
        #: queue name → its subscription, once ensured on this connection.
        self.subscriptions: dict[str, SubscriptionInfo] = {}
        self._topics: dict[str, str] = {}
        self.exchange_topics = ExchangeTopics(self)
        #: Pullers of closed channels, and how many messages were given back: see close_connection.
        self.retired_pullers: list[Any] = []
        self.released = 0
        #: Set when the worker is told to stop: drain_events no longer waits.
        self.stopping = False

    # -- clients, built on first use (creating a client makes no RPC) --------------
    def _build(self) -> None:
        with self._lock:
            if self._clients is not None:
                return
            try:
                publisher_client = pubsub_v1.PublisherClient()
                subscriber_client = pubsub_v1.SubscriberClient()
            except google.auth.exceptions.DefaultCredentialsError as exc:
                raise ConfigurationError(
                    f"no Google Cloud credentials ({exc}); run 'gcloud auth application-default "
                    "login', set GOOGLE_APPLICATION_CREDENTIALS, or set PUBSUB_EMULATOR_HOST "
                    "to use the emulator") from None
            budget = self._budget = rpc.budget_for(self.project, self.options.publish_timeout)
            self._admin = Admin(self.project, self.options, publisher_client, subscriber_client, budget)
            self._publisher = Publisher(publisher_client, self.options, budget, self.stats)
            self._acker = Acker(subscriber_client, self.options, budget, self.stats)
            self._leaser = Leaser(self._acker, self.options, self.stats)
            self._acker.start()
            self._leaser.start()
            self.scheduler.start()
            self._clients = (publisher_client, subscriber_client)

    @property
    def connected(self) -> bool:
        """True between the first use of the clients and close."""
        return self._clients is not None

    @property
    def subscriber(self) -> pubsub_v1.SubscriberClient:
        self._build()
        assert self._clients is not None
        return self._clients[1]

    @property
    def admin(self) -> Admin:
        self._build()
        assert self._admin is not None
        return self._admin

    @property
    def publisher(self) -> Publisher:
        self._build()
        assert self._publisher is not None
        return self._publisher

    @property
    def acker(self) -> Acker:
        self._build()
        assert self._acker is not None
        return self._acker

    @property
    def leaser(self) -> Leaser:
        self._build()
        assert self._leaser is not None
        return self._leaser

    def ensure_topic(self, name: str) -> str:
        """Topic path for an exchange, created once per connection."""
        path = self._topics.get(name)
        if path is None:
            path = self._topics[name] = self.admin.ensure_topic(name)
        return path

    # -- Kombu transport contract -------------------------------------------------
    @property
    def default_connection_params(self) -> dict[str, Any]:
        return {}

    def establish_connection(self) -> Transport:
        self._build()
        assert self._budget is not None
        if self._budget.unproven:
            self._check_reachable()
        return super().establish_connection()

    def _check_reachable(self) -> None:
        """Connect only once Pub/Sub answers: on a process's first connection, and after
        Pub/Sub failed to answer (one GetTopic RPC; any answer counts, even NotFound or
        PermissionDenied).

        Creating the clients makes no RPC, so without this check a connect always
        succeeded: with Pub/Sub down, a worker's heartbeat then retried forever in
        silence, or Celery re-declared its queues, failed and reconnected about ten
        times a second, logging each. A failed connect makes Kombu back off instead
        (Celery: "Cannot connect to pubsub://...: ... Trying again in 2.00 seconds").
        """
        assert self._clients is not None and self._budget is not None
        started = time.monotonic()
        try:
            self._clients[0].get_topic(request={"topic": f"projects/{self.project}/topics/{MORGUE_QUEUE}"},
                                       retry=None, timeout=min(PROBE_TIMEOUT, self._budget.deadline()))
        except gexc.GoogleAPICallError as exc:
            if is_transient(exc):
                self._budget.failed(started)
                raise as_kombu_error(exc, f"connecting to project {self.project!r}") from exc
        self._budget.succeeded()

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """Consuming thread: wait for a pulled message (no polling) and deliver it."""
        delivery = self.ready.take(STOPPING_WAIT if self.stopping else timeout)
        if delivery is None:
            raise TimeoutError()
        delivery.channel.deliver(delivery)

    def release_prefetched(self) -> None:
        """The worker is stopping: stop pulling task queues, nack what Celery has not taken
        yet, and stop drain_events from waiting (any thread).

        Celery's blocking loop checks its stop flag only between drain_events calls,
        and makes one more call after seeing it: with its 2 s timeout, an idle worker
        took 2-4 s to begin shutting down.
        """
        self.stopping = True
        self.ready.wake()
        for channel in list(self.channels):
            channel.release_prefetched()

    def close_connection(self, connection: Any) -> None:
        """Close channels (stop pulling, release messages) → flush acks → stop leasing → close clients."""
        super().close_connection(connection)
        if self.released:
            # A pull still in flight would take the messages just nacked (the emulator
            # then holds them for a whole ack deadline): let it return them, to be nacked
            # again, before the client cancels it. Bounded: shutdown is not held up for long.
            deadline = time.monotonic() + RELEASE_GRACE
            for puller in self.retired_pullers:
                puller.join(deadline - time.monotonic())
        self.retired_pullers.clear()
        # A puller whose pull ended as its channel closed may have added more: nack them
        # while the acker still runs.
        for delivery in self.ready.remove_channel(None):
            delivery.channel.release([delivery])
        with self._lock:
            clients, self._clients = self._clients, None
        if clients is None:
            return
        assert self._acker is not None and self._leaser is not None and self._publisher is not None
        self.scheduler.stop()  # held messages: their deadline ends just past their ETA
        self._acker.stop()
        self._leaser.stop()
        self._publisher.close()
        publisher_client, subscriber_client = clients
        publisher_client.stop()
        subscriber_client.close()  # also cancels pulls still in flight


def _on_worker_shutting_down(**kwargs: Any) -> None:
    """Celery's SIGTERM handler (main thread): give prefetched messages back at once.

    Celery stops consuming only after its running tasks end and meanwhile keeps
    taking buffered messages; releasing them now lets other workers start them at
    once. Work happens on a short thread: no locks are taken in a signal handler.
    """
    transports = [transport for transport in list(live_transports) if transport.connected]
    if transports:
        threading.Thread(target=lambda: [t.release_prefetched() for t in transports],
                         name="kombu-pubsub-release", daemon=True).start()


signals.worker_shutting_down.connect(_on_worker_shutting_down, weak=False)
