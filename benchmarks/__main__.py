"""``python -m benchmarks``: kombu_pubsub vs Kombu's gcpubsub on one Pub/Sub emulator.

Scenarios (``--only``, repeatable, comma-separated or prefixes):
  enqueue             task.delay() N times from a fresh process; calls/s and arrivals at exit
  enqueue-threads     the same N calls from 8 threads of that process (the raw client's threads
                      share one client); calls/s against the raw 8-thread rate, arrivals at exit
  drain-POOL          N preloaded no-op tasks through ``celery worker -P POOL``; tasks/s, CPU s,
                      peak RSS; also the same worker on memory:// (Celery's own ceiling)
  drain-raw           N messages pulled and acked by the raw client (the Pub/Sub ceiling)
  drain               every drain-POOL and drain-raw
  latency             idle worker, one task every 100 ms; publish→task-start p50/p99
  countdown-lateness  idle worker, 50 tasks with countdown=5; start − ETA p50/p99/max, early runs
  countdown-memory    worker RSS idle and with 10,000 pulled tasks whose countdown is an hour away
  countdown           both countdown scenarios
  crash               acks_late task, worker SIGKILLed mid-task; seconds until a fresh worker starts it
  many-queues         a worker on 1, 10, 50 queues: idle CPU and threads; tasks to random queues,
                      send→start p50/p99/max and tasks never started

``python -m benchmarks soak [--help]`` is the chaos soak instead (benchmarks/soak/).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import chart, countdown, crash, gcpubsub_compat, many_queues, report, scenarios, targets
from .emulator import Emulator
from .pubsub_raw import Raw
from .systems import CEILING, ENQUEUE_MODES, ENQUEUE_THREAD_MODES, SYSTEMS, Settings

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Where a full run writes its figures: the documentation shows them from there.
DOCS_RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"


def parse_pools(text: str) -> tuple[tuple[str, int], ...]:
    pools = []
    for item in text.split(","):
        pool, _, concurrency = item.strip().partition(":")
        if pool not in {"prefork", "threads", "solo", "eventlet", "gevent"} or not concurrency.isdigit():
            raise argparse.ArgumentTypeError(f"expected POOL:CONCURRENCY[,...], e.g. prefork:2, not {item!r}")
        pools.append((pool, int(concurrency)))
    return tuple(pools)


def parse_counts(text: str) -> tuple[int, ...]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items or not all(item.isdigit() and int(item) > 0 for item in items):
        raise argparse.ArgumentTypeError(f"expected positive whole numbers, e.g. 1,10,50, not {text!r}")
    return tuple(int(item) for item in items)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, 1 repeat, short crash cap: every scenario in about two minutes")
    parser.add_argument("--only", action="append", default=[], metavar="SCENARIO",
                        help="run only these scenarios: enqueue, enqueue-threads, drain, drain-prefork, "
                             "drain-threads, "
                             "drain-raw, latency, countdown, countdown-lateness, countdown-memory, crash, "
                             "many-queues")
    parser.add_argument("--enqueue-threads", type=int,
                        help="enqueue-threads: threads of the producer process (default 8)")
    parser.add_argument("--systems", default="kombu_pubsub,gcpubsub",
                        help="comma-separated: kombu_pubsub, gcpubsub (enqueue raw rows always run)")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--enqueue-n", type=int)
    parser.add_argument("--drain-n", type=int)
    parser.add_argument("--latency-count", type=int)
    parser.add_argument("--countdown-count", type=int, help="countdown lateness: tasks sent (default 50)")
    parser.add_argument("--pending-n", type=int,
                        help="countdown memory: tasks pending in the worker (default 10000)")
    parser.add_argument("--crash-cap", type=float,
                        help="crash redelivery: give up this many seconds after the kill (default 300)")
    parser.add_argument("--queue-counts", type=parse_counts, metavar="Q,...",
                        help="many queues: the queue counts, one worker each (default 1,10,50)")
    parser.add_argument("--many-queues-tasks", type=int,
                        help="many queues: tasks sent per queue count (default 60; smoke 10)")
    parser.add_argument("--many-queues-grace", type=float,
                        help="many queues: wait this long after the last send for tasks not started yet "
                             "(default 30 s; smoke 10 s)")
    parser.add_argument("--pools", type=parse_pools, metavar="POOL:C,...",
                        help="worker pools for drain (default prefork:2,threads:8); "
                             "latency uses the first")
    parser.add_argument("--worker-loglevel", help="celery worker --loglevel (default WARNING)")
    parser.add_argument("--output", type=Path,
                        help="results JSON (default docs/results/benchmarks.json, with its .md table "
                             "and .png chart next to it; benchmarks/results/smoke.json with --smoke)")
    parser.add_argument("--baseline", type=Path,
                        help="an earlier results JSON to compare kombu_pubsub's figures with "
                             "(default: the output file as it was before this run; none with --smoke)")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the work dir with worker/producer logs")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    base = Settings.smoke() if args.smoke else Settings()
    overrides = {
        "repeats": args.repeats, "enqueue_n": args.enqueue_n, "enqueue_threads": args.enqueue_threads,
        "drain_n": args.drain_n,
        "latency_count": args.latency_count, "pools": args.pools, "worker_loglevel": args.worker_loglevel,
        "countdown_count": args.countdown_count, "pending_n": args.pending_n, "crash_cap": args.crash_cap,
        "queue_counts": args.queue_counts, "many_queues_tasks": args.many_queues_tasks,
        "many_queues_grace": args.many_queues_grace,
    }
    return Settings(**{**base.__dict__, **{k: v for k, v in overrides.items() if v is not None}})


def selected(only: list[str]) -> set[str]:
    tokens = {token.strip() for item in only for token in item.split(",") if token.strip()}
    known = {"enqueue", "enqueue-threads", "drain", "latency", "countdown", "crash", "many-queues"}
    narrow = {"countdown": {"countdown-lateness", "countdown-memory"}, "enqueue": {"enqueue-threads"}}
    for token in tokens:
        family = token.split("-")[0]
        if (token not in known and family not in known) or \
                (family in narrow and token != family and token not in narrow[family]):
            raise SystemExit(f"unknown scenario {token!r}; expected enqueue, enqueue-threads, drain, "
                             "drain-POOL, drain-raw, latency, countdown, countdown-lateness, "
                             "countdown-memory, crash or many-queues")
    return tokens or known


def wants(tokens: set[str], scenario: str) -> bool:
    """True when `scenario` was asked for: by its name or a prefix (drain → drain-prefork).

    "enqueue" (one thread) and "enqueue-threads" are asked for apart.
    """
    if scenario.startswith("enqueue"):
        return scenario in tokens
    return any(scenario == token or scenario.startswith(token + "-") for token in tokens)


def run(settings: Settings, tokens: set[str], workdir: Path,
        system_keys: set[str]) -> tuple[list[scenarios.Measurement], dict]:
    placeholder = gcpubsub_compat.ensure_importable()
    load_before = report.load_average()
    run_id = secrets.token_hex(3)
    measurements: list[scenarios.Measurement] = []
    started = time.monotonic()
    with Emulator() as emulator:
        origin = "started here" if emulator.owned else "from PUBSUB_EMULATOR_HOST"
        _log(f"emulator {emulator.host} ({origin}); run id {run_id}; logs in {workdir}")
        raw = Raw()
        ctx = scenarios.Context(settings, raw, workdir, run_id)
        try:
            _log("warming up the emulator (untimed)")
            raw.warm_up(ctx.project("raw", "warm", 0), n=min(2000, 10 * settings.enqueue_n))
            for repeat in range(1, settings.repeats + 1):
                # Alternate the order so drift (warm JIT in the emulator, other load) hits both.
                systems = tuple(s for s in SYSTEMS if s.key in system_keys)
                modes = tuple(m for m in ENQUEUE_MODES if m.system in system_keys | {"raw"})
                thread_modes = tuple(m for m in ENQUEUE_THREAD_MODES if m.system in system_keys | {"raw"})
                if repeat % 2 == 0:
                    systems, modes, thread_modes = systems[::-1], modes[::-1], thread_modes[::-1]
                for scenario, chosen in (("enqueue", modes), ("enqueue-threads", thread_modes)):
                    for mode in chosen if wants(tokens, scenario) else ():
                        _log(f"repeat {repeat}: {mode.scenario(settings.enqueue_threads)} {mode.label}")
                        measurements.append(scenarios.enqueue(ctx, mode, repeat))
                        _report_last(measurements[-1:])
                if wants(tokens, "latency"):
                    _log(f"repeat {repeat}: latency reference, raw client")
                    measurements.append(scenarios.latency_floor(ctx, repeat))
                    _report_last(measurements[-1:])
                if wants(tokens, "drain-raw"):
                    _log(f"repeat {repeat}: drain, raw client")
                    measurements.append(scenarios.drain_raw(ctx, repeat))
                    _report_last(measurements[-1:])
                for index, (pool, concurrency) in enumerate(settings.pools):
                    drain = wants(tokens, f"drain-{pool}")
                    latency = index == 0 and wants(tokens, "latency")
                    if not drain and not latency:
                        continue
                    # The ceiling only drains: its worker publishes to itself, nothing else reaches it.
                    for system in systems + ((CEILING,) if drain else ()):
                        with_latency = latency and system is not CEILING
                        _log(f"repeat {repeat}: worker {pool} -c {concurrency} {system.key}"
                             f"{' drain' if drain else ''}{' latency' if with_latency else ''}")
                        done = scenarios.worker_session(ctx, system, pool, concurrency, repeat,
                                                        drain, with_latency)
                        measurements.extend(done)
                        _report_last(done)
                for system in systems:
                    if wants(tokens, "countdown-lateness"):
                        _log(f"repeat {repeat}: countdown lateness {system.key}")
                        measurements.append(countdown.countdown_lateness(ctx, system, repeat))
                        _report_last(measurements[-1:])
                    if wants(tokens, "countdown-memory"):
                        _log(f"repeat {repeat}: countdown memory {system.key}")
                        measurements.append(countdown.countdown_memory(ctx, system, repeat))
                        _report_last(measurements[-1:])
                    if wants(tokens, "crash"):
                        _log(f"repeat {repeat}: crash redelivery {system.key} "
                             f"(gives up {settings.crash_cap:g}s after the kill)")
                        measurements.append(crash.crash_redelivery(ctx, system, repeat))
                        _report_last(measurements[-1:])
                # One queue count at a time, both systems next to each other.
                for queue_count in settings.queue_counts if wants(tokens, "many-queues") else ():
                    for system in systems:
                        _log(f"repeat {repeat}: many queues, Q={queue_count}, {system.key}")
                        measurements.append(many_queues.many_queues(ctx, system, queue_count, repeat))
                        _report_last(measurements[-1:])
        finally:
            ctx.settle()
            raw.close()
        meta = report.environment(emulator.host, emulator.owned, placeholder)
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    # Other work on the machine skews every figure: say how busy it was.
    meta["load_before"], meta["load_after"] = load_before, report.load_average()
    return measurements, meta


_T0 = time.monotonic()


def _log(text: str) -> None:
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {text}", file=sys.stderr, flush=True)


def _report_last(done: list[scenarios.Measurement]) -> None:
    for m in done:
        if m.error:
            _log(f"  {m.scenario} {m.label}: FAILED {m.error.splitlines()[0]}")
        else:
            shown = {k: round(v, 2) if isinstance(v, float) else v for k, v in m.figures.items()
                     if not isinstance(v, list)}
            _log(f"  {m.scenario} {m.label}: {shown}")


def _previous(path: Path | None) -> dict[str, Any] | None:
    """An earlier results file to compare with (its figures are read before this run
    overwrites it), or None."""
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["soak"]:
        from .soak import cli

        return cli.main(argv[1:])
    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    tokens = selected(args.only)
    system_keys = {key.strip() for key in args.systems.split(",") if key.strip()}
    if not system_keys or not system_keys <= {system.key for system in SYSTEMS}:
        raise SystemExit(f"--systems takes kombu_pubsub and/or gcpubsub, not {args.systems!r}")
    output = args.output or (RESULTS_DIR / "smoke.json" if args.smoke else DOCS_RESULTS / "benchmarks.json")
    previous = _previous(args.baseline or (None if args.smoke else output))
    workdir = Path(tempfile.mkdtemp(prefix="bench-run-"))
    measurements: list[scenarios.Measurement] = []
    try:
        measurements, meta = run(settings, tokens, workdir, system_keys)
    finally:
        failed = not measurements or any(m.error for m in measurements)
        if args.keep_logs or failed:
            _log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    rows = report.summarize(measurements)
    git = report.git_info()
    header = {"date": report.now_iso(), "git": git, "repeats": settings.repeats, "smoke": args.smoke, **meta}
    goals = targets.targets(rows)
    table = report.markdown(rows, header, goals, previous)
    report.write_json(output, {
        "date": header["date"], "git": git, "smoke": args.smoke, "scenarios": sorted(tokens),
        "settings": settings.to_json(), "environment": meta, "summary": rows, "targets": goals,
        "measurements": [m.__dict__ for m in measurements], "markdown": table,
    })
    output.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
    print(table)
    _log(f"results written to {output} (table: {output.with_suffix('.md').name}) in {meta['elapsed_s']}s")
    picture = output.with_suffix(".png")
    if chart.write(rows, header, picture, log=_log):
        _log(f"chart written to {picture}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
