"""The diagnostics probe in DQN and PQN runs: it never changes what is learned (training
metrics bitwise equal to a run without it), its numbers at the last evaluation equal an
independent recomputation from the final state, the finite-MDP value gaps equal numpy's
policy evaluation, and bad input is refused by name before compiling."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY

from qlearn import dp, envs, hparams, networks
from qlearn.algos import dqn, pqn, probes
from qlearn.types import ConfigError

PQN_TINY = dict(total_steps=4096, num_evals=2, hidden_sizes=(16, 16))


@pytest.fixture(scope="module")
def dqn_runs():
    """TINY DQN with and without diagnostics (probe batch 32), same key."""
    hp = dqn.DQNHParams()
    out = {}
    for on in (False, True):
        config = dqn.DQNConfig(**TINY, diagnostics=on, diagnostics_batch=32)
        out[on] = jax.jit(dqn.make_train(config))(jax.random.key(0), hp)
    return out


def test_diagnostics_never_change_what_dqn_and_pqn_learn(dqn_runs):
    (_, off), (_, on) = dqn_runs[False], dqn_runs[True]
    for name, values in off.items():
        np.testing.assert_array_equal(on[name], values, err_msg=name)
    diagnostics = set(on) - set(off)
    assert {"dormant", "dormant_zero", "dormant_layer0", "srank", "erank", "churn_update"} <= (
        diagnostics
    )
    assert {"churn_target", "overestimation", "grad_norm_Dense_0", "update_ratio"} <= diagnostics
    for name in ("dormant", "dormant_zero", "churn_update", "churn_target"):
        assert np.all((on[name] >= 0) & (on[name] <= 1)), name
    assert np.all((on["srank"] >= 1) & (on["srank"] <= 16)) and np.all(on["erank"] >= 1)
    assert np.all(on["grad_norm"] > 0) and np.all(on["update_ratio"] > 0)
    assert np.all(np.isfinite(on["overestimation"]))
    runs = {}
    for on_ in (False, True):
        config = pqn.PQNConfig(**PQN_TINY, diagnostics=on_)
        runs[on_] = jax.jit(pqn.make_train(config))(jax.random.key(0), pqn.PQNHParams())[1]
    for name, values in runs[False].items():
        np.testing.assert_array_equal(runs[True][name], values, err_msg=name)
    assert "churn_target" not in runs[True] and "dormant_layer1" in runs[True]


def test_the_last_evaluations_diagnostics_equal_a_recomputation_from_the_final_state(dqn_runs):
    """From the final state alone: the probe states (the last training batches kept by the
    probe), the hidden layer recomputed by hand (Dense, LayerNorm, ReLU), its dormant units
    and srank from numpy's SVD, the parameter norm, and the online/target churn."""
    state, m = dqn_runs[True]
    config = dqn.DQNConfig(**TINY, diagnostics=True, diagnostics_batch=32)
    kept = state.probes["diagnostics"]
    obs = np.asarray(kept.batches.obs).reshape(-1, 4)[:32]
    p = jax.tree.map(np.asarray, state.learner.params)["params"]
    pre = obs @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    mean, var = pre.mean(-1, keepdims=True), pre.var(-1, keepdims=True)
    ln = (pre - mean) / np.sqrt(var + 1e-6) * p["LayerNorm_0"]["scale"] + p["LayerNorm_0"]["bias"]
    h = np.maximum(ln, 0.0)
    activity = np.abs(h).mean(0)
    scores = activity / activity.mean()
    np.testing.assert_allclose(m["dormant"][-1], np.mean(scores <= 0.1), atol=1 / 16 + 1e-6)
    sigma = np.linalg.svd(h, compute_uv=False)
    expected = int(np.argmax(np.cumsum(sigma) / sigma.sum() >= 0.99)) + 1
    assert abs(int(m["srank"][-1]) - expected) <= 1  # float32 vs float64 at the threshold
    leaves = jax.tree.leaves(p)
    norm = np.sqrt(sum(np.sum(np.square(x, dtype=np.float64)) for x in leaves))
    np.testing.assert_allclose(m["param_norm"][-1], norm, rtol=1e-5)
    net = networks.build("mlp", 2, (4,), hidden_sizes=config.hidden_sizes, layer_norm=True)
    q = np.asarray(net.apply(state.learner.params, obs))
    q_target = np.asarray(net.apply(state.learner.target_params, obs))
    churn = np.mean(q.argmax(-1) != q_target.argmax(-1))
    np.testing.assert_allclose(m["churn_target"][-1], churn)


