"""Message expiry: Kombu's per-message ``expiration`` and a queue's message TTL (``x-message-ttl``).

Pub/Sub has no per-message TTL (its retention, 10 minutes at least, is per
subscription), so the transport enforces both where messages are consumed: a
message past its deadline when it would be handed to Celery (at once, or at its
ETA for a countdown) goes to the morgue with a reason starting ``expired``,
never to a consumer. The same code runs on the emulator and on Google Cloud.

The deadline is the earliest of:

* the ``expires_at`` attribute (ISO 8601, UTC) that the publishing channel
  stamps, with ``expiry`` naming the limit, when the message has an
  ``expiration`` or that channel declared the queue with a TTL;
* the message's ``expiration`` counted from when it was first published;
* the TTL the consuming channel declared the queue with, counted the same way.

"First published" is Pub/Sub's publish time, or the ``published_at`` attribute
a re-published countdown carries (its copy has a new publish time). Every one
of these is wall-clock time: producers, workers and Pub/Sub need clocks in sync
(NTP), as Celery's ETAs already do.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from .errors import ConfigurationError

#: Attribute: the absolute deadline stamped at publish (ISO 8601, UTC, milliseconds).
EXPIRES_AT = "expires_at"
#: Attribute: which limit set ``expires_at`` (e.g. "expiration of 5s").
EXPIRY = "expiry"
#: Attribute: when a re-published copy's original was published (ISO 8601, UTC).
PUBLISHED_AT = "published_at"
#: Queue argument: the message TTL in milliseconds, as on RabbitMQ.
TTL_ARGUMENT = "x-message-ttl"


@dataclasses.dataclass(frozen=True)
class Limit:
    """One deadline a message must be handed over by, and what set it."""

    deadline: datetime.datetime
    what: str


def queue_ttl(queue: str, arguments: Mapping[str, Any] | None) -> float | None:
    """The message TTL, seconds, in a queue's declare arguments; raise ConfigurationError if invalid."""
    raw = (arguments or {}).get(TTL_ARGUMENT)
    if raw is None:
        return None
    try:
        milliseconds = float(raw)
    except (TypeError, ValueError):
        milliseconds = -1.0
    if isinstance(raw, bool) or not milliseconds >= 0:  # also refuses NaN
        raise ConfigurationError(
            f"queue {queue!r} declared with {TTL_ARGUMENT}={raw!r}; give a number of milliseconds "
            "≥ 0 (or Queue(..., message_ttl=seconds))")
    return milliseconds / 1000


def expiration(payload: Mapping[str, Any]) -> float | None:
    """The message's own ``expiration`` property, seconds (Kombu sends milliseconds as text).

    A value that is not a number of milliseconds ≥ 0 counts as no expiration, as
    AMQP clients cannot send one.
    """
    raw = (payload.get("properties") or {}).get("expiration")
    if raw is None or isinstance(raw, bool):
        return None
    try:
        milliseconds = float(raw)
    except (TypeError, ValueError):
        return None
    return milliseconds / 1000 if milliseconds >= 0 else None


def stamp(payload: Mapping[str, Any], ttl: float | None, now: datetime.datetime) -> dict[str, str]:
    """Attributes for a message being published: its absolute deadline, if it has one."""
    limits = [(seconds, what) for seconds, what in ((expiration(payload), "expiration"),
                                                    (ttl, "queue message TTL"))
              if seconds is not None]
    if not limits:
        return {}
    seconds, what = min(limits, key=lambda limit: limit[0])
    deadline = now + datetime.timedelta(seconds=seconds)
    return {EXPIRES_AT: _iso(deadline), EXPIRY: f"{what} of {seconds:g}s"}


def carried(attributes: Mapping[str, str], published: datetime.datetime | None) -> dict[str, str]:
    """The attributes of a copy being re-published: its original's publish time kept."""
    copy = dict(attributes)
    if published is not None and PUBLISHED_AT not in copy:
        copy[PUBLISHED_AT] = _iso(published)
    return copy


def limits(payload: Mapping[str, Any], attributes: Mapping[str, str],
           published: datetime.datetime | None, ttl: float | None) -> list[Limit]:
    """Every deadline that applies to a pulled message (none: it never expires)."""
    found = []
    stamped = _parse(attributes.get(EXPIRES_AT))
    if stamped is not None:
        found.append(Limit(stamped, attributes.get(EXPIRY) or "expires_at attribute"))
    origin = first_published(attributes, published)
    if origin is not None:
        for seconds, what in ((expiration(payload), "expiration"), (ttl, "queue message TTL")):
            if seconds is not None:
                found.append(Limit(origin + datetime.timedelta(seconds=seconds),
                                   f"{what} of {seconds:g}s"))
    return found


def first_published(attributes: Mapping[str, str],
                    published: datetime.datetime | None) -> datetime.datetime | None:
    """When the message was first published: its ``published_at`` attribute, else Pub/Sub's time."""
    return _parse(attributes.get(PUBLISHED_AT)) or published


def check(payload: Mapping[str, Any], attributes: Mapping[str, str],
          published: datetime.datetime | None, ttl: float | None,
          handover: datetime.datetime, at_eta: bool = False) -> str | None:
    """Why a message handed over at `handover` would be expired (the morgue reason), or None."""
    found = limits(payload, attributes, published, ttl)
    if not found:
        return None
    earliest = min(found, key=lambda limit: limit.deadline)
    if handover <= earliest.deadline:
        return None
    when = " at its ETA" if at_eta else ""
    origin = first_published(attributes, published)
    if origin is None:
        late = (handover - earliest.deadline).total_seconds()
        return f"expired: {late:.1f}s past its {earliest.what}{when}"
    age = (handover - origin).total_seconds()
    return f"expired: {age:.1f}s old{when}, over its {earliest.what}"


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds")


def _parse(raw: str | None) -> datetime.datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)
