"""`celery pubsub …`: operator commands, added to Celery's CLI by the `celery.commands` entry point."""

from __future__ import annotations

from typing import Any

import click

from .errors import PubSubError
from .morgue_tools import Entry, Morgue


@click.group(name="pubsub")
def pubsub() -> None:
    """Google Cloud Pub/Sub tools (kombu_pubsub)."""


@pubsub.group()
def morgue() -> None:
    """Jobs that failed for good and messages that could not be processed."""


def _app(ctx: click.Context) -> Any:
    return ctx.obj.app


@morgue.command(name="list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """One line per entry: time, task, queue, reason, id."""
    with Morgue(_app(ctx)) as graveyard:
        entries = graveyard.entries()
    for entry in entries:
        click.echo(f"{entry.buried_at}  {entry.task or '-'}  {entry.queue or '-'}  "
                   f"{entry.reason}  id={entry.task_id or entry.message_id}")
    click.echo(f"{len(entries)} message(s) in the morgue.")


@morgue.command()
@click.argument("ident")
@click.pass_context
def show(ctx: click.Context, ident: str) -> None:
    """Everything about one entry (by task id or Pub/Sub message id)."""
    with Morgue(_app(ctx)) as graveyard:
        try:
            entry = graveyard.find(ident)
        except KeyError as exc:
            raise click.ClickException(str(exc.args[0])) from None
    _show(entry)


def _show(entry: Entry) -> None:
    click.echo(f"message id: {entry.message_id}\ntask: {entry.task}\ntask id: {entry.task_id}\n"
               f"queue: {entry.queue}\nburied at: {entry.buried_at}\nreason: {entry.reason}")
    record = entry.record
    if record is not None:
        click.echo(f"args: {record['args']!r}\nkwargs: {record['kwargs']!r}\n"
                   f"executions: {record['executions']}\n{record['exception']['traceback']}")
    else:
        click.echo(f"data ({len(entry.data)} bytes): {entry.data[:2000]!r}")


@morgue.command()
@click.argument("ident", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every entry.")
@click.pass_context
def replay(ctx: click.Context, ident: str | None, replay_all: bool) -> None:
    """Re-enqueue an entry (or --all) to its queue with retries reset."""
    if bool(ident) == replay_all:
        raise click.UsageError("give one ID or --all")
    with Morgue(_app(ctx)) as graveyard:
        try:
            replayed = graveyard.replay(None if replay_all else ident)
        except KeyError as exc:
            raise click.ClickException(str(exc.args[0])) from None
        except PubSubError as exc:
            raise click.ClickException(str(exc)) from None
    for entry in replayed:
        click.echo(f"replayed {entry.task or entry.message_id} to {entry.queue}")
    click.echo(f"{len(replayed)} message(s) replayed.")


@morgue.command()
@click.pass_context
def purge(ctx: click.Context) -> None:
    """Delete everything in the morgue."""
    with Morgue(_app(ctx)) as graveyard:
        count = graveyard.purge()
    click.echo(f"Purged {count} message(s) from the morgue.")
