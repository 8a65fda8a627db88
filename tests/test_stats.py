import numpy as np
import pytest
import scipy.stats

from qlearn import stats


def test_iqm_is_the_mean_of_the_middle_half():
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0])
    assert stats.iqm(x) == np.mean([2.0, 3.0, 4.0, 5.0])


def test_bootstrap_ci_brackets_the_statistic_and_is_reproducible():
    x = np.random.default_rng(0).normal(10.0, 2.0, size=(3, 16))
    low, high = stats.bootstrap_ci(x)
    center = stats.iqm(x)
    assert np.all(low < center) and np.all(center < high)
    low2, high2 = stats.bootstrap_ci(x)
    np.testing.assert_array_equal(low, low2)
    np.testing.assert_array_equal(high, high2)
    # the mean's percentile CI ≈ normal-theory CI for this sample size
    lo_m, hi_m = stats.bootstrap_ci(x[0], statistic=np.mean)
    se = scipy.stats.sem(x[0])
    assert abs((hi_m - lo_m) - 2 * 1.96 * se) < 0.5 * 2 * 1.96 * se


def test_degenerate_and_single_seed():
    low, high = stats.bootstrap_ci(np.full((2, 8), 500.0))
    np.testing.assert_array_equal(low, [500.0, 500.0])
    np.testing.assert_array_equal(high, [500.0, 500.0])
    low, high = stats.bootstrap_ci(np.ones((2, 1)))
    assert np.all(np.isnan(low)) and np.all(np.isnan(high))


def test_aggregates_and_probability_of_improvement_equal_rliable():
    """rliable (Agarwal et al. 2021) as the oracle, on one task (scores [runs, 1])."""
    from rliable import metrics

    rng = np.random.default_rng(1)
    x = rng.normal(100, 30, size=13).round()  # ties included
    y = rng.normal(90, 30, size=9).round()
    assert stats.iqm(x) == pytest.approx(metrics.aggregate_iqm(x[:, None]))
    assert stats.mean(x) == pytest.approx(metrics.aggregate_mean(x[:, None]))
    # rliable's median is over tasks of per-task means; on one task we report the median of runs
    assert stats.median(x) == np.median(x)
    assert stats.probability_of_improvement(x, y) == pytest.approx(
        metrics.probability_of_improvement(x[:, None], y[:, None])
    )
    assert stats.probability_of_improvement(x, x) == 0.5
    assert stats.probability_of_improvement(x + 1000, y) == 1.0


def test_bootstrap_ci_matches_rliables_stratified_bootstrap():
    from rliable import library as rly
    from rliable import metrics

    x = np.random.default_rng(2).gamma(2.0, 50.0, size=16)
    low, high = stats.bootstrap_ci(x, stats.iqm, n_resamples=20_000)
    _, cis = rly.get_interval_estimates(
        {"x": x[:, None]},
        lambda s: np.array([metrics.aggregate_iqm(s)]),
        reps=20_000,
        random_state=np.random.RandomState(0),
    )
    width = high - low
    assert low == pytest.approx(cis["x"][0, 0], abs=0.05 * width)  # Monte-Carlo error only
    assert high == pytest.approx(cis["x"][1, 0], abs=0.05 * width)


def test_curve_summaries_and_describe_ignore_masked_runs():
    x = np.array([0.0, 10.0, 20.0])
    curves = np.array([[0.0, 10.0, 20.0], [5.0, np.nan, np.nan]])
    np.testing.assert_array_equal(stats.final(curves), [20.0, np.nan])
    np.testing.assert_array_equal(stats.best(curves), [20.0, 5.0])
    assert stats.area_under_curve(x, curves)[0] == pytest.approx(10.0)  # mean height
    d = stats.describe(np.array([1.0, 2.0, np.nan, 3.0, np.inf]))
    assert d["n"] == 3 and d["mean"] == 2.0 and d["median"] == 2.0
    assert stats.describe(np.array([np.nan]))["n"] == 0


def test_the_ci_is_the_percentile_bootstrap_not_bca():
    """On a skewed sample the percentile and BCa intervals differ by far more than Monte-Carlo
    noise; ours is exactly scipy's percentile interval at the same resampling seed."""
    x = np.random.default_rng(3).exponential(50.0, size=12)
    low, high = stats.bootstrap_ci(x, stats.iqm, seed=4)

    def scipy_ci(method):
        res = scipy.stats.bootstrap(
            (x,), stats.iqm, axis=-1, vectorized=True, n_resamples=2000, method=method,
            rng=np.random.default_rng(4),
        )  # fmt: skip
        return res.confidence_interval.low, res.confidence_interval.high

    assert (low, high) == scipy_ci("percentile")
    bca_low, bca_high = scipy_ci("BCa")
    assert abs(bca_low - low) + abs(bca_high - high) > 0.05 * (high - low)
