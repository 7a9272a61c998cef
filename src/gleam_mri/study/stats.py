"""Paired comparisons of two arms on the same test slices: mean difference and its 95% interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["PairedDifference", "paired_difference"]


@dataclass(frozen=True)
class PairedDifference:
    """``mean(a - b)`` over ``n`` paired values with a two-sided ``level`` t-interval.

    ``verdict``: ``"better"`` / ``"worse"`` when the interval excludes 0 (sign of the mean),
    else ``"no difference"``.
    """

    mean: float
    low: float
    high: float
    n: int
    level: float

    @property
    def verdict(self) -> str:
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no difference"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}

    def __str__(self) -> str:
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}] ({self.verdict})"


def paired_difference(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> PairedDifference:
    """Mean of ``a[i] - b[i]`` and its Student-t confidence interval (``n - 1`` degrees of freedom).

    ``ValueError`` for unequal lengths, fewer than two pairs or non-finite values. With zero
    spread the interval is the mean itself.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"paired values must be two 1-D sequences of one length, got {x.shape}, {y.shape}"
        )
    if x.size < 2:
        raise ValueError(f"a confidence interval needs at least 2 pairs, got {x.size}")
    diff = x - y
    if not np.isfinite(diff).all():
        raise ValueError("paired values must be finite")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    mean = float(diff.mean())
    sem = float(diff.std(ddof=1)) / math.sqrt(diff.size)
    half = float(stats.t.ppf(0.5 + level / 2, diff.size - 1)) * sem
    return PairedDifference(mean, mean - half, mean + half, int(diff.size), level)
