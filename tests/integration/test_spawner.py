"""The demo's load spawner enqueues for real."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.conftest import ROOT, pull_all


def test_spawn_enqueues_a_burst_of_mock_jobs(e2e_env, project, subscriber_client):
    code = "from demo_tasks.spawner import spawn\nprint(len(spawn(job_count=10)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(e2e_env, QUEUE_NAME="default"),
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "10", done.stderr
    messages = pull_all(subscriber_client, f"projects/{project}/subscriptions/default")
    assert len(messages) == 10
    assert {m.message.attributes["task"] for m in messages} == {"demo_tasks.mock_job"}


def test_spawner_command_sends_at_the_asked_rate_and_summarises(e2e_env, project, subscriber_client):
    done = subprocess.run([sys.executable, "-m", "demo_tasks.spawner", "--rate", "50", "--count", "100"],
                          cwd=ROOT, env=dict(e2e_env, QUEUE_NAME="default"), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "sent 100 jobs in" in done.stdout and "(asked 50)" in done.stdout
    assert len(pull_all(subscriber_client, f"projects/{project}/subscriptions/default")) == 100
