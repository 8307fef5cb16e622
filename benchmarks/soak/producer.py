"""The soak's producer: ``python -m benchmarks.soak.producer SETTINGS_JSON T0``.

Sends the planned jobs (plan.job) once a second in bursts, each burst at
T0 + its due time, and records each job in the ledger once delay() returned.
Started again after it was killed, it resumes after the last job it recorded,
so the job in flight at the kill is sent again (it may then run twice), and
catches up on the bursts it missed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from . import ledger as ledger_module
from . import plan
from .ledger import Ledger

#: How long to wait before sending a job again after delay() raised, seconds.
RESEND_PAUSE = 1.0


def resume_index(directory: Path) -> int:
    """The first job index no producer recorded (recorded indexes are contiguous from 0)."""
    sent = ledger_module.read(directory).sent
    return max((row.index for row in sent), default=-1) + 1


def main(argv: list[str]) -> int:
    settings = plan.Settings(**{**json.loads(argv[0]), "pools": ()})
    t0 = float(argv[1])
    directory = Path(os.environ[ledger_module.ENV])
    from .app import job as task  # the broker URL comes from the environment

    ledger = Ledger.from_env("producer")
    first = resume_index(directory)
    print(f"producer: starting at job {first} of {settings.jobs}", file=sys.stderr, flush=True)
    for index in range(first, settings.jobs):
        spec = plan.job(settings, index)
        wait = t0 + spec.due - time.time()
        if wait > 0:
            time.sleep(wait)
        while True:
            before = time.time()
            try:
                task.apply_async((spec.job_id, spec.sleep, spec.failures), countdown=spec.countdown or None)
                break
            except Exception as exc:  # noqa: BLE001 - keep the load going; the job is sent again
                # Pub/Sub may have taken it before the error: a second run of it is explained.
                ledger.write("unsure", spec.job_id, index, f"{before:.6f}")
                print(f"producer: delay() of {spec.job_id} failed ({exc}); sending it again",
                      file=sys.stderr, flush=True)
                time.sleep(RESEND_PAUSE)
        eta = before + spec.countdown if spec.countdown else 0.0
        ledger.write("sent", spec.job_id, index, f"{before:.6f}", f"{eta:.6f}", spec.outcome)
    print(json.dumps({"sent": settings.jobs - first}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
