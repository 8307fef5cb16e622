"""Side-by-side benchmarks: kombu_pubsub vs Kombu's built-in ``gcpubsub`` transport.

Run ``python -m benchmarks`` (see benchmarks/README.md). Everything runs on one
Pub/Sub emulator in one run; each system gets its own project ids.
"""

from __future__ import annotations
