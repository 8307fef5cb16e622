"""The benchmark code runs (tiny sizes) so it cannot rot; no figure is asserted on."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.conftest import ROOT

pytestmark = pytest.mark.e2e  # the benchmarks start `celery worker` subprocesses

TRANSPORTS = ("kombu_pubsub", "gcpubsub")
POOLS = ("prefork -c 2", "threads -c 8")
MANY_QUEUES = tuple(f"many queues, Q={count} (threads -c 4)" for count in (1, 10, 50))


def test_benchmark_smoke_run_measures_every_scenario_for_both_systems(tmp_path, emulator_host):
    output = tmp_path / "smoke.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--output", str(output)],
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())
    measured = {(row["scenario"], row["system"]): row["figures"] for row in result["summary"]
                if not row["errors"] and row["figures"]}

    for scenario in ("enqueue", "enqueue, 8 threads", "idle latency (prefork -c 2)",
                     "crash redelivery (prefork -c 2, acks_late)", *(f"drain {pool}" for pool in POOLS)):
        for system in TRANSPORTS:
            assert (scenario, system) in measured, (scenario, system)
    for pool in POOLS:
        assert (f"drain {pool}", "celery_memory") in measured  # Celery's own ceiling
        for system in (*TRANSPORTS, "celery_memory"):
            assert {"tasks_per_s", "cpu_s", "peak_rss_mib"} <= measured[(f"drain {pool}", system)].keys()
    assert "tasks_per_s" in measured[("drain (raw client)", "raw")]  # the Pub/Sub ceiling
    assert measured[("enqueue, 8 threads", "raw")]["threads"]["max"] == 8  # the 8-thread ceiling
    for system in TRANSPORTS:
        # Smoke gives up after a few seconds: either the task came back or the cap is recorded.
        crash = measured[("crash redelivery (prefork -c 2, acks_late)", system)]
        assert "redelivery_s" in crash or crash["over_cap"]["max"] == 1

    ours = [row for row in result["measurements"] if row["system"] == "kombu_pubsub"
            and row["scenario"].startswith("enqueue")]
    assert len(ours) == 3 and all(row["figures"]["lost_at_exit"] == 0 for row in ours)
    for scenario in MANY_QUEUES:
        for system in TRANSPORTS:
            assert {"sent", "started", "idle_cpu_ms_per_s", "threads"} <= measured[(scenario, system)].keys()
        # Every task sent to kombu_pubsub's worker started, on one queue as on fifty.
        assert measured[(scenario, "kombu_pubsub")]["missing"]["max"] == 0, scenario
    assert {target["status"] for target in result["targets"]} <= {"met", "**missed**", "not measured"}
    assert "| Target |" in result["markdown"]
