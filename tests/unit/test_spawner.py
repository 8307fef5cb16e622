"""The spawner's pacing and job mix, on a fake clock (no I/O, no real time)."""

from __future__ import annotations

import random

import pytest

from demo_tasks.spawner import MAX_SLEEP, random_job, run


class FakeClock:
    def __init__(self, send_cost: float) -> None:
        self.now = 0.0
        self.send_cost = send_cost
        self.sends: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def send(self) -> None:
        self.sends.append(self.now)
        self.now += self.send_cost


@pytest.mark.parametrize(("rate", "send_cost"), [(5, 0.001), (50, 0.001), (50, 0.015), (5, 0.15)])
def test_achieved_rate_is_within_5_percent_of_the_asked_one(rate, send_cost):
    fake = FakeClock(send_cost)
    summary = run(fake.send, rate, duration=60, clock=fake.clock, sleep=fake.sleep)
    assert abs(summary.rate - rate) / rate < 0.05
    assert summary.sent == pytest.approx(60 * rate, abs=1)


def test_a_slow_send_does_not_accumulate_drift():
    fake = FakeClock(0.0)
    costs = iter([0.5] + [0.0] * 99)  # one send stalls half a second
    fake.send = lambda: (fake.sends.append(fake.now), setattr(fake, "now", fake.now + next(costs)))
    run(fake.send, 10, count=100, clock=fake.clock, sleep=fake.sleep)
    assert fake.sends[-1] == pytest.approx(9.9)  # back on schedule: 100 sends at 10/s


def test_count_stops_the_run():
    fake = FakeClock(0.0)
    assert run(fake.send, 5, count=7, clock=fake.clock, sleep=fake.sleep).sent == 7


def test_random_jobs_sleep_0_to_5_seconds_and_some_fail():
    rng = random.Random(1)
    jobs = [random_job(rng) for _ in range(400)]
    assert all(0 <= job["sleep_duration"] <= MAX_SLEEP for job in jobs)
    failing = sum(job["raise_error"] for job in jobs)
    assert 50 < failing < 150  # about a quarter
