"""The hand-off of a stop request from Celery's signal handler to a thread that may take locks.

Celery tells the transport that the worker is stopping from inside its SIGTERM
handler (under gevent, inside the hub), where taking a lock can deadlock and
blocking raises. The handler only writes one byte to a pipe; this thread wakes
and gives back what the worker prefetched but will not run. The consuming
thread cannot always do it: with the blocking loop it may be stuck handing a
task to a full pool (gevent, eventlet), or running one (solo).
"""

from __future__ import annotations

import select
from collections.abc import Callable

from .. import pools
from .inbox import Doorbell
from .threads import EngineThread

THREAD_NAME = "kombu-pubsub-stop"


class StopSignal(EngineThread):
    """Owns the thread that runs `on_stop` once, when :meth:`request` is called."""

    def __init__(self, on_stop: Callable[[], None], on_crash: Callable[[BaseException], None]) -> None:
        super().__init__(THREAD_NAME, on_crash)
        self._on_stop = on_stop
        self._bell = Doorbell()
        # The thread is a greenlet under gevent (its select is cooperative), an OS thread
        # elsewhere (under eventlet the standard select, not eventlet's green one).
        self._select = select.select if pools.environment() == "gevent" else pools.unpatched("select").select
        self.requested = False

    def request(self) -> None:
        """Ask for `on_stop` to run (signal handlers too: no lock, one write). Idempotent."""
        if not self.requested:
            self.requested = True
            self._bell.ring()

    def wake(self) -> None:
        self._bell.ring()

    def step(self) -> bool:
        """Stop thread: wait for a request (or the engine closing), run `on_stop` once, end."""
        self._select([self._bell.fileno()], [], [])
        if self.requested and not self.stopped:
            self._on_stop()
        return False

    def close(self) -> None:
        """Close the pipe (after join)."""
        self._bell.close()
