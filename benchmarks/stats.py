"""Small statistics helpers: summaries over repeats, latency percentiles, ETA times."""

from __future__ import annotations

import datetime
import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct` percentile (0–100) by the nearest-rank method; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: Sequence[float]) -> dict[str, float] | None:
    """min / median / max of the repeats of one figure, or None when no repeat succeeded."""
    clean = [value for value in values if value is not None and not math.isnan(value)]
    if not clean:
        return None
    return {"min": min(clean), "median": statistics.median(clean), "max": max(clean), "n": len(clean)}


def eta_timestamp(eta: Any) -> float:
    """A Celery request's ``eta`` (ISO string or datetime; naive: UTC) as a Unix timestamp, 0.0 if none."""
    if not eta:
        return 0.0
    if isinstance(eta, str):
        eta = datetime.datetime.fromisoformat(eta)
    if eta.tzinfo is None:
        eta = eta.replace(tzinfo=datetime.UTC)
    return eta.timestamp()
