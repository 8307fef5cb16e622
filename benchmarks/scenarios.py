"""The scenarios. Each call measures one system once and returns a Measurement (or a list).

Setup (topics, subscriptions, worker start-up) and cleanup are outside the
timed part; every project is deleted from the emulator afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .procs import child_env, run_python_module
from .pubsub_raw import Raw
from .stats import percentile
from .systems import CELERY_MEMORY, GCPUBSUB, KOMBU_PUBSUB, QUEUE, EnqueueMode, Settings, System
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
        # Projects whose deletion defer_stop took over.
        self._handed_over: set[str] = set()

    def project(self, short: str, scenario: str, repeat: int) -> str:
        return f"bench-{self.run_id}-{short}-{scenario}-r{repeat}"

    def defer_stop(self, worker: Worker, measurements: list[Measurement], project: str) -> None:
        """Let `worker` shut down while the next (untimed) setup runs; settle() waits for it."""
        self._stopping.append((worker.stop_in_background(), worker, measurements, project))
        self._handed_over.add(project)

    @contextlib.contextmanager
    def recording(self, result: Measurement, project: str = "") -> Iterator[None]:
        """Run one scenario's body: an exception becomes `result.error` (the run goes on);
        `project` is then deleted, unless defer_stop took it over."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            if project and project not in self._handed_over:
                self.raw.delete_project(project)

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
    """N calls from a fresh process that exits right after; then count what arrived.

    A threaded mode makes the N calls from Settings.enqueue_threads threads of that process.
    """
    threads = ctx.settings.enqueue_threads if mode.threaded else 1
    project = ctx.project(mode.short, "enq", repeat)
    result = Measurement(mode.scenario(threads), mode.system, mode.label, repeat, project, mode.short,
                         baseline=mode.baseline)
    n = ctx.settings.enqueue_n
    ctx.settle()
    with ctx.recording(result, project):
        count_sub = ctx.raw.ensure_count_subscription(project, QUEUE)
        topic_path = f"projects/{project}/topics/{QUEUE}"
        if mode.producer_mode == "enqueue-celery":
            system = System(mode.system, mode.short)
            env = child_env(system.env(project, mode.transport_options))
            args = [mode.producer_mode, str(n)]
        else:
            env = child_env()
            args = [mode.producer_mode, topic_path, str(n)]
        if mode.threaded:
            args += ["--threads", str(threads)]
        log = ctx.workdir / f"{project}.producer.log"
        out = run_python_module("benchmarks.producer", args, env, timeout=60 + n / 20, log_path=log)
        exited = time.time()
        arrived, size = ctx.raw.count(count_sub, out["sent"])
        result.figures = {
            "calls_per_s": out["timed_calls"] / out["seconds"],
            "seconds": out["seconds"],
            # CPU of the producer process per call (the emulator's not counted): robust to other load.
            "cpu_ms_per_call": 1000 * out["cpu_s"] / out["timed_calls"],
            "sent": out["sent"],
            "arrived": arrived,
            "lost_at_exit": out["sent"] - arrived,
            "exit_s": exited - out["end_wall"],
            "bytes_per_msg": size / arrived if arrived else None,
            "threads": threads,
        }
    return result


def worker_session(ctx: Context, system: System, pool: str, concurrency: int, repeat: int,
                   drain: bool, latency: bool) -> list[Measurement]:
    """One worker: optionally drain a preloaded backlog, then optionally measure idle latency.

    The Celery ceiling (memory://) drains only: its worker publishes the backlog itself.
    """
    settings = ctx.settings
    tag = f"{pool[:2]}{concurrency}"
    project = ctx.project(system.short, tag, repeat)
    pool_label = f"{pool} -c {concurrency}"
    drain_m = Measurement(f"drain {pool_label}", system.key, system.name, repeat, project, system.short,
                          baseline=system.key == GCPUBSUB)
    latency_m = Measurement(f"idle latency ({pool_label})", system.key, system.name, repeat, project,
                            system.short, baseline=system.key == GCPUBSUB)
    wanted = ([drain_m] if drain else []) + ([latency_m] if latency else [])
    env = system.env(project)
    current = wanted[0]
    try:
        expected = 0
        if drain and system.key == CELERY_MEMORY:
            expected = settings.drain_n
            env = system.env(project, {"polling_interval": settings.ceiling_polling_interval})
            env["BENCH_SELF_PUBLISH"] = str(expected)
        elif drain:
            expected = _preload(ctx, system, project, drain_m)
        worker = Worker(ctx.workdir, f"{project}-worker", env, QUEUE, pool, concurrency,
                        settings.worker_loglevel, settings.stop_grace)
        ctx.settle()  # the previous worker is gone before this one starts
        try:
            worker.start()
            ready = worker.wait_ready()
            startup = ready - worker.started_wall
            if drain:
                drain_m.figures.update(_drain(worker, ready, expected))
                drain_m.figures["startup_s"] = startup
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


