"""The morgue: where jobs that failed for good and messages that cannot be processed go.

A queue like any other (topic + subscription named ``morgue``, created together
so nothing published there is dropped). Entries arrive these ways, each with
its reason in the ``morgue_reason`` attribute:

* a task that failed its last retry (``install(app)``): a JSON record of the job;
* a message the transport cannot decode, or that is rejected without requeue
  (unknown task included): the message as received;
* a message refused before Celery sees it (:func:`refusal`), one Celery would
  drop or crash its worker on (``checks.py``): the message as received;
* a message Pub/Sub dead-lettered after ``dead_letter_attempts`` deliveries
  (a task that kills its worker each time): the message as received.

A message is acked on its own queue only after the morgue accepted it.
"""

from __future__ import annotations

import datetime
import json
import logging
import traceback as tb
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from kombu import Queue

from . import checks, wire
from .errors import PubSubError
from .pubsub.admin import MORGUE_QUEUE

if TYPE_CHECKING:
    from celery import Celery

    from .pubsub.publisher import Publisher
    from .stats import Stats

logger = logging.getLogger(__name__)

RECORD_CONTENT_TYPE = "application/x-kombu-pubsub-morgue-record+json"
#: Functions installed apps give us to explain a reject: payload → reason or None.
_reject_reasons: list[Callable[[dict[str, Any]], str | None]] = []
#: Functions installed apps give us to refuse a message before Celery sees it
#: (Celery acks, and so loses, a message it cannot decode): payload → reason or None.
#: One per app; a message is refused only when every installed app refuses it.
_refusals: list[Callable[[dict[str, Any]], str | None]] = []
#: Checks of Celery task messages, on once an app is installed: (payload, JSON body) → reason or None.
_task_checks: list[Callable[[dict[str, Any], Any], str | None]] = []


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def bury(publisher: Publisher, topic_path: Callable[[], str], data: bytes, attributes: dict[str, str],
         reason: str, queue: str, stats: Stats) -> bool:
    """Publish a message to the morgue with why it is there; return False if that failed.

    `topic_path` gives the morgue's topic, ensured with its subscription.
    """
    marked = dict(attributes)
    marked.update(morgue_reason=reason[:1024], morgue_queue=queue[:1024], morgue_at=now_iso())
    try:
        publisher.publish(topic_path(), data, marked, awaited=True)
    except (PubSubError, gexc.GoogleAPICallError) as exc:
        logger.error("Could not move a message from %r to the morgue (%s): %s. It stays on "
                     "its queue and will be redelivered.", queue, reason, exc)
        return False
    stats.add("morgued")
    logger.warning("Moved a message from %r to the morgue: %s.", queue, reason)
    return True


def reject_reason(payload: dict[str, Any]) -> str:
    """Why a message was rejected without requeue, as well as we can tell."""
    for explain in _reject_reasons:
        reason = explain(payload)
        if reason:
            return reason
    return "rejected without requeue"


def refusal(payload: dict[str, Any]) -> str | None:
    """Why a message must go to the morgue instead of to Celery, or None to deliver it.

    Every message: a body Kombu cannot undo, or a JSON body that does not parse.
    Once an app is installed, also content types it does not accept and task
    messages Celery would crash on or drop (the table in ``checks.py``).
    """
    try:
        body = checks.json_body(payload)
    except wire.UndecodableMessage as exc:
        return exc.reason
    reasons = [refuse(payload) for refuse in _refusals]
    if reasons and all(reasons):  # no installed app would take it
        return reasons[0]
    for check in _task_checks:
        reason = check(payload, body)
        if reason:
            return reason
    return None


def install(app: Celery) -> None:
    """Send every task of `app` that fails its last retry to the morgue (one line of config).

    Also names the reason when the worker rejects a message for an unknown task,
    and refuses into the morgue, before Celery sees them, messages of a content
    type the app does not accept and task messages Celery would crash on or drop.
    Installing an app again does nothing (one morgue record per failure).
    """
    from celery import signals

    if getattr(app, "_kombu_pubsub_morgue", None) is not None:
        return

    def on_task_failure(sender: Any = None, task_id: str | None = None, exception: Any = None,
                        args: Any = None, kwargs: Any = None, traceback: Any = None,
                        **_: Any) -> None:
        if sender is None or getattr(sender, "app", None) is not app:
            return
        record = failure_record(sender, task_id, exception, args, kwargs, traceback)
        publish_record(app, record)

    def unknown_task(payload: dict[str, Any]) -> str | None:
        name = checks.task_name(payload)
        if name is None:
            return ("not a task message: no 'task' header and no task named in its body "
                    "(Celery rejects it as an unknown message)")
        if name not in app.tasks:
            return f"unknown task {name!r} (not registered in app {app.main!r})"
        return None

    def content_not_accepted(payload: dict[str, Any]) -> str | None:
        accept = app.conf.accept_content or ["json"]
        content_type = payload.get("content-type")
        if _accepted(content_type, accept):
            return None
        return f"content type {content_type!r} not accepted (accept_content={list(accept)!r})"

    signals.task_failure.connect(on_task_failure, weak=False)
    _reject_reasons.append(unknown_task)
    _refusals.append(content_not_accepted)
    if checks.malformed_task not in _task_checks:
        _task_checks.append(checks.malformed_task)
    app._kombu_pubsub_morgue = on_task_failure  # keeps a reference; marks the app as installed


