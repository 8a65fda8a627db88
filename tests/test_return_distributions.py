import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from qlearn import dp, envs, networks, policies, targets
from qlearn import return_distributions as rd

GAMMA = 0.9


def monte_carlo_returns(mdp, policy, gamma, episodes, seed=0, horizon=200):
    """Discounted returns of ``episodes`` rollouts of π from every (s, a), numpy: [S, A, E]
    (γ^horizon ≤ 1e-9 of the value is cut)."""
    rng = np.random.default_rng(seed)
    p = np.asarray(mdp.transition_probs, np.float64)
    r = np.asarray(mdp.transition_rewards, np.float64)
    pi = np.asarray(policy, np.float64)
    terminal = np.asarray(mdp.terminal)
    n_s, n_a, _ = p.shape
    s = np.repeat(np.arange(n_s), n_a * episodes)
    a = np.tile(np.repeat(np.arange(n_a), episodes), n_s)
    alive = ~terminal[s]
    total, discount = np.zeros(s.size), np.ones(s.size)
    cum_p, cum_pi = np.cumsum(p, -1), np.cumsum(pi, -1)
    for _ in range(horizon):
        u = rng.uniform(size=s.size)
        s_next = np.minimum((u[:, None] > cum_p[s, a]).sum(-1), n_s - 1)
        total += alive * discount * r[s, a, s_next]
        discount *= gamma
        alive &= ~terminal[s_next]
        s = s_next
        a = np.minimum((rng.uniform(size=s.size)[:, None] > cum_pi[s]).sum(-1), n_a - 1)
    return total.reshape(n_s, n_a, episodes)


def mdps():
    _, chain = envs.make("Chain", n_states=5, slip=0.3)
    _, garnet = envs.make("Garnet", n_states=5, n_actions=2, branching=3, seed=1)
    return {"chain": chain, "garnet": garnet}


@pytest.fixture(scope="module", params=["chain", "garnet"])
def problem(request):
    """(mdp, an ε-greedy policy of q*, its support [K], Monte-Carlo returns [S, A, E])."""
    mdp = mdps()[request.param]
    q_star, _ = dp.value_iteration(mdp, GAMMA)
    policy = policies.epsilon_greedy_probs(q_star, 0.3, mdp.action_mask)
    if request.param == "chain":  # returns γᵏ ∈ [0, 1]; r + γz never leaves [0, 1]
        support = networks.categorical_support(0.0, 1.0, 101)
    else:
        bound = float(np.abs(np.asarray(mdp.transition_rewards)).max()) / (1 - GAMMA)
        support = networks.categorical_support(-bound, bound, 101)
    returns = monte_carlo_returns(mdp, policy, GAMMA, episodes=4000)
    return mdp, policy, support, returns


def test_the_categorical_fixed_point_keeps_the_mean_q_pi(problem):
    """With every atom of r + γz inside the support, Π_C preserves means, so the fixed point's
    mean solves the Bellman equation of π: it is q^π (an exact linear solve)."""
    mdp, policy, support, _ = problem
    probs = jax.jit(rd.categorical_fixed_point)(mdp, policy, GAMMA, support)
    assert np.all(np.asarray(probs) >= -1e-7)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    q_pi = dp.policy_evaluation(mdp, policy, GAMMA)
    np.testing.assert_allclose(probs @ support, q_pi, atol=2e-4)


def test_the_fixed_points_match_monte_carlo_returns(problem):
    """Against 4,000 rollouts per (s, a): the categorical fixed point is within a small Cramér
    distance of the samples (scipy's energy distance is √2 × Cramér) and of their projection
    onto the atoms, the quantile one within a small W₁ of the samples (scipy), and both are
    far from the laws of a discount 0.1 lower (the comparison can fail)."""
    mdp, policy, support, returns = problem
    n_s, n_a, _ = returns.shape
    probs = np.asarray(rd.categorical_fixed_point(mdp, policy, GAMMA, support))
    wrong_probs = np.asarray(rd.categorical_fixed_point(mdp, policy, GAMMA - 0.1, support))
    theta = np.asarray(rd.quantile_fixed_point(mdp, policy, GAMMA, 64))
    wrong_theta = np.asarray(rd.quantile_fixed_point(mdp, policy, GAMMA - 0.1, 64))
    z = np.asarray(support)
    scale = np.abs(returns).max() + 1e-9
    for s in range(n_s):
        for a in range(n_a):
            sample = returns[s, a]
            if np.asarray(mdp.terminal)[s]:
                np.testing.assert_array_equal(theta[s, a], 0.0)
                continue
            cramer = stats.energy_distance(z, sample, probs[s, a]) / np.sqrt(2)
            wrong = stats.energy_distance(z, sample, wrong_probs[s, a]) / np.sqrt(2)
            weights = jnp.full(sample.size, 1 / sample.size)
            projected = targets.categorical_projection(
                jnp.asarray(sample, jnp.float32), weights, support
            )
            on_atoms = float(rd.cramer_distance(jnp.asarray(probs[s, a]), projected, support))
            assert on_atoms < 0.02 * scale, (s, a, on_atoms)
            w1 = stats.wasserstein_distance(theta[s, a], sample)
            w1_wrong = stats.wasserstein_distance(wrong_theta[s, a], sample)
            assert cramer < 0.03 * scale and w1 < 0.03 * scale, (s, a, cramer, w1)
            assert wrong > 2 * cramer + 0.01 * scale and w1_wrong > 2 * w1 + 0.01 * scale


def test_distances_match_scipy():
    rng = np.random.default_rng(0)
    support = jnp.linspace(-2.0, 3.0, 11)
    p, q = rng.dirichlet(np.ones(11), 2)
    got = rd.cramer_distance(jnp.asarray(p), jnp.asarray(q), support)
    expected = stats.energy_distance(np.asarray(support), np.asarray(support), p, q) / np.sqrt(2)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    theta, ref = rng.normal(size=(2, 16))
    np.testing.assert_allclose(
        rd.wasserstein1_quantiles(jnp.asarray(theta), jnp.asarray(ref)),
        stats.wasserstein_distance(theta, ref),
        rtol=1e-5,
    )


def test_the_quantile_projection_takes_the_midpoint_quantiles():
    atoms = jnp.array([3.0, -1.0, 0.5, 2.0])
    weights = jnp.array([0.1, 0.4, 0.0, 0.5])  # CDF: −1 → 0.4, 2 → 0.9, 3 → 1 (0.5 has none)
    got = rd.quantile_projection(atoms, weights, 4)  # τ̂ = 0.125, 0.375, 0.625, 0.875
    np.testing.assert_array_equal(got, [-1.0, -1.0, 2.0, 2.0])
    # the categorical projection the fixed point uses is the one the C51 target uses
    np.testing.assert_allclose(
        targets.categorical_projection(jnp.array([0.25]), jnp.ones(1), jnp.linspace(0, 1, 3)),
        [0.5, 0.5, 0.0],
    )


def test_noisy_rewards_are_reported():
    _, bias = envs.make("MaximizationBias")
    assert not rd.has_deterministic_rewards(bias)
    assert all(rd.has_deterministic_rewards(m) for m in mdps().values())
