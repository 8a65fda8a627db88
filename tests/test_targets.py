import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from qlearn import heads, targets


def test_q_learning_hand_computed(variant):
    y = variant(targets.q_learning)(jnp.float32(1.0), jnp.float32(0.9), jnp.array([2.0, 5.0, -1.0]))
    np.testing.assert_allclose(y, 1.0 + 0.9 * 5.0)


def test_double_q_learning_hand_computed(variant):
    # the selector picks action 0; the value network's estimate of action 0 is used
    y = variant(targets.double_q_learning)(
        jnp.float32(1.0), jnp.float32(0.5), jnp.array([3.0, 10.0]), jnp.array([7.0, 1.0])
    )
    np.testing.assert_allclose(y, 1.0 + 0.5 * 3.0)


def test_terminal_discount_cuts_bootstrap(variant):
    y = variant(targets.q_learning)(jnp.float32(2.0), jnp.float32(0.0), jnp.array([100.0, 200.0]))
    np.testing.assert_allclose(y, 2.0)


def test_targets_match_rlax_over_random_inputs(variant):
    rng = np.random.default_rng(0)
    batch, actions = 64, 5
    q_tm1 = jnp.asarray(rng.normal(size=(batch, actions)), jnp.float32)
    a_tm1 = jnp.asarray(rng.integers(0, actions, batch), jnp.int32)
    r_t = jnp.asarray(rng.normal(size=batch), jnp.float32)
    discount_t = jnp.asarray(rng.uniform(size=batch) * (rng.uniform(size=batch) > 0.2), jnp.float32)
    q_t = jnp.asarray(rng.normal(size=(batch, actions)), jnp.float32)
    q_t_sel = jnp.asarray(rng.normal(size=(batch, actions)), jnp.float32)
    q_sa = q_tm1[jnp.arange(batch), a_tm1]

    ours = variant(jax.vmap(targets.q_learning))(r_t, discount_t, q_t) - q_sa
    theirs = jax.vmap(rlax.q_learning)(q_tm1, a_tm1, r_t, discount_t, q_t)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)

    ours = variant(jax.vmap(targets.double_q_learning))(r_t, discount_t, q_t, q_t_sel) - q_sa
    theirs = jax.vmap(rlax.double_q_learning)(q_tm1, a_tm1, r_t, discount_t, q_t, q_t_sel)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_rank_is_checked():
    with pytest.raises(AssertionError):
        targets.q_learning(jnp.zeros(3), jnp.float32(0.9), jnp.zeros(2))


def test_sarsa_and_expected_sarsa_hand_computed():
    q_t = jnp.array([2.0, 6.0])
    np.testing.assert_allclose(
        targets.sarsa(jnp.float32(1.0), jnp.float32(0.5), q_t, jnp.int32(0)), 1.0 + 0.5 * 2.0
    )
    probs = jnp.array([0.25, 0.75])
    np.testing.assert_allclose(
        targets.expected_sarsa(jnp.float32(1.0), jnp.float32(0.5), q_t, probs),
        1.0 + 0.5 * (0.25 * 2.0 + 0.75 * 6.0),
    )


def test_expected_sarsa_under_greedy_policy_is_q_learning():
    q_t = jnp.array([1.0, 4.0, 3.0])
    greedy = jax.nn.one_hot(jnp.argmax(q_t), 3)
    r, d = jnp.float32(0.3), jnp.float32(0.9)
    np.testing.assert_allclose(
        targets.expected_sarsa(r, d, q_t, greedy), targets.q_learning(r, d, q_t)
    )


