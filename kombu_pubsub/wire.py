"""Kombu message ↔ Pub/Sub message, the format on the wire.

A Pub/Sub message's ``data`` is the UTF-8 JSON of Kombu's virtual-transport
envelope (``body`` — base64 unless ``body_encoding`` says otherwise —
``content-type``, ``content-encoding``, ``headers``, ``properties``), the same
envelope every Kombu virtual transport stores. Attributes carry a copy of the
task name and id (for the console and morgue listings), never the payload, and
``priority``, the message's priority when above 0 (clamped to 9, as Kombu does),
which routes it to a priority step (priorities.py); the channel adds the expiry
stamp (expiry.py). Headers and properties must be JSON: anything else raises
Kombu's ``EncodeError`` naming the header, as Kombu's own serializers do for a body.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from kombu.exceptions import EncodeError

from .errors import MessageTooLargeError

#: Pub/Sub refuses messages over 10 MB (data + attributes); keep 10 KB for attributes.
MAX_DATA_BYTES = 10_000_000 - 10_000
#: Pub/Sub attribute values are at most 1024 bytes.
MAX_ATTRIBUTE_BYTES = 1024
FORMAT_ATTRIBUTE = "kombu_pubsub"
FORMAT_VERSION = "1"
PRIORITY_ATTRIBUTE = "priority"
#: Kombu's virtual transports clamp priorities to 0–9 (virtual.Channel.max_priority).
MAX_PRIORITY = 9


class UndecodableMessage(ValueError):
    """A Pub/Sub message whose data is not a Kombu envelope; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(envelope: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """Return (data, attributes) for a Kombu envelope.

    Raise EncodeError when a header or property is not JSON, MessageTooLargeError when over 10 MB.
    """
    try:
        data = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:  # ValueError: a circular reference
        raise EncodeError(_unencodable(envelope, exc)) from exc
    if len(data) > MAX_DATA_BYTES:
        raise MessageTooLargeError(
            f"message of {len(data)} bytes exceeds Pub/Sub's 10 MB limit; "
            "pass a reference (e.g. a Cloud Storage URL) instead of the data itself"
        )
    attributes = {FORMAT_ATTRIBUTE: FORMAT_VERSION}
    headers = envelope.get("headers") or {}
    for key, value in headers.items():
        if (key in ("task", "id") or key.startswith("morgue_")) and isinstance(value, str):
            attributes[key] = _clip(value)
    priority = (envelope.get("properties") or {}).get("priority")
    if priority:
        _add_priority(attributes, priority)
    return data, attributes


def _add_priority(attributes: dict[str, str], priority: Any) -> None:
    try:
        value = min(int(priority), MAX_PRIORITY)
    except (TypeError, ValueError):
        return  # Kombu itself treats such a priority as the default: no attribute
    if value > 0:
        attributes[PRIORITY_ATTRIBUTE] = str(value)


def decode(data: bytes) -> dict[str, Any]:
    """Return the Kombu envelope in `data`, or raise UndecodableMessage saying why."""
    if not data:
        raise UndecodableMessage("empty message data")
    try:
        envelope = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise UndecodableMessage("message data is not UTF-8 JSON") from None
    if not isinstance(envelope, dict):
        raise UndecodableMessage("message JSON is not an object (Kombu envelope)")
    properties = envelope.get("properties")
    if not isinstance(properties, dict) or "body" not in envelope:
        raise UndecodableMessage("message JSON lacks the Kombu envelope keys 'body' and 'properties'")
    if not isinstance(properties.get("delivery_info", {}), dict):
        raise UndecodableMessage("message properties.delivery_info is not an object")
    if not isinstance(envelope.get("headers") or {}, dict):
        raise UndecodableMessage("message headers is not an object")
    return envelope


def body(envelope: dict[str, Any]) -> bytes:
    """The body of a decoded envelope as Kombu hands it to a consumer; raise UndecodableMessage.

    Mirrors ``kombu.transport.virtual.Message``: ``body_encoding`` "base64" (the
    only codec Kombu's virtual transports know) is undone, a text body becomes
    UTF-8. Kombu does this inside ``drain_events``, so a body it cannot undo
    raises out of the worker's loop and Celery exits ("Unrecoverable error");
    checked here first, such a message goes to the morgue instead.
    """
    raw = envelope.get("body")
    if raw is None or raw == "":
        return b""
    if not isinstance(raw, str):
        raise UndecodableMessage(f"message body is a JSON {type(raw).__name__}, not a string")
    encoding = (envelope.get("properties") or {}).get("body_encoding")
    if not encoding:
        return raw.encode("utf-8")
    if encoding != "base64":
        raise UndecodableMessage(f"message body_encoding {encoding!r} is unknown (Kombu knows 'base64')")
    try:
        # Not validate=True: Kombu skips characters outside the alphabet, so do we.
        return base64.b64decode(raw.encode("utf-8"))
    except (binascii.Error, ValueError):
        raise UndecodableMessage("message body is not valid base64 (body_encoding 'base64')") from None


def _unencodable(envelope: dict[str, Any], error: Exception) -> str:
    """Which part of an envelope JSON cannot encode, and what to send instead."""
    advice = "send JSON types only (str, int, float, bool, None, list, dict), e.g. str(value)"
    for part in ("headers", "properties"):
        values = envelope.get(part)
        for key, value in (values.items() if isinstance(values, dict) else ()):
            try:
                json.dumps({key: value})
            except (TypeError, ValueError) as exc:
                kind = "header" if part == "headers" else "message property"
                return (f"{kind} {key!r} cannot be encoded as JSON ({type(value).__name__}: {exc}); "
                        f"{advice}")
    return f"message cannot be encoded as JSON ({error}); {advice}"


def _clip(value: str) -> str:
    encoded = value.encode("utf-8")
    if len(encoded) <= MAX_ATTRIBUTE_BYTES:
        return value
    return encoded[:MAX_ATTRIBUTE_BYTES].decode("utf-8", errors="ignore")