def action_gap(q_fn, params, obs, learner_state):
    """A user's diagnostic: the mean gap between the best and the worst action's value on the
    probe states, the probe's size, and the target network's mean |Q|."""
    q = q_fn(params, obs)
    q_target = q_fn(learner_state.target_params, obs)
    return {
        "action_gap": jnp.mean(q.max(-1) - q.min(-1)),
        "probe_rows": obs.shape[0],
        "target_q_abs": jnp.mean(jnp.abs(q_target)),
    }


def test_a_custom_diagnostic_plugs_into_the_channel_without_changing_training(dqn_runs):
    """Named by its import path, measured on the same 32 probe states at every evaluation;
    the last value equals numpy's from the final state, and training is unchanged."""
    config = dqn.DQNConfig(
        **TINY,
        diagnostics=True,
        diagnostics_batch=32,
        custom_diagnostics=("test_probes:action_gap",),
    )
    state, m = jax.jit(dqn.make_train(config))(jax.random.key(0), dqn.DQNHParams())
    _, built_in = dqn_runs[True]
    for name, values in built_in.items():
        np.testing.assert_array_equal(m[name], values, err_msg=name)
    np.testing.assert_array_equal(m["probe_rows"], np.full(TINY["num_evals"], 32.0))
    obs = np.asarray(state.probes["diagnostics"].batches.obs).reshape(-1, 4)[:32]
    net = networks.build("mlp", 2, (4,), hidden_sizes=config.hidden_sizes, layer_norm=True)
    q = np.asarray(net.apply(state.learner.params, obs), np.float64)
    q_target = np.asarray(net.apply(state.learner.target_params, obs), np.float64)
    np.testing.assert_allclose(m["action_gap"][-1], np.mean(q.max(-1) - q.min(-1)), rtol=1e-5)
    np.testing.assert_allclose(m["target_q_abs"][-1], np.mean(np.abs(q_target)), rtol=1e-5)


def test_bad_custom_diagnostics_are_refused_by_name():
    base = dict(TINY, diagnostics=True, diagnostics_batch=32)
    for value, message in (
        (("test_probes:action_gap",), None),
        ((action_gap,), None),
        (("test_probes:nothing",), r"custom_diagnostics = 'test_probes:nothing' cannot be imp"),
        (("no_such_module:f",), r"custom_diagnostics = 'no_such_module:f' cannot be imported"),
        ((3,), r"custom_diagnostics: 3 is not a function"),
        (action_gap, r"must be a tuple of functions or import paths"),
    ):
        if message is None:
            dqn.DQNConfig(**base, custom_diagnostics=value)
            continue
        with pytest.raises(ConfigError, match=message):
            dqn.DQNConfig(**base, custom_diagnostics=value)
    with pytest.raises(ConfigError, match=r"custom_diagnostics are measured with diagnostics"):
        dqn.DQNConfig(**TINY, custom_diagnostics=(action_gap,))
    for fn, message in (
        (lambda q_fn, params, obs, state: 1.0, r"returned float, not a dict"),
        (lambda q_fn, params, obs, state: {"srank": 1.0}, r"'srank' must be a new name"),
        (lambda q_fn, params, obs, state: {"qs": q_fn(params, obs)}, r"shape \(32, 2\)"),
        (  # a name another part of the run reports is refused, not overwritten
            lambda q_fn, params, obs, state: {"eval_return": 0.0},
            r"probe 'diagnostics' reports \['eval_return'\], which the run already has",
        ),
    ):
        config = dqn.DQNConfig(**base, custom_diagnostics=(fn,))
        with pytest.raises(ValueError, match=message):
            jax.eval_shape(dqn.make_train(config), jax.random.key(0), dqn.DQNHParams())