def test_sarsa_targets_match_rlax_over_random_inputs():
    rng = np.random.default_rng(1)
    batch, actions = 64, 4
    q_tm1 = jnp.asarray(rng.normal(size=(batch, actions)), jnp.float32)
    a_tm1 = jnp.asarray(rng.integers(0, actions, batch), jnp.int32)
    r_t = jnp.asarray(rng.normal(size=batch), jnp.float32)
    discount_t = jnp.asarray(rng.uniform(size=batch) * (rng.uniform(size=batch) > 0.2), jnp.float32)
    q_t = jnp.asarray(rng.normal(size=(batch, actions)), jnp.float32)
    a_t = jnp.asarray(rng.integers(0, actions, batch), jnp.int32)
    probs = jax.nn.softmax(jnp.asarray(rng.normal(size=(batch, actions)), jnp.float32))
    q_sa = q_tm1[jnp.arange(batch), a_tm1]

    ours = jax.vmap(targets.sarsa)(r_t, discount_t, q_t, a_t) - q_sa
    theirs = jax.vmap(rlax.sarsa)(q_tm1, a_tm1, r_t, discount_t, q_t, a_t)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)

    ours = jax.vmap(targets.expected_sarsa)(r_t, discount_t, q_t, probs) - q_sa
    theirs = jax.vmap(rlax.expected_sarsa)(q_tm1, a_tm1, r_t, discount_t, q_t, probs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


# --- sequence targets -------------------------------------------------------------------------
# A sequence with a termination in the middle, one at the very end, and no structure in the
# values: every index is checked, including the last.
GAMMA = 0.9
R = np.array([1.0, -2.0, 0.5, 3.0, 0.0, 1.5, -1.0, 2.0, 0.25, 4.0], np.float32)
TERMINATED = np.array([0, 0, 0, 1, 0, 0, 0, 0, 0, 1], bool)
V = np.array([0.3, 1.2, -0.7, 9.0, 2.2, -1.1, 0.6, 1.9, -0.4, 7.0], np.float32)
D = (GAMMA * (1 - TERMINATED)).astype(np.float32)


def numpy_n_step(r, d, v, n):
    """G_t: rewards of up to n steps (stopping at the sequence end), then the last value."""
    out = []
    for t in range(len(r)):
        last = min(t + n, len(r)) - 1
        g, prod = 0.0, 1.0
        for k in range(t, last + 1):
            g += prod * r[k]
            prod *= d[k]
        out.append(g + prod * v[last])
    return np.array(out)


def numpy_lambda_forward_view(r, d, v, lam):
    """Forward view: G^λ_t = (1−λ) Σ_n λ^(n−1) G^(n)_t, the tail weight on the longest return."""
    length = len(r)
    out = []
    for t in range(length):
        horizon = length - t
        nstep = [numpy_n_step(r, d, v, n)[t] for n in range(1, horizon + 1)]
        g = sum((1 - lam) * lam ** (n - 1) * nstep[n - 1] for n in range(1, horizon))
        out.append(g + lam ** (horizon - 1) * nstep[-1])
    return np.array(out)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 12])
def test_n_step_returns_match_numpy_and_rlax_at_every_index(n, variant):
    ours = variant(targets.n_step_bootstrapped_returns, static_argnums=3)(R, D, V, n)
    np.testing.assert_allclose(ours, numpy_n_step(R, D, V, n), rtol=1e-5, atol=1e-5)
    theirs = rlax.n_step_bootstrapped_returns(R, D, V, n)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_one_step_return_is_the_q_learning_target():
    one = targets.n_step_bootstrapped_returns(R, D, V, 1)
    np.testing.assert_allclose(one, R + D * V, rtol=1e-6)
    np.testing.assert_allclose(targets.lambda_returns(R, D, V, 0.0), R + D * V, rtol=1e-6)


def test_n_step_rejects_bad_n():
    with pytest.raises(ValueError, match="n = 0"):
        targets.n_step_bootstrapped_returns(R, D, V, 0)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.9, 1.0])
def test_lambda_returns_match_forward_view_and_rlax_at_every_index(lam, variant):
    ours = variant(targets.lambda_returns)(R, D, V, lam)
    np.testing.assert_allclose(ours, numpy_lambda_forward_view(R, D, V, lam), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours, rlax.lambda_returns(R, D, V, lam), rtol=1e-5, atol=1e-5)


def test_lambda_one_without_bootstrap_is_the_monte_carlo_return():
    # episodes end at indices 3 and 9: with λ = 1 the values are never used
    ours = targets.lambda_returns(R, D, V * 1e6, 1.0)
    mc = np.zeros_like(R)
    g = 0.0
    for t in reversed(range(len(R))):
        g = R[t] + D[t] * g
        mc[t] = g
    np.testing.assert_allclose(ours, mc, rtol=1e-5)


