"""Which pulled messages are refused into the morgue before a consumer sees them (no I/O)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kombu_pubsub import checks, wire

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def envelope(body: Any, content_type: str = "application/json", headers: dict | None = None,
             body_encoding: str | None = "base64") -> dict[str, Any]:
    """A Kombu envelope; `body` as bytes is encoded the way Kombu's virtual transports do."""
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode() if body_encoding == "base64" else body.decode()
    return {"body": body, "content-type": content_type, "content-encoding": "utf-8",
            "headers": headers if headers is not None else {},
            "properties": {"body_encoding": body_encoding, "delivery_info": {}}}


def task(name: str = "app.add", **extra: Any) -> dict[str, Any]:
    return {"task": name, "id": "4c1b", **extra}


def refusal(payload: dict[str, Any]) -> str | None:
    try:
        body = checks.json_body(payload)
    except wire.UndecodableMessage as exc:
        return exc.reason
    return checks.malformed_task(payload, body)


@pytest.mark.parametrize(("payload", "reason"), [
    # sound messages: delivered
    (envelope(json.dumps([[1, 2], {}, EMBED]).encode(), headers=task()), None),
    (envelope(json.dumps([[], {"x": 1}, None]).encode(), headers=task()), None),
    (envelope(json.dumps({"args": [1], "kwargs": {}}).encode(), headers=task()), None),  # hybrid
    (envelope(json.dumps(task(args=[1], kwargs={})).encode()), None),  # protocol 1
    (envelope(json.dumps({"method": "ping", "arguments": {}}).encode()), None),  # remote control
    (envelope(b"\x80\x04pickle", "application/x-python-serialize", task()), None),  # not ours to decode
    (envelope(b'{"i": 0}', body_encoding=None), None),
    # Kombu cannot undo the body: the worker would exit
    (envelope("!!!not base64!!!", headers=task()), "not valid base64"),
    (envelope("abc", headers=task(), body_encoding="rot13"), "body_encoding 'rot13' is unknown"),
    (envelope(12345, headers=task()), "body is a JSON int, not a string"),
    # a JSON content type whose body is not JSON: Celery would ack and drop it
    (envelope(b"not json", headers=task()), "not valid JSON"),
    (envelope(b"not json"), "not valid JSON"),
    (envelope(b"\xff\xfe", headers=task()), "not valid JSON"),
    # task messages Celery's worker would exit on, or drop
    (envelope(b'"hello"', headers=task()), "not [args, kwargs, embed] but a string"),
    (envelope(b"{}", headers=task()), "not [args, kwargs, embed] but an object"),
    (envelope(b"[1, 2]", headers=task()), "not [args, kwargs, embed] but an array"),
    (envelope(b"", headers=task()), "not [args, kwargs, embed] but empty"),
    (envelope(b"[1, {}, {}]", headers=task()), "but [a number, an object, an object]"),
    (envelope(b"[[], {}, 5]", headers=task()), "but [an array, an object, a number]"),
    (envelope(b"[[], {}, {}]", headers={"task": "app.add"}), "without an 'id' header"),
    (envelope(b"[[], {}, {}]", headers={"task": ["x"], "id": "1"}), "is not a task name"),
    (envelope(json.dumps({"task": "app.add", "args": []}).encode()), "not a protocol 1 task message"),
    (envelope(json.dumps({"task": "app.add"}).encode(), headers={"id": "1"}), "not a protocol 1 task"),
    (envelope(json.dumps({"task": "app.add", "args": []}).encode(), headers={"id": "1"}), None),
    (envelope(json.dumps(task(kwargs=[1])).encode()), "'kwargs' is not an object"),
])
def test_messages_celery_would_crash_on_or_drop_are_refused_with_a_reason(payload, reason):
    found = refusal(payload)
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


def test_a_reason_never_quotes_the_payload():
    secret = "hunter2-4f1a"
    payload = envelope(json.dumps([secret, {}, {}]).encode(), headers=task())
    reason = refusal(payload)
    assert reason and secret not in reason


@pytest.mark.parametrize(("payload", "name"), [
    (envelope(b"[[], {}, {}]", headers=task("app.mul")), "app.mul"),
    (envelope(json.dumps(task("app.sub")).encode()), "app.sub"),
    (envelope(b'{"hello": "world"}'), None),
    (envelope(b"not json"), None),
])
def test_task_name_comes_from_the_header_or_a_protocol_1_body(payload, name):
    assert checks.task_name(payload) == name


def test_wire_body_undoes_base64_like_kombu():
    assert wire.body(envelope(b"hello")) == b"hello"
    assert wire.body(envelope(b"hello", body_encoding=None)) == b"hello"
    assert wire.body(envelope("")) == b""
