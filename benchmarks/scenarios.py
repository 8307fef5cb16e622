"""The scenarios. Each call measures one system once and returns a Measurement (or a list).

Setup (topics, subscriptions, worker start-up) and cleanup are outside the
timed part; every project is deleted from the emulator afterwards.
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from .procs import child_env, run_python_module, tail
from .pubsub_raw import Raw
from .stats import percentile
from .systems import GCPUBSUB, KOMBU_PUBSUB, QUEUE, EnqueueMode, Settings, System
from .worker import Worker, WorkerFailed


@dataclasses.dataclass
class Measurement:
    """One repeat of one scenario for one system (or enqueue mode)."""

    scenario: str
    system: str
    label: str
    repeat: int
    project: str
    key: str = ""  # short id of the system or enqueue mode (kp, kpf, gc, rg, rf)
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None
    baseline: bool = False


class Context:
    """What every scenario needs: settings, the raw client, a work dir, a run id."""

    def __init__(self, settings: Settings, raw: Raw, workdir: Path, run_id: str) -> None:
        self.settings = settings
        self.raw = raw
        self.workdir = workdir
        self.run_id = run_id

        # A worker still shutting down (on a thread) and what to tell when it is done.
        self._stopping: list[tuple[threading.Thread, Worker, list[Measurement], str]] = []

    def project(self, short: str, scenario: str, repeat: int) -> str:
        return f"bench-{self.run_id}-{short}-{scenario}-r{repeat}"

    def defer_stop(self, worker: Worker, measurements: list[Measurement], project: str) -> None:
        """Let `worker` shut down while the next (untimed) setup runs; settle() waits for it."""
        self._stopping.append((worker.stop_in_background(), worker, measurements, project))

    def settle(self) -> None:
        """Wait for workers still stopping, record how long they took, delete their projects.

        Called before anything timed starts, so a shutdown never overlaps a measurement.
        """
        while self._stopping:
            thread, worker, measurements, project = self._stopping.pop(0)
            thread.join()
            for measurement in measurements:
                measurement.figures["stop_s"] = worker.stop_seconds
            self.raw.delete_project(project)


def enqueue(ctx: Context, mode: EnqueueMode, repeat: int) -> Measurement:
    """N calls from a fresh process that exits right after; then count what arrived."""
    project = ctx.project(mode.short, "enq", repeat)
    result = Measurement("enqueue", mode.system, mode.label, repeat, project, mode.short,
                         baseline=mode.baseline)
    n = ctx.settings.enqueue_n
    ctx.settle()
    try:
        count_sub = ctx.raw.ensure_count_subscription(project, QUEUE)
        topic_path = f"projects/{project}/topics/{QUEUE}"
        if mode.producer_mode == "enqueue-celery":
            system = System(mode.system, mode.short)
            env = child_env(system.env(project, mode.transport_options))
            args = [mode.producer_mode, str(n)]
        else:
            env = child_env()
            args = [mode.producer_mode, topic_path, str(n)]
        log = ctx.workdir / f"{project}.producer.log"
        out = run_python_module("benchmarks.producer", args, env, timeout=60 + n / 20, log_path=log)
        exited = time.time()
        arrived, size = ctx.raw.count(count_sub, out["sent"])
        result.figures = {
            "calls_per_s": out["timed_calls"] / out["seconds"],
            "seconds": out["seconds"],
            "sent": out["sent"],
            "arrived": arrived,
            "lost_at_exit": out["sent"] - arrived,
            "exit_s": exited - out["end_wall"],
            "bytes_per_msg": size / arrived if arrived else None,
        }
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        ctx.raw.delete_project(project)
    return result


def worker_session(ctx: Context, system: System, pool: str, concurrency: int, repeat: int,
                   drain: bool, latency: bool) -> list[Measurement]:
    """One worker: optionally drain a preloaded backlog, then optionally measure idle latency."""
    settings = ctx.settings
    tag = f"{pool[:2]}{concurrency}"
    project = ctx.project(system.short, tag, repeat)
    pool_label = f"{pool} -c {concurrency}"
    drain_m = Measurement(f"drain {pool_label}", system.key, system.key, repeat, project, system.short,
                          baseline=system.key == GCPUBSUB)
    latency_m = Measurement(f"idle latency ({pool_label})", system.key, system.key, repeat, project,
                            system.short, baseline=system.key == GCPUBSUB)
    wanted = ([drain_m] if drain else []) + ([latency_m] if latency else [])
    # kombu_pubsub preloads with fast_publish (and flushes at exit); gcpubsub as it is.
    preload_options = {"fast_publish": True} if system.key == KOMBU_PUBSUB else {}
    env = system.env(project)
    current = wanted[0]
    try:
        expected = 0
        if drain:
            count_sub = ctx.raw.ensure_count_subscription(project, system.topic())
            log = ctx.workdir / f"{project}.preload.log"
            out = run_python_module("benchmarks.producer", ["preload", str(settings.drain_n)],
                                    child_env(system.env(project, preload_options)),
                                    timeout=60 + settings.drain_n / 20, log_path=log)
            expected = ctx.raw.wait_count(count_sub, out["sent"], limit=30.0)
            drain_m.figures.update({"preloaded": out["sent"], "arrived": expected})
            if expected == 0:
                raise WorkerFailed("no preloaded message arrived")
        worker = Worker(ctx.workdir, f"{project}-worker", env, QUEUE, pool, concurrency,
                        settings.worker_loglevel, settings.stop_grace)
        ctx.settle()  # the previous worker is gone before this one starts
        try:
            worker.start()
            ready = worker.wait_ready()
            startup = ready - worker.started_wall
            if drain:
                rows = worker.wait_records(expected, timeout=max(60.0, expected / 50), stall=30.0)
                done = sorted(row[0] for row in rows)
                last = done[expected - 1]
                drain_m.figures.update({
                    "tasks_per_s": expected / (last - ready),
                    "seconds": last - ready,
                    "first_task_s": done[0] - ready,
                    "duplicates": len(rows) - expected,
                    "startup_s": startup,
                })
            if latency:
                current = latency_m
                latency_m.figures.update(_latency(ctx, worker, system, project))
                latency_m.figures["startup_s"] = startup
        except BaseException:
            worker.stop()
            raise
        ctx.defer_stop(worker, wanted, project)
        project = ""  # deleted by settle()
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        current.error = f"{type(exc).__name__}: {exc}"
        for measurement in wanted:
            if measurement is not current and measurement.error is None and not measurement.figures:
                measurement.error = "not run: an earlier step of the same worker session failed"
    finally:
        if project:
            ctx.raw.delete_project(project)
    return wanted


def latency_floor(ctx: Context, repeat: int) -> Measurement:
    """The emulator's own publish→pull latency, raw client only (no Celery, no transport).

    Not a hard floor: the emulator's wake-up of a waiting pull varies by tens of
    ms, so a transport can come out below it in a given repeat.
    """
    project = ctx.project("raw", "lat", repeat)
    result = Measurement("idle latency (raw client)", "raw", "raw client: publish → waiting pull (reference)",
                         repeat, project, "rl")
    settings = ctx.settings
    ctx.settle()
    try:
        latencies = sorted(s * 1000 for s in ctx.raw.latency_floor(project, settings.latency_count,
                                                                   settings.latency_interval))
        if len(latencies) < settings.latency_count:
            raise RuntimeError(f"only {len(latencies)}/{settings.latency_count} messages pulled")
        result.figures = {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                          "max_ms": max(latencies), "mean_ms": statistics.fmean(latencies),
                          "samples": len(latencies)}
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def _latency(ctx: Context, worker: Worker, system: System, project: str) -> dict[str, Any]:
    """Send tasks one at a time to the idle worker; publish→task-start latency in ms."""
    settings = ctx.settings
    time.sleep(1.0)  # idle
    before = len([row for row in worker.records() if row[1] > 0])
    log = ctx.workdir / f"{project}.latency.log"
    out = run_python_module(
        "benchmarks.producer",
        ["latency", str(settings.latency_count), str(settings.latency_interval)],
        child_env(system.env(project)),
        timeout=60 + settings.latency_count * settings.latency_interval, log_path=log)
    rows = worker.wait_records(before + out["sent"], timeout=30.0, measured_only=True, stall=15.0)
    latencies = sorted((done - sent) * 1000 for done, sent in rows if sent > 0)
    return {
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "mean_ms": statistics.fmean(latencies),
        "samples": len(latencies),
        "publish_p50_ms": percentile([s * 1000 for s in out["publish_seconds"]], 50),
    }


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
    try:
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
        project = ""  # deleted by settle()
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
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if project:
            ctx.raw.delete_project(project)
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
    try:
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
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if project:
            ctx.raw.delete_project(project)
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