def test_truncation_cuts_lambda_recursion_but_bootstraps_from_final_value():
    """λ·(1 − truncated) as per-step λ: identical to computing each episode on its own."""
    truncated = np.zeros(len(R), bool)
    truncated[5] = True  # a time limit: discount stays γ, the episode still ends there
    lam = 0.8
    ours = targets.lambda_returns(R, D, V, lam * (1 - truncated))
    first = targets.lambda_returns(R[:6], D[:6], V[:6], lam)  # ends bootstrapping from V[5]
    second = targets.lambda_returns(R[6:], D[6:], V[6:], lam)
    np.testing.assert_allclose(ours, np.concatenate([first, second]), rtol=1e-6)
    # and rlax agrees when handed the same per-step λ
    np.testing.assert_allclose(
        ours, rlax.lambda_returns(R, D, V, lam * (1 - truncated)), rtol=1e-5, atol=1e-5
    )
    # without the cut, step 5's return would leak the next episode's rewards
    leaky = targets.lambda_returns(R, D, V, lam)
    assert abs(float(leaky[5]) - float(ours[5])) > 1e-3


def numpy_n_step_truncated(r, d, v, truncated, n):
    """G_t by a plain loop that stops each window at a time limit (bootstrapping from the final
    observation's value there), at a termination, or at the sequence end."""
    out = []
    for t in range(len(r)):
        g, prod = 0.0, 1.0
        for k in range(t, min(t + n, len(r))):
            g += prod * r[k]
            prod *= d[k]
            if truncated[k] or k == min(t + n, len(r)) - 1:
                g += prod * v[k]
                break
        out.append(g)
    return np.array(out)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_n_step_returns_stop_at_a_truncation(n, variant):
    """A window crossing a time limit stops there and bootstraps from the final value, like
    computing each episode on its own; numpy and rlax (same per-step λ) agree at every index."""
    truncated = np.zeros(len(R), bool)
    truncated[5] = True
    cut = (1 - truncated).astype(np.float32)
    ours = variant(targets.n_step_bootstrapped_returns, static_argnums=3)(R, D, V, n, cut)
    np.testing.assert_allclose(
        ours, numpy_n_step_truncated(R, D, V, truncated, n), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        ours, rlax.n_step_bootstrapped_returns(R, D, V, n, lambda_t=cut), rtol=1e-5, atol=1e-5
    )
    first = targets.n_step_bootstrapped_returns(R[:6], D[:6], V[:6], n)
    second = targets.n_step_bootstrapped_returns(R[6:], D[6:], V[6:], n)
    np.testing.assert_allclose(ours, np.concatenate([first, second]), rtol=1e-5)
    leaky = targets.n_step_bootstrapped_returns(R, D, V, n)  # no cut: the next episode leaks in
    assert abs(float(leaky[5]) - float(ours[5])) > 1e-3


# -- distributional targets -------------------------------------------------------------------


def test_categorical_projection_equals_rlax_and_keeps_mass_and_mean_inside_the_support(variant):
    rng = np.random.default_rng(1)
    z_q = jnp.linspace(-5.0, 5.0, 21)
    for _ in range(20):
        z_p = jnp.asarray(rng.normal(size=15) * 4, jnp.float32)  # some beyond [-5, 5]
        p = jnp.asarray(rng.dirichlet(np.ones(15)), jnp.float32)
        ours = variant(targets.categorical_projection)(z_p, p, z_q)
        np.testing.assert_allclose(ours, rlax.categorical_l2_project(z_p, p, z_q), atol=1e-6)
        np.testing.assert_allclose(ours.sum(), 1.0, rtol=1e-5)
        # the projection keeps the mean of the clipped distribution (it splits each atom's
        # mass between its two neighbours in proportion to closeness)
        np.testing.assert_allclose(ours @ z_q, p @ jnp.clip(z_p, -5, 5), rtol=1e-4, atol=1e-4)


