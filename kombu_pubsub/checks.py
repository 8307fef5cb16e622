"""Checks of pulled messages before any consumer sees them: which must go to the morgue.

Kombu and Celery handle a bad message in the worker's main loop, where it
either raises (the worker exits and gets the message back on restart: a crash
loop until the dead-letter policy gives up) or is acked and dropped. These
checks name such a message's problem, so the channel buries it instead.
What Celery 5.7's worker does with each (seen with a real worker on the
emulator; ``tests/integration/test_faults.py``) and what happens here::

    message                                   Celery 5.7 alone                 here
    body not base64, unknown body_encoding    worker exits ("Unrecoverable")   refused (any consumer)
    JSON content type, body not JSON          acked and dropped                refused (any consumer)
    content type not in accept_content        rejected                         refused (installed app)
    'task' header but no 'id' header          worker exits                     refused (installed app)
    body not [args, kwargs, embed]            worker exits, or dropped         refused (installed app)
    no 'task' header, body a protocol 1 task  runs it                          delivered: it is valid
    no 'task' header, protocol 1 without id   worker exits, or runs as None    refused (installed app)
    no 'task' header, anything else           rejected ("unknown message")     rejected → morgue
    unknown task                              rejected, result marked failed   rejected → morgue

Only JSON bodies are decoded here (never pickle): other accepted serializers
are left to Celery.
"""

from __future__ import annotations

import json
from typing import Any

from . import wire

JSON_CONTENT_TYPE = "application/json"
#: What json_body returns for a message whose content type is not JSON: not decoded.
NOT_DECODED: Any = object()


def json_body(payload: dict[str, Any]) -> Any:
    """The decoded body of a JSON message, NOT_DECODED for other content types.

    Raises UndecodableMessage when the body cannot be undone or is not JSON.
    Decoded as plain JSON: Kombu's type markers are JSON objects too.
    """
    data = wire.body(payload)
    if payload.get("content-type") != JSON_CONTENT_TYPE:
        return NOT_DECODED
    if not data:
        return data  # as Kombu's loader: an empty body stays empty
    try:
        # The json module, not Kombu's serializer registry: an app may have disabled JSON
        # there (app.setup_security()), and this only looks at the message's shape.
        return json.loads(data.decode(payload.get("content-encoding") or "utf-8"))
    except (UnicodeDecodeError, LookupError, ValueError):
        raise wire.UndecodableMessage(
            f"message body is not valid JSON (content type {JSON_CONTENT_TYPE!r})") from None


def malformed_task(payload: dict[str, Any], body: Any) -> str | None:
    """Why Celery 5.7's worker would exit on, or drop, this task message; None if it looks sound.

    Celery reads a task message in its main loop: the 'id' header, and the body
    unpacked into exactly (args, kwargs, embed). A message with no 'task' header
    and no task in its body is not a task message (remote control, a reply):
    never refused here.
    """
    headers = payload.get("headers") or {}
    if "task" in headers:
        task = headers["task"]
        if not isinstance(task, str):
            return f"task message whose 'task' header {task!r} is not a task name"
        if not isinstance(headers.get("id"), str):
            return f"task message {task!r} without an 'id' header"
        return None if body is NOT_DECODED else _protocol2_problem(task, body)
    if isinstance(body, dict) and "task" in body:
        return _protocol1_problem(body, headers)
    return None


def _protocol2_problem(task: str, body: Any) -> str | None:
    if isinstance(body, dict) and "args" in body:  # Celery's "hybrid": a protocol 1 body
        args, kwargs, embed = body["args"], body.get("kwargs", {}), None
    elif isinstance(body, list) and len(body) == 3:
        args, kwargs, embed = body
    else:
        return f"task message {task!r} whose body is not [args, kwargs, embed] but {_kind(body)}"
    if not isinstance(args, list) or not isinstance(kwargs, dict) or (embed and not isinstance(embed, dict)):
        return (f"task message {task!r} whose body is not [args, kwargs, embed] but "
                f"[{_kind(args)}, {_kind(kwargs)}, {_kind(embed)}]")
    return None


def _protocol1_problem(body: dict[str, Any], headers: dict[str, Any]) -> str | None:
    """A body naming a task, without a 'task' header: Celery's protocol 1, which it still runs.

    Celery takes the id from the body, or, when the body has 'args', from the
    message headers too; an id in neither place makes the worker exit (or run
    the task as id None).
    """
    task_id = body.get("id") or (headers.get("id") if "args" in body else None)
    if not isinstance(body["task"], str) or not isinstance(task_id, str):
        return "no 'task' header, and the body is not a protocol 1 task message ('task' and 'id' strings)"
    if not isinstance(body.get("args", []), list) or not isinstance(body.get("kwargs", {}), dict):
        return "protocol 1 task message whose 'args' is not a list or whose 'kwargs' is not an object"
    return None


def _kind(value: Any) -> str:
    """A JSON value's kind, for reasons (never the value: it may be a payload)."""
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null", bytes: "empty"}
    return kinds.get(type(value), type(value).__name__)


def task_name(payload: dict[str, Any]) -> str | None:
    """The task a message asks for: its 'task' header, or the 'task' of a protocol 1 body."""
    name = (payload.get("headers") or {}).get("task")
    if name is None:
        try:
            body = json_body(payload)
        except wire.UndecodableMessage:
            return None
        name = body.get("task") if isinstance(body, dict) else None
    return name if isinstance(name, str) else None
