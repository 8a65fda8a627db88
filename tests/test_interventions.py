"""Interventions: ReDo leaves the function unchanged on the paths it does not touch and
revives the units it recycles, a reset reproduces fresh parameters for the reset layers at
the reset step, shrink-and-perturb is its formula, and bad input is refused by name."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY

from qlearn import hparams, interventions, networks
from qlearn.algos import dqn, learners
from qlearn.diagnostics import captured_activations, dormant_fractions
from qlearn.types import ConfigError


def dead_unit_mlp():
    """An MLP 3 -> 6 -> 5 -> 2 without LayerNorm whose first layer's units 1 and 4 and second
    layer's unit 2 never fire on inputs in [0, 1]³, and Adam state with non-zero moments."""
    net = networks.MLPQNetwork(2, hidden_sizes=(6, 5))
    params = jax.tree.map(np.array, net.init(jax.random.key(0), jnp.zeros((1, 3))))
    p = params["params"]
    p["Dense_0"]["bias"][:] = 3.0
    p["Dense_0"]["bias"][[1, 4]] = -100.0
    p["Dense_1"]["bias"][:] = 3.0
    p["Dense_1"]["bias"][2] = -100.0
    params = jax.tree.map(jnp.asarray, params)
    opt = learners.make_optimizer(dqn.DQNHParams())
    grads = jax.tree.map(lambda x: jnp.ones_like(x) * 0.5, params)
    _, opt_state = opt.update(grads, opt.init(params), params)
    return net, params, opt_state


def adam(opt_state):
    return opt_state[1][0]


def test_redo_keeps_the_function_and_revives_the_dormant_units():
    net, params, opt_state = dead_unit_mlp()
    obs = jax.random.uniform(jax.random.key(1), (64, 3))
    acts = captured_activations(net.apply, params, obs)
    np.testing.assert_allclose(dormant_fractions(acts, 0.0)[0], [2 / 6, 1 / 5])
    fresh = net.init(jax.random.key(7), obs[:1])
    new, new_opt = interventions.redo(params, opt_state, fresh, acts, 0.0)
    # the function on the batch: the dead units gave 0, their outgoing weights are now 0
    np.testing.assert_allclose(net.apply(new, obs), net.apply(params, obs), rtol=1e-6, atol=1e-6)
    # revived: the recycled units fire again (fresh incoming weights, bias 0)
    after = captured_activations(net.apply, new, obs)
    assert float(dormant_fractions(after, 0.0)[1]) < 3 / 11
    # exactly the recycled units' weights changed, and their Adam moments restarted
    p, q = params["params"], new["params"]
    dead0, dead1 = np.isin(np.arange(6), [1, 4]), np.isin(np.arange(5), [2])
    k0, nk0 = np.asarray(p["Dense_0"]["kernel"]), np.asarray(q["Dense_0"]["kernel"])
    np.testing.assert_array_equal(nk0[:, ~dead0], k0[:, ~dead0])
    np.testing.assert_array_equal(
        nk0[:, dead0], np.asarray(fresh["params"]["Dense_0"]["kernel"])[:, dead0]
    )
    np.testing.assert_array_equal(np.asarray(q["Dense_0"]["bias"])[dead0], 0.0)
    k1 = np.asarray(q["Dense_1"]["kernel"])
    # outgoing of layer 0's dead units (those into layer 1's recycled unit are fresh: as in
    # ReDo, whose layer-by-layer pass re-initialises the next layer's incoming weights after)
    np.testing.assert_array_equal(k1[dead0][:, ~dead1], 0.0)
    np.testing.assert_array_equal(np.asarray(q["Dense_2"]["kernel"])[dead1], 0.0)
    np.testing.assert_array_equal(
        np.asarray(q["Dense_2"]["kernel"])[~dead1], np.asarray(p["Dense_2"]["kernel"])[~dead1]
    )
    mu = np.asarray(adam(new_opt).mu["params"]["Dense_0"]["kernel"])
    assert np.all(mu[:, dead0] == 0) and np.all(mu[:, ~dead0] != 0)
    mu1 = np.asarray(adam(new_opt).mu["params"]["Dense_1"]["kernel"])
    assert np.all(mu1[dead0] == 0) and np.all(mu1[~dead0][:, ~dead1] != 0)


