import numpy as np
import pytest
import scipy.stats

from qlearn import hparams, search
from qlearn.algos import dqn
from qlearn.algos.dqn import DQNConfig, DQNHParams
from qlearn.types import ConfigError


def expand(grid=None, **kwargs):
    return search.expand(dqn.ALGORITHM, DQNConfig(), grid, **kwargs)


def test_grid_is_the_product_with_static_fields_as_outer_groups():
    space = expand({"hidden_sizes": [(64,), (128,)], "lr": [1e-4, 1e-3], "gamma": [0.9, 0.99]})
    assert space.num_configs == 8
    assert space.overrides == [{"hidden_sizes": (64,)}, {"hidden_sizes": (128,)}]
    assert space.group_of == [0, 0, 0, 0, 1, 1, 1, 1]  # groups contiguous
    np.testing.assert_allclose(space.hparams["lr"][:4], [1e-4, 1e-4, 1e-3, 1e-3], rtol=1e-6)
    np.testing.assert_allclose(space.hparams["gamma"][:4], [0.9, 0.99, 0.9, 0.99], rtol=1e-6)
    assert space.hparams["lr"][:4] == space.hparams["lr"][4:]
    assert space.hparams["target_tau"] == [pytest.approx(DQNHParams().target_tau)] * 8
    assert space.swept == ["hidden_sizes", "lr", "gamma"]


def test_base_hparams_fill_the_names_not_swept():
    space = expand({"lr": [1e-3]}, base=DQNHParams(gamma=0.5))
    assert space.hparams["gamma"] == [0.5]
    assert space.swept == []  # a single value is not swept


def test_random_search_is_seeded_and_draws_from_its_distributions():
    dist = {"lr": "loguniform:1e-5:1e-2", "gamma": search.Dist("uniform", 0.9, 0.999)}
    a = expand(dist=dist, n_samples=400, search_seed=3)
    b = expand(dist=dist, n_samples=400, search_seed=3)
    c = expand(dist=dist, n_samples=400, search_seed=4)
    assert a.hparams == b.hparams and a.hparams != c.hparams
    lr = np.asarray(a.hparams["lr"])
    assert lr.min() >= 1e-5 * (1 - 1e-6) and lr.max() <= 1e-2 * (1 + 1e-6)
    # log10(lr) is uniform on [-5, -2]
    assert scipy.stats.kstest(np.log10(lr), scipy.stats.uniform(-5, 3).cdf).pvalue > 0.01
    gamma = np.asarray(a.hparams["gamma"])
    assert scipy.stats.kstest(gamma, scipy.stats.uniform(0.9, 0.099).cdf).pvalue > 0.01
    assert a.search == {
        "kind": "random",
        "n_samples": 400,
        "seed": 3,
        "dist": {"gamma": "uniform:0.9:0.999", "lr": "loguniform:1e-05:0.01"},
    }
    assert search.parse_dist(a.search["dist"]["lr"]) == search.Dist("loguniform", 1e-5, 1e-2)


def test_random_search_with_grid_entries_and_static_groups():
    space = expand(
        {"hidden_sizes": [(32,), (64,)], "target_period": [1, 10]},
        dist={"lr": "loguniform:1e-4:1e-2"},
        n_samples=6,
    )
    assert space.num_configs == 12  # the same 6 draws in each static group
    assert space.hparams["lr"][:6] == space.hparams["lr"][6:]
    assert set(space.hparams["target_period"]) <= {1, 10}  # grid values drawn as a choice
    integer = expand(dist={"target_period": "uniform:1:20"}, n_samples=20)
    assert all(v == round(v) for v in integer.hparams["target_period"])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            dict(grid={"lrr": [1e-3]}),
            search.SearchError,
            "unknown hyperparameter or config field 'lrr'; did you mean lr",
        ),
        (dict(grid={"lr": []}), search.SearchError, "grid 'lr' is empty"),
        (dict(grid={"lr": ["fast"]}), search.SearchError, "'lr' = 'fast' is not a number"),
        (dict(grid={"gamma": [1.5]}), hparams.HParamError, "outside its range"),
        (dict(grid={"target_period": [2.5]}), search.SearchError, "must be an integer"),
        (dict(grid={"num_envs": [0]}), ConfigError, "num_envs"),
        (
            dict(dist={"lr": "loguniform:1e-2:1e-5"}, n_samples=4),
            search.SearchError,
            "low = 0.01 must be < high = 1e-05",
        ),
        (dict(dist={"lr": "loguniform:0:1"}, n_samples=4), search.SearchError, "must be > 0"),
        (dict(dist={"lr": "normal:0:1"}, n_samples=4), search.SearchError, "unknown distribution"),
        (dict(dist={"lr": "uniform:1e-3"}, n_samples=4), search.SearchError, "must look like"),
        (
            dict(dist={"num_envs": "uniform:1:8"}, n_samples=4),
            search.SearchError,
            "'num_envs' is a static config field: only hyperparameters can be sampled",
        ),
        (dict(dist={"lr": "uniform:1e-4:1e-3"}), search.SearchError, "number of samples"),
        (dict(dist={"lr": "uniform:1e-4:1e-3"}, n_samples=0), search.SearchError, "≥ 1"),
        (
            dict(grid={"lr": [1e-3]}, dist={"lr": "uniform:1e-4:1e-3"}, n_samples=2),
            search.SearchError,
            "both in the grid and sampled",
        ),
        (
            dict(dist={"gamma": "uniform:0.5:2"}, n_samples=50),
            hparams.HParamError,
            "outside its range",
        ),
    ],
)
def test_bad_search_spaces_are_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=None) as info:
        expand(**kwargs)
    assert message in str(info.value)
