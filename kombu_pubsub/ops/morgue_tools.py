"""List, show, replay and purge what is in the morgue (the Python API behind `celery pubsub morgue`).

Listing pulls the morgue's messages and gives them straight back (nack), so
nothing is consumed by looking. Replay re-enqueues a job to its original queue
with its retry count reset, and acks the morgue entry only once the
re-enqueue was accepted.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import warnings
from typing import TYPE_CHECKING, Any

from .. import naming, wire
from ..errors import NamingError, PubSubError
from ..morgue import RECORD_CONTENT_TYPE
from ..pubsub import rpc
from ..pubsub.admin import MORGUE_QUEUE
from .queue_tools import pubsub_connection

if TYPE_CHECKING:
    from celery import Celery

    from ..transport import Transport

logger = logging.getLogger(__name__)

#: Most entries one listing looks at (each pull returns at most 1,000).
DEFAULT_LIMIT = 1000
DEAD_LETTER_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"
DEAD_LETTER_SOURCE = "CloudPubSubDeadLetterSourceSubscription"


@dataclasses.dataclass
class Entry:
    """One message in the morgue."""

    message_id: str
    reason: str
    task: str
    task_id: str
    queue: str
    buried_at: str
    data: bytes
    attributes: dict[str, str]
    ack_id: str = dataclasses.field(repr=False, default="")

    @property
    def record(self) -> dict[str, Any] | None:
        """The failure record of a task that failed its last retry, if this is one."""
        try:
            envelope = wire.decode(self.data)
        except wire.UndecodableMessage:
            return None
        if envelope.get("content-type") != RECORD_CONTENT_TYPE:
            return None
        return json.loads(_body(envelope))


class Morgue:
    """The morgue of one project, reached through a kombu_pubsub connection."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.connection = pubsub_connection(app)
        try:
            transport: Transport = self.connection.default_channel.connection
            self.transport = transport
            self.info = self.connection.default_channel.ensure_queue(MORGUE_QUEUE)
        except BaseException:
            self.connection.release()
            raise

    def close(self) -> None:
        self.connection.release()

    def __enter__(self) -> Morgue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def entries(self, limit: int = DEFAULT_LIMIT) -> list[Entry]:
        """Everything in the morgue (up to `limit`), oldest first; nothing is consumed."""
        held = self._pull(limit)
        self._release(held)
        return sorted(held, key=lambda entry: entry.buried_at)

    def find(self, ident: str) -> Entry:
        """The entry whose Pub/Sub message id or task id is `ident` (KeyError if none)."""
        for entry in self.entries():
            if ident in (entry.message_id, entry.task_id):
                return entry
        raise KeyError(f"nothing in the morgue has message id or task id {ident!r}")

    def replay(self, ident: str | None = None) -> list[Entry]:
        """Re-enqueue one entry (by id) or all; return those replayed."""
        held = self._pull(DEFAULT_LIMIT)
        replayed: list[Entry] = []
        try:
            chosen = [e for e in held if ident is None or ident in (e.message_id, e.task_id)]
            if ident is not None and not chosen:
                raise KeyError(f"nothing in the morgue has message id or task id {ident!r}")
            for entry in chosen:
                self._requeue(entry)  # accepted by Pub/Sub before the entry is acked
                self._settle([entry.ack_id], ack=True)
                replayed.append(entry)
        finally:
            self._release([e for e in held if e not in replayed])
        return replayed

    def purge(self) -> int:
        """Delete everything in the morgue; return how many (0 when unknown)."""
        return self.connection.default_channel.queue_purge(MORGUE_QUEUE) or 0

    def _requeue(self, entry: Entry) -> None:
        record = entry.record
        if record is not None:
            self.app.send_task(record["task"], args=record["args"], kwargs=record["kwargs"],
                               queue=record["queue"], task_id=record["id"])
            return
        try:
            envelope = wire.decode(entry.data)
        except wire.UndecodableMessage as exc:
            raise PubSubError(f"morgue entry {entry.message_id} cannot be replayed: {exc.reason}; "
                              "inspect it with 'show' and purge it") from None
        if not entry.queue:
            raise PubSubError(f"morgue entry {entry.message_id} names no queue to replay it to (no "
                              "morgue_queue attribute, or dead-lettered from a subscription no queue "
                              "maps to); inspect it with 'show', re-send its job yourself and purge it")
        headers = envelope.setdefault("headers", {})
        headers["retries"] = 0
        headers.pop("eta", None)
        for key in [k for k in headers if k.startswith("morgue_")]:
            del headers[key]
        data, attributes = wire.encode(envelope)
        topic_path = self.connection.default_channel.ensure_queue(entry.queue).topic_path
        self.transport.publisher.publish(topic_path, data, attributes, awaited=True)

    def _pull(self, limit: int) -> list[Entry]:
        entries: list[Entry] = []
        while len(entries) < limit:
            with warnings.catch_warnings():  # return_immediately: deprecated, and right here
                warnings.simplefilter("ignore", DeprecationWarning)
                response = self.transport.subscriber.pull(request={
                    "subscription": self.info.path, "max_messages": min(1000, limit - len(entries)),
                    "return_immediately": True}, timeout=self.transport.options.rpc_timeout)
            if not response.received_messages:
                break
            entries.extend(_entry(item) for item in response.received_messages)
        return entries

    def _release(self, entries: list[Entry]) -> None:
        """Give back what we pulled but keep."""
        if entries:
            self._settle([e.ack_id for e in entries], ack=False)

    def _settle(self, ack_ids: list[str], ack: bool) -> None:
        """Ack (or nack) pulled entries now, in one request."""
        subscriber, path = self.transport.subscriber, self.info.path
        budget = self.transport.budget
        if ack:
            rpc.call(subscriber.acknowledge, f"acking on {path!r}", budget,
                     subscription=path, ack_ids=ack_ids)
        else:
            rpc.call(subscriber.modify_ack_deadline, f"nacking on {path!r}", budget,
                     subscription=path, ack_ids=ack_ids, ack_deadline_seconds=0)


def _entry(item: Any) -> Entry:
    message = item.message
    attributes = dict(message.attributes)
    reason = attributes.get("morgue_reason")
    queue = attributes.get("morgue_queue", "")
    if reason is None and DEAD_LETTER_COUNT in attributes:
        reason = f"dead-lettered after {attributes[DEAD_LETTER_COUNT]} delivery attempts"
        queue = _source_queue(attributes.get(DEAD_LETTER_SOURCE, ""))
    buried_at = attributes.get("morgue_at") or message.publish_time.isoformat()
    return Entry(message_id=message.message_id, reason=reason or "unknown",
                 task=attributes.get("task", ""), task_id=attributes.get("id", ""), queue=queue,
                 buried_at=buried_at, data=bytes(message.data), attributes=attributes,
                 ack_id=item.ack_id)


def _source_queue(subscription_path: str) -> str:
    """The queue whose subscription dead-lettered a message ('' when no queue's id is that)."""
    subscription_id = subscription_path.rsplit("/", 1)[-1]
    try:
        return naming.split_step(subscription_id)[0]  # a priority step's: its queue
    except NamingError as exc:
        logger.warning("A dead-lettered message in the morgue cannot be replayed: %s", exc)
        return ""


def _body(envelope: dict[str, Any]) -> str:
    body = envelope.get("body") or ""
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        return base64.b64decode(body).decode("utf-8")
    return body