def test_redo_on_a_convolution_zeroes_the_dense_rows_that_read_a_dead_channel():
    net = networks.build("cnn", 2, (5, 5, 1), hidden_sizes=(4,))
    params = jax.tree.map(np.array, net.init(jax.random.key(0), jnp.zeros((1, 5, 5, 1))))
    params["params"]["Conv2D_0"]["bias"][3] = -100.0  # channel 3 never fires
    params["params"]["Conv2D_0"]["kernel"][..., 3] = 0.0
    params = jax.tree.map(jnp.asarray, params)
    obs = jax.random.uniform(jax.random.key(1), (16, 5, 5, 1))
    acts = captured_activations(net.apply, params, obs)
    fresh = net.init(jax.random.key(2), obs[:1])
    opt_state = learners.make_optimizer(dqn.DQNHParams()).init(params)
    new, _ = interventions.redo(params, opt_state, fresh, acts, 0.0)
    rows = np.asarray(new["params"]["Dense_0"]["kernel"])  # [3·3·16, 4], channel fastest
    channel = np.arange(rows.shape[0]) % 16
    dead = np.abs(np.asarray(acts[0])).reshape(-1, 16).sum(0) == 0  # channel 3, maybe more
    assert dead[3]
    read = dead[channel]
    live = np.abs(np.asarray(acts[1])).sum(0) > 0  # the dense units (a dead one is recycled)
    np.testing.assert_array_equal(rows[read][:, live], 0.0)
    old = np.asarray(params["params"]["Dense_0"]["kernel"])
    np.testing.assert_array_equal(rows[~read][:, live], old[~read][:, live])
    np.testing.assert_allclose(net.apply(new, obs), net.apply(params, obs), rtol=1e-6, atol=1e-6)


def tiny_learner(intervention, **config):
    config = dqn.DQNConfig(**TINY, intervention=intervention, **config)
    return dqn.agent(config).build(hparams.to_arrays(dqn.DQNHParams(intervention_period=3)))


def transition_batch(n=16):
    obs = jax.random.normal(jax.random.key(3), (n, 4))
    from qlearn.types import Transition

    return Transition(
        obs, jnp.arange(n) % 2, jnp.ones(n), obs + 0.1, jnp.zeros(n, bool), jnp.zeros(n, bool),
        jnp.ones(n, jnp.int32),
    )  # fmt: skip


def test_a_reset_at_its_period_gives_fresh_parameters_for_the_reset_layers():
    """intervention='reset', reset_layers=1, period 3: after updates 1, 2 the parameters are
    trained ones; right after update 3 the output layer is exactly learner.init(the update's
    reinit key)'s, the hidden layer is the trained one, and its Adam moments are kept."""
    parts = tiny_learner("reset", reset_layers=1)
    learner, batch = parts.learner, transition_batch()
    assert learner.streams[-1] == "reinit"
    state = learner.init(jax.random.key(0))
    for i in range(3):
        keys = {"reinit": jax.random.key(100 + i)}
        before = state
        state, _ = jax.jit(learner.update)(state, batch, keys)
    fresh = learner.init(jax.random.key(102)).params["params"]
    got = state.params["params"]
    jax.tree.map(np.testing.assert_array_equal, got["Dense_1"], fresh["Dense_1"])
    assert not np.array_equal(got["Dense_0"]["kernel"], fresh["Dense_0"]["kernel"])
    assert not np.array_equal(
        got["Dense_0"]["kernel"], before.params["params"]["Dense_0"]["kernel"]
    )
    mu = adam(state.opt_state).mu["params"]
    assert np.all(np.asarray(mu["Dense_1"]["kernel"]) == 0)
    assert np.any(np.asarray(mu["Dense_0"]["kernel"]) != 0)


def test_shrink_perturb_is_its_formula_at_the_period():
    parts = tiny_learner("shrink_perturb")
    learner, batch = parts.learner, transition_batch()
    plain = tiny_learner("none").learner
    state = learner.init(jax.random.key(0))
    for _ in range(3):
        trained, _ = plain.update(state, batch, {})
        state, _ = learner.update(state, batch, {"reinit": jax.random.key(7)})
    fresh = learner.init(jax.random.key(7)).params
    expected = jax.tree.map(lambda p, n: 0.8 * p + 0.2 * n, trained.params, fresh)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), state.params, expected
    )


def test_a_dqn_run_with_each_intervention_trains():
    for kind in ("redo", "reset", "shrink_perturb"):
        config = dqn.DQNConfig(**TINY, intervention=kind, layer_norm=False)
        _, m = jax.jit(dqn.make_train(config))(
            jax.random.key(0), dqn.DQNHParams(intervention_period=50)
        )
        assert np.all(np.isfinite(m["loss"])), kind


def test_bad_interventions_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"config\.intervention = 'prune' must be one of none"):
        dqn.DQNConfig(intervention="prune")
    with pytest.raises(
        ConfigError, match=r"config\.reset_layers = 4 must be between 1 and the network's 3"
    ):
        dqn.DQNConfig(intervention="reset", reset_layers=4, hidden_sizes=(8, 8))
    with pytest.raises(ConfigError, match=r"config\.reset_layers = 0"):
        dqn.DQNConfig(intervention="reset", reset_layers=0)
    with pytest.raises(ConfigError, match="intervention = 'redo' needs a chain"):
        dqn.DQNConfig(intervention="redo", dueling=True)
    with pytest.raises(ConfigError, match="intervention = 'reset' needs a chain"):
        dqn.DQNConfig(intervention="reset", dueling=True)  # its last layers are two streams
    with pytest.raises(hparams.HParamError, match="intervention_period"):
        hparams.validate(dqn.DQNHParams(intervention_period=0))
    base = dqn.DQNConfig(**TINY)
    assert dataclasses.replace(base, intervention="redo").intervention == "redo"
