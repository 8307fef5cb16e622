"""The many-queues scenario: one worker consuming Q queues; how soon a task on any of them starts.

Apart from scenarios.py because it needs a worker per queue count, a producer
that warms every queue up and then waits for the runner's word (so the runner
can measure the idle worker in between), and a count of tasks that never started.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .procs import child_env, run_python_module, tail
from .producer import queue_names
from .scenarios import Context, Measurement
from .stats import percentile
from .systems import GCPUBSUB, System
from .worker import Worker, WorkerFailed

#: Pause between the last warm-up task and the idle window: the warm-ups' acks go out, seconds.
SETTLE = 1.0
#: Longest wait for the warm-up tasks (one per queue) to start, seconds.
WARMUP_WAIT = 60.0


def scenario_name(queue_count: int, pool: str, concurrency: int) -> str:
    return f"many queues, Q={queue_count} ({pool} -c {concurrency})"


def many_queues(ctx: Context, system: System, queue_count: int, repeat: int) -> Measurement:
    """A worker on Q queues, idle: CPU per second and threads; then TASKS tasks, INTERVAL s apart,
    to queues drawn at random (seeded); send → task start latency and tasks never started."""
    settings = ctx.settings
    pool, concurrency = settings.many_queues_pool
    project = ctx.project(system.short, f"mq{queue_count}", repeat)
    result = Measurement(scenario_name(queue_count, pool, concurrency), system.key, system.name, repeat,
                         project, system.short, baseline=system.key == GCPUBSUB)
    worker = Worker(ctx.workdir, f"{project}-worker", system.env(project), ",".join(queue_names(queue_count)),
                    pool, concurrency, settings.worker_loglevel, settings.stop_grace)
    go_file = ctx.workdir / f"{project}.go"
    ctx.settle()  # the previous worker is gone before this one starts
    with ctx.recording(result, project), ThreadPoolExecutor(1, "bench-many-queues-producer") as producer:
        try:
            worker.start()
            ready = worker.wait_ready()
            sending = producer.submit(_run_producer, ctx, system, project, queue_count, go_file)
            warm_ups = [row for row in _wait_started(worker, queue_count, WARMUP_WAIT, measured_only=False)
                        if row[1] == 0]
            time.sleep(SETTLE)
            idle = _idle(worker, settings.many_queues_idle)
            _say(go_file, "go")
            out = sending.result()
            rows = [row for row in _wait_started(worker, out["sent"], settings.many_queues_grace,
                                                 measured_only=True) if row[1] > 0]
        except BaseException:
            _say(go_file, "stop")  # a producer still waiting for the word exits without sending
            worker.stop()
            raise
        ctx.defer_stop(worker, [result], project)
        result.figures = {**_latencies(rows, out), **idle, "queues": queue_count,
                          "warmed_up": len(warm_ups), "startup_s": ready - worker.started_wall}
    return result


def _run_producer(ctx: Context, system: System, project: str, queue_count: int,
                  go_file: Path) -> dict[str, Any]:
    """The producer process, from its warm-ups to its last send (runs on the executor's thread)."""
    settings = ctx.settings
    tasks, interval = settings.many_queues_tasks, settings.many_queues_interval
    args = ["many-queues", str(tasks), str(interval), str(queue_count), str(settings.many_queues_seed),
            str(go_file)]
    timeout = 60 + WARMUP_WAIT + SETTLE + settings.many_queues_idle + tasks * interval
    return run_python_module("benchmarks.producer", args, child_env(system.env(project)), timeout=timeout,
                             log_path=ctx.workdir / f"{project}.many-queues.log")


def _say(go_file: Path, word: str) -> None:
    """Tell the waiting producer to go on ("go") or to exit without sending ("stop"); first word wins."""
    if go_file.exists():
        return
    tmp = go_file.with_suffix(".tmp")
    tmp.write_text(word, encoding="ascii")
    tmp.replace(go_file)  # the producer never reads a half-written word


def _wait_started(worker: Worker, count: int, wait: float, measured_only: bool) -> list[tuple[float, float]]:
    """Wait up to `wait` s for `count` task starts (sent > 0 if `measured_only`); every record so far.

    Tasks that never start are counted by the caller, not an error; a worker that died is one.
    """
    try:
        return worker.wait_records(count, timeout=wait, measured_only=measured_only, stall=wait)
    except WorkerFailed:
        if worker.pid is None:
            raise
        return worker.records()


def _idle(worker: Worker, seconds: float) -> dict[str, float]:
    """CPU the idle worker (main process and pool) uses per second over `seconds`, and its threads."""
    before, start = worker.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    after, elapsed = worker.cpu_seconds(), time.monotonic() - start
    threads = worker.thread_count()
    if before is None or after is None or threads is None:
        raise WorkerFailed(f"worker gone while idle; log {worker.log_file} tail:\n{tail(worker.log_file)}")
    return {"idle_cpu_ms_per_s": 1000 * (after - before) / elapsed, "idle_s": elapsed, "threads": threads}


def _latencies(rows: list[tuple[float, float]], out: dict[str, Any]) -> dict[str, Any]:
    """Send → start latency (ms) of each task sent, by its send time; which never started."""
    queue_of = {f"{sent:.6f}": queue for sent, queue in out["sends"]}
    first: dict[str, float] = {}  # send time (as recorded) -> earliest start
    for done, sent in rows:
        key = f"{sent:.6f}"
        first[key] = min(done, first.get(key, done))
    started = {key: done for key, done in first.items() if key in queue_of}
    latencies = sorted((done - float(key)) * 1000 for key, done in started.items())
    figures: dict[str, Any] = {
        "sent": out["sent"],
        "started": len(started),
        "missing": out["sent"] - len(started),
        "duplicates": len(rows) - len(first),
        "missing_on": sorted({queue for key, queue in queue_of.items() if key not in started}),
        "queues_sent_to": len(set(queue_of.values())),
        "publish_p50_ms": percentile([s * 1000 for s in out["publish_seconds"]], 50),
    }
    if latencies:
        figures.update({"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                        "max_ms": max(latencies), "mean_ms": statistics.fmean(latencies)})
    return figures
