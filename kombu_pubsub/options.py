"""Transport options: one frozen dataclass, built and validated once per connection.

Celery passes ``broker_transport_options`` as a dict whose values may be strings
(env-style configuration); :meth:`TransportOptions.from_mapping` accepts both and
raises :class:`ConfigurationError` naming the option, the value and the range.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

from .errors import ConfigurationError
from .naming import check_project

DEFAULT_PROJECT = "job_queue"
PROJECT_ENV = "PUBSUB_JOB_QUEUE_PROJECT_ID"
DAY = 86400.0

#: Other names an option is accepted under → its name.
ALIASES = {"publish_timeout": "rpc_timeout"}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True)
class TransportOptions:
    """Every knob of the transport. Seconds are floats; ranges are inclusive."""

    create_missing: bool = True
    """Create topics and subscriptions on first use (race-safe). Off in production
    where they are provisioned; then a missing one is a ResourceMissingError."""

    ack_deadline: float = 30.0
    """Ack deadline given to subscriptions we create and to each lease extension,
    seconds, 10–600. A message held by a killed worker comes back within about this."""

    max_lease: float = 3600.0
    """Longest time a worker keeps a message leased, seconds, 10–86400. After it the
    lease is let go (WARNING) and Pub/Sub redelivers the message."""

    rpc_timeout: float = 20.0
    """Longest time any call to Pub/Sub may take, retries of transient errors included,
    seconds, 0.1–300: delay()/apply_async() raise PublishError past it, other calls
    BrokerUnavailableError. ``publish_timeout`` is accepted as another name for it."""

    fast_publish: bool = False
    """Hand messages to the client's batcher and return at once (no per-call round
    trip). Failures are logged and counted; pending messages are flushed at
    connection close and at interpreter exit, but a crash can lose them."""

    message_retention: float = 7 * DAY
    """How long work subscriptions keep unacked messages, seconds, 600–2678400 (31 days)."""

    subscription_ttl: float = 0.0
    """Idle time after which Pub/Sub deletes a work subscription, seconds; 0 = never
    (the default), else 86400–2678400."""

    temporary_ttl: float = DAY
    """Expiry backstop for temporary subscriptions (reply/broadcast queues), seconds,
    86400–2678400 (Pub/Sub's minimum is one day). They are deleted on close anyway."""

    pull_max_messages: int = 100
    """Most messages one pull may return when no prefetch limit applies, 1–1000."""

    pull_timeout: float = 10.0
    """How long one pull waits on the server for messages, seconds, 1–60."""

    ack_batch_bytes: int = 400_000
    """Most bytes of ack ids in one acknowledge/modify request, 1000–500000
    (Pub/Sub's request limit is 512 KiB)."""

    max_defer_hop: float = 600.0
    """Longest single deferral of a message whose ETA/countdown is not yet due,
    seconds, 10–600 (Pub/Sub's ack deadline cap). Longer delays take several hops."""

    dead_letter_attempts: int = 10
    """max_delivery_attempts of the dead-letter policy that sends work messages to the
    morgue after that many deliveries (a task that kills its worker every time),
    5–100; 0 creates work subscriptions without a dead-letter policy."""

    api_endpoint: str = ""
    """``HOST[:PORT]`` of the Pub/Sub API to call (a regional endpoint such as
    ``us-east1-pubsub.googleapis.com:443``, or an emulator) when the broker URL names
    none; empty: ``PUBSUB_EMULATOR_HOST`` if set, else Google's global endpoint."""

    emulator: bool | None = None
    """Whether the endpoint named by the URL or ``api_endpoint`` is an emulator (plain
    text, no credentials) rather than Google Cloud (TLS, Application Default
    Credentials). Unset (``auto``): Google Cloud when the host ends in
    ``googleapis.com``, an emulator otherwise."""

    priority_steps: tuple[int, ...] = (0, 3, 6, 9)
    """Priority steps of queues declared with a max priority (``x-max-priority``,
    Celery's ``task_queue_max_priority``): one subscription per step, higher
    steps handed to Celery first (see priorities.py). Distinct priorities 0–9,
    starting at 0, as a list or a string ``"0,3,6,9"``; each step holds the
    priorities from its value up to the next step's."""

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None) -> TransportOptions:
        """Build from ``broker_transport_options``; unknown keys used by Kombu itself are ignored."""
        values: dict[str, Any] = {}
        fields = {field.name: field for field in dataclasses.fields(cls)}
        for name, raw in (options or {}).items():
            name = ALIASES.get(name, name)
            if name not in fields:
                continue
            if name == "emulator":
                values[name] = _coerce_auto_bool(name, raw)
            elif name == "api_endpoint":
                values[name] = "" if raw is None else str(raw).strip()
            else:
                values[name] = _coerce(name, raw, fields[name].default)
        result = cls(**values)
        result.validate()
        return result

    def validate(self) -> None:
        """Raise ConfigurationError for the first option out of range."""
        _check_range("ack_deadline", self.ack_deadline, 10, 600)
        _check_range("max_lease", self.max_lease, 10, DAY)
        _check_range("rpc_timeout", self.rpc_timeout, 0.1, 300)
        _check_range("message_retention", self.message_retention, 600, 31 * DAY)
        if self.subscription_ttl:
            _check_range("subscription_ttl", self.subscription_ttl, DAY, 31 * DAY)
        _check_range("temporary_ttl", self.temporary_ttl, DAY, 31 * DAY)
        _check_range("pull_max_messages", self.pull_max_messages, 1, 1000)
        _check_range("pull_timeout", self.pull_timeout, 1, 60)
        _check_range("ack_batch_bytes", self.ack_batch_bytes, 1000, 500_000)
        _check_range("max_defer_hop", self.max_defer_hop, 10, 600)
        if self.dead_letter_attempts:
            _check_range("dead_letter_attempts", self.dead_letter_attempts, 5, 100)
        if self.api_endpoint and not _TARGET_RE.match(self.api_endpoint):
            raise ConfigurationError(
                f"transport option api_endpoint={self.api_endpoint!r} is not an endpoint; "
                "expected HOST or HOST:PORT, e.g. 'us-east1-pubsub.googleapis.com:443' or "
                "'127.0.0.1:8085' (no scheme, no path)")
        _check_steps(self.priority_steps)


