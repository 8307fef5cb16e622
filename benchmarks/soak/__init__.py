"""The chaos soak (``python -m benchmarks soak``): jobs at a steady rate while workers are
killed and stopped, Pub/Sub goes away and the producer dies; then a check that nothing was lost.

Modules: plan (the seeded jobs and fault schedule), app (the soak's Celery app and
task), ledger (what was sent and run, durable across kills), producer (the
producer subprocess), fleet (workers and producer as processes), chaos (the
fault injector), runner (one run end to end), judge (the verdict from the
ledger), report (text, JSON, PNG), cli (the command line).
"""
