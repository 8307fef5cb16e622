"""The crash-redelivery scenario: a running task's worker is SIGKILLed; when does the task run again?

Apart from scenarios.py because it needs two workers in sequence (the one
killed, a fresh one), acks_late, and a wait that for gcpubsub lasts minutes.
"""

from __future__ import annotations

import time

from .procs import child_env, run_python_module
from .scenarios import Context, Measurement
from .systems import GCPUBSUB, QUEUE, System
from .worker import Worker, WorkerFailed

#: How long the first worker may take to start the task once it is sent, seconds.
START_TIMEOUT = 60.0


def crash_redelivery(ctx: Context, system: System, repeat: int) -> Measurement:
    """One bench.hold task on an acks_late worker; SIGKILL the worker and its pool while the task
    runs; start a fresh worker at once; seconds from the kill to the task's start on the fresh one.

    Gives up `crash_cap` seconds after the kill (figure ``over_cap`` = 1, no ``redelivery_s``).
    """
    settings = ctx.settings
    pool, concurrency = settings.crash_pool
    project = ctx.project(system.short, "crash", repeat)
    result = Measurement(f"crash redelivery ({pool} -c {concurrency}, acks_late)", system.key, system.name,
                         repeat, project, system.short, baseline=system.key == GCPUBSUB)
    env = {**system.env(project), "BENCH_ACKS_LATE": "1"}
    first = Worker(ctx.workdir, f"{project}-killed", {**env, "BENCH_HOLD_SECONDS": str(settings.crash_hold)},
                   QUEUE, pool, concurrency, settings.worker_loglevel, settings.stop_grace)
    fresh = Worker(ctx.workdir, f"{project}-fresh", {**env, "BENCH_HOLD_SECONDS": "0"},
                   QUEUE, pool, concurrency, settings.worker_loglevel, settings.stop_grace)
    ctx.settle()
    with ctx.recording(result, project):
        try:
            first.start()
            first.wait_ready()
            run_python_module("benchmarks.producer", ["hold"], child_env(env), timeout=60,
                              log_path=ctx.workdir / f"{project}.hold.log")
            started = first.wait_records(1, timeout=START_TIMEOUT)[0][0]
            time.sleep(max(0.0, started + settings.crash_after - time.time()))
            killed = first.kill()
            fresh.start()
            fresh_ready = fresh.wait_ready()
            again = _wait_first_record(fresh, killed + settings.crash_cap)
        except BaseException:
            first.kill()
            fresh.stop()
            raise
        ctx.defer_stop(fresh, [result], project)
        result.figures = {
            "ran_before_kill_s": killed - started,
            "fresh_startup_s": fresh_ready - fresh.started_wall,
            "cap_s": settings.crash_cap,
            "over_cap": int(again is None),
        }
        if again is not None:
            result.figures["redelivery_s"] = again - killed
    return result


def _wait_first_record(worker: Worker, until_wall: float) -> float | None:
    """The time `worker` first recorded a task start, or None if none came before `until_wall`."""
    while time.time() < until_wall:
        rows = worker.records()
        if rows:
            return min(row[0] for row in rows)
        if worker.pid is None:
            raise WorkerFailed(f"the fresh worker exited while waiting; log {worker.log_file}")
        time.sleep(0.1)
    return None
