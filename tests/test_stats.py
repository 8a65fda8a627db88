import numpy as np
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
