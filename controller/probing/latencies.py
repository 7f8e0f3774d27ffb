"""Latency statistics: percentiles and the summary a probe run reports.

Owns: `percentile` (linear interpolation between ranks) and `LatencySummary`, shared by
the prober's rolling windows and `ecs-infer probe`. Must not: do I/O.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of sorted values, interpolating linearly between the
    two nearest ranks (numpy's default, and `statistics.quantiles(method="inclusive")`)."""
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    position = (len(ordered) - 1) * q / 100
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency statistics in seconds."""

    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> LatencySummary | None:
        if not values:
            return None
        ordered = sorted(values)
        return cls(
            mean=statistics.fmean(ordered),
            p50=percentile(ordered, 50),
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            min=ordered[0],
            max=ordered[-1],
        )

    def milliseconds(self) -> dict[str, float]:
        return {
            name: round(getattr(self, name) * 1e3, 3)
            for name in ("mean", "p50", "p90", "p99", "min", "max")
        }
