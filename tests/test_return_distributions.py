import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, stats

from qlearn import dp, envs, heads, hparams, losses, policies, targets
from qlearn import return_distributions as rd
from qlearn.algos import deep_q, dqn, probes
from qlearn.losses.distributional import quantile_huber_loss

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
        support = heads.categorical_support(0.0, 1.0, 101)
    else:
        bound = float(np.abs(np.asarray(mdp.transition_rewards)).max()) / (1 - GAMMA)
        support = heads.categorical_support(-bound, bound, 101)
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
    """Also on float32 atoms far from 0, evenly spaced only up to rounding (one Δz = z₁ − z₀
    was off by 8.5e-6 relative at (90, 100, 51), 3e-5 at (−80.2, −79.6, 50))."""
    rng = np.random.default_rng(0)
    for support in (
        jnp.linspace(-2.0, 3.0, 11),
        heads.categorical_support(90.0, 100.0, 51),
        heads.categorical_support(-80.2, -79.6, 50),
    ):
        p, q = rng.dirichlet(np.ones(support.shape[0]), 2).astype(np.float32)
        got = rd.cramer_distance(jnp.asarray(p), jnp.asarray(q), support)
        z = np.asarray(support, np.float64)
        expected = stats.energy_distance(z, z, p, q) / np.sqrt(2)
        np.testing.assert_allclose(got, expected, rtol=1e-6)
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


def huber_quantile_loss_f64(theta, atoms, weights, tau, kappa):
    """Σ_j w_j |τ − 1{z_j < θ}| L_κ(z_j − θ) in float64 (L_κ not divided by κ, as qlearn)."""
    u = atoms - theta
    huber = np.where(np.abs(u) <= kappa, 0.5 * u**2, kappa * (np.abs(u) - 0.5 * kappa))
    return np.sum(weights * np.abs(tau - (u < 0)) * huber)


def expectile_slope(theta, atoms, weights, tau):
    """The derivative of Σ_j w_j |τ − 1{z_j < θ}| ½(z_j − θ)², whose root is the τ-expectile."""
    return np.sum(weights * np.abs(tau - (atoms < theta)) * (theta - atoms))


def test_the_huber_quantile_minimises_the_quantile_huber_loss():
    """Against a float64 minimisation of the loss (scipy, to 1e-10), at random atoms with some
    weights 0, every κ-level; κ = 0 (static or traced) is the plain quantile projection
    exactly, and a κ above the atoms' spread gives the expectiles."""
    rng = np.random.default_rng(3)
    tau = np.asarray(heads.quantile_midpoints(8), np.float64)
    project = jax.jit(rd.huber_quantile_projection, static_argnums=2)
    for trial in range(12):
        atoms = rng.normal(size=30).astype(np.float32) * (0.3 if trial % 2 else 3.0)
        weights = rng.dirichlet(np.ones(30)).astype(np.float32) * (rng.uniform(size=30) > 0.2)
        weights = weights / weights.sum()
        z, w = atoms.astype(np.float64), weights.astype(np.float64)
        for kappa in (0.05, 0.5, 1.0, 20.0):
            got = np.asarray(project(jnp.asarray(atoms), jnp.asarray(weights), 8, kappa))
            expected = [
                optimize.minimize_scalar(
                    huber_quantile_loss_f64,
                    bounds=(z.min(), z.max()),
                    args=(z, w, t, kappa),
                    method="bounded",
                    options={"xatol": 1e-10},
                ).x
                for t in tau
            ]
            np.testing.assert_allclose(got, expected, atol=2e-5 * max(1.0, np.abs(z).max()))
            assert np.all(np.diff(got) >= 0)
        expectiles = [optimize.brentq(expectile_slope, z.min(), z.max(), (z, w, t)) for t in tau]
        np.testing.assert_allclose(got, expectiles, atol=1e-5 * np.abs(z).max())  # κ = 20
        plain = rd.quantile_projection(jnp.asarray(atoms), jnp.asarray(weights), 8)
        for kappa in (0.0, jnp.float32(0.0)):
            zero = project(jnp.asarray(atoms), jnp.asarray(weights), 8, kappa)
            np.testing.assert_array_equal(zero, plain)


def expected_loss_gradient(mdp, policy, gamma, theta, kappa):
    """∂/∂θ(s, a) of the learner's expected loss at the quantiles θ [S, A, N]: the quantile
    Huber loss (qlearn's) of θ(s, a) at the midpoints against the targets
    r(s, a, S') + γ(1 − term(S'))·θ(S', A'), S' ~ p(·|s, a), A' ~ π(·|S'), [S, A, N]."""
    n_s, n_a, n = theta.shape
    tau = heads.quantile_midpoints(n)
    live = gamma * (1.0 - mdp.terminal.astype(jnp.float32))

    def loss(theta_sa, s, a):
        samples = mdp.transition_rewards[s, a][:, None, None] + live[:, None, None] * theta
        per = jax.vmap(jax.vmap(lambda t: quantile_huber_loss(theta_sa, tau, t, kappa)))(samples)
        return jnp.sum(mdp.transition_probs[s, a][:, None] * policy * per)

    s, a = (x.ravel() for x in jnp.meshgrid(jnp.arange(n_s), jnp.arange(n_a), indexing="ij"))
    grads = jax.vmap(jax.grad(loss))(theta[s, a], s, a)
    return grads.reshape(n_s, n_a, n)


