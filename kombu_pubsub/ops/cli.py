"""`celery pubsub …`: operator commands, added to Celery's CLI by the `celery.commands` entry point.

Every command reports a configuration or connection problem as one line (``Error: …``),
never a traceback: the group is a :class:`~.cli_errors.OneLineErrors`, and loading this
module (Celery does, for every ``celery`` command) installs the same translation for
Celery's own commands (see cli_errors.py).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from ..celery_hooks import COUNTDOWNS_COMMAND
from ..pubsub.admin import MORGUE_QUEUE
from . import cli_errors, countdown_report, queue_report
from .app_queues import app_queues
from .morgue_tools import Entry, Morgue
from .queue_tools import QueueTools, pubsub_connection

cli_errors.install()

#: Why `delete morgue` needs --force.
MORGUE_REFUSAL = (
    "refusing to delete the morgue: it holds the jobs that failed for good ('pubsub morgue list' "
    "shows them) and every work queue's dead-letter policy forwards to its topic; "
    "add --force to delete it anyway")


@click.group(name="pubsub", cls=cli_errors.OneLineErrors)
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


# -- queues ---------------------------------------------------------------------------
def _command(ctx: click.Context) -> str:
    """How the operator invoked celery, for the fixes we print ('celery -A demo_tasks')."""
    app = ctx.find_root().params.get("app")
    return f"celery -A {app}" if isinstance(app, str) and app else "celery"


_extra_queues = click.option("-Q", "--queue", "extra", multiple=True, metavar="QUEUE",
                             help="Also this queue (one only named on a worker's -Q); repeatable.")


@pubsub.command()
@click.option("--all", "every", is_flag=True, help="Also every other subscription in the project.")
@_extra_queues
@click.option("--json", "as_json", is_flag=True, help="Print JSON (durations in seconds).")
@click.pass_context
def queues(ctx: click.Context, every: bool, extra: tuple[str, ...], as_json: bool) -> None:
    """The app's queues and the morgue: topic, subscription, policies, backlog."""
    found = app_queues(_app(ctx), extra)
    with QueueTools(_app(ctx)) as tools:
        infos = tools.describe(found.specs, every)
        backlog = tools.backlog()
        options, where = tools.options, tools.where
    notes = queue_report.footnotes(infos, backlog, options, _command(ctx)) + \
        queue_report.scope_notes(found)
    if as_json:
        click.echo(json.dumps({"where": where, "notes": notes, "queues": [
            queue_report.as_json(info, backlog, options) for info in infos]}, indent=2))
    else:
        rows = [queue_report.row(info, backlog) for info in infos]
        click.echo(f"{where}\n{queue_report.table(rows)}\n")
        click.echo("\n".join(notes))
    if backlog.error:
        click.echo(f"Error: backlog unknown: {backlog.error}", err=True)


@pubsub.command()
@click.option("--timeout", default=1.0, show_default=True, help="Seconds to wait for workers to answer.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def countdowns(ctx: click.Context, timeout: float, as_json: bool) -> None:
    """Countdowns and ETAs pending in Pub/Sub, per queue, as the running workers count them."""
    app = _app(ctx)
    pubsub_connection(app).release()  # refuses another broker, whose workers cannot answer
    replies = app.control.broadcast(COUNTDOWNS_COMMAND, reply=True, timeout=timeout)
    report = countdown_report.merge(replies)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        click.echo(countdown_report.render(report, timeout))
    if not report.answered:
        raise click.ClickException(
            f"no worker answered within {timeout:g} s; countdowns are counted by running workers "
            "(start one, or raise --timeout)")


@pubsub.command()
@_extra_queues
@click.pass_context
def provision(ctx: click.Context, extra: tuple[str, ...]) -> None:
    """Create every queue the app routes to, and the morgue, with the configured policies.

    Idempotent, and works with create_missing off (what it is for).
    """
    found = app_queues(_app(ctx), extra)
    existed = made = 0
    with QueueTools(_app(ctx)) as tools:
        click.echo(f"Provisioning {len(found.specs)} queue(s) in {tools.where}:")
        for outcome in tools.provision(found.specs):
            click.echo(outcome.line())
            existed += outcome.action == "already existed"
            made += outcome.action != "already existed"
    click.echo(f"{made} created, {existed} already existed.")
    for note in queue_report.scope_notes(found):
        click.echo(note)


@pubsub.command()
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Allow deleting the morgue.")
@click.pass_context
def delete(ctx: click.Context, queue: str, yes: bool, force: bool) -> None:
    """Delete a queue's subscription and topic; messages waiting on it are lost."""
    if queue == MORGUE_QUEUE and not force:
        raise click.ClickException(MORGUE_REFUSAL)
    with QueueTools(_app(ctx)) as tools:
        plan = tools.plan_delete(queue)
        if not plan.exists:
            raise click.ClickException(
                f"queue {queue!r} does not exist in {tools.where}: no subscription or topic "
                f"for it; '{_command(ctx)} pubsub queues --all' lists what exists")
        doomed = " and ".join(plan.doomed)
        if not yes:
            click.confirm(f"Delete {doomed}? Messages waiting on it are lost.", abort=True)
        for outcome in tools.delete(plan):
            click.echo(outcome.line())
