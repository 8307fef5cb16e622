"""The chaos soak for one minute: every kind of fault at least once, nothing lost.

Runs ``python -m benchmarks soak`` (its own emulator, which it pauses; two
workers, prefork and threads) at a modest rate and fails on any lost job, any
run before its ETA, any duplicate run no fault explains, or any job whose
outcome is not the planned one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.soak import plan

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_a_minute_of_kills_warm_stops_outages_and_producer_kills_loses_nothing(tmp_path):
    output = tmp_path / "soak.json"
    env = {key: value for key, value in os.environ.items() if key != "PUBSUB_EMULATOR_HOST"}
    args = ["--duration", "60", "--rate", "5", "--seed", "3", "--pools", "prefork:4,threads:16",
            "--kill-every", "20", "--warm-stop-every", "25", "--outage-every", "30", "--outage", "5-8",
            "--producer-kill-every", "25", "--max-countdown", "20", "--ack-deadline", "10",
            "--drain-max", "60", "--quiet", "25", "--output", str(output)]
    done = subprocess.run([sys.executable, "-m", "benchmarks", "soak", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert output.exists(), f"no result; exit {done.returncode}\n{done.stdout}\n{done.stderr[-4000:]}"
    result = json.loads(output.read_text())
    figures = result["figures"]
    report = f"{done.stdout}\n{json.dumps(result['problems'], indent=1)[:4000]}\n{done.stderr[-3000:]}"
    assert all(figures["faults"].get(kind, 0) >= 1 for kind in plan.FAULT_KINDS), report
    assert not result["fault_errors"], report
    assert figures["sent"] == 300 and figures["in_morgue"] > 0, report
    assert figures["lost"] == 0, report
    assert figures["early_runs"] == 0, report
    assert figures["unexplained_duplicates"] == 0, report
    assert figures["unexpected_outcome"] == 0 and figures["both_outcomes"] == 0, report
    assert done.returncode == 0, report
