"""Seed statistics and paired bootstrap intervals — what a comparison reports besides its mean.

A difference between two pipelines is *paired*: the same seeds and the same evaluation units (queries, tasks) on
both sides. The interval resamples seeds, then units within each seed (a two-level bootstrap), so it carries both
the training randomness and the finite test set; with one seed only the units vary, and the caller says so.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation (None for one value) and count of some per-seed numbers."""

    mean: float
    sd: float | None
    n: int

    def text(self, digits: int = 2) -> str:
        sd = "" if self.sd is None else f" ± {self.sd:.{digits}f}"
        return f"{self.mean:.{digits}f}{sd} (n={self.n})"


def spread(values: Sequence[float]) -> Spread | None:
    """Mean ± sd over seeds; None when there is nothing to summarise."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return Spread(mean, sd, len(vals))


@dataclass(frozen=True)
class PairedDelta:
    """a − b over paired seeds and units, with a percentile bootstrap interval."""

    delta: float
    low: float
    high: float
    seeds: int
    units: int
    level: float = 0.95

    @property
    def includes_zero(self) -> bool:
        return self.low <= 0.0 <= self.high

    def text(self, digits: int = 3) -> str:
        mark = " (includes 0)" if self.includes_zero else ""
        pct = round(100 * self.level)
        return f"{self.delta:+.{digits}f} [{pct}% CI {self.low:+.{digits}f}, {self.high:+.{digits}f}]{mark}"


def paired_bootstrap(
    a: Mapping[int, Sequence[float]],
    b: Mapping[int, Sequence[float]],
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDelta | None:
    """Mean of a − b over the seeds both sides have, each seed's units paired by position.

    Args:
        a / b: seed -> per-unit scores (the same units, in the same order, on both sides of a seed).
        n_boot: bootstrap resamples (seeds with replacement, then units with replacement within each seed).
        level: interval coverage.
        seed: the resampling RNG's seed (the interval is deterministic).

    Returns:
        None when no seed is on both sides.
    """
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    diffs = {}
    for s in seeds:
        if len(a[s]) != len(b[s]):
            raise ValueError(f"seed {s}: {len(a[s])} units on one side, {len(b[s])} on the other (must be paired)")
        diffs[s] = [float(x) - float(y) for x, y in zip(a[s], b[s], strict=True)]
    point = sum(sum(d) / len(d) for d in diffs.values()) / len(seeds)
    rng = random.Random(seed)
    stats = []
    for _ in range(n_boot):
        picked = [diffs[rng.choice(seeds)] for _ in seeds]
        stats.append(sum(sum(rng.choice(d) for _ in d) / len(d) for d in picked) / len(picked))
    stats.sort()
    lo = stats[int((1 - level) / 2 * n_boot)]
    hi = stats[min(n_boot - 1, int((1 + level) / 2 * n_boot))]
    return PairedDelta(point, lo, hi, len(seeds), min(len(d) for d in diffs.values()), level)