def failure_record(task: Any, task_id: str | None, exception: BaseException | str | None, args: Any,
                   kwargs: Any, traceback: Any) -> dict[str, Any]:
    """The JSON record of a job that failed for good (runs in the worker's pool process).

    Celery hands `exception` as an exception (or its text, or None) and `traceback`
    as a traceback object, its text (used as it is) or None (the exception's own then).
    """
    request = task.request
    delivery_info = getattr(request, "delivery_info", None) or {}
    if isinstance(exception, BaseException):
        kind, message = type(exception).__name__, str(exception)
    else:
        kind, message = None, "" if exception is None else str(exception)
    summary = f"{kind}: {message}" if kind else message or "no exception given"
    return {
        "kind": "task_failed",
        "task": task.name,
        "id": task_id,
        # As the task got them: a malformed message can bring args that are not a list.
        "args": list(args) if isinstance(args, (list, tuple)) else [] if args is None else args,
        "kwargs": dict(kwargs) if isinstance(kwargs, dict) else {} if kwargs is None else kwargs,
        "queue": delivery_info.get("routing_key") or task.app.conf.task_default_queue,
        "executions": int(getattr(request, "retries", 0) or 0) + 1,
        "exception": {"type": kind, "message": message, "traceback": _failure_text(exception, traceback)},
        "failed_at": now_iso(),
        "reason": f"task failed after its last retry: {summary}"[:1024],
    }


def _failure_text(exception: BaseException | str | None, traceback: Any) -> str:
    """The traceback text of a failure, from whichever form Celery handed it in."""
    if isinstance(traceback, str):
        return traceback
    try:
        if isinstance(exception, BaseException):
            if traceback is None:
                return "".join(tb.format_exception(exception))
            return "".join(tb.format_exception(type(exception), exception, traceback))
        frames = "".join(["Traceback (most recent call last):\n", *tb.format_tb(traceback)]) \
            if traceback is not None else ""
    except (AttributeError, TypeError):  # not a traceback: keep the job, lose only the frames
        logger.warning("A failed job's traceback (a %s) cannot be formatted; its morgue record "
                       "has the exception only.", type(traceback).__name__)
        return _failure_text(exception, None)
    return frames + ("" if exception is None else f"{exception}\n")


def publish_record(app: Celery, record: dict[str, Any]) -> None:
    """Publish a failure record to the morgue and wait until it is accepted."""
    headers = {"task": record["task"], "id": record["id"] or "", "morgue_reason": record["reason"],
               "morgue_queue": record["queue"], "morgue_at": record["failed_at"]}
    try:
        with app.producer_or_acquire() as producer:
            producer.publish(json.dumps(record, default=repr), routing_key=MORGUE_QUEUE,
                             declare=[Queue(MORGUE_QUEUE)], content_type=RECORD_CONTENT_TYPE,
                             content_encoding="utf-8", headers=headers, retry=True)
            stats = getattr(getattr(producer.channel, "connection", None), "stats", None)
            if stats is not None:  # a pubsub:// connection: count it for metrics.py
                stats.add("morgued")
    except Exception:  # noqa: BLE001 - a failure here loses the job: say so loudly
        logger.error("Could not move failed job %s[%s] to the morgue; it is lost.",
                     record["task"], record["id"], exc_info=True)
        return
    logger.warning("Moved failed job %s[%s] to the morgue after %d execution(s).",
                   record["task"], record["id"], record["executions"])


def _accepted(content_type: Any, accept: Any) -> bool:
    """Kombu's accept list holds content types or serializer names ('json')."""
    from kombu.serialization import registry

    if not isinstance(content_type, str):
        return False
    names = {registry.name_to_type.get(name, name) for name in accept}
    return content_type in names or content_type == RECORD_CONTENT_TYPE
