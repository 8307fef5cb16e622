"""The demo's status line: job states counted from Celery events, on fake clocks."""

from __future__ import annotations

import datetime
import io
import logging

import pytest

from demo_tasks.app import JobError
from demo_tasks.processes import WarningsOnly
from demo_tasks.spawner import run
from demo_tasks.status import BEHIND_AFTER, Tally

T0 = datetime.datetime(2024, 1, 1, 12, 0, tzinfo=datetime.UTC)


class Clocks:
    def __init__(self) -> None:
        self.seconds = 0.0

    def monotonic(self) -> float:
        return self.seconds

    def wall(self) -> datetime.datetime:
        return T0 + datetime.timedelta(seconds=self.seconds)


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def tally(clocks: Clocks) -> Tally:
    return Tally(clock=clocks.monotonic, now=clocks.wall)


def feed(tally: Tally, *events: tuple[str, str] | tuple[str, str, dict]) -> None:
    for kind, uuid, *extra in events:
        tally.on_event({"type": kind, "uuid": uuid, **(extra[0] if extra else {})})


def test_a_job_is_backlog_until_started_then_running_then_succeeded(tally, clocks):
    feed(tally, ("task-sent", "a"), ("task-received", "a"))
    clocks.seconds = 2.5
    counts = tally.counts()
    assert (counts.sent, counts.backlog, counts.running) == (1, 1, 0)
    assert counts.oldest_waiting == pytest.approx(2.5)
    feed(tally, ("task-started", "a"))
    assert (tally.counts().backlog, tally.counts().running) == (0, 1)
    feed(tally, ("task-succeeded", "a"))
    assert (tally.counts().running, tally.counts().succeeded) == (0, 1)


def test_a_retry_waits_out_its_eta_then_counts_as_backlog_until_it_starts(tally, clocks):
    eta = (T0 + datetime.timedelta(seconds=5)).isoformat()
    feed(tally, ("task-sent", "a"), ("task-started", "a"),
         ("task-sent", "a", {"eta": eta}),  # the retry's message, published before task-retried
         ("task-retried", "a"))
    clocks.seconds = 4.0
    assert (tally.counts().retrying, tally.counts().backlog) == (1, 0)
    clocks.seconds = 6.0
    counts = tally.counts()
    assert (counts.retrying, counts.backlog, counts.sent) == (0, 1, 1)
    assert counts.oldest_waiting == pytest.approx(1.0)
    feed(tally, ("task-started", "a"), ("task-failed", "a"))
    assert (tally.counts().morgue, tally.counts().backlog, tally.counts().running) == (1, 0, 0)


def test_a_retry_whose_eta_is_not_known_yet_counts_as_retrying(tally):
    feed(tally, ("task-sent", "a"), ("task-started", "a"), ("task-retried", "a"))
    assert (tally.counts().retrying, tally.counts().backlog) == (1, 0)


def test_a_job_first_seen_running_counts_as_sent(tally):
    feed(tally, ("task-started", "b"))
    assert (tally.counts().sent, tally.counts().running) == (1, 1)


def test_workers_are_counted_while_their_heartbeats_come(tally, clocks):
    tally.on_event({"type": "worker-heartbeat", "hostname": "w1"})
    tally.on_event({"type": "worker-online", "hostname": "w2"})
    assert tally.counts().workers == 2
    tally.on_event({"type": "worker-offline", "hostname": "w2"})
    clocks.seconds = 30.0
    assert tally.counts().workers == 0


def test_the_line_says_when_jobs_wait_too_long(tally, clocks):
    feed(tally, ("task-sent", "a"), ("task-sent", "b"), ("task-started", "b"))
    assert "FALLING BEHIND" not in tally.counts().line()
    clocks.seconds = BEHIND_AFTER + 1
    line = tally.counts().line()
    assert "sent 2 | running 1 |" in line and "backlog 1 (oldest 11.0s)" in line
    assert "FALLING BEHIND" in line and "\r" not in line


def test_worker_log_filter_shows_warnings_with_their_traceback_and_hides_the_rest():
    show = WarningsOnly()
    lines = [
        ("-------------- celery@host v5", False),  # banner
        ("[2024-01-01 12:00:00,000: INFO/MainProcess] Task demo_tasks.mock_job[1] received", False),
        ("[2024-01-01 12:00:00,100: WARNING/MainProcess] Moved failed job x to the morgue", True),
        ("[2024-01-01 12:00:00,200: ERROR/MainProcess] Could not move failed job", True),
        ("Traceback (most recent call last):", True),
        ("[2024-01-01 12:00:00,300: INFO/MainProcess] Task ... succeeded", False),
    ]
    assert [show(line) for line, _ in lines] == [shown for _, shown in lines]


def test_spawner_progress_is_one_whole_line_every_interval():
    now = [0.0]
    out = io.StringIO()
    run(lambda: None, 5, duration=25, clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s), progress=out, progress_every=10)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert lines[0].startswith("spawner: sent 51 jobs")


@pytest.mark.parametrize(("error", "kept"), [(JobError("Job failed successfully."), False),
                                             (ValueError("a real bug"), True)])
def test_only_the_traceback_of_a_job_failing_on_purpose_is_dropped(error, kept):
    record = logging.LogRecord("celery.app.trace", logging.ERROR, __file__, 1, "Task failed", None,
                               (type(error), error, None))
    assert logging.getLogger("celery.app.trace").filter(record) is kept
