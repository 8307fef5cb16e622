"""Load for the demo: bursts (`spawn`) and a steady rate (`python -m demo_tasks.spawner`).

Jobs sleep a random 0–5 s and fail at random (then Celery retries them and, after the
last retry, they go to the morgue). The rate is paced against a schedule, not by sleeping
a fixed interval, so the achieved rate stays on the asked one however long a send takes.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import signal
import sys
import time
from collections.abc import Callable
from typing import TextIO

#: Chance that a spawned job raises JobError.
FAIL_RATIO = 0.25
MAX_SLEEP = 5.0


def random_job(rng: random.Random, fail_ratio: float = FAIL_RATIO) -> dict[str, object]:
    """Arguments of one random mock_job."""
    return {"sleep_duration": round(rng.uniform(0, MAX_SLEEP), 2),
            "raise_error": rng.random() < fail_ratio}


def spawn(job_count: int = 10, fail_ratio: float = FAIL_RATIO, seed: int | None = None) -> list:
    """Enqueue a burst of `job_count` random mock_jobs; return their AsyncResults."""
    from demo_tasks import mock_job

    rng = random.Random(seed)
    return [mock_job.delay(**random_job(rng, fail_ratio)) for _ in range(job_count)]


@dataclasses.dataclass
class Summary:
    sent: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def run(send: Callable[[], None], rate: float, duration: float | None = None, count: int | None = None,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
        progress: TextIO | None = None, progress_every: float = 10.0) -> Summary:
    """Call `send` `rate` times a second until `duration` seconds or `count` sends (or Ctrl-C).

    With `progress`, writes one whole line there every `progress_every` seconds.
    """
    if rate <= 0:
        raise ValueError("rate must be above 0 jobs/s")
    start = clock()
    sent = 0
    last_report = start
    try:
        while (count is None or sent < count) and (duration is None or sent / rate < duration):
            due = start + sent / rate
            now = clock()
            if due > now:
                sleep(due - now)
            send()
            sent += 1
            now = clock()
            if progress is not None and now - last_report >= progress_every:
                last_report = now
                print(f"spawner: sent {sent} jobs, {sent / (now - start):.1f} jobs/s (asked {rate:g})",
                      file=progress, flush=True)
    except KeyboardInterrupt:
        pass
    elapsed = clock() - start
    # Each send owns one interval of the schedule, so n sends fill n / rate seconds.
    return Summary(sent, max(elapsed, sent / rate))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo_tasks.spawner", description=__doc__)
    parser.add_argument("--rate", type=float, default=5.0, help="jobs per second (default 5)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--count", type=int, help="stop after this many jobs")
    parser.add_argument("--fail-ratio", type=float, default=FAIL_RATIO, help="chance a job fails")
    parser.add_argument("--seed", type=int, help="random seed, for repeatable load")
    parser.add_argument("--progress", type=float, default=10.0, metavar="SECONDS",
                        help="a progress line every SECONDS (default 10; 0: none)")
    args = parser.parse_args(argv)
    from demo_tasks import mock_job

    for signum in (signal.SIGTERM, signal.SIGHUP):  # docker stop, demo_tasks.local: summary, then exit
        signal.signal(signum, _interrupt)

    rng = random.Random(args.seed)
    summary = run(lambda: mock_job.delay(**random_job(rng, args.fail_ratio)), args.rate,
                  duration=args.duration, count=args.count,
                  progress=sys.stdout if args.progress > 0 else None, progress_every=args.progress)
    print(f"spawner: sent {summary.sent} jobs in {summary.seconds:.1f}s: {summary.rate:.2f} jobs/s "
          f"(asked {args.rate:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
