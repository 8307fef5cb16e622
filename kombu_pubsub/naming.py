"""Celery names → Pub/Sub resource ids, deterministic and one-to-one.

Pub/Sub ids are 3–255 characters of ``[A-Za-z0-9-_.~+%]``, start with a
letter and must not start with ``goog``. Celery names are freer
(``celery@host.celery.pidbox``, reply queues named by a UUID), so:

1. every character outside ``[A-Za-z0-9-_.+]`` — and ``%`` and ``~`` themselves —
   is written as ``%XX`` (UTF-8, upper-case hex), like a URL;
2. if the result does not start with a letter, is shorter than 3 characters
   or starts with ``goog``, it is prefixed with ``q~``.

Step 1 never produces ``~``, so a prefixed id can never equal an unprefixed
one: two different Celery names never share a topic. An id over 255
characters is refused with :class:`NamingError`. :func:`queue_name` undoes
the mapping (a dead-lettered message names the subscription it came from).

A queue with priorities has one subscription per priority step
(priorities.py): step 0 keeps the queue's own id, step N > 0 is
``<queue id>~p<N>`` (:func:`step_resource_id`). A queue's id holds ``~`` only
in its prefix, at index 1, and a step's mark comes after at least three
characters, so a step id never equals a queue's id.
"""

from __future__ import annotations

import re

from .errors import ConfigurationError, NamingError

MAX_ID_LENGTH = 255
PREFIX = "q~"
#: Between a queue's id and the number of one of its priority steps.
STEP_MARK = "~p"
_STEP_NUMBERS = frozenset("123456789")
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+")

# Real project ids are 6-30 of [a-z0-9-]; the emulator takes more (our default,
# "job_queue", has an underscore) and legacy ids carry "domain.com:". Refuse only
# what can never be a project id: empty, slashes, spaces, upper case, odd symbols.
_PROJECT_RE = re.compile(r"^[a-z][a-z0-9._:-]{0,98}[a-z0-9]$")


def resource_id(name: str) -> str:
    """Return the Pub/Sub topic/subscription id for the Celery queue or exchange `name`."""
    if not isinstance(name, str) or not name:
        raise NamingError(f"queue/exchange name {name!r} is empty; give the queue a name")
    encoded = "".join(
        char if char in _SAFE else "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
        for char in name
    )
    if not encoded[0].isascii() or not encoded[0].isalpha() or len(encoded) < 3 \
            or encoded.lower().startswith("goog"):
        encoded = PREFIX + encoded
    if len(encoded) > MAX_ID_LENGTH:
        raise NamingError(
            f"queue/exchange name {name!r} maps to a Pub/Sub id of {len(encoded)} characters; "
            f"Pub/Sub allows {MAX_ID_LENGTH}. Use a shorter name "
            "(each character outside A-Z a-z 0-9 - _ . + takes 3)."
        )
    return encoded


def step_resource_id(name: str, step: int) -> str:
    """The subscription id of priority step `step` (0–9) of queue `name`; step 0 is the queue's own id."""
    queue_id = resource_id(name)
    if not step:
        return queue_id
    step_id = f"{queue_id}{STEP_MARK}{step}"
    if len(step_id) > MAX_ID_LENGTH:
        raise NamingError(
            f"queue name {name!r} is too long for priorities: its priority step subscription "
            f"{step_id!r} has {len(step_id)} characters; Pub/Sub allows {MAX_ID_LENGTH}. "
            "Use a shorter name.")
    return step_id


def split_step(subscription_id: str) -> tuple[str, int]:
    """(queue name, priority step) of a subscription id; step 0 for a queue's own id.

    The inverse of :func:`step_resource_id`; raises :class:`NamingError` for an id
    neither function makes.
    """
    queue_id, mark, number = subscription_id.rpartition(STEP_MARK)
    if mark and number in _STEP_NUMBERS:
        try:
            return queue_name(queue_id), int(number)
        except NamingError:
            pass  # "q~p3" is the queue "p3", not step 3 of a queue "q"
    return queue_name(subscription_id), 0


def queue_name(pubsub_id: str) -> str:
    """Return the Celery queue or exchange name whose Pub/Sub id is `pubsub_id`.

    The exact inverse of :func:`resource_id`: ``queue_name(resource_id(name)) == name``.
    An id :func:`resource_id` never produces (one made by hand, ``%7e`` in lower
    case, ``q~`` before a name that needs no prefix) raises :class:`NamingError`:
    no queue reads it, and guessing would send two ids to one queue.
    """
    if not isinstance(pubsub_id, str) or not pubsub_id:
        raise NamingError(f"Pub/Sub id {pubsub_id!r} is empty; give a topic or subscription id")
    try:
        name = _unescape(pubsub_id.removeprefix(PREFIX))
    except NamingError as exc:
        raise _not_made_here(pubsub_id, str(exc)) from None
    try:
        again: str | None = resource_id(name)
    except NamingError:  # empty or too long: no id at all
        again = None
    if again != pubsub_id:
        has = "no id" if again is None else f"the id {again!r}"
        raise _not_made_here(pubsub_id, f"the name it spells, {name!r}, has {has}")
    return name


def _not_made_here(pubsub_id: str, why: str) -> NamingError:
    return NamingError(
        f"Pub/Sub id {pubsub_id!r} is not one kombu_pubsub makes from a queue name ({why}), so no "
        "Celery queue reads it; name the queue itself, not its Pub/Sub id"
    )


def _unescape(escaped: str) -> str:
    """Undo step 1: ``%XX`` back to bytes, decoded as UTF-8; NamingError on anything else."""
    data = bytearray()
    index = 0
    while index < len(escaped):
        char = escaped[index]
        if char == "%":
            digits = escaped[index + 1:index + 3]
            if len(digits) != 2 or not all(d in "0123456789ABCDEF" for d in digits):
                raise NamingError(f"{escaped!r} has a '%' not followed by two upper-case hex digits")
            data.append(int(digits, 16))
            index += 3
        elif char in _SAFE:
            data.append(ord(char))
            index += 1
        else:
            raise NamingError(f"{escaped!r} holds {char!r}, which resource_id() always escapes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise NamingError(f"{escaped!r} escapes bytes that are not UTF-8") from None


def check_project(project: str) -> str:
    """Return `project` if it can be a Pub/Sub project id, else raise ConfigurationError."""
    if not isinstance(project, str) or not _PROJECT_RE.match(project):
        raise ConfigurationError(
            f"project id {project!r} is not valid: expected lower-case letters, digits, "
            "'-' or '_' starting with a letter (e.g. 'my-project'); set "
            "PUBSUB_JOB_QUEUE_PROJECT_ID or use pubsub://<project-id>"
        )
    return project


def topic_path(project: str, name: str) -> str:
    """Full topic path for a Celery queue or exchange name."""
    return f"projects/{project}/topics/{resource_id(name)}"


def subscription_path(project: str, name: str) -> str:
    """Full subscription path for a Celery queue name."""
    return f"projects/{project}/subscriptions/{resource_id(name)}"
