"""The countdown scenarios: how late countdown tasks start, and what pending ones cost in memory.

Apart from scenarios.py because they need their own fresh worker each, a
producer sending ``apply_async(countdown=...)`` and, for memory, a sampler and
a wait until the worker is steady.
"""

from __future__ import annotations

import statistics
import threading
import time

from .procs import child_env, run_python_module, tail
from .scenarios import Context, Measurement
from .stats import percentile
from .systems import GCPUBSUB, KOMBU_PUBSUB, QUEUE, System
from .worker import Worker, WorkerFailed


def countdown_lateness(ctx: Context, system: System, repeat: int) -> Measurement:
    """Idle worker; COUNT tasks with countdown=SECONDS; how late each starts after its ETA (ms)."""
    settings = ctx.settings
    pool, concurrency = settings.countdown_pool
    project = ctx.project(system.short, "cdl", repeat)
    result = Measurement(f"countdown lateness, countdown={settings.countdown_seconds:g}s "
                         f"({pool} -c {concurrency})", system.key, system.key, repeat, project,
                         system.short, baseline=system.key == GCPUBSUB)
    worker = Worker(ctx.workdir, f"{project}-worker", system.env(project), QUEUE, pool, concurrency,
                    settings.worker_loglevel, settings.stop_grace)
    ctx.settle()  # the previous worker is gone before this one starts
    with ctx.recording(result, project):
        try:
            worker.start()
            ready = worker.wait_ready()
            time.sleep(1.0)  # idle
            log = ctx.workdir / f"{project}.countdown.log"
            n = settings.countdown_count
            out = run_python_module(
                "benchmarks.producer",
                ["countdown", str(n), str(settings.countdown_seconds), str(settings.countdown_interval)],
                child_env(system.env(project)),
                timeout=60 + n * settings.countdown_interval, log_path=log)
            worker.wait_records(out["sent"], timeout=settings.countdown_seconds + 60.0, measured_only=True,
                                stall=settings.countdown_seconds + 15.0)
            time.sleep(2.0)  # a late duplicate would show up now
            rows = [(start, eta) for start, eta in worker.records() if eta > 0]
        except BaseException:
            worker.stop()
            raise
        ctx.defer_stop(worker, [result], project)
        lateness = sorted((start - eta) * 1000 for start, eta in rows)
        distinct = len({round(eta, 6) for _, eta in rows})  # ETAs are INTERVAL apart: one per task
        result.figures = {
            "p50_ms": percentile(lateness, 50),
            "p99_ms": percentile(lateness, 99),
            "max_ms": max(lateness),
            "min_ms": min(lateness),
            "mean_ms": statistics.fmean(lateness),
            "early": sum(1 for late in lateness if late < 0),
            "samples": len(lateness),
            "sent": out["sent"],
            "lost": out["sent"] - distinct,
            "duplicates": len(rows) - distinct,
            "startup_s": ready - worker.started_wall,
        }
    return result


class _MemorySampler:
    """Samples a worker's memory every `interval` s on a thread; keeps the peaks."""

    def __init__(self, worker: Worker, interval: float = 0.2) -> None:
        self._worker = worker
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss-sampler", daemon=True)
        self.peak_main = 0
        self.peak_children = 0
        self.samples = 0

    def __enter__(self) -> _MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            memory = self._worker.memory_kib()
            if memory:
                self.peak_main = max(self.peak_main, memory["main"])
                self.peak_children = max(self.peak_children, memory["children"])
                self.samples += 1
            self._stop.wait(self._interval)


