"""The diagnostics against independent numpy computations: dormant units of a hand-built
network with known dead units, srank and effective rank from numpy's SVD of a matrix with
known singular values, policy churn across a two-step example, norms and update ratios."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import diagnostics, networks


def dead_unit_mlp():
    """An MLP 3 -> 4 -> 5 -> 2 whose first layer's units 1 and 3 never fire on inputs in
    [0, 1]³ (bias −100) and whose second layer's unit 0 never fires (bias −100): known dead
    units, and the same network's parameters."""
    net = networks.MLPQNetwork(2, hidden_sizes=(4, 5))
    params = net.init(jax.random.key(0), jnp.zeros((1, 3)))
    p = jax.tree.map(np.array, params)
    p["params"]["Dense_0"]["bias"][[1, 3]] = -100.0
    p["params"]["Dense_0"]["bias"][[0, 2]] = 5.0
    p["params"]["Dense_1"]["bias"][0] = -100.0
    p["params"]["Dense_1"]["bias"][1:] = 5.0
    return net, jax.tree.map(jnp.asarray, p)


def numpy_scores(h):
    activity = np.abs(np.asarray(h, np.float64)).reshape(-1, h.shape[-1]).mean(0)
    return activity / activity.mean()


def test_dormant_units_of_a_network_with_known_dead_units():
    net, params = dead_unit_mlp()
    obs = jax.random.uniform(jax.random.key(1), (64, 3))
    acts = diagnostics.captured_activations(net.apply, params, obs)
    assert [a.shape for a in acts] == [(64, 4), (64, 5)]
    per_layer, total = diagnostics.dormant_fractions(acts, 0.0)
    np.testing.assert_allclose(per_layer, [2 / 4, 1 / 5])
    np.testing.assert_allclose(total, 3 / 9)
    # at τ = 0.1 by numpy's scores of the same activations
    for tau in (0.1, 0.5, 1.0):
        per_layer, total = diagnostics.dormant_fractions(acts, tau)
        scores = [numpy_scores(a) for a in acts]
        np.testing.assert_allclose(per_layer, [np.mean(s <= tau) for s in scores])
        np.testing.assert_allclose(total, np.mean(np.concatenate(scores) <= tau))
    # the captured activations are the hidden layers' ReLUs, recomputed by hand
    w0, b0 = (np.asarray(params["params"]["Dense_0"][k]) for k in ("kernel", "bias"))
    np.testing.assert_allclose(acts[0], np.maximum(np.asarray(obs) @ w0 + b0, 0), rtol=1e-5)


def test_a_layer_without_activity_is_all_dormant_and_no_layers_is_nan():
    per_layer, total = diagnostics.dormant_fractions((jnp.zeros((8, 3)), jnp.ones((8, 2))), 0.0)
    np.testing.assert_array_equal(per_layer, [1.0, 0.0])
    np.testing.assert_allclose(total, 3 / 5)
    assert np.isnan(diagnostics.dormant_fractions((), 0.1)[1])


def test_convolution_units_are_channels_averaged_over_positions():
    h = jnp.zeros((4, 3, 3, 2)).at[:, 1, 1, 0].set(1.0)  # channel 1 never fires
    per_layer, _ = diagnostics.dormant_fractions((h,), 0.0)
    np.testing.assert_allclose(per_layer, [0.5])
    np.testing.assert_allclose(diagnostics.unit_scores(h), numpy_scores(h))


def matrix_with_singular_values(sigma, rows, cols, seed=0):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(rows, rows)))
    v, _ = np.linalg.qr(rng.normal(size=(cols, cols)))
    s = np.zeros((rows, cols))
    s[np.arange(len(sigma)), np.arange(len(sigma))] = sigma
    return u @ s @ v.T


