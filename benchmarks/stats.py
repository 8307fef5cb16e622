"""Small statistics helpers: summaries over repeats and latency percentiles."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


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