def project_float64(z_p, probs, z_q):
    """The Cramér projection onto the atoms z_q as they are (float32 atoms away from 0 are
    evenly spaced only up to rounding), in float64: each clipped source atom split between
    the two atoms of its interval in proportion to closeness."""
    z_q = np.asarray(z_q, np.float64)
    x = np.clip(np.asarray(z_p, np.float64), z_q[0], z_q[-1])
    low = np.clip(np.searchsorted(z_q, x, side="right") - 1, 0, len(z_q) - 2)
    frac = (x - z_q[low]) / (z_q[low + 1] - z_q[low])
    m = np.zeros(len(z_q))
    np.add.at(m, low, np.asarray(probs, np.float64) * (1 - frac))
    np.add.at(m, low + 1, np.asarray(probs, np.float64) * frac)
    return m


@pytest.mark.parametrize(
    "support", [(-10.0, 10.0, 51), (90.0, 100.0, 51), (-80.2, -79.6, 50), (0.0, 1.0, 5)]
)
def test_categorical_projection_is_float64_accurate_on_supports_away_from_zero(variant, support):
    """A terminal transition's target (all mass at r) and a bootstrapped one, on C51's
    float32 atoms, within 1e-6 of the float64 projection (one Δz = z₁ − z₀ carried z₀'s
    rounding, times up to K − 1: errors 5e-5, 7.6e-4, 1.3e-3 on the first three); exact
    where the atoms are exactly evenly spaced (the last)."""
    z = heads.categorical_support(*support)
    project = variant(jax.vmap(targets.categorical_projection, (0, 0, None)))
    rng = np.random.default_rng(5)
    lo, hi = support[:2]
    rewards = np.concatenate([rng.uniform(lo, hi, 300), np.asarray(z)]).astype(np.float32)
    terminal = np.asarray(project(jnp.asarray(rewards)[:, None], jnp.ones((rewards.size, 1)), z))
    expected = np.stack([project_float64(r[None], [1.0], z) for r in rewards])
    np.testing.assert_allclose(terminal, expected, atol=1e-6)
    if support == (0.0, 1.0, 5):  # atoms k/4, exactly evenly spaced: exact up to one rounding
        np.testing.assert_array_equal(terminal, expected.astype(np.float32))
    r_t = jnp.asarray(rng.uniform(-0.5, 0.5, 50) * (hi - lo), jnp.float32)
    z_p = r_t[:, None] + 0.9 * z  # r + γz, partly beyond the support
    probs = jnp.asarray(rng.dirichlet(np.ones(z.shape[0]), 50), jnp.float32)
    got = np.asarray(project(z_p, probs, z))
    expected = np.stack([project_float64(a, p, z) for a, p in zip(z_p, probs, strict=True)])
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_categorical_targets_give_rlax_c51_losses_for_q_and_double_q(
    variant, distributional_inputs
):
    rng = np.random.default_rng(2)
    r_t, discount_t, logits_t, selector = distributional_inputs(rng)
    batch, actions, atoms = logits_t.shape
    z = jnp.linspace(-10.0, 10.0, atoms)
    logits_tm1 = jnp.asarray(rng.normal(size=logits_t.shape), jnp.float32)
    a_tm1 = jnp.asarray(rng.integers(0, actions, batch), jnp.int32)
    probs_t = jax.nn.softmax(logits_t, axis=-1)
    logits_sa = logits_tm1[jnp.arange(batch), a_tm1]

    def cross_entropy(m):
        return -jnp.sum(m * jax.nn.log_softmax(logits_sa, axis=-1), axis=-1)

    target = variant(jax.vmap(targets.categorical_q_learning, (0, 0, None, 0, 0)))
    m = target(r_t, discount_t, z, probs_t, probs_t @ z)  # Q-learning: select by the mean
    theirs = jax.vmap(rlax.categorical_q_learning, (None, 0, 0, 0, 0, None, 0))(
        z, logits_tm1, a_tm1, r_t, discount_t, z, logits_t
    )
    np.testing.assert_allclose(cross_entropy(m), theirs, rtol=1e-5, atol=1e-5)
    m = target(r_t, discount_t, z, probs_t, selector)
    theirs = jax.vmap(rlax.categorical_double_q_learning, (None, 0, 0, 0, 0, None, 0, 0))(
        z, logits_tm1, a_tm1, r_t, discount_t, z, logits_t, selector
    )
    np.testing.assert_allclose(cross_entropy(m), theirs, rtol=1e-5, atol=1e-5)


