"""Calling Pub/Sub with a time bound, and turning its errors into ours.

Every RPC we make goes through :func:`call`: transient errors are retried with
backoff until the deadline, then raised as our error classes (see errors.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry

from ..errors import as_kombu_error, is_transient

T = TypeVar("T")

#: Backoff between retries of a transient error, seconds (first, cap, factor).
BACKOFF = (0.05, 1.0, 2.0)


def retry_within(deadline: float) -> Retry:
    """A Retry of transient errors that gives up after `deadline` seconds."""
    initial, maximum, multiplier = BACKOFF
    return Retry(predicate=is_transient, initial=initial, maximum=maximum,
                 multiplier=multiplier, timeout=deadline)


class Budget:
    """One time bound across retries while Pub/Sub is unreachable.

    Kombu's ``Connection.ensure`` (and so Celery's ``apply_async``) retries a
    connection error a few times; if each attempt waited the full
    ``rpc_timeout`` the caller would wait several times that. So after a
    call fails, later calls only get what is left of the bound counted from when
    that call *started* (at least MIN_ATTEMPT seconds, to keep probing), until a
    call succeeds again.
    """

    #: Shortest wait given to a call while Pub/Sub is known to be failing, seconds.
    MIN_ATTEMPT = 0.2

    def __init__(self, total: float) -> None:
        self.total = total
        # Guards _failing_since: RPCs run on the caller's and on background threads.
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._answered = False

    def deadline(self) -> float:
        with self._lock:
            if self._failing_since is None:
                return self.total
            return max(self.MIN_ATTEMPT, self.total - (time.monotonic() - self._failing_since))

    @property
    def unproven(self) -> bool:
        """True until a call first got an answer, and from a transient failure until a
        call gets one again: a new connection should check that Pub/Sub answers."""
        with self._lock:
            return not self._answered or self._failing_since is not None

    def succeeded(self) -> None:
        with self._lock:
            self._failing_since = None
            self._answered = True

    def failed(self, started: float) -> None:
        """Record a transient failure of a call that began at monotonic time `started`."""
        with self._lock:
            if self._failing_since is None:
                self._failing_since = started


def call(method: Callable[..., T], doing: str, budget: Budget, **request: Any) -> T:
    """Call a GAPIC `method` with `request`, retrying transient errors within the budget.

    Raises our PubSubError subclasses; NotFound and AlreadyExists pass through
    untouched because callers decide what those mean.
    """
    deadline = budget.deadline()
    started = time.monotonic()
    try:
        result = method(request=request, retry=retry_within(deadline), timeout=deadline)
    except (gexc.NotFound, gexc.AlreadyExists):
        budget.succeeded()
        raise
    except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
        if is_transient(exc):
            budget.failed(started)
        raise as_kombu_error(exc, doing) from exc
    budget.succeeded()
    return result


_budgets: dict[tuple[str, str, float], Budget] = {}
_budgets_lock = threading.Lock()


def budget_for(target: str, project: str, total: float) -> Budget:
    """The process-wide Budget for a project at an endpoint (``HOST:PORT``): kombu makes
    a new transport on each reconnect, and the bound must hold across them; an
    alternate endpoint has a bound of its own."""
    key = (target, project, total)
    with _budgets_lock:
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = Budget(total)
        return budget
