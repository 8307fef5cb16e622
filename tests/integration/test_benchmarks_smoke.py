"""The benchmark code runs (tiny sizes) so it cannot rot; no figure is asserted on."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.integration.conftest import ROOT


def test_benchmark_smoke_run_measures_every_scenario_for_both_systems(tmp_path, emulator_host):
    output = tmp_path / "smoke.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--output", str(output)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())
    rows = {(row["scenario"], row["system"]) for row in result["summary"] if not row["errors"]}
    for scenario in ("enqueue", "drain prefork -c 2", "drain threads -c 8", "idle latency (prefork -c 2)"):
        assert (scenario, "kombu_pubsub") in rows
        assert (scenario, "gcpubsub") in rows
    ours = [row for row in result["measurements"] if row["system"] == "kombu_pubsub"
            and row["scenario"] == "enqueue"]
    assert ours and all(row["figures"]["lost_at_exit"] == 0 for row in ours)
