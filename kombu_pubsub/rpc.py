"""Calling Pub/Sub with a time bound, and turning its errors into ours.

Every RPC we make goes through :func:`call`: transient errors are retried with
backoff until the deadline, then raised as our error classes (see errors.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry

from .errors import as_kombu_error, is_transient

T = TypeVar("T")

#: Backoff between retries of a transient error, seconds (first, cap, factor).
BACKOFF = (0.05, 1.0, 2.0)


def retry_within(deadline: float) -> Retry:
    """A Retry of transient errors that gives up after `deadline` seconds."""
    initial, maximum, multiplier = BACKOFF
    return Retry(predicate=is_transient, initial=initial, maximum=maximum,
                 multiplier=multiplier, timeout=deadline)


def call(method: Callable[..., T], doing: str, deadline: float, **request: Any) -> T:
    """Call a GAPIC `method` with `request`, retrying transient errors for `deadline` seconds.

    Raises our PubSubError subclasses; NotFound and AlreadyExists pass through
    untouched because callers decide what those mean.
    """
    try:
        return method(request=request, retry=retry_within(deadline), timeout=deadline)
    except (gexc.NotFound, gexc.AlreadyExists):
        raise
    except gexc.GoogleAPICallError as exc:
        raise as_kombu_error(exc, doing) from exc
    except gexc.RetryError as exc:
        raise as_kombu_error(exc, doing) from exc
