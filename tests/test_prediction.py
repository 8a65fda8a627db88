"""Linear off-policy prediction: Baird's counterexample diverges for semi-gradient methods only."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import envs
from qlearn.algos import prediction
from qlearn.envs import catalog
from qlearn.types import ConfigError


def baird_run(loss, mode, steps=300, **hp):
    config = prediction.PredictionConfig(
        loss=loss,
        mode=mode,
        target_policy=tuple(catalog.BAIRD_TARGET),
        behaviour_policy=tuple(catalog.BAIRD_BEHAVIOUR),
        initial_weights=tuple(catalog.BAIRD_INITIAL_WEIGHTS),
        num_steps=steps,
    )
    _, metrics = jax.jit(prediction.make_train(config))(
        jax.random.key(0), prediction.PredictionHParams(**hp)
    )
    return np.asarray(metrics["weights"]), np.asarray(metrics["ve"])


def test_expected_batch_of_baird_under_the_target_policy():
    _, mdp = envs.make("Baird")
    batch = prediction.expected_batch(mdp, jnp.asarray(catalog.BAIRD_TARGET), 0.99)
    # π always takes solid: every state's next state is the lower one, rewards are 0
    np.testing.assert_allclose(batch.phi_next, np.tile(mdp.features[6], (7, 1)))
    np.testing.assert_array_equal(batch.reward, 0.0)
    np.testing.assert_array_equal(batch.rho, 1.0)


@pytest.mark.parametrize("mode", ["sample", "expected"])
def test_semi_gradient_diverges_on_baird(mode):
    weights, ve = baird_run("semi_gradient", mode, steps=600, lr=0.01, gamma=0.99)
    assert np.abs(weights[-1]).max() > 40  # from max |w₀| = 10, and still growing
    assert np.abs(weights[-1]).max() > np.abs(weights[len(weights) // 2]).max()
    assert ve[-1] > 10 * ve[0]


@pytest.mark.parametrize(
    ("loss", "mode", "hp"),
    [
        ("residual_gradient", "expected", dict(lr=0.01)),
        ("tdc", "sample", dict(lr=0.005, beta=0.05)),
        ("gtd2", "sample", dict(lr=0.005, beta=0.05)),
    ],
)
def test_gradient_td_methods_stay_bounded_on_baird(loss, mode, hp):
    weights, ve = baird_run(loss, mode, gamma=0.99, **hp)
    assert np.abs(weights).max() <= 10.5
    assert ve[-1] < 0.5 * ve[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"env_id": "CartPole-v1"}, "not a finite MDP"),
        ({"loss": "td_lambda"}, "config.loss = 'td_lambda'"),
        ({"mode": "both"}, "config.mode"),
        ({"target_policy": (0.5, 0.6)}, "probabilities summing to 1"),
        ({"behaviour_policy": (1.0, 0.0)}, "must cover every action"),
        ({"initial_weights": (1.0, 2.0)}, "initial_weights has 2 entries"),
    ],
)
def test_config_errors(change, message):
    with pytest.raises(ConfigError, match=message):
        prediction.PredictionConfig(**change)
