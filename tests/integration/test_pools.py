"""One story per Celery pool, told with the stock `celery worker` and nothing added to the app.

Each pool runs the same story: ten tasks run exactly once; a failing task runs three
times, its retries spaced by the retry delay, then lands in the morgue; that worker, now
idle, stops within seconds of SIGTERM and logs no error, and the next task on its queue
runs at once on another worker; then a busy worker's warm shutdown hands the tasks it had
prefetched to another worker at once, while its running tasks finish. gevent and eventlet
are chosen with `-P` alone, as a Celery user would: the app does nothing for them.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import TaskLog, Worker, run_producer, wait_until

#: pool → (worker arguments, how many tasks it runs at once).
POOLS: dict[str, tuple[tuple[str, ...], int]] = {
    "prefork": (("-P", "prefork", "-c", "2"), 2),
    "threads": (("-P", "threads", "-c", "4"), 4),
    "solo": (("-P", "solo"), 1),
    "gevent": (("-P", "gevent", "-c", "10"), 10),
    "eventlet": (("-P", "eventlet", "-c", "10"), 10),
}
#: Seconds between the runs of the failing task (E2E_RETRY_DELAY).
RETRY_DELAY = 1.0
#: Celery's worker_prefetch_multiplier: with every pool slot busy, as many more tasks
#: are prefetched (received, not started).
PREFETCH = 2
#: Tasks a pool takes on top of those it runs, once every slot is busy: gevent's and
#: eventlet's spawn blocks Celery's consumer with one more task in hand, which that
#: worker runs once a slot frees. The others take none the worker could not give back.
TAKEN_BEYOND_SLOTS = {"gevent": 1, "eventlet": 1}
#: Pools whose worker runs tasks it reserved even once told to stop, until its pool stops:
#: Celery's threads pool hands each reserved task to its executor at once, and cancels
#: the queued ones only after the running ones end. Their messages go back then (as
#: with Celery's Redis transport), not at SIGTERM.
RELEASED_WHEN_RUNNING_TASKS_END = {"threads"}
#: Seconds within which tasks a stopping worker gives back start elsewhere: a third of
#: the 30 s ack deadline, after which Pub/Sub would redeliver a message nobody extends.
PROMPT = 10.0
#: Seconds an idle worker may take to exit after SIGTERM.
IDLE_EXIT = 8.0
#: Seconds to wait for what should take one or two (loaded 2-core CI machines).
PATIENCE = 30.0
PROBLEMS = re.compile(r"\b(?:ERROR|CRITICAL)\b|Traceback|BlockingSwitchOutError")

MORGUE_WAIT = """
import json, time
from kombu_pubsub.ops.morgue_tools import Morgue
deadline = time.monotonic() + {timeout}
with Morgue(app) as morgue:
    while True:
        entries = morgue.entries()
        if entries or time.monotonic() > deadline:
            break
        time.sleep(0.2)
