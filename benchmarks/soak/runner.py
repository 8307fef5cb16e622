"""One soak from start to verdict: emulator, workers, producer, faults, drain, morgue, judgement.

The order: start a private emulator (the soak pauses it, so never a shared
one) and the workers; start the producer and the fault schedule together;
when the load is over stop scheduling faults and wait for those under way;
drain; read the morgue; stop everything; judge.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.emulator import Emulator

from . import judge, ledger, plan
from .chaos import Chaos
from .fleet import Fleet, Producer

#: Seconds between RSS samples of each worker.
RSS_EVERY = 5.0


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How the run is carried out (not what it does: that is plan.Settings)."""

    workdir: Path
    drain_max: float = 300.0
    quiet: float = 60.0
    linger: float = 5.0
    rpc_timeout: float = 20.0
    loglevel: str = "WARNING"


class _RssSampler:
    """Owns the thread "soak-rss": samples each worker's RSS every RSS_EVERY s until stopped."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        self._stop = threading.Event()
        # (time, slot, node, KiB with the pool, KiB of the worker process), appended by the
        # sampler thread only; read after stop().
        self.samples: list[tuple[float, int, str, int, int]] = []
        self._thread = threading.Thread(target=self._run, name="soak-rss", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            self.samples.extend((now, *row) for row in self._fleet.memory())
            self._stop.wait(RSS_EVERY)


def run(settings: plan.Settings, options: RunOptions) -> dict[str, Any]:
    """Run one soak; return the result (figures, problems, faults, timeline, RSS)."""
    ledger_dir = options.workdir / "ledger"
    ledger_dir.mkdir(parents=True, exist_ok=True)
    project = f"soak-{secrets.token_hex(3)}"
    schedule = plan.faults(settings)
    emulator = Emulator().start()
    env = {"PUBSUB_EMULATOR_HOST": emulator.host, "SOAK_BROKER_URL": f"pubsub://{project}",
           ledger.ENV: str(ledger_dir), "PYTHONUNBUFFERED": "1",
           "SOAK_TRANSPORT_OPTIONS": json.dumps({"ack_deadline": settings.ack_deadline,
                                                 "rpc_timeout": options.rpc_timeout})}
    os.environ.update(env)  # for the morgue read at the end, in this process
    fleet = Fleet(options.workdir, env, settings.pools, options.loglevel)
    producer: Producer | None = None
    try:
        log(f"emulator {emulator.host}, project {project}; {len(settings.pools)} workers starting; "
             f"work dir {options.workdir}")
        fleet.start_all()
        sampler = _RssSampler(fleet)
        sampler.start()
        t0 = time.time() + 1.0
        producer = Producer(options.workdir, env, settings, t0)
        producer.start()
        chaos = Chaos(schedule, t0, fleet, producer, emulator, ledger_dir, settings.burst)
        chaos.start()
        log(f"load: {settings.jobs} jobs at {settings.rate:g}/s for {settings.duration:g}s; "
             f"{len(schedule)} faults scheduled (seed {settings.seed})")
        _wait_load(producer, t0 + settings.duration)
        chaos.stop()
        load_end = time.time()
        log(f"load over; {len(chaos.windows)} faults done; draining")
        drained = _drain(ledger_dir, settings, options)
        morgue_jobs = _morgue_jobs(settings)
        sampler.stop()
    finally:
        log("stopping workers")
        if producer is not None:
            producer.stop()
        fleet.stop_all()
        emulator.resume()
        emulator.stop()
    contents = ledger.read(ledger_dir)
    verdict = judge.judge(contents, morgue_jobs, chaos.windows,
                          judge.Context(ack_deadline=settings.ack_deadline, rpc_timeout=options.rpc_timeout))
    end = max([load_end, *(run.start for run in contents.runs)])
    return {
        "settings": {**dataclasses.asdict(settings), "jobs": settings.jobs},
        "project": project, "t0": t0, "load_end": load_end, "drain": drained,
        "producer_restarts_after_errors": producer.restarts if producer else 0,
        **verdict,
        "faults": [dataclasses.asdict(window) for window in sorted(chaos.windows, key=lambda w: w.start)],
        "faults_skipped": chaos.skipped, "fault_errors": chaos.errors,
        "timeline": judge.timeline(contents, t0, end),
        "rss": _rss_summary(sampler.samples),
        "rss_samples": [list(sample) for sample in sampler.samples],
    }


def _wait_load(producer: Producer, load_end: float) -> None:
    """Until the load time is over and the producer sent everything (restarted if it died on its own)."""
    while True:
        if producer.restart_if_dead():
            log(f"producer exited on its own (log {producer.log_file}); started again")
        if time.time() >= load_end and producer.finished():
            return
        if time.time() > load_end + 600:
            raise RuntimeError("the producer has not finished 10 minutes after the load; "
                               f"log {producer.log_file}")
        time.sleep(0.5)


def _drain(ledger_dir: Path, settings: plan.Settings, options: RunOptions) -> dict[str, Any]:
    """Wait until every job sent reached its end (then `linger` s for late duplicates), or nothing
    started for `quiet` s, bounded by `drain_max` s. Returns how it ended."""
    started = time.time()
    last_count, last_change = -1, started
    while True:
        contents = ledger.read(ledger_dir)
        ended = {run.job for run in contents.runs if run.end_kind in ("finish", "fail")}
        expected = {row.job for row in contents.sent}
        now = time.time()
        if len(contents.runs) != last_count:
            last_count, last_change = len(contents.runs), now
        if expected <= ended:
            time.sleep(options.linger)
            return {"how": "complete", "seconds": round(time.time() - started, 1)}
        if now - last_change > options.quiet:
            return {"how": f"nothing started for {options.quiet:g}s", "seconds": round(now - started, 1),
                    "open": len(expected - ended)}
        if now - started > options.drain_max:
            return {"how": f"gave up after {options.drain_max:g}s", "seconds": round(now - started, 1),
                    "open": len(expected - ended)}
        time.sleep(2.0)


def _morgue_jobs(settings: plan.Settings) -> list[str]:
    """The job id of each failure record in the morgue (one per entry)."""
    from kombu_pubsub.ops.morgue_tools import Morgue

    from .app import app

    with Morgue(app) as morgue:
        entries = morgue.entries(limit=settings.jobs + 1000)
    jobs = []
    for entry in entries:
        record = entry.record
        if record and record.get("args"):
            jobs.append(str(record["args"][0]))
        else:
            jobs.append(f"unreadable:{entry.message_id}")
    return jobs


def _rss_summary(samples: list[tuple[Any, ...]]) -> dict[str, dict[str, float | None]]:
    """Per worker slot: mean RSS (MiB, worker plus pool) in the first and in the last minute.

    Workers are killed and restarted during a soak, so a slot's first and last minute
    are often different processes. Each worker process (its own samples, named by the
    third field) is also judged on its own: its peak, and how much it grew from its
    second minute (past start-up) to its end, with its pool and, where samples have
    it (a fifth field), the worker process alone: the transport runs there, while
    prefork pool processes run only the tasks.
    """
    summary: dict[str, dict[str, float | None]] = {}
    for slot in sorted({sample[1] for sample in samples}):
        rows = [(sample[0], sample[3]) for sample in samples if sample[1] == slot]
        first_at, last_at = rows[0][0], rows[-1][0]
        first = [kib for at, kib in rows if at - first_at < 60]
        last = [kib for at, kib in rows if last_at - at < 60]
        growth: list[float] = []
        main_growth: list[float] = []
        peaks: list[int] = []
        for process in {sample[2] for sample in samples if sample[1] == slot}:
            lived = [sample for sample in samples if sample[1] == slot and sample[2] == process]
            peaks.append(max(sample[3] for sample in lived))
            settled = [sample for sample in lived if sample[0] - lived[0][0] >= 60]
            if len(settled) >= 2:
                growth.append(settled[-1][3] - min(sample[3] for sample in settled))
                if len(settled[0]) > 4:
                    main_growth.append(settled[-1][4] - min(sample[4] for sample in settled))
        summary[f"w{slot}"] = {"first_minute_mib": round(sum(first) / len(first) / 1024, 1),
                               "last_minute_mib": round(sum(last) / len(last) / 1024, 1),
                               "peak_per_process_mib": round(max(peaks) / 1024, 1),
                               "largest_growth_mib": round(max(growth, default=0) / 1024, 1)}
        if main_growth:
            summary[f"w{slot}"]["largest_worker_process_growth_mib"] = round(max(main_growth) / 1024, 1)
    return summary


_T0 = time.monotonic()


def log(text: str) -> None:
    print(f"[soak {time.monotonic() - _T0:6.1f}s] {text}", file=sys.stderr, flush=True)
