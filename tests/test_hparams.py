import numpy as np
import pytest

from qlearn import hparams
from qlearn.algos.dqn import DQNHParams


def test_grid_is_the_cartesian_product_in_order():
    hp = hparams.grid(DQNHParams, {"lr": [1e-4, 1e-3], "gamma": [0.9, 0.99, 0.999]})
    np.testing.assert_allclose(hp.lr, [1e-4] * 3 + [1e-3] * 3, rtol=1e-6)
    np.testing.assert_allclose(hp.gamma, [0.9, 0.99, 0.999] * 2, rtol=1e-6)
    np.testing.assert_allclose(hp.huber_delta, [1.0] * 6)  # unswept: the default
    assert hp.target_period.dtype == np.int32 and hp.lr.dtype == np.float32


def test_json_round_trip_is_exact():
    hp = hparams.grid(DQNHParams, {"lr": [3e-4, 1e-3], "target_period": [1, 250]})
    back = hparams.from_lists(DQNHParams, hparams.to_lists(hp))
    for name in hparams.names(DQNHParams):
        assert np.asarray(getattr(hp, name)).tobytes() == np.asarray(getattr(back, name)).tobytes()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"gamma": [1.5]}, r"'gamma' = 1.5 is outside its range \[0, 1\]"),
        ({"lr": [0.0]}, r"'lr' = 0 is outside its range \(0, inf\]"),
        ({"lr": [-1e-3]}, "'lr' = -0.001 is outside"),
        ({"target_period": [0]}, "'target_period' = 0 is outside"),
        ({"eps_end": [float("nan")]}, "not a finite number"),
    ],
)
def test_out_of_range_values_name_the_field(values, message):
    with pytest.raises(hparams.HParamError, match=message):
        hparams.grid(DQNHParams, values)


def test_unknown_name_lists_close_matches():
    with pytest.raises(hparams.HParamError, match="did you mean gamma"):
        hparams.grid(DQNHParams, {"gama": [0.9]})


def test_parse_value():
    assert hparams.parse_value(DQNHParams, "lr", "3e-4") == pytest.approx(3e-4)
    assert hparams.parse_value(DQNHParams, "target_period", "100") == 100
    with pytest.raises(hparams.HParamError, match="'lr' = 'fast' is not a number"):
        hparams.parse_value(DQNHParams, "lr", "fast")
    with pytest.raises(hparams.HParamError, match="must be an integer"):
        hparams.parse_value(DQNHParams, "target_period", "2.5")