def numpy_policy_values(mdp, policy, gamma):
    """q^π by numpy's solve of (I − γ P_π) q = r on the live model (terminal states absorb)."""
    p = np.asarray(mdp.transition_probs, np.float64)
    r = np.einsum("sat,sat->sa", p, np.asarray(mdp.transition_rewards, np.float64))
    live = p * (1.0 - np.asarray(mdp.terminal, np.float64))[None, None, :]
    n = r.size
    p_pi = np.einsum("sat,tb->satb", live, policy).reshape(n, n)
    return np.linalg.solve(np.eye(n) - gamma * p_pi, r.reshape(n)).reshape(r.shape)


def test_value_gaps_equal_numpys_over_visited_and_unvisited_pairs():
    _, mdp = envs.make("Garnet", n_states=7, n_actions=3, branching=2, seed=1)
    rng = np.random.default_rng(0)
    q_hat = rng.normal(size=(7, 3)).astype(np.float32)
    q_star = np.asarray(dp.value_iteration(mdp, 0.9)[0])
    visits = (rng.uniform(size=(7, 3)) < 0.5).astype(np.float32) * 3
    out = probes.value_gaps(mdp, jnp.asarray(q_hat), jnp.asarray(q_star), jnp.asarray(visits), 0.9)
    greedy = np.eye(3)[q_hat.argmax(-1)]
    q_pi = numpy_policy_values(mdp, greedy, 0.9)
    reachable = np.asarray(dp.reachable_pairs(mdp))
    for name, truth in (("star", q_star), ("pi", q_pi)):
        for suffix, where in (
            ("", reachable),
            ("_visited", reachable & (visits > 0)),
            ("_unvisited", reachable & (visits == 0)),
        ):
            expected = np.mean((q_hat - truth)[where])
            np.testing.assert_allclose(out[f"overest_{name}{suffix}"], expected, rtol=1e-4)


def test_a_finite_mdp_run_logs_the_exact_value_gaps():
    config = dqn.DQNConfig(
        env_id="CliffWalking",
        network="linear",
        num_envs=2,
        total_steps=1_200,
        learning_starts=200,
        buffer_size=1_000,
        batch_size=16,
        num_evals=2,
        eval_episodes=1,
        max_episode_steps=30,
        diagnostics=True,
        diagnostics_batch=16,
    )
    _, m = jax.jit(dqn.make_train(config))(jax.random.key(0), dqn.DQNHParams(gamma=0.9))
    for name in ("overest_star", "overest_star_visited", "overest_pi_visited"):
        assert np.all(np.isfinite(m[name])), name
    # q̂ starts at 0 and CliffWalking pays −1 per step: under-estimated where unvisited
    assert np.all(m["overest_star_unvisited"] > 0)
    assert np.isnan(m["dormant"]).all()  # a linear network has no hidden units


def test_bad_diagnostics_input_is_refused_by_name():
    for name, value in (("dormant_tau", -0.1), ("srank_delta", 0.0), ("srank_delta", 1.0)):
        with pytest.raises(hparams.HParamError, match=name):
            hparams.validate(dqn.DQNHParams(**{name: value}))
        with pytest.raises(hparams.HParamError, match=name):
            hparams.validate(pqn.PQNHParams(**{name: value}))
    with pytest.raises(ConfigError, match=r"config\.diagnostics_batch = 0 must be ≥ 1"):
        dqn.DQNConfig(diagnostics_batch=0)
    with pytest.raises(ConfigError, match=r"diagnostics_batch = 12800 needs 200 batches of 64"):
        dataclasses.replace(
            dqn.DQNConfig(**TINY), batch_size=64, diagnostics=True, diagnostics_batch=12_800
        )
    with pytest.raises(ConfigError, match=r"diagnostics_batch = 100000 needs"):
        pqn.PQNConfig(**PQN_TINY, diagnostics=True, diagnostics_batch=100_000)
