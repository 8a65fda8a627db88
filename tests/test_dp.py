"""Exact dynamic programming against closed forms, textbook values and plain numpy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import dp, envs, hparams, policies
from qlearn.envs import catalog


def numpy_policy_evaluation(mdp, policy, gamma, sweeps=5_000):
    """Iterative policy evaluation with explicit loops (independent of dp.py's linear solve)."""
    p = np.asarray(mdp.transition_probs, np.float64)
    r = np.asarray(mdp.rewards, np.float64)
    term = np.asarray(mdp.terminal)
    pi = np.asarray(policy, np.float64)
    num_states, num_actions = r.shape
    q = np.zeros((num_states, num_actions))
    for _ in range(sweeps):
        v = (pi * q).sum(-1)
        new = np.zeros_like(q)
        for s in range(num_states):
            if term[s]:
                continue  # the episode has ended: q(terminal, ·) = 0
            for a in range(num_actions):
                new[s, a] = r[s, a] + gamma * sum(
                    p[s, a, t] * v[t] for t in range(num_states) if not term[t]
                )
        q = new
    return q


def test_value_iteration_on_the_chain_matches_the_closed_form():
    n, gamma = 6, 0.9
    _, mdp = envs.make("Chain", n_states=n)
    q, iterations = jax.jit(dp.value_iteration)(mdp, gamma)
    s = np.arange(n - 1)
    np.testing.assert_allclose(q[: n - 1, 1], gamma ** (n - 2 - s), rtol=1e-5)
    np.testing.assert_allclose(
        q[: n - 1, 0], gamma * gamma ** (n - 2 - np.maximum(s - 1, 0)), rtol=1e-5
    )
    np.testing.assert_allclose(q[n - 1], 0.0)  # terminal
    assert 0 < int(iterations) < 100


def test_cliff_walking_optimal_return_is_minus_13():
    _, mdp = envs.make("CliffWalking")
    q, _ = dp.value_iteration(mdp, 1.0)
    assert float(dp.masked_max(q, mdp.action_mask)[catalog.CLIFF_START]) == pytest.approx(-13.0)
    pi = dp.greedy_policy(q, mdp.action_mask)
    assert float(dp.policy_value(mdp, pi, 1.0)) == pytest.approx(-13.0, abs=1e-3)


def test_maximization_bias_values():
    _, mdp = envs.make("MaximizationBias")
    q, _ = dp.value_iteration(mdp, 1.0)
    a, b = catalog.MAXBIAS_A, catalog.MAXBIAS_B
    assert float(q[a, catalog.MAXBIAS_RIGHT]) == pytest.approx(0.0)
    assert float(q[a, catalog.MAXBIAS_LEFT]) == pytest.approx(-0.1)
    np.testing.assert_allclose(q[b], -0.1, rtol=1e-6)
    # the masked actions of A are never chosen even though their rows exist
    assert int(jnp.argmax(dp.greedy_policy(q, mdp.action_mask)[a])) == catalog.MAXBIAS_RIGHT


def test_q_star_is_the_fixed_point_and_the_value_of_its_greedy_policy():
    _, mdp = envs.make("Garnet", n_states=8, n_actions=3, branching=3, seed=2)
    gamma = 0.9
    q, _ = dp.value_iteration(mdp, gamma, tol=1e-7)
    np.testing.assert_allclose(dp.bellman_optimality(q, mdp, gamma), q, atol=1e-5)
    q_pi = dp.policy_evaluation(mdp, dp.greedy_policy(q), gamma)
    np.testing.assert_allclose(q_pi, q, atol=1e-4)


def test_policy_evaluation_matches_an_iterative_numpy_loop():
    _, mdp = envs.make("Garnet", n_states=6, n_actions=2, branching=2, seed=4)
    policy = jax.nn.softmax(jax.random.normal(jax.random.key(0), (6, 2)))
    ours = dp.policy_evaluation(mdp, policy, 0.8)
    np.testing.assert_allclose(ours, numpy_policy_evaluation(mdp, policy, 0.8, 300), atol=1e-4)
    # episodic, γ = 1: the chain walked to the right
    _, chain = envs.make("Chain", n_states=5, slip=0.1)
    right = jnp.tile(jnp.array([0.0, 1.0]), (5, 1))
    np.testing.assert_allclose(
        dp.policy_evaluation(chain, right, 1.0),
        numpy_policy_evaluation(chain, right, 1.0, 2_000),
        atol=1e-4,
    )


def test_baird_behaviour_distribution_is_uniform_over_states():
    _, mdp = envs.make("Baird")
    behaviour = jnp.tile(jnp.asarray(catalog.BAIRD_BEHAVIOUR, jnp.float32), (7, 1))
    mu = dp.state_action_distribution(mdp, behaviour)
    np.testing.assert_allclose(mu.sum(-1), 1 / 7, rtol=1e-5)
    np.testing.assert_allclose(mu, behaviour / 7, rtol=1e-5)


def test_episodic_distribution_is_normalised_expected_visits():
    # walking right along a deterministic chain visits 0..n-2 once per episode
    n = 6
    _, mdp = envs.make("Chain", n_states=n)
    right = jnp.tile(jnp.array([0.0, 1.0]), (n, 1))
    mu = dp.state_action_distribution(mdp, right)
    np.testing.assert_allclose(mu[:, 1], [1 / (n - 1)] * (n - 1) + [0.0], atol=1e-6)
    np.testing.assert_allclose(mu[:, 0], 0.0, atol=1e-7)


def test_continuing_distribution_matches_power_iteration():
    _, mdp = envs.make("Garnet", n_states=7, n_actions=2, branching=3, seed=1)
    q = jax.random.normal(jax.random.key(3), (7, 2))
    policy = policies.epsilon_greedy_probs(q, 0.3)
    mu = dp.state_action_distribution(mdp, policy)
    p_pi = np.einsum("sa,sat->st", np.asarray(policy), np.asarray(mdp.transition_probs))
    d = np.full(7, 1 / 7)
    for _ in range(5_000):
        d = d @ p_pi
        d /= d.sum()  # the float32 rows sum to 1 only to rounding
    np.testing.assert_allclose(mu, d[:, None] * np.asarray(policy), atol=1e-5)
    assert float(mu.sum()) == pytest.approx(1.0, abs=1e-5)


def test_value_error_hand_computed():
    q_ref = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    q_hat = jnp.array([[1.0, 0.0], [3.0, 1.0]])
    mu = jnp.array([[0.1, 0.2], [0.3, 0.4]])
    assert float(dp.value_error(q_hat, q_ref, mu)) == pytest.approx(0.2 * 4 + 0.4 * 9)


def test_gamma_is_vmappable_and_bad_gamma_is_refused():
    _, mdp = envs.make("Garnet", n_states=5, seed=0)
    gammas = jnp.array([0.5, 0.9])
    qs, _ = jax.jit(jax.vmap(dp.value_iteration, (None, 0)))(mdp, gammas)
    for i, g in enumerate([0.5, 0.9]):
        np.testing.assert_allclose(qs[i], dp.value_iteration(mdp, g)[0], rtol=1e-5, atol=1e-5)
    policy = jnp.full((5, 2), 0.5)
    with pytest.raises(envs.FiniteMDPError, match="gamma = 1 on a continuing MDP"):
        dp.policy_evaluation(mdp, policy, 1.0)
    with pytest.raises(envs.FiniteMDPError, match=r"gamma = 1.5 must be in \[0, 1\]"):
        dp.policy_evaluation(mdp, policy, 1.5)


def test_error_metrics_of_q_star_are_zero_and_its_greedy_value_is_optimal():
    _, mdp = envs.make("Garnet", n_states=6, n_actions=2, branching=2, seed=7)
    q, _ = dp.value_iteration(mdp, 0.9, tol=1e-7)
    behaviour = policies.epsilon_greedy_probs(q, 0.2)
    m = dp.error_metrics(mdp, q, q, behaviour, jnp.ones((6, 2)), 0.9)
    assert float(m["ve_behaviour"]) == 0.0 and float(m["ve_empirical"]) == 0.0
    assert float(m["ve_uniform"]) == 0.0
    worse = dp.error_metrics(mdp, q + 1.0, q, behaviour, jnp.ones((6, 2)), 0.9)
    np.testing.assert_allclose(worse["ve_behaviour"], 1.0, rtol=1e-5)  # Σ μ · 1² with Σ μ = 1
    np.testing.assert_allclose(worse["ve_empirical"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(worse["ve_uniform"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(m["greedy_value"], worse["greedy_value"])  # same greedy policy
    np.testing.assert_allclose(
        m["greedy_value"], dp.policy_value(mdp, dp.greedy_policy(q), 0.9), rtol=1e-6
    )


def test_replayed_weighting_metrics_against_the_on_policy_distribution():
    """ve_replayed is the VE under the normalised replay weights, replay_tv their total-
    variation distance to μ_b: 0 and ve_behaviour when replay weighs as μ_b (any scale), 1 when
    all replayed weight sits on pairs μ_b never visits."""
    _, mdp = envs.make("Garnet", n_states=6, n_actions=2, branching=2, seed=7)
    q, _ = dp.value_iteration(mdp, 0.9, tol=1e-7)
    q_hat = q + jnp.arange(12.0).reshape(6, 2) / 10
    behaviour = policies.epsilon_greedy_probs(q, 0.2)
    mu = dp.state_action_distribution(mdp, behaviour)
    same = dp.error_metrics(mdp, q_hat, q, behaviour, jnp.ones((6, 2)), 0.9, 37.0 * mu)
    np.testing.assert_allclose(same["replay_tv"], 0.0, atol=1e-6)
    np.testing.assert_allclose(same["ve_replayed"], same["ve_behaviour"], rtol=1e-5)
    greedy_only = policies.epsilon_greedy_probs(q, 0.0)
    off = 1.0 - greedy_only  # weight only on the actions a greedy behaviour never takes
    m = dp.error_metrics(mdp, q_hat, q, greedy_only, jnp.ones((6, 2)), 0.9, off)
    np.testing.assert_allclose(m["replay_tv"], 1.0, rtol=1e-6)
    err = np.asarray(q_hat - q) ** 2
    np.testing.assert_allclose(m["ve_replayed"], (err * off).sum() / off.sum(), rtol=1e-5)
    assert "replay_tv" not in dp.error_metrics(mdp, q, q, behaviour, jnp.ones((6, 2)), 0.9)


def test_greedy_value_is_discounted_and_greedy_return_is_what_an_episode_returns():
    """Chain(10), γ = 0.99: the optimal greedy episode returns 1 (eval_return measures that),
    its γ-discounted value is γ⁸ ≈ 0.923."""
    _, mdp = envs.make("Chain", n_states=10)
    q, _ = dp.value_iteration(mdp, 0.99)
    m = dp.error_metrics(mdp, q, q, policies.epsilon_greedy_probs(q, 0.1), jnp.ones((10, 2)), 0.99)
    assert float(m["greedy_return"]) == pytest.approx(1.0, abs=1e-5)
    assert float(m["greedy_value"]) == pytest.approx(0.99**8, rel=1e-5)


def test_gamma_one_is_refused_before_compiling_where_values_are_infinite():
    """Tabular's default γ = 1 on a continuing Garnet (before: 100,000 iterations of value
    iteration, then a q* of 1e10); episodic MDPs keep γ = 1."""
    from qlearn import spec
    from qlearn.algos import tabular

    config = tabular.TabularConfig(env_id="Garnet", num_episodes=10)
    with pytest.raises(hparams.HParamError, match="gamma' = 1: gamma = 1 on a continuing MDP"):
        spec.make_spec(config, seeds=1)
    spec.make_spec(config, {"gamma": [0.9]}, seeds=1)  # fine
    spec.make_spec(tabular.TabularConfig(env_id="CliffWalking", num_episodes=10), seeds=1)
    _, looping = envs.make("Chain", n_states=4)
    looping = looping.replace(terminal=jnp.zeros(4, bool).at[3].set(True))
    stuck = looping.replace(transition_probs=looping.transition_probs.at[0].set(jnp.eye(4)[0]))
    dp.check_discount(looping, 1.0)
    # a terminal state exists but is unreachable from 0, which pays 1 per step: no finite q*
    stuck = stuck.replace(rewards=stuck.rewards.at[0].set(1.0))
    with pytest.raises(envs.FiniteMDPError, match="did not converge"):
        dp.check_discount(stuck, 1.0)


def test_looping_policies_get_finite_answers():
    """A greedy policy that never ends an episode (γ = 1) collects its rewards until the time
    limit, and its state distribution is the long-run one from the start — no singular solve."""
    _, mdp = envs.make("CliffWalking", max_steps_in_episode=500)
    up = jnp.zeros((48, 4)).at[:, catalog.UP].set(1.0)  # from the start: up to the wall, forever
    assert float(dp.policy_value(mdp, up, 1.0)) == pytest.approx(-500.0)
    mu = dp.state_action_distribution(mdp, up)
    assert float(mu[0, catalog.UP]) == pytest.approx(1.0, abs=1e-5)  # stuck in the corner (0, 0)
    batched = jax.jit(jax.vmap(lambda p: dp.policy_value(mdp, p, 1.0)))(jnp.stack([up, up]))
    np.testing.assert_allclose(batched, -500.0)


@pytest.mark.parametrize("horizon", [1, 2, 7, 64, 1000])
def test_power_sum_matches_numpy_with_a_static_or_traced_horizon(horizon):
    m = np.random.default_rng(0).uniform(0, 1, (5, 5)).astype(np.float32)
    m = 0.999 * m / m.sum(-1, keepdims=True)  # spectral radius < 1: no overflow
    expected = sum(np.linalg.matrix_power(m.astype(np.float64), t) for t in range(horizon))
    static = dp.power_sum(jnp.asarray(m), horizon)  # only the horizon's own bits
    traced = jax.jit(dp.power_sum)(jnp.asarray(m), jnp.int32(horizon))  # all 31 bits
    np.testing.assert_allclose(static, expected, rtol=2e-5)
    np.testing.assert_array_equal(static, traced)


def test_reachable_pairs_exclude_unreachable_terminal_and_masked():
    """Cliff walking: the 10 cliff cells are never occupied and the goal is never acted in,
    so 37 states × 4 actions are reachable. A hand MDP: a state reached only through a masked
    action, and one only beyond a terminal state, are not."""
    _, cliff = envs.make("CliffWalking")
    pairs = np.asarray(dp.reachable_pairs(cliff))
    states = pairs.any(axis=1)
    cliff_cells = np.arange(3 * 12 + 1, 3 * 12 + 11)
    assert pairs.sum() == 37 * 4 and not states[cliff_cells].any() and not states[47]
    assert np.all(pairs[states])  # every action of an occupied state
    # 0 -a0-> 1 (terminal) -> 3 ; 0 -a1 (masked)-> 2 ; 4 is isolated
    p = np.zeros((5, 2, 5))
    p[0, 0, 1] = p[0, 1, 2] = p[1, :, 3] = p[2, :, 2] = p[3, :, 3] = p[4, :, 4] = 1.0
    mask = np.ones((5, 2), bool)
    mask[0, 1] = False
    mdp = envs.finite_mdp_params(
        p, np.zeros((5, 2)), np.eye(5)[0], terminal=np.eye(5)[1].astype(bool), action_mask=mask
    )
    only_first = np.zeros((5, 2), bool)
    only_first[0, 0] = True
    np.testing.assert_array_equal(dp.reachable_pairs(mdp), only_first)
    q = jnp.zeros((5, 2))
    m = dp.error_metrics(mdp, q + 2.0, q, jnp.full((5, 2), 0.5), jnp.ones((5, 2)), 0.9)
    np.testing.assert_allclose(m["ve_uniform"], 4.0)  # the one pair (0, 0), error 2²
