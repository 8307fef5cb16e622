"""Which threading the process runs on, for Celery's gevent and eventlet pools.

Those pools monkey-patch ``threading``. Under gevent, gRPC cooperates once
``grpc.experimental.gevent.init_gevent()`` has run (:func:`prepare_grpc`, called
before any client is made), so engine threads may be greenlets. Eventlet has no
such hook: a blocking gRPC call in a green thread stalls every green thread of
the process. So under eventlet the engine's threads and the locks they share
come from the unpatched modules (:func:`unpatched`), and a gRPC call made from
a green thread (a task publishing a retry) runs on eventlet's OS thread pool
(:func:`offload`). Nothing here is needed in a default process.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from types import ModuleType
from typing import TypeVar

T = TypeVar("T")


def _eventlet_patched() -> bool:
    eventlet = sys.modules.get("eventlet.patcher")
    return eventlet is not None and eventlet.is_monkey_patched("thread")


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


def environment() -> str:
    """'eventlet', 'gevent' or 'default': which threading the process runs on."""
    if _eventlet_patched():
        return "eventlet"
    if _gevent_patched():
        return "gevent"
    return "default"


def unpatched(name: str) -> ModuleType:
    """Module `name` as the standard library has it (unpatched under eventlet): ``threading``
    for OS threads and their locks, ``queue`` for queues they block on."""
    if _eventlet_patched():
        import eventlet.patcher

        return eventlet.patcher.original(name)
    return importlib.import_module(name)


def os_threading() -> ModuleType:
    """The ``threading`` module whose threads are OS threads."""
    return unpatched("threading")


_grpc_prepared = False


def prepare_grpc() -> None:
    """Make gRPC cooperate with gevent when the process is patched; call before any client exists.

    Idempotent. Under eventlet nothing is needed: engine threads are OS threads.
    """
    global _grpc_prepared
    if _grpc_prepared or not _gevent_patched():
        return
    from grpc.experimental import gevent as grpc_gevent

    grpc_gevent.init_gevent()
    _grpc_prepared = True


def offload(function: Callable[..., T], *args: object) -> T:
    """Run a blocking gRPC call from the calling green thread without stalling the hub.

    Under eventlet the call runs on eventlet's pool of OS threads; elsewhere it
    runs here (gevent's gRPC is cooperative once prepared).
    """
    if _eventlet_patched():
        from eventlet import tpool

        return tpool.execute(function, *args)
    return function(*args)