def _preload(ctx: Context, system: System, project: str, drain_m: Measurement) -> int:
    """Enqueue the drain backlog (untimed) and wait until it is on the topic; return its size.

    kombu_pubsub preloads with fast_publish (flushed at exit); gcpubsub as it is.
    """
    n = ctx.settings.drain_n
    count_sub = ctx.raw.ensure_count_subscription(project, system.topic())
    options = {"fast_publish": True} if system.key == KOMBU_PUBSUB else {}
    out = run_python_module("benchmarks.producer", ["preload", str(n)],
                            child_env(system.env(project, options)),
                            timeout=60 + n / 20, log_path=ctx.workdir / f"{project}.preload.log")
    expected = ctx.raw.wait_count(count_sub, out["sent"], limit=30.0)
    drain_m.figures.update({"preloaded": out["sent"], "arrived": expected})
    if expected == 0:
        raise WorkerFailed("no preloaded message arrived")
    return expected


def _drain(worker: Worker, ready: float, expected: int) -> dict[str, Any]:
    """Wait for the backlog to be done; rate, CPU and memory of the worker (main + pool)."""
    rows = worker.wait_records(expected, timeout=max(60.0, expected / 50), stall=30.0)
    cpu = worker.cpu_seconds()
    memory = worker.memory_kib()
    done = sorted(row[0] for row in rows)
    last = done[expected - 1]
    figures: dict[str, Any] = {
        "tasks_per_s": expected / (last - ready),
        "seconds": last - ready,
        "first_task_s": done[0] - ready,
        "duplicates": len(rows) - expected,
    }
    if cpu is not None:
        # From the ready signal to the moment the last task was seen (≤ 50 ms later, idle).
        figures["cpu_s"] = cpu - worker.ready_cpu
        figures["cpu_ms_per_task"] = 1000 * figures["cpu_s"] / expected
    if memory is not None:
        # Peak RSS per process (VmHWM), summed over the main process and its pool children.
        figures["peak_rss_mib"] = (memory["main_hwm"] + memory["children_hwm"]) / 1024
        figures["peak_main_mib"] = memory["main_hwm"] / 1024
    return figures


def drain_raw(ctx: Context, repeat: int) -> Measurement:
    """The Pub/Sub drain ceiling: N preloaded messages pulled and acked by the raw client alone."""
    project = ctx.project("raw", "drn", repeat)
    result = Measurement("drain (raw client)", "raw", "raw client: pull + batched ack (Pub/Sub ceiling)",
                         repeat, project, "rd")
    n = ctx.settings.drain_n
    ctx.settle()
    with ctx.recording(result, project):
        subscription = ctx.raw.ensure_count_subscription(project, QUEUE)
        accepted = ctx.raw.preload(f"projects/{project}/topics/{QUEUE}", n)
        out = run_python_module("benchmarks.producer", ["drain-raw", subscription, str(accepted)],
                                child_env(), timeout=180, log_path=ctx.workdir / f"{project}.drain.log")
        if out["acked"] < accepted:
            raise RuntimeError(f"only {out['acked']}/{accepted} messages acked")
        result.figures = {
            "tasks_per_s": accepted / out["seconds"],
            "seconds": out["seconds"],
            "preloaded": accepted,
            "cpu_s": out["cpu_s"],
            "cpu_ms_per_task": 1000 * out["cpu_s"] / accepted,
            "peak_rss_mib": out["max_rss_kib"] / 1024,
        }
    return result


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
    with ctx.recording(result):
        latencies = sorted(s * 1000 for s in ctx.raw.latency_floor(project, settings.latency_count,
                                                                   settings.latency_interval))
        if len(latencies) < settings.latency_count:
            raise RuntimeError(f"only {len(latencies)}/{settings.latency_count} messages pulled")
        result.figures = {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                          "max_ms": max(latencies), "mean_ms": statistics.fmean(latencies),
                          "samples": len(latencies), "latencies_ms": latencies}
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
        "latencies_ms": latencies,
        "publish_p50_ms": percentile([s * 1000 for s in out["publish_seconds"]], 50),
    }
