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


def test_a_frozen_target_turns_td_into_regression_on_fixed_labels():
    """target_period longer than the run: w⁻ = w₀ throughout, so expected semi-gradient
    updates are gradient descent on ½ mean_s (y₀(s) − φ(s)ᵀw)², y₀ = r + γ φ'ᵀw₀ (fit exactly:
    8 features, 7 states)."""
    weights, _ = baird_run("semi_gradient", "expected", steps=3000, lr=0.05, target_period=10**6)
    _, mdp = envs.make("Baird")
    batch = prediction.expected_batch(mdp, jnp.asarray(catalog.BAIRD_TARGET), 0.99)
    labels = batch.reward + 0.99 * batch.phi_next @ catalog.BAIRD_INITIAL_WEIGHTS
    np.testing.assert_allclose(mdp.features @ weights[-1], labels, atol=1e-3)


def test_one_program_vmaps_over_mdps():
    kwargs = dict(n_states=6, n_actions=2, branching=2, feature_dim=3)
    config = prediction.PredictionConfig(
        env_id="Garnet",
        env_kwargs=kwargs,
        mode="expected",
        target_policy=(1.0, 0.0),
        behaviour_policy=(0.5, 0.5),
        num_steps=50,
    )
    mdps = [envs.make("Garnet", seed=s, **kwargs)[1] for s in (3, 4)]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *mdps)
    train = prediction.make_train(config)
    hp = prediction.PredictionHParams(gamma=0.9, lr=0.05)
    _, batched = jax.jit(jax.vmap(train, (None, None, 0)))(jax.random.key(0), hp, stacked)
    for i, mdp in enumerate(mdps):
        _, alone = jax.jit(train)(jax.random.key(0), hp, mdp)
        np.testing.assert_allclose(batched["weights"][i], alone["weights"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(batched["weights"][0], batched["weights"][1])
