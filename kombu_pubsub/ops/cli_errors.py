"""One-line errors on the celery command line: what is wrong and what to do, not a traceback.

One translation, :func:`explain`, serves two ways in:

* ``celery pubsub …`` runs in :class:`OneLineErrors`, a click group that turns an
  error it can explain into a ``click.ClickException``: click prints ``Error: …``
  and exits with status 1;
* Celery's own commands (``celery purge``, ``celery call``) let errors escape click,
  and Kombu re-raises our connection errors as its own ``OperationalError`` on the
  way (``celery inspect`` and ``celery status`` catch it, ``celery purge`` does not), so
  no error class of ours could make click print them briefly. :func:`install` puts
  :func:`explain` in ``sys.excepthook``; it runs when Celery loads the ``pubsub``
  command, that is in every ``celery`` process.

Only errors from kombu_pubsub, Pub/Sub or Google's auth library are explained; any
other exception keeps its traceback (it is a bug to report). With
``KOMBU_PUBSUB_TRACEBACK=1`` every error keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import click
import google.auth.exceptions
from google.api_core import exceptions as gexc
from kombu.exceptions import KombuError

from ..errors import PubSubError, as_kombu_error, missing_credentials

#: Set to 1 to see the traceback of every error (for a bug report).
TRACEBACK_ENV = "KOMBU_PUBSUB_TRACEBACK"

ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]


def explain(exc: BaseException) -> str | None:
    """The one line to print for `exc`, or None when it is not an error of ours to explain.

    Looks at `exc`, then through the errors it was raised ``from`` as long as they
    are Kombu errors (Kombu raises ``OperationalError(str(ours)) from ours``).
    """
    for link in _causes(exc):
        message = _message(link)
        if message is not None:
            return one_line(message)
    return None


def one_line(message: str) -> str:
    """`message` with every run of whitespace, newlines included, as one space."""
    return " ".join(message.split())


def traceback_wanted() -> bool:
    """True when KOMBU_PUBSUB_TRACEBACK asks for tracebacks instead of one line."""
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then its explicit causes while the one before is a Kombu wrapper.

    Only ``__cause__`` is followed: an error raised while handling ours (its
    ``__context__``) is a different failure, and must not be hidden behind ours.
    """
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ if isinstance(link, KombuError) else None


def _message(exc: BaseException) -> str | None:
    if isinstance(exc, PubSubError):
        return str(exc)  # ours already say what to do
    if isinstance(exc, google.auth.exceptions.DefaultCredentialsError):
        return str(missing_credentials(exc))
    if isinstance(exc, google.auth.exceptions.GoogleAuthError):
        return (f"Google Cloud credentials could not be used ({exc}); run 'gcloud auth "
                "application-default login' or check GOOGLE_APPLICATION_CREDENTIALS, "
                "or set PUBSUB_EMULATOR_HOST to use the emulator")
    if isinstance(exc, (gexc.GoogleAPICallError, gexc.RetryError)):
        return str(as_kombu_error(exc, "running the command"))
    return None


class OneLineErrors(click.Group):
    """A click group whose commands, and its sub-groups' commands, report an error
    :func:`explain` knows as one line (``Error: …``, exit status 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            message = None if traceback_wanted() else explain(exc)
            if message is None:
                raise
            raise click.ClickException(message) from exc


def one_line_hook(previous: ExceptHook) -> ExceptHook:
    """An excepthook that prints ``Error: …`` for what :func:`explain` knows, and hands
    anything else to `previous` (Python's: the traceback)."""

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        message = None if traceback_wanted() else explain(exc)
        if message is None:
            previous(kind, exc, tb)
            return
        click.echo(f"Error: {message}", err=True)

    hook.kombu_pubsub = True  # type: ignore[attr-defined]
    return hook


def install() -> None:
    """Make errors of ours that escape any command print as one line; idempotent."""
    if getattr(sys.excepthook, "kombu_pubsub", False) is not True:
        sys.excepthook = one_line_hook(sys.excepthook)
