"""The engine's threads: OS threads under every worker pool (see pools.py), each supervised.

:class:`EngineThread` runs one background activity. An exception that escapes
its step is logged once, with its traceback, and handed to ``on_crash`` (the
engine reports it to Celery as a lost connection, so the worker reconnects):
a helper never dies in silence while the worker looks healthy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..pools import os_threading, unpatched

__all__ = ["EngineThread", "os_threading", "unpatched"]

logger = logging.getLogger(__name__)


class EngineThread:
    """Owns one named thread that calls ``step()`` until stopped; ``step`` returns False to end.

    ``start()`` and ``stop()`` are idempotent; a stopped thread is never started again.
    """

    def __init__(self, name: str, on_crash: Callable[[BaseException], None]) -> None:
        self.name = name
        self._on_crash = on_crash
        threads = os_threading()
        self._stop = threads.Event()
        self._thread: threading.Thread | None = None
        self._thread_class = threads.Thread

    def step(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = self._thread_class(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end after its current step (any thread)."""
        self._stop.set()
        self.wake()

    def wake(self) -> None:
        """Interrupt a wait of the thread's step, if it waits on something else than `_stop`."""

    def join(self, timeout: float) -> None:
        thread = self._thread
        if thread is not None and timeout > 0 and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        """The thread: step until stopped; an escaped exception is logged once and reported."""
        try:
            while not self._stop.is_set():
                if not self.step():
                    break
        except BaseException as exc:  # noqa: BLE001 - reported, never silent
            logger.error("Thread %s stopped on an unexpected error; the worker reconnects.",
                         self.name, exc_info=True)
            self._stop.set()
            self._on_crash(exc)