def _coerce(name: str, raw: Any, default: Any) -> Any:
    """Turn `raw` into the type of `default` (bool, int or float); strings accepted."""
    try:
        if isinstance(default, tuple):
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(sorted(_coerce(name, item, 0) for item in items))
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            value = float(raw)
            if value != int(value):
                raise ValueError(raw)
            return int(value)
        return float(raw)
    except (TypeError, ValueError):
        kind = {bool: "true/false", tuple: "list of integers"}.get(type(default), type(default).__name__)
        raise ConfigurationError(
            f"transport option {name}={raw!r} is not a valid {kind}"
        ) from None


def _coerce_auto_bool(name: str, raw: Any) -> bool | None:
    """True, False, or None for "auto" (also None and the empty string)."""
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "auto")):
        return None
    try:
        return _coerce(name, raw, False)
    except ConfigurationError:
        raise ConfigurationError(
            f"transport option {name}={raw!r} is not valid; accepted: true, false or auto"
        ) from None


def _check_steps(steps: tuple[int, ...]) -> None:
    if not steps or steps[0] != 0 or steps[-1] > 9 or len(set(steps)) != len(steps):
        raise ConfigurationError(
            f"transport option priority_steps={list(steps)!r} is not valid; accepted: distinct "
            "priorities 0 to 9 starting at 0, e.g. [0, 3, 6, 9]")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigurationError(
            f"transport option {name}={value!r} is out of range; accepted: {low:g} to {high:g}"
        )


#: HOST or HOST:PORT; an IPv6 host in brackets.
_TARGET_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?$")

URL_FORMS = ("expected pubsub://PROJECT, pubsub://HOST[:PORT]/PROJECT, or pubsub:// with "
             "PUBSUB_JOB_QUEUE_PROJECT_ID set")


@dataclasses.dataclass(frozen=True)
class BrokerAddress:
    """What a ``pubsub://`` URL names: a project, and perhaps the endpoint to reach it at."""

    project: str
    target: str | None = None
    """``HOST[:PORT]`` from the URL, or None when the URL names no endpoint."""


def parse_url(
    hostname: str | None, port: int | None = None, userid: str | None = None,
    password: str | None = None, virtual_host: str | None = None,
) -> BrokerAddress:
    """The project and endpoint a ``pubsub://`` URL names (from Kombu's parsed URL parts).

    A URL with a path names an endpoint and a project, ``pubsub://HOST[:PORT]/PROJECT``;
    one without a path names a project only, ``pubsub://PROJECT``. ``pubsub://`` and
    ``pubsub:///PROJECT`` name no endpoint; ``pubsub://`` takes
    ``$PUBSUB_JOB_QUEUE_PROJECT_ID``, else ``job_queue``.
    """
    if userid or password:
        raise ConfigurationError(
            f"broker URL has a user or password, which Pub/Sub does not use; {URL_FORMS}")
    if port and not hostname:
        raise ConfigurationError(f"broker URL has a port but no host; {URL_FORMS}")
    path = (virtual_host or "").strip("/")
    if not path:
        if port:
            raise ConfigurationError(
                f"broker URL pubsub://{_join(hostname or '', port)} has a port but no project; "
                f"write pubsub://{_join(hostname or 'HOST', port)}/<project-id> to use that "
                f"endpoint ({URL_FORMS})")
        if hostname and "." in hostname:
            # Project ids have no dots (legacy "example.com:p" ids cannot sit in a URL's host).
            raise ConfigurationError(
                f"broker URL pubsub://{_join(hostname, None)} names a project, and "
                f"{hostname!r} looks like a host; to use that endpoint write "
                f"pubsub://{_join(hostname, None)}/<project-id> ({URL_FORMS})")
        return BrokerAddress(check_project(hostname or os.environ.get(PROJECT_ENV) or DEFAULT_PROJECT))
    if "/" in path:
        raise ConfigurationError(
            f"broker URL has the path {virtual_host!r}; the path is one project id ({URL_FORMS})")
    return BrokerAddress(check_project(path), _join(hostname, port) if hostname else None)


def _join(host: str, port: int | None) -> str:
    """HOST[:PORT], an IPv6 host in brackets."""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port else host
