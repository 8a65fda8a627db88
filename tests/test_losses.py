import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import losses, networks
from qlearn.algos.dqn import DQNHParams
from qlearn.types import Transition

B, OBS, A = 8, 3, 4


@pytest.fixture(scope="module")
def setup():
    net = networks.MLPQNetwork(A, hidden_sizes=(5,))
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    obs = jax.random.normal(k1, (B, OBS))
    next_obs = jax.random.normal(k2, (B, OBS))
    batch = Transition(
        obs=obs,
        action=jnp.arange(B, dtype=jnp.int32) % A,
        reward=jnp.linspace(-1, 1, B),
        next_obs=next_obs,
        terminated=jnp.array([0, 1, 0, 0, 1, 0, 0, 0], bool),
        truncated=jnp.array([0, 0, 1, 0, 0, 0, 1, 0], bool),
    )
    online = net.init(k3, obs)
    target = jax.tree.map(lambda x: x + 0.1, online)
    return net.apply, online, target, batch


def analytic_mse_gradient(q_fn, params, batch, y):
    """−2 · mean_i (y_i − q̂_i) ∇q̂_i with y fixed (a numpy array, no graph)."""

    def q_sa(p, i):
        return q_fn(p, batch.obs[i : i + 1])[0, batch.action[i]]

    grads = [jax.grad(q_sa)(params, i) for i in range(B)]
    q = np.array([q_sa(params, i) for i in range(B)])
    weights = -2.0 * (y - q) / B
    return jax.tree.map(lambda *g: sum(w * gi for w, gi in zip(weights, g, strict=True)), *grads)


def numpy_targets(q_fn, target_params, batch, gamma):
    q_next = np.asarray(q_fn(target_params, batch.next_obs))
    discount = gamma * (1.0 - np.asarray(batch.terminated, np.float32))
    return np.asarray(batch.reward) + discount * q_next.max(axis=1)


@pytest.mark.parametrize("use_target_network", [True, False])
def test_semi_gradient_equals_analytic(setup, use_target_network):
    q_fn, online, target, batch = setup
    hp = DQNHParams(gamma=0.9)
    bootstrap = target if use_target_network else online
    loss = functools.partial(losses.semi_gradient_td_loss, regression=losses.mse)
    grad = jax.grad(lambda p: loss(q_fn, p, target if use_target_network else p, batch, hp)[0])(
        online
    )
    y = numpy_targets(q_fn, bootstrap, batch, 0.9)
    expected = analytic_mse_gradient(q_fn, online, batch, y)
    jax.tree.map(
        lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6), grad, expected
    )

    if not use_target_network:
        # Without the stop_gradient the target's dependence on θ enters the gradient: the
        # residual gradient differs, so the check above really detects a missing stop_gradient.
        def residual(p):
            y = losses.td_targets(q_fn, p, p, batch, hp, double_q=False)
            q = q_fn(p, batch.obs)[jnp.arange(B), batch.action]
            return jnp.mean((y - q) ** 2)

        differs = jax.tree.map(
            lambda g, r: not np.allclose(g, r, atol=1e-6), grad, jax.grad(residual)(online)
        )
        assert any(jax.tree.leaves(differs))


def test_huber_gradient_clips_td_error(setup):
    q_fn, online, target, batch = setup
    hp = DQNHParams(gamma=0.9, huber_delta=0.05)
    grad = jax.grad(lambda p: losses.semi_gradient_td_loss(q_fn, p, target, batch, hp)[0])(online)
    y = numpy_targets(q_fn, target, batch, 0.9)
    q = np.asarray(q_fn(online, batch.obs))[np.arange(B), np.asarray(batch.action)]
    # d/dq̂ huber(y − q̂) = −clip(y − q̂, −κ, κ); express it as the MSE gradient with a fake label
    clipped = np.clip(y - q, -0.05, 0.05)
    expected = analytic_mse_gradient(q_fn, online, batch, q + clipped / 2.0)
    jax.tree.map(
        lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-7), grad, expected
    )


def test_truncation_bootstraps_termination_does_not(setup):
    q_fn, online, target, batch = setup
    hp = DQNHParams(gamma=0.9)
    y = np.asarray(losses.td_targets(q_fn, online, target, batch, hp, double_q=False))
    q_next = np.asarray(q_fn(target, batch.next_obs)).max(axis=1)
    r = np.asarray(batch.reward)
    for i in range(B):
        if batch.terminated[i]:
            np.testing.assert_allclose(y[i], r[i], rtol=1e-6)
        else:  # includes the truncated transitions 2 and 6
            np.testing.assert_allclose(y[i], r[i] + 0.9 * q_next[i], rtol=1e-6)


def test_double_q_selects_with_online_evaluates_with_target(setup):
    q_fn, online, target, batch = setup
    hp = DQNHParams(gamma=0.9)
    y = np.asarray(losses.td_targets(q_fn, online, target, batch, hp, double_q=True))
    a_star = np.asarray(q_fn(online, batch.next_obs)).argmax(axis=1)
    value = np.asarray(q_fn(target, batch.next_obs))[np.arange(B), a_star]
    discount = 0.9 * (1 - np.asarray(batch.terminated, np.float32))
    np.testing.assert_allclose(y, np.asarray(batch.reward) + discount * value, rtol=1e-6)


def test_aux_diagnostics(setup):
    q_fn, online, target, batch = setup
    loss, aux = losses.semi_gradient_td_loss(q_fn, online, target, batch, DQNHParams())
    assert set(aux) >= {"q_mean", "target_mean", "td_abs", "q_abs_max"}
    q = np.asarray(q_fn(online, batch.obs))
    np.testing.assert_allclose(
        aux["q_mean"], q[np.arange(B), np.asarray(batch.action)].mean(), rtol=1e-6
    )
    np.testing.assert_allclose(aux["q_abs_max"], np.abs(q).max(), rtol=1e-6)
    assert loss.shape == ()


def my_zero_loss(q_fn, online_params, target_params, batch, hparams):
    """A user loss used by the tests (importable as tests.test_losses:my_zero_loss)."""
    q = q_fn(online_params, batch.obs)
    return 0.0 * jnp.sum(q), {"q_mean": jnp.mean(q), "my_stat": jnp.float32(7.0)}


def test_resolve():
    assert losses.resolve(my_zero_loss, double_q=True) is my_zero_loss
    assert losses.resolve("test_losses:my_zero_loss", double_q=False) is my_zero_loss
    assert losses.resolve("mse", double_q=True).keywords == {
        "regression": losses.mse,
        "double_q": True,
    }
    with pytest.raises(ValueError, match="not one of"):
        losses.resolve("l1", double_q=True)
    with pytest.raises(ValueError, match="cannot be imported"):
        losses.resolve("no_such_module:f", double_q=True)
    assert losses.spec_name(my_zero_loss) == "test_losses:my_zero_loss"
