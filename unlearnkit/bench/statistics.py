"""The tests behind the bench's verdicts: a paired seed bootstrap of the paper's Avg Gap, Holm's correction over a
declared family of comparisons, Student's t for per-seed differences, and the smallest effect a setting can detect.

The paper's Avg Gap is a gap of seed means (|mean(M) - mean(Retrain)| averaged over RA, UA, TA, MIA), not a mean
of per-seed quantities, so a t interval over seeds does not test it. The bootstrap does: one resample draws seeds
with replacement, and every arm (two variants and their Retrain, all measured on the same seed) is averaged over
those same seeds before the gaps are taken again.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

#: the level of every test, after Holm's correction where the comparison belongs to a family
ALPHA = 0.05
#: the power at which the minimum detectable difference is quoted
POWER = 0.8
#: resamples drawn at random once the exact bootstrap (every one of the n**n seed resamples) would be longer
BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided 95% interval, the p-value of the test that it is 0 and, where it belongs to a
    family of comparisons, that p-value adjusted by Holm."""

    mean: float
    low: float
    high: float
    n: int  # seeds
    p: float | None = None  # None with one seed: nothing to test
    se: float | None = None  # the estimate's standard error
    adjusted_p: float | None = None

    @property
    def significant(self) -> bool:
        """The test rejects 0 at ALPHA: on the Holm-adjusted p-value within a family, else on the raw one."""
        p = self.p if self.adjusted_p is None else self.adjusted_p
        return p is not None and p < ALPHA

    @property
    def verdict(self) -> str:
        if not self.significant:
            return "not shown"
        return "lower" if self.mean < 0 else "higher"

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci95": [self.low, self.high] if self.n > 1 else None, "n": self.n, "p": self.p,
                "holm_p": self.adjusted_p, "se": self.se, "significant": self.significant, "verdict": self.verdict}


def paired_interval(differences: Sequence[float]) -> Interval:
    """Student's t over n paired differences: the 95% CI of their mean and its two-sided p-value. With one pair
    the interval is unknown (infinite) and there is no p-value."""
    from scipy.stats import t

    n = len(differences)
    mean = statistics.fmean(differences)
    if n < 2:
        return Interval(mean, -math.inf, math.inf, n)
    se = statistics.stdev(differences) / math.sqrt(n)
    if se == 0:  # every pair agrees: the mean is known exactly
        return Interval(mean, mean, mean, n, p=1.0 if mean == 0 else 0.0, se=0.0)
    half = float(t.ppf(1 - ALPHA / 2, n - 1)) * se
    return Interval(mean, mean - half, mean + half, n, p=float(2 * t.sf(abs(mean) / se, n - 1)), se=se)


def seed_resamples(n: int) -> np.ndarray:
    """Rows of n seed indices drawn with replacement: all n**n of them where that is at most BOOTSTRAP_RESAMPLES
    (the exact bootstrap distribution), else BOOTSTRAP_RESAMPLES rows from a fixed generator (reproducible tables)."""
    if n**n <= BOOTSTRAP_RESAMPLES:
        return np.array(list(itertools.product(range(n), repeat=n)))
    return np.random.default_rng(0).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))


def seed_bootstrap(arms: Sequence[np.ndarray], statistic: Callable[[list[np.ndarray]], Any]) -> Interval:
    """A paired seed bootstrap: `arms` are per-seed measures, each (seeds, measures) with row i from seed i in
    every arm; `statistic` maps each arm's seed means (..., measures) to the estimate (...).

    The interval is the percentile one (2.5th and 97.5th percentiles of the resampled statistic, numpy's linear
    interpolation); the p-value is twice the share of resamples on the far side of 0 (0 itself counts on both
    sides), at most 1; the standard error is the resampled statistic's standard deviation.
    """
    n = len(arms[0])
    estimate = float(statistic([arm.mean(0) for arm in arms]))
    if n < 2:
        return Interval(estimate, -math.inf, math.inf, n)
    draws = seed_resamples(n)
    values = np.asarray(statistic([arm[draws].mean(1) for arm in arms]))
    low, high = np.percentile(values, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    p = min(1.0, 2 * min(float(np.mean(values <= 0)), float(np.mean(values >= 0))))
    return Interval(estimate, float(low), float(high), n, p=p, se=float(values.std()))


def _gap_difference(first: np.ndarray, second: np.ndarray, retrain: np.ndarray) -> np.ndarray:
    """Gap of means of `first` minus that of `second`, each |mean - Retrain's mean| averaged over the measures."""
    return np.abs(first - retrain).mean(-1) - np.abs(second - retrain).mean(-1)


def gap_difference(first: np.ndarray, second: np.ndarray, retrain: np.ndarray) -> Interval:
    """AvgGap(first) - AvgGap(second), the paper's gap of seed means, by a paired seed bootstrap. Each argument is
    (seeds, measures), row i from seed i; one measure column gives that metric's |mean - Retrain| difference."""
    return seed_bootstrap([first, second, retrain], lambda m: _gap_difference(*m))


def change_between_scenarios(before: Sequence[np.ndarray], after: Sequence[np.ndarray]) -> Interval:
    """How a gap difference changes from one scenario to another, paired by seed: `before` and `after` are each
    (first, second, retrain) as gap_difference takes them, row i from the same seed in both scenarios (the
    same Original), and one resample draws the same seeds for both; the estimate is after's minus before's."""
    return seed_bootstrap([*before, *after], lambda m: _gap_difference(*m[3:]) - _gap_difference(*m[:3]))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the k-th smallest of m p-values is multiplied by m - k + 1, kept at least as
    large as the one before it and at most 1. Rejecting where the result is below ALPHA holds the family-wise
    error rate at ALPHA."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def minimum_detectable_difference(standard_error: float, n: int, alpha: float) -> float:
    """The true difference a two-sided test at `alpha` detects with probability POWER, given its estimate's
    standard error over n seeds: (t(1 - alpha/2, n - 1) + t(POWER, n - 1)) x SE."""
    from scipy.stats import t

    return float(t.ppf(1 - alpha / 2, n - 1) + t.ppf(POWER, n - 1)) * standard_error
