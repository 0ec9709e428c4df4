"""Small statistics helpers for the benchmarks (percentiles in milliseconds)."""

from __future__ import annotations

import socket
import statistics
from typing import Sequence


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of samples (seconds in, seconds out)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_ms(samples: Sequence[float]) -> dict[str, float]:
    return {"n": len(samples), "p50_ms": percentile(samples, 50) * 1000,
            "p99_ms": percentile(samples, 99) * 1000,
            "mean_ms": statistics.fmean(samples) * 1000 if samples else float("nan")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
