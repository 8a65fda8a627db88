"""Aggregate statistics over seeds: interquartile mean (IQM) and percentile-bootstrap
confidence intervals (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice").
"""

from __future__ import annotations

import numpy as np
import scipy.stats


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% of values (25% trimmed from each end)."""
    return scipy.stats.trim_mean(x, 0.25, axis=axis)


def bootstrap_ci(
    x: np.ndarray,
    statistic=iqm,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap confidence interval of ``statistic`` over the LAST axis (seeds).

    Args:
      x: values [..., n]; NaNs are not allowed (mask or drop them first).
      statistic: a vectorised statistic taking ``axis``; IQM by default.
      confidence: coverage of the interval.
      n_resamples: bootstrap resamples; the resampling RNG is seeded, so the CI is reproducible.

    Returns:
      (low, high) with shape x.shape[:-1]; NaN where fewer than 2 values are given.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] < 2:
        nan = np.full(x.shape[:-1], np.nan)
        return nan, nan
    if np.all(x == x[..., :1]):  # degenerate: every resample gives the same value
        value = statistic(x, axis=-1)
        return value, value
    res = scipy.stats.bootstrap(
        (x,),
        statistic,
        axis=-1,
        vectorized=True,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return res.confidence_interval.low, res.confidence_interval.high