@pytest.mark.parametrize("delta", [0.01, 0.1, 0.5])
def test_srank_and_effective_rank_against_numpys_svd(delta):
    sigma = np.array([10.0, 5.0, 2.0, 1.0, 0.5, 0.05, 0.01])
    phi = matrix_with_singular_values(sigma, 32, 12)
    s = np.linalg.svd(phi, compute_uv=False)
    np.testing.assert_allclose(s[: len(sigma)], sigma, rtol=1e-10)
    expected = int(np.argmax(np.cumsum(s) / s.sum() >= 1 - delta)) + 1
    assert int(diagnostics.srank(jnp.asarray(phi, jnp.float32), delta)) == expected
    p = s / s.sum()
    p = p[p > 1e-12]
    erank = np.exp(-np.sum(p * np.log(p)))
    np.testing.assert_allclose(diagnostics.effective_rank(jnp.asarray(phi)), erank, rtol=1e-4)
    # known cases: 7 equal singular values give srank 7 (δ < 1/7) and erank 7
    equal = jnp.asarray(matrix_with_singular_values(np.ones(7), 16, 9), jnp.float32)
    np.testing.assert_allclose(diagnostics.effective_rank(equal), 7.0, rtol=1e-4)
    assert int(diagnostics.srank(equal, 0.01)) == 7
    assert int(diagnostics.srank(jnp.zeros((4, 3)), delta)) == 0


def test_policy_churn_across_a_two_step_example():
    """q(s, ·) = W s for one-hot states, one SGD step of the squared error towards a label on
    two states: the greedy action of exactly those states flips, the others keep theirs."""
    w = jnp.array([[1.0, 0.0, 0.5, 0.2], [0.0, 1.0, 0.4, 0.3]])  # [A=2, S=4]: greedy 0,1,0,0
    states = jnp.eye(4)
    q = lambda w: states @ w.T  # [S, A]
    label = jnp.array([[0.0, 2.0], [2.0, 0.0], [0.5, 0.4], [0.2, 0.3]])  # flips states 0, 1

    def loss(w):
        return 0.5 * jnp.sum((q(w) - label) ** 2)

    w_new = w - 1.0 * jax.grad(loss)(w)
    before, after = np.argmax(q(w), 1), np.argmax(q(w_new), 1)
    np.testing.assert_array_equal(before != after, [True, True, False, False])
    assert float(diagnostics.churn(q(w), q(w_new))) == 0.5
    # a mask that leaves one action per state: nothing can change
    only = jnp.array([[True, False]] * 4)
    assert float(diagnostics.churn(q(w), q(w_new), only)) == 0.0


def test_norms_and_update_ratios_by_layer_group():
    net = networks.MLPQNetwork(2, hidden_sizes=(4,))
    params = net.init(jax.random.key(0), jnp.zeros((1, 3)))
    after = jax.tree.map(lambda x: 1.5 * x + 0.1, params)
    groups = diagnostics.layer_groups(params)
    assert list(groups) == ["Dense_0", "Dense_1"]
    norms = diagnostics.group_norms(params)
    flat = {k: np.concatenate([np.ravel(x) for x in jax.tree.leaves(v)]) for k, v in groups.items()}
    for name, x in flat.items():
        np.testing.assert_allclose(norms[name], np.linalg.norm(x), rtol=1e-6)
    np.testing.assert_allclose(norms["all"], np.linalg.norm(np.concatenate(list(flat.values()))))
    ratios = diagnostics.update_ratios(params, after)
    for name, x in flat.items():
        np.testing.assert_allclose(
            ratios[name], np.linalg.norm(0.5 * x + 0.1) / np.linalg.norm(x), rtol=1e-5
        )
    cnn = networks.build("cnn", 3, (10, 10, 4), layer_norm=True)
    names = diagnostics.layer_groups(cnn.init(jax.random.key(0), jnp.zeros((1, 10, 10, 4))))
    assert list(names) == ["Conv2D_0", "Dense_0", "Dense_1", "LayerNorm_0", "LayerNorm_1"]