def test_a_terminal_categorical_target_is_the_reward_alone(variant):
    z = jnp.linspace(0.0, 4.0, 5)
    probs_t = jax.nn.softmax(jnp.arange(10.0).reshape(2, 5), axis=-1)
    m = variant(targets.categorical_q_learning)(
        jnp.float32(2.5), jnp.float32(0.0), z, probs_t, jnp.zeros(2)
    )
    np.testing.assert_allclose(m, [0, 0, 0.5, 0.5, 0], atol=1e-6)  # δ(2.5), split 2 | 3


def test_two_hot_equals_rlax_and_its_mean_is_the_clipped_target(variant):
    z = jnp.linspace(-2.0, 6.0, 17)
    ys = jnp.asarray(np.random.default_rng(4).uniform(-4, 8, 200), jnp.float32)
    ours = variant(jax.vmap(targets.two_hot, (0, None)))(ys, z)
    theirs = rlax.transform_to_2hot(ys, -2.0, 6.0, 17)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)  # float32 rounding of |y − z| / Δz
    np.testing.assert_allclose(ours @ z, np.clip(ys, -2, 6), atol=1e-5)
    np.testing.assert_allclose(
        rlax.transform_from_2hot(ours, -2.0, 6.0, 17), np.clip(ys, -2, 6), atol=1e-5
    )


def test_hl_gauss_labels_are_the_gaussian_mass_of_each_bin(variant):
    from scipy.stats import norm

    centres = jnp.linspace(0.25, 9.75, 20)  # 20 bins of width 0.5 over [0, 10]
    edges = np.linspace(0.0, 10.0, 21)
    for y, sigma in [(3.1, 0.375), (0.1, 0.375), (9.9, 1.0), (-2.0, 0.5), (5.0, 3.0)]:
        ours = variant(targets.hl_gauss)(jnp.float32(y), centres, jnp.float32(sigma))
        mass = np.diff(norm.cdf(edges, loc=np.clip(y, 0, 10), scale=sigma))  # float64
        np.testing.assert_allclose(ours, mass / mass.sum(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(ours.sum(), 1.0, rtol=1e-5)
    inside = targets.hl_gauss(jnp.float32(4.3), centres, jnp.float32(0.375))
    np.testing.assert_allclose(inside @ centres, 4.3, atol=1e-3)  # far from the ends: mean y


def test_value_rescaling_h_and_its_inverse_to_float32_precision():
    """h⁻¹(h(x)) = x within 8 ulps from 10⁻⁸ to 10⁶ in magnitude, h within 4 ulps of float64's
    textbook formula; rlax's (which subtracts, losing precision near 0 and at large |x|)
    agrees to its own precision."""
    x = np.concatenate([-np.logspace(-8, 6, 3000)[::-1], [0.0], np.logspace(-8, 6, 3000)])
    x32 = x.astype(np.float32)
    h = np.asarray(jax.jit(targets.signed_hyperbolic)(x32))
    back = np.asarray(jax.jit(targets.signed_parabolic)(h))
    ulp = np.finfo(np.float32).eps
    x64 = x32.astype(np.float64)
    h64 = np.sign(x64) * (np.sqrt(np.abs(x64) + 1) - 1) + targets.RESCALING_EPS * x64
    assert np.all(np.abs(h - h64) <= 4 * ulp * np.abs(h64))
    assert np.all(np.abs(back - x64) <= 8 * ulp * np.abs(x64))
    assert np.all(np.diff(h) > 0)  # increasing: argmax unchanged
    np.testing.assert_allclose(h, rlax.signed_hyperbolic(x32, 1e-3), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(back, rlax.signed_parabolic(h, 1e-3), rtol=2e-4, atol=5e-4)
