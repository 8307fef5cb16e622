"""``python -m benchmarks soak``: the command line of the chaos soak."""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import tempfile
from pathlib import Path

from ..report import git_info
from . import plan, report, runner

RESULTS = Path(__file__).resolve().parent.parent / "results" / "soak.json"


def _range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        values = float(low), float(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SECONDS or MIN-MAX, e.g. 5-20, not {text!r}") from None
    if not 0 < values[0] <= values[1]:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX, not {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    from ..__main__ import parse_pools

    defaults = plan.Settings()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks soak",
        description="Chaos soak: jobs at a steady rate on several acks_late workers while faults hit "
                    "on a seeded schedule; exits 1 on any lost job, early countdown, unexplained "
                    "duplicate or wrong outcome.")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="jobs per second (default 20)")
    parser.add_argument("--duration", type=float, default=defaults.duration,
                        help="seconds of load (default 600)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of jobs and faults (default 1)")
    parser.add_argument("--pools", type=parse_pools, default=defaults.pools, metavar="POOL:C,...",
                        help="one worker per item (default prefork:8,threads:32,threads:32)")
    parser.add_argument("--kill-every", type=float, default=defaults.kill_every,
                        help="SIGKILL a worker about every S seconds; 0: never (default 60)")
    parser.add_argument("--warm-stop-every", type=float, default=defaults.warm_stop_every,
                        help="SIGTERM (warm shutdown) a worker about every S seconds (default 90)")
    parser.add_argument("--outage-every", type=float, default=defaults.outage_every,
                        help="make Pub/Sub unreachable about every S seconds (default 180)")
    parser.add_argument("--outage", type=_range, default=(defaults.outage_min, defaults.outage_max),
                        metavar="MIN-MAX", help="outage length, seconds (default 5-20)")
    parser.add_argument("--producer-kill-every", type=float, default=defaults.producer_kill_every,
                        help="SIGKILL the producer mid-burst about every S seconds (default 120)")
    parser.add_argument("--max-countdown", type=float, default=defaults.max_countdown,
                        help="longest countdown, seconds (default 120; none past the end of the load)")
    parser.add_argument("--ack-deadline", type=float, default=defaults.ack_deadline,
                        help="the transport's ack_deadline, seconds (default 30)")
    parser.add_argument("--drain-max", type=float, default=300.0, help="longest drain, seconds (default 300)")
    parser.add_argument("--quiet", type=float, default=60.0,
                        help="drain ends early when nothing started for this long, seconds (default 60)")
    parser.add_argument("--output", type=Path, default=RESULTS,
                        help="result JSON (default benchmarks/results/soak.json; the .md report and the "
                             "PNG timeline go next to it)")
    parser.add_argument("--worker-loglevel", default="WARNING")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work dir (kept anyway on failure)")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="run nothing: write the text, Markdown and PNG reports of a result JSON "
                             "again (e.g. after the report gained a figure)")
    return parser


def render(path: Path) -> int:
    """Write the reports of a finished run again from its JSON (nothing is measured)."""
    result = json.loads(path.read_text(encoding="utf-8"))
    result["rss"] = runner._rss_summary([tuple(sample) for sample in result["rss_samples"]])
    report.write_json(path, result)
    path.with_suffix(".md").write_text(report.markdown(result), encoding="utf-8")
    print(report.text(result))
    report.chart(result, path.with_suffix(".png"), log=runner.log)
    return 1 if result["failed"] else 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.render:
        return render(args.render)
    settings = plan.Settings(
        seed=args.seed, rate=args.rate, duration=args.duration, max_countdown=args.max_countdown,
        kill_every=args.kill_every, warm_stop_every=args.warm_stop_every, outage_every=args.outage_every,
        outage_min=args.outage[0], outage_max=args.outage[1], producer_kill_every=args.producer_kill_every,
        pools=tuple(args.pools), ack_deadline=args.ack_deadline)
    workdir = Path(tempfile.mkdtemp(prefix="soak-run-"))
    options = runner.RunOptions(workdir=workdir, drain_max=args.drain_max, quiet=args.quiet,
                                loglevel=args.worker_loglevel)
    failed = True
    try:
        started = datetime.datetime.now(datetime.UTC)
        result = runner.run(settings, options)
        result["git"] = git_info()
        result["date"] = started.strftime("%Y-%m-%d %H:%M UTC")
        failed = bool(result["failed"])
        report.write_json(args.output, result)
        args.output.with_suffix(".md").write_text(report.markdown(result), encoding="utf-8")
        print(report.text(result))
        runner.log(f"result written to {args.output}")
        picture = args.output.with_suffix(".png")
        if report.chart(result, picture, log=runner.log):
            runner.log(f"timeline written to {picture}")
    finally:
        if failed or args.keep_logs:
            runner.log(f"logs and ledger kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