print(json.dumps([{{"task": e.task, "queue": e.queue, "reason": e.reason}} for e in entries]))
"""


class Phases:
    """Seconds each part of the story took."""

    def __init__(self) -> None:
        self.began = self.last = time.monotonic()
        self.seconds: dict[str, float] = {}

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self.last, 1)
        self.last = now

    @property
    def total(self) -> float:
        return round(time.monotonic() - self.began, 1)


def problems(log: str) -> list[str]:
    return [line for line in log.splitlines() if PROBLEMS.search(line)]


def started(task_log: TaskLog, tokens: list[str]) -> Callable[[], bool]:
    return lambda: set(tokens) <= set(task_log.tokens("start"))


def morgue_entries(env: dict[str, str], timeout: float) -> list[dict[str, str]]:
    """What the morgue tools list, once something is there (or `timeout` passed)."""
    listed = run_producer(env, MORGUE_WAIT.format(timeout=timeout), timeout=timeout + 60)
    assert listed.returncode == 0, listed.stderr[-3000:]
    return json.loads(listed.stdout.strip().splitlines()[-1])


def runs_tasks_once_and_buries_the_failing_one(worker: Worker, env: dict[str, str],
                                               task_log: TaskLog) -> list[str]:
    """(a) and (b): ten tasks and a failing one, sent together. Returns the ten tokens."""
    records = [f"r{i}" for i in range(10)]
    sent = run_producer(env, f"flaky.delay('flaky')\nfor token in {records!r}:\n    record.delay(token)\n")
    assert sent.returncode == 0, sent.stderr[-3000:]
    assert wait_until(lambda: set(records) <= set(task_log.tokens("done")), PATIENCE), \
        f"done: {sorted(set(task_log.tokens('done')))}\n{worker.log()[-3000:]}"

    entries = morgue_entries(env, timeout=PATIENCE)
    assert [(e["task"], e["queue"]) for e in entries] == [("e2e.flaky", "e2e")], \
        f"{entries}\n{worker.log()[-3000:]}"
    assert "JobError: Job failed successfully." in entries[0]["reason"], entries
    runs = [at for token, _, at in task_log.events("start") if token == "flaky"]
    assert len(runs) == 3, runs
    gaps = [later - earlier for earlier, later in zip(runs, runs[1:], strict=False)]
    assert min(gaps) >= RETRY_DELAY, gaps
    return records


def warm_shutdown_hands_prefetched_tasks_over(pool: str, slots: int, busy: Worker,
                                              start_standby: Callable[[], Worker],
                                              env: dict[str, str], task_log: TaskLog,
                                              flag: Path) -> list[str]:
    """(c): every slot of `busy` taken by a held task, as many tasks prefetched behind them;
    SIGTERM; the standby worker starts them while the held tasks still run (all but those
    the pool took beyond its slots), the held tasks finish, and each task runs once.
    Returns every token sent here."""
    holds = [f"hold{i}" for i in range(slots)]
    queued = [f"queued{i}" for i in range(slots)]
    taken = TAKEN_BEYOND_SLOTS.get(pool, 0)
    flag.touch()
    sent = run_producer(env, f"from tests.apps.e2e_app import hold\n"
                             f"for token in {holds!r}:\n    hold.delay(token, {str(flag)!r})\n")
    assert sent.returncode == 0, sent.stderr[-3000:]
    assert wait_until(started(task_log, holds), PATIENCE), \
        f"started: {task_log.tokens('start')}\n{busy.log()[-3000:]}"
    sent = run_producer(env, f"for token in {queued!r}:\n    record.apply_async((token,), task_id=token)\n")
    assert sent.returncode == 0, sent.stderr[-3000:]

    def received() -> list[str]:
        return [token for token in queued if f"[{token}] received" in busy.log()]

    # What Celery shows it holds: prefork and threads receive every prefetched task, gevent
    # and eventlet the one their spawn blocks on; solo receives nothing while its task runs
    # on the receiving thread (the queued tasks may then go to the standby before SIGTERM).
    shown = 0 if pool == "solo" else taken or slots
    assert wait_until(lambda: len(received()) >= shown, PATIENCE), \
        f"the busy worker received {received()} of {queued}, expected {shown}\n{busy.log()[-3000:]}"
    assert not set(queued) & set(task_log.tokens("start")), task_log.path.read_text()

    standby = start_standby()
    mark = len(busy.log())
    busy.warm_shutdown()
    assert wait_until(lambda: "Warm shutdown" in busy.log()[mark:], PATIENCE), busy.log()[-3000:]
    released_at = time.monotonic()

    def started_queued() -> list[str]:
        return [token for token in queued if token in task_log.tokens("start")]

    if pool in RELEASED_WHEN_RUNNING_TASKS_END:
        return handed_over_when_running_tasks_end(busy, holds, queued, task_log, flag)
    prompt = wait_until(lambda: len(started_queued()) >= slots - taken, PROMPT)
    took = time.monotonic() - released_at
    assert prompt, (f"{PROMPT:.0f} s after the warm shutdown began, {started_queued()} of {queued} "
                    f"started; {slots - taken} should have, on the standby worker, while the busy "
                    f"one still runs its held tasks\nbusy worker:\n{busy.log()[-3000:]}"
                    f"\nstandby worker:\n{standby.log()[-2000:]}")
    print(f"{len(started_queued())} prefetched task(s) started elsewhere {took:.1f} s after "
          "the warm shutdown began")
    assert busy.process.poll() is None, "the busy worker exited before its held tasks finished"
    assert not set(holds) & set(task_log.tokens("done")), task_log.path.read_text()

    flag.unlink()
    assert wait_until(lambda: set(holds + queued) <= set(task_log.tokens("done")), PROMPT), \
        f"{task_log.path.read_text()}\nbusy worker:\n{busy.log()[-3000:]}"
    assert busy.process.wait(PATIENCE) == 0, busy.log()[-3000:]
    assert problems(busy.log()[mark:]) == [], busy.log()[mark:][-3000:]
    assert "BlockingSwitchOutError" not in busy.log()
    assert problems(standby.log()) == [], standby.log()[-3000:]
    return holds + queued


def idle_worker_stops_cleanly(worker: Worker) -> float:
    """(d): SIGTERM to a worker with nothing to do; it exits at once and logs no error.
    Returns how long it took."""
    mark = len(worker.log())
    worker.warm_shutdown()
    signalled = time.monotonic()
    exited = wait_until(lambda: worker.process.poll() is not None, IDLE_EXIT)
    took = time.monotonic() - signalled
    assert exited, f"still running {IDLE_EXIT:.0f} s after SIGTERM:\n{worker.log()[-3000:]}"
    assert worker.process.returncode == 0, worker.log()[-3000:]
    assert problems(worker.log()[mark:]) == [], worker.log()[mark:][-3000:]
    assert "BlockingSwitchOutError" not in worker.log()
    return took


def handed_over_when_running_tasks_end(busy: Worker, holds: list[str], queued: list[str],
                                       task_log: TaskLog, flag: Path) -> list[str]:
    """(c) for a pool that runs what it reserved: nothing starts before the held tasks end,
    then the prefetched tasks run at once, elsewhere or here, each once."""
    assert not set(queued) & set(task_log.tokens("start")), task_log.path.read_text()
    flag.unlink()
    ended = time.monotonic()
    assert wait_until(lambda: set(holds + queued) <= set(task_log.tokens("done")), PROMPT), \
        f"{task_log.path.read_text()}\nbusy worker:\n{busy.log()[-3000:]}"
    print(f"prefetched tasks done {time.monotonic() - ended:.1f} s after the held tasks ended")
    assert busy.process.wait(PATIENCE) == 0, busy.log()[-3000:]
    assert problems(busy.log()) == [], busy.log()[-3000:]
    return holds + queued


def next_task_runs_at_once_after_a_worker_left(worker: Worker, env: dict[str, str],
                                               task_log: TaskLog) -> None:
    """(d, continued): the next task on the stopped worker's queue runs at once on another.
    A stopping worker cancels the pulls it has outstanding: on the emulator, a pull left
    open by a process that exited takes the next message with it for an ack deadline."""
    sent = run_producer(env, "record.delay('next')\n")
    assert sent.returncode == 0, sent.stderr[-3000:]
    assert wait_until(lambda: "next" in task_log.tokens("done"), PROMPT), \
        f"the task sent after a worker stopped did not run within {PROMPT:.0f} s\n{worker.log()[-3000:]}"


@pytest.mark.parametrize("pool", list(POOLS))
def test_a_pool_runs_retries_buries_and_shuts_down_cleanly(pool, start_worker, e2e_env, task_log,
                                                            tmp_path, record_property):
    args, slots = POOLS[pool]
    phases = Phases()

    def start(**env: str) -> Worker:
        worker = start_worker(*args, wait=False, E2E_PREFETCH=str(PREFETCH), **env)
        try:
            return worker.wait_ready(timeout=PATIENCE)
        except AssertionError:
            worker.signal(signal.SIGKILL)  # hung: a warm shutdown would wait for nothing
            raise

    flag = tmp_path / "holding"
    try:
        first = start(E2E_RETRY_DELAY=str(RETRY_DELAY))
        phases.done("start")
        records = runs_tasks_once_and_buries_the_failing_one(first, e2e_env, task_log)
        phases.done("tasks_and_morgue")
        idle_exit = idle_worker_stops_cleanly(first)
        print(f"idle worker exited {idle_exit:.1f} s after SIGTERM")
        busy = start()
        next_task_runs_at_once_after_a_worker_left(busy, e2e_env, task_log)
        phases.done("idle_shutdown")
        handed_over = warm_shutdown_hands_prefetched_tasks_over(pool, slots, busy, start, e2e_env,
                                                                task_log, flag)
        phases.done("warm_shutdown")

        runs = Counter(task_log.tokens("start"))
        assert {token: runs[token] for token in [*records, "next", *handed_over] if runs[token] != 1} == {}
        assert runs["flaky"] == 3  # and no fourth run since it was buried
    finally:
        flag.unlink(missing_ok=True)  # a held task ends, so its worker can stop
        print(f"FIGURE pool_story_s[{pool}]: {phases.total} {phases.seconds}")
        record_property("story_s", phases.total)
        record_property("phases_s", phases.seconds)