def countdown_memory(ctx: Context, system: System, repeat: int) -> Measurement:
    """Worker RSS when idle, and with N pulled tasks whose countdown does not come due during the run."""
    settings = ctx.settings
    pool, concurrency = settings.countdown_pool
    n = settings.pending_n
    project = ctx.project(system.short, "cdm", repeat)
    result = Measurement(f"countdown memory, {n:,} pending ({pool} -c {concurrency})", system.key,
                         system.key, repeat, project, system.short, baseline=system.key == GCPUBSUB)
    # Sent like the drain preload: kombu_pubsub with fast_publish, gcpubsub as it is.
    send_options = {"fast_publish": True} if system.key == KOMBU_PUBSUB else {}
    worker = Worker(ctx.workdir, f"{project}-worker", system.env(project), QUEUE, pool, concurrency,
                    settings.worker_loglevel, settings.stop_grace, count_received=True)
    ctx.settle()
    mib = 1024.0
    with ctx.recording(result, project):
        count_sub = ctx.raw.ensure_count_subscription(project, system.topic())
        try:
            worker.start()
            ready = worker.wait_ready()
            subscriptions = ctx.raw.topic_subscriptions(project, system.topic())
            if not subscriptions:
                raise WorkerFailed(f"the ready worker has no subscription on topic {system.topic()!r}")
            time.sleep(3.0)  # idle
            idle = worker.memory_kib()
            if idle is None:
                raise WorkerFailed(f"worker gone before the idle sample; log tail:\n{tail(worker.log_file)}")
            with _MemorySampler(worker) as sampler:
                log = ctx.workdir / f"{project}.pending.log"
                out = run_python_module(
                    "benchmarks.producer",
                    ["countdown", str(n), str(settings.pending_countdown), "0", "--warmup", "0"],
                    child_env(system.env(project, send_options)), timeout=60 + n / 20, log_path=log)
                sent_at = time.monotonic()
                steady, settle_s = _wait_settled(ctx, worker, subscriptions, sent_at)
                pending = worker.memory_kib()
            if pending is None:
                raise WorkerFailed(f"worker gone while pending; log tail:\n{tail(worker.log_file)}")
            received = worker.received()
            ran = len([row for row in worker.records() if row[1] > 0])
        except BaseException:
            worker.stop()
            raise
        ctx.defer_stop(worker, [result], project)
        project = ""  # deleted by settle(); the arrival count below runs first
        arrived, _ = ctx.raw.count(count_sub, out["sent"])
        result.figures = {
            "idle_rss_mib": idle["main"] / mib,
            "pending_rss_mib": pending["main"] / mib,
            "growth_mib": (pending["main"] - idle["main"]) / mib,
            "peak_rss_mib": max(sampler.peak_main, pending["main"]) / mib,
            "hwm_mib": pending["main_hwm"] / mib,
            "idle_children_mib": idle["children"] / mib,
            "pending_children_mib": pending["children"] / mib,
            "peak_children_mib": max(sampler.peak_children, pending["children"]) / mib,
            "processes": pending["processes"],
            "sent": out["sent"],
            "arrived": arrived,
            "received_by_celery": received,
            "ran": ran,
            "send_s": out["seconds"],
            "settle_s": settle_s,
            "steady": int(steady),
            "samples": sampler.samples,
            "startup_s": ready - worker.started_wall,
        }
    return result


def _wait_settled(ctx: Context, worker: Worker, subscriptions: list[str], since: float) -> tuple[bool, float]:
    """Wait until the worker has taken everything and is steady; return (settled, seconds waited).

    Settled: no message on the worker's subscription(s) is deliverable (the
    worker holds or has deferred all of them), and the messages Celery received
    and the main process RSS (±1 MiB) did not change for `pending_steady` s.
    Bounded by `pending_wait` s after `since`.
    """
    settings = ctx.settings
    deadline = since + settings.pending_wait
    reference: tuple[float, int, int] | None = None  # (since when, received, rss KiB)
    while True:
        now = time.monotonic()
        memory = worker.memory_kib()
        if memory is None:
            raise WorkerFailed(f"worker gone while pending; log tail:\n{tail(worker.log_file)}")
        received = worker.received()
        drained = not any(ctx.raw.deliverable(subscription) for subscription in subscriptions)
        if not drained:
            reference = None
        elif reference is None or received != reference[1] or abs(memory["main"] - reference[2]) > 1024:
            reference = (now, received, memory["main"])
        elif now - reference[0] >= settings.pending_steady:
            return True, reference[0] - since
        if now > deadline:
            return False, now - since
        time.sleep(1.0)