FLOORS = {  # MDP, γ, N, μ's ε (None: uniform μ), the W₁ of the κ = 1 minimiser to the κ = 0 truth
    "chain": (("Chain", {"n_states": 5, "slip": 0.3}), 0.9, 32, 0.05, 0.11),
    "garnet": (
        ("Garnet", {"n_states": 6, "n_actions": 2, "branching": 2, "seed": 3}),
        0.8,
        16,
        None,
        0.17,
    ),
}


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_the_huber_fixed_point_is_the_minimiser_a_qr_learner_reaches(name):
    """At κ = 1 the fixed point of Π_κ T^π zeroes the gradient of the learner's own expected
    loss (qlearn's quantile Huber loss over the exact next-state law), so a learner that
    reached it scores return_w1 ≈ 0 against it — where against the κ = 0 (W₁) fixed point
    it kept a floor of W₁ ≈ 0.11 (Chain) and 0.17 (the Garnet of test_dqn), at whose
    quantiles the loss's gradient is far from 0."""
    (env_id, kwargs), gamma, n, eps, floor = FLOORS[name]
    _, mdp = envs.make(env_id, **kwargs)
    q_star, _ = dp.value_iteration(mdp, gamma)
    greedy = dp.greedy_policy(q_star, mdp.action_mask)
    huber = rd.quantile_fixed_point(mdp, greedy, gamma, n, kappa=1.0)
    plain = rd.quantile_fixed_point(mdp, greedy, gamma, n)
    live = ~np.asarray(mdp.terminal)
    grad_huber = np.asarray(expected_loss_gradient(mdp, greedy, gamma, huber, 1.0))[live]
    grad_plain = np.asarray(expected_loss_gradient(mdp, greedy, gamma, plain, 1.0))[live]
    assert np.abs(grad_huber).max() < 3e-6 and np.abs(grad_plain).max() > 1e-3
    if eps is None:
        mu = jnp.full(mdp.rewards.shape, 1.0 / mdp.rewards.size)
    else:
        mu = dp.state_action_distribution(
            mdp, policies.epsilon_greedy_probs(q_star, eps, mdp.action_mask)
        )
    score = rd.distance_metrics("quantile", huber, huber, mu, None)["return_w1"]
    assert float(score) < 1e-6
    old = float(rd.distance_metrics("quantile", huber, plain, mu, None)["return_w1"])
    assert abs(old - floor) < 0.01, old


def garnet_program(head, loss, n_step=1):
    config = dqn.DQNConfig(
        env_id="Garnet",
        env_kwargs={"n_states": 6, "n_actions": 2, "branching": 2, "seed": 3},
        network="linear",
        head=head,
        loss=loss,
        num_atoms=51,
        num_quantiles=16,
        num_envs=4,
        n_step=n_step,
        total_steps=4000,
        learning_starts=400,
        buffer_size=4000,
    )
    return deep_q.program(config, losses.resolve(loss, double_q=True), None, config.value_head)


@pytest.mark.parametrize("kappa", [1.0, 0.3])
def test_dqn_grades_a_quantile_head_against_the_fixed_point_of_its_huber_kappa(kappa):
    """probes.ground_truth's quantile truth is the minimiser of the qr loss with the run's
    huber_delta: the learner's expected loss has zero gradient there."""
    prog = garnet_program("quantile", "qr")
    hp = hparams.to_arrays(dqn.DQNHParams(gamma=0.8, huber_delta=kappa))
    eta = probes.ground_truth(prog, hp)["eta"]
    mdp = prog.env_params
    greedy = dp.greedy_policy(dp.value_iteration(mdp, hp.gamma)[0], mdp.action_mask)
    grad = expected_loss_gradient(mdp, greedy, hp.gamma, eta, hp.huber_delta)
    assert np.abs(np.asarray(grad)).max() < 3e-6


@pytest.mark.parametrize(("head", "loss"), [("quantile", "qr"), ("categorical", "c51")])
def test_dqn_has_no_distributional_truth_for_n_step_targets(head, loss):
    """An n-step target's fixed point depends on the behaviour policy (uncorrected
    off-policy returns): with n_step > 1 there is no eta (so no return_w1 / return_cramer),
    while q* stays."""
    hp = hparams.to_arrays(dqn.DQNHParams(gamma=0.8, v_min=-15.0, v_max=15.0))
    assert "eta" in probes.ground_truth(garnet_program(head, loss), hp)
    truth = probes.ground_truth(garnet_program(head, loss, n_step=2), hp)
    assert "eta" not in truth and "q_star" in truth


def test_noisy_rewards_are_reported():
    _, bias = envs.make("MaximizationBias")
    assert not rd.has_deterministic_rewards(bias)
    assert all(rd.has_deterministic_rewards(m) for m in mdps().values())
