"""What a soak does, decided up front from its seed: each job, and each fault with its time.

Pure functions of the settings, so a run can be repeated (``--seed``) and the
producer, restarted after it was killed, sends exactly the jobs it would have.
"""

from __future__ import annotations

import dataclasses
import random

#: The queue the soak's jobs go to.
QUEUE = "soak"
#: Outcomes a job is planned to have.
OK, RETRY, MORGUE = "ok", "retry", "morgue"
#: Fault kinds, in the report's order.
KILL, WARM_STOP, OUTAGE, PRODUCER_KILL = "kill", "warm-stop", "outage", "producer-kill"
FAULT_KINDS = (KILL, WARM_STOP, OUTAGE, PRODUCER_KILL)
#: A failing job fails this many runs: its 2 retries included, so the morgue takes it.
MORGUE_FAILURES = 3


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that shapes a soak; seconds as floats, rates per second."""

    seed: int = 1
    rate: float = 20.0
    duration: float = 600.0
    max_countdown: float = 120.0
    kill_every: float = 60.0
    warm_stop_every: float = 90.0
    outage_every: float = 180.0
    outage_min: float = 5.0
    outage_max: float = 20.0
    producer_kill_every: float = 120.0
    pools: tuple[tuple[str, int], ...] = (("prefork", 8), ("threads", 32), ("threads", 32))
    ack_deadline: float = 30.0

    @property
    def jobs(self) -> int:
        return int(self.rate * self.duration)

    @property
    def burst(self) -> int:
        """Jobs sent back to back once a second (the producer's burst)."""
        return max(1, round(self.rate))


@dataclasses.dataclass(frozen=True)
class Job:
    index: int
    job_id: str
    outcome: str
    sleep: float
    failures: int
    countdown: float  # 0: none
    due: float  # seconds after the load began when the producer sends it


def job(settings: Settings, index: int) -> Job:
    """Job number `index` (0-based): its outcome, sleep, planned failures and countdown.

    Mix: 85 % succeed at once, 10 % fail once or twice then succeed, 5 % fail every
    run and end in the morgue; sleeps 0–0.5 s (60 %), 0.5–2 s (30 %), 2–5 s (10 %);
    10 % carry a countdown of 1–30 s (70 %) or 30 s–max_countdown, never reaching
    past the end of the load.
    """
    rng = random.Random(f"{settings.seed}:job:{index}")
    due = (index // settings.burst) * settings.burst / settings.rate
    roll = rng.random()
    outcome, failures = (OK, 0) if roll < 0.85 else (RETRY, rng.choice((1, 2))) if roll < 0.95 \
        else (MORGUE, MORGUE_FAILURES)
    band = rng.random()
    low, high = (0.0, 0.5) if band < 0.6 else (0.5, 2.0) if band < 0.9 else (2.0, 5.0)
    sleep = rng.uniform(low, high)
    countdown = 0.0
    if rng.random() < 0.10:
        long = rng.random() >= 0.7 and settings.max_countdown > 30.0
        low, high = (30.0, settings.max_countdown) if long else (1.0, min(30.0, settings.max_countdown))
        countdown = rng.uniform(low, high)
        countdown = round(max(1.0, min(countdown, settings.duration - due)), 3)
    return Job(index, f"j{index}", outcome, round(sleep, 3), failures, countdown, due)


@dataclasses.dataclass(frozen=True)
class Fault:
    kind: str
    at: float  # seconds after the load began
    target: int = 0  # worker slot (kill, warm-stop)
    length: float = 0.0  # seconds Pub/Sub stays unreachable (outage)


def faults(settings: Settings) -> list[Fault]:
    """The fault schedule: each kind every `*_every` s (±25 % jitter), during the load only.

    An interval of 0 turns that kind off. Faults of different kinds may overlap.
    """
    rng = random.Random(f"{settings.seed}:faults")
    every = {KILL: settings.kill_every, WARM_STOP: settings.warm_stop_every,
             OUTAGE: settings.outage_every, PRODUCER_KILL: settings.producer_kill_every}
    made: list[Fault] = []
    workers = len(settings.pools)
    for kind in FAULT_KINDS:
        interval = every[kind]
        if interval <= 0:
            continue
        slot = 1
        while True:
            at = round(interval * (slot + rng.uniform(-0.25, 0.25)), 3)
            if at >= settings.duration - 2.0:
                break
            target = rng.randrange(workers) if kind in (KILL, WARM_STOP) else 0
            length = round(rng.uniform(settings.outage_min, settings.outage_max), 3) \
                if kind == OUTAGE else 0.0
            made.append(Fault(kind, at, target, length))
            slot += 1
    return sorted(made, key=lambda fault: fault.at)
