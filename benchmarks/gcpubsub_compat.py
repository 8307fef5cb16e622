"""Let Kombu's gcpubsub transport import where google-cloud-monitoring is not installed.

``kombu.transport.gcpubsub`` imports ``google.cloud.monitoring_v3`` at module
level (``pip install 'kombu[gcpubsub]'`` brings it), but uses it only in
``_size()`` — and there only off the emulator. If the real package is missing
we put a placeholder module in ``sys.modules`` that raises if anything is
actually called, so a benchmark can never silently measure a fake.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def monitoring_available() -> bool:
    try:
        importlib.import_module("google.cloud.monitoring_v3")
    except ImportError:
        return False
    return not getattr(sys.modules["google.cloud.monitoring_v3"], "BENCH_PLACEHOLDER", False)


def ensure_importable() -> bool:
    """Make ``import kombu.transport.gcpubsub`` work; return True if a placeholder was installed."""
    if monitoring_available():
        return False

    def _unavailable(*_: Any, **__: Any) -> Any:
        raise RuntimeError("google-cloud-monitoring is not installed (benchmark placeholder)")

    monitoring = types.ModuleType("google.cloud.monitoring_v3")
    monitoring.BENCH_PLACEHOLDER = True  # type: ignore[attr-defined]
    monitoring.MetricServiceClient = _unavailable  # type: ignore[attr-defined]
    query = types.ModuleType("google.cloud.monitoring_v3.query")
    query.Query = _unavailable  # type: ignore[attr-defined]
    monitoring.query = query  # type: ignore[attr-defined]
    sys.modules["google.cloud.monitoring_v3"] = monitoring
    sys.modules["google.cloud.monitoring_v3.query"] = query
    import google.cloud

    google.cloud.monitoring_v3 = monitoring  # type: ignore[attr-defined]
    return True
