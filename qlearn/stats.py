"""Aggregate statistics over seeds, with rliable's definitions (Agarwal et al. 2021, "Deep RL
at the Edge of the Statistical Precipice"): mean, median, interquartile mean (IQM),
percentile-bootstrap confidence intervals, probability of improvement; and the per-run
summaries of a learning curve (final, best, area under the curve).

A sweep is one task, so rliable's *stratified* bootstrap (resampling runs within each task)
is the ordinary bootstrap over seeds there; everything for one task reduces over the LAST axis.
Across tasks (``qlearn compare``), scores are matrices [runs, tasks] of normalised scores and
:func:`stratified_resamples` draws the runs of each task independently, as rliable does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.stats


def mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def median(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(x, axis=axis)


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% of values (25% trimmed from each end)."""
    return scipy.stats.trim_mean(x, 0.25, axis=axis)


AGGREGATES: dict[str, Callable[..., np.ndarray]] = {"mean": mean, "median": median, "iqm": iqm}


def bootstrap_ci(
    x: np.ndarray,
    statistic: Callable[..., np.ndarray] = iqm,
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


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) + ½ P(X = Y) for a random run X of ``x`` [n] and Y of ``y`` [m]: the
    Mann–Whitney U statistic divided by n·m (rliable's definition, one task)."""
    x = np.asarray(x, np.float64)[:, None]
    y = np.asarray(y, np.float64)[None, :]
    return float(np.mean((x > y) + 0.5 * (x == y)))


def final(curves: np.ndarray) -> np.ndarray:
    """The last point of each curve [..., T] -> [...]."""
    return curves[..., -1]


def best(curves: np.ndarray) -> np.ndarray:
    """The best point of each curve (NaNs, e.g. masked after divergence, ignored; NaN for a
    curve masked from its first point)."""
    curves = np.asarray(curves, np.float64)
    seen = ~np.all(np.isnan(curves), axis=-1)
    return np.where(seen, np.nanmax(np.where(seen[..., None], curves, 0.0), axis=-1), np.nan)


def area_under_curve(x: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Trapezoidal area under each curve [..., T] over ``x`` [T], divided by the x range: the
    curve's average height (comparable across budgets; NaN if any point is NaN)."""
    x = np.asarray(x, np.float64)
    return np.trapezoid(curves, x, axis=-1) / (x[-1] - x[0])


def describe(x: np.ndarray, *, seed: int = 0) -> dict[str, float | int | list[float]]:
    """Mean, median, IQM and the IQM's 95% bootstrap CI of the finite values of ``x`` [n]."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        nan = float("nan")
        return {"n": 0, "mean": nan, "median": nan, "iqm": nan, "iqm_ci95": [nan, nan]}
    low, high = bootstrap_ci(x, iqm, seed=seed)
    return {
        "n": int(x.size),
        "mean": float(np.mean(x)),
        "median": float(np.median(x)),
        "iqm": float(iqm(x)),
        "iqm_ci95": [float(low), float(high)],
    }


# -- across tasks: scores [..., runs, tasks] -----------------------------------------------


def aggregate_iqm(scores: np.ndarray) -> np.ndarray:
    """IQM over every run of every task (rliable's ``aggregate_iqm``): [..., runs, tasks] ->
    [...]."""
    scores = np.asarray(scores, np.float64)
    return scipy.stats.trim_mean(scores.reshape(*scores.shape[:-2], -1), 0.25, axis=-1)


def aggregate_median(scores: np.ndarray) -> np.ndarray:
    """Median over tasks of the per-task mean over runs (rliable's ``aggregate_median``)."""
    return np.median(np.mean(scores, axis=-2), axis=-1)


def aggregate_mean(scores: np.ndarray) -> np.ndarray:
    """Mean over tasks of the per-task mean over runs (rliable's ``aggregate_mean``)."""
    return np.mean(np.mean(scores, axis=-2), axis=-1)


def optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """How far the runs fall short of ``gamma``, scores above it counting as ``gamma``:
    ``gamma - mean(min(scores, gamma))`` (rliable's ``aggregate_optimality_gap``; lower is
    better)."""
    return gamma - np.mean(np.minimum(scores, gamma), axis=(-2, -1))


TASK_AGGREGATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "iqm": aggregate_iqm,
    "median": aggregate_median,
    "mean": aggregate_mean,
    "optimality_gap": optimality_gap,
}


def stratified_resamples(
    scores: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """[n_resamples, runs, tasks] bootstrap resamples of ``scores`` [runs, tasks]: each task's
    runs drawn with replacement from its own runs (the stratified bootstrap)."""
    runs, tasks = scores.shape
    rows = rng.integers(0, runs, size=(n_resamples, runs, tasks))
    return scores[rows, np.arange(tasks)]


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """The performance profile: for each τ the fraction of runs (of every task) scoring above
    τ (rliable's run-score distribution). [..., runs, tasks], [K] -> [..., K]."""
    scores = np.asarray(scores, np.float64)
    return np.mean(scores[..., None] > np.asarray(taus), axis=(-3, -2))


def task_probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) averaged over tasks (rliable's ``probability_of_improvement``): per task the
    Mann–Whitney statistic of its runs of x [..., n, tasks] against those of y [..., m,
    tasks], then the mean over tasks."""
    x = np.asarray(x, np.float64)[..., :, None, :]
    y = np.asarray(y, np.float64)[..., None, :, :]
    return np.mean((x > y) + 0.5 * (x == y), axis=(-3, -2, -1))
