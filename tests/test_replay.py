import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import losses, replay, sum_tree
from qlearn.types import Transition


def items(start, n):
    x = jnp.arange(start, start + n, dtype=jnp.float32)
    return Transition(
        obs=x[:, None],
        action=x.astype(jnp.int32),
        reward=x,
        next_obs=x[:, None],
        terminated=x > 1e9,
        truncated=x > 1e9,
        steps=jnp.ones(n, jnp.int32),
    )


@pytest.mark.parametrize("capacity", [6, 7])  # divisible by the add size, and not
def test_ring_keeps_the_newest_items_in_order(capacity):
    example = jax.tree.map(lambda x: x[0], items(0, 1))
    buf = replay.init(example, capacity)
    buf = jax.jit(replay.add)(buf, items(0, 3))
    assert int(buf.size) == 3 and int(buf.position) == 3
    np.testing.assert_array_equal(buf.storage.reward[:3], [0, 1, 2])
    for start in (3, 6):
        buf = jax.jit(replay.add)(buf, items(start, 3))
    assert int(buf.size) == capacity
    assert int(buf.position) == 9 % capacity
    stored = sorted(np.asarray(buf.storage.reward).tolist())
    assert stored == list(range(9 - capacity, 9))  # the oldest were overwritten


def test_sample_draws_only_valid_items_uniformly():
    example = jax.tree.map(lambda x: x[0], items(0, 1))
    buf = replay.add(replay.init(example, 100), items(10, 4))
    batch = replay.sample(buf, jax.random.bits(jax.random.key(0), (4000, 2), jnp.uint32))
    values, counts = np.unique(np.asarray(batch.reward), return_counts=True)
    np.testing.assert_array_equal(values, [10, 11, 12, 13])
    assert counts.min() > 900  # ≈1000 each
    np.testing.assert_array_equal(batch.obs[:, 0], batch.reward)  # fields stay aligned


def test_invalid_add_is_a_no_op():
    example = jax.tree.map(lambda x: x[0], items(0, 1))
    buf = replay.add(replay.init(example, 10), items(0, 2))
    skipped = jax.jit(replay.add)(buf, items(50, 2), False)
    assert int(skipped.size) == 2 and int(skipped.position) == 2
    assert set(
        np.asarray(
            replay.sample(skipped, jax.random.bits(jax.random.key(0), (500, 2), jnp.uint32)).reward
        )
    ) == {0.0, 1.0}


def numpy_n_step(rewards, terminated, truncated, gamma):
    """The n-step transition of the first step of one env's window, by a plain loop."""
    total, discount = 0.0, 1.0
    for k in range(len(rewards)):
        total += discount * rewards[k]
        discount *= gamma
        if terminated[k] or truncated[k]:
            return total, k + 1
    return total, len(rewards)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_n_step_transition_matches_a_loop_and_stops_at_episode_ends(n):
    rng = np.random.default_rng(n)
    num_envs, gamma = 64, 0.9
    window = Transition(
        obs=jnp.asarray(rng.normal(size=(n, num_envs, 3)), jnp.float32),
        action=jnp.asarray(rng.integers(0, 4, (n, num_envs)), jnp.int32),
        reward=jnp.asarray(rng.normal(size=(n, num_envs)), jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(n, num_envs, 3)), jnp.float32),
        terminated=jnp.asarray(rng.uniform(size=(n, num_envs)) < 0.2),
        truncated=jnp.asarray(rng.uniform(size=(n, num_envs)) < 0.2),
        steps=jnp.ones((n, num_envs), jnp.int32),
    )
    out = jax.jit(replay.n_step_transition)(window, gamma)
    w = jax.tree.map(np.asarray, window)
    for j in range(num_envs):
        reward, m = numpy_n_step(w.reward[:, j], w.terminated[:, j], w.truncated[:, j], gamma)
        assert int(out.steps[j]) == m
        assert float(out.reward[j]) == pytest.approx(reward, rel=1e-5, abs=1e-6)
        np.testing.assert_array_equal(out.next_obs[j], w.next_obs[m - 1, j])
        assert bool(out.terminated[j]) == bool(w.terminated[m - 1, j])
        assert bool(out.truncated[j]) == bool(w.truncated[m - 1, j])
        np.testing.assert_array_equal(out.obs[j], w.obs[0, j])
        assert int(out.action[j]) == int(w.action[0, j])


def prioritized_buffer(capacity, n):
    example = jax.tree.map(lambda x: x[0], items(0, 1))
    return replay.add(replay.init(example, capacity, prioritized=True), items(0, n))


def masses(buf):
    return np.asarray(sum_tree.get(buf.priorities, jnp.arange(buf.capacity)))


def test_prioritized_items_enter_at_the_largest_mass_and_take_their_new_priorities():
    buf = prioritized_buffer(8, 4)
    np.testing.assert_array_equal(masses(buf), [1, 1, 1, 1, 0, 0, 0, 0])  # max is 1 at start
    alpha, eps = 0.6, 1e-6
    buf = replay.update_priorities(buf, jnp.array([0, 2]), jnp.array([3.0, 0.5]), alpha, eps)
    new = (np.array([3.0, 0.5]) + eps) ** alpha
    np.testing.assert_allclose(masses(buf)[[0, 2]], new, rtol=1e-6)
    np.testing.assert_allclose(float(buf.max_priority), new[0], rtol=1e-6)
    buf = replay.add(buf, items(4, 2), False)  # skipped: no mass
    np.testing.assert_array_equal(masses(buf)[4:], 0)
    buf = replay.add(buf, items(4, 6))  # wraps around: slots 0, 1 are new items at the max
    np.testing.assert_allclose(masses(buf), [new[0]] * 2 + [new[1], 1] + [new[0]] * 4, rtol=1e-6)
    assert int(buf.size) == 8 and int(buf.position) == 2
    np.testing.assert_allclose(float(sum_tree.total(buf.priorities)), masses(buf).sum(), rtol=1e-6)


def test_prioritized_draws_and_importance_weights_match_numpy():
    buf = prioritized_buffer(16, 10)
    priority = jnp.linspace(0.0, 4.5, 10)
    alpha, beta, eps = 0.7, 0.5, 1e-3
    buf = replay.update_priorities(buf, jnp.arange(10), priority, alpha, eps)
    words = jax.random.bits(jax.random.key(0), (200_000, buf.priorities.depth), jnp.uint32)
    batch, idx, weights = jax.jit(replay.sample_prioritized)(buf, words, beta)
    np.testing.assert_array_equal(batch.reward, idx)  # the items drawn, fields aligned
    p = (np.asarray(priority, np.float64) + eps) ** alpha
    prob = p / p.sum()
    freq = np.bincount(np.asarray(idx), minlength=16) / idx.size
    np.testing.assert_allclose(freq[:10], prob, atol=4e-3)
    assert freq[10:].sum() == 0
    weight = (10 * prob[np.asarray(idx)]) ** -beta
    np.testing.assert_allclose(weights, weight / weight.max(), rtol=1e-5)


def test_alpha_zero_is_uniform_replay_with_unit_weights():
    buf = prioritized_buffer(16, 10)
    buf = replay.update_priorities(buf, jnp.arange(10), jnp.linspace(0, 9, 10), 0.0, 1e-6)
    words = jax.random.bits(jax.random.key(1), (50_000, buf.priorities.depth), jnp.uint32)
    _, idx, weights = replay.sample_prioritized(buf, words, 0.4)
    freq = np.bincount(np.asarray(idx), minlength=16) / idx.size
    np.testing.assert_allclose(freq[:10], 0.1, atol=5e-3)
    np.testing.assert_allclose(weights, 1.0, rtol=1e-6)


def forcing_words(tree: sum_tree.SumTree, leaf: int) -> list[int]:
    """The PRNG words that make :func:`qlearn.sum_tree.sample` descend to ``leaf`` (of
    positive mass): at each node, word 0 takes the lighter child (probability > 0 passes
    any 32-bit test), word 2³² − 1 the heavier one (it passes none with probability ≤ ½)."""
    rows = [np.asarray(row) for row in sum_tree.pyramid(tree.levels[-1])]  # every level
    node, words = 0, []
    for level in range(tree.depth):
        go_left = (leaf >> (tree.depth - 1 - level)) & 1 == 0
        left_lighter = rows[level + 1][2 * node] <= rows[level + 1][2 * node + 1]
        words.append(0 if go_left == left_lighter else 0xFFFFFFFF)
        node = 2 * node + (0 if go_left else 1)
    return words


def expected_update(buf, gradients, beta, normalise):
    """E[∇_θ mean_b w_b ℓ_b(θ)] over every ordered batch of B = 2 draws, each drawn by
    sample_prioritized itself (forced words) and weighted by its probability P(i)P(j); the
    per-sample loss ℓ_i(θ) = g_i·θ, g_i stored as item i's obs, so ∇ℓ_i = g_i."""
    n = gradients.shape[0]
    prob = masses(buf)[:n].astype(np.float64)
    prob /= prob.sum()
    total = np.zeros(gradients.shape[1])
    for idx in itertools.product(range(n), repeat=2):
        words = jnp.asarray([forcing_words(buf.priorities, i) for i in idx], jnp.uint32)
        batch, drawn, weight = replay.sample_prioritized(buf, words, beta, normalise)
        batch = batch.replace(weight=weight)
        np.testing.assert_array_equal(drawn, idx)

        def loss(theta, batch=batch):
            return losses.batch_mean(batch.obs @ theta, batch)

        grad = jax.grad(loss)(jnp.zeros(gradients.shape[1]))
        total += prob[idx[0]] * prob[idx[1]] * np.asarray(grad, np.float64)
    return total, prob


def gradient_buffer(gradients, priority, track_min):
    """N items whose obs are the per-sample gradients g_i, their priorities set (α = 1, ε = 0:
    P(i) ∝ priority_i)."""
    n = gradients.shape[0]
    stored = items(0, n).replace(obs=jnp.asarray(gradients, jnp.float32))
    example = jax.tree.map(lambda x: x[0], stored)
    buf = replay.init(example, n, prioritized=True, track_min=track_min)
    buf = replay.add(buf, stored)
    return replay.update_priorities(buf, jnp.arange(n), jnp.asarray(priority), 1.0, 0.0)


ZERO_MEAN = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])  # uniform gradient 0


def test_batch_normalised_weights_do_not_follow_the_uniform_gradient_at_beta_one():
    """The review's example, enumerated exactly: N = 3, priorities [1, 2, 10], B = 2, β = 1,
    w normalised by the batch's max. The uniform gradient mean_i g_i is 0, the expected
    prioritised update is [−0.544, −0.473] (a float64 formula: E[mean_b w_b g_b / max_b w_b])."""
    buf = gradient_buffer(ZERO_MEAN, [1.0, 2.0, 10.0], track_min=False)
    got, prob = expected_update(buf, ZERO_MEAN, 1.0, "batch")
    weight = 1.0 / (3 * prob)
    formula = sum(
        prob[i]
        * prob[j]
        * (weight[i] * ZERO_MEAN[i] + weight[j] * ZERO_MEAN[j])
        / 2
        / max(weight[i], weight[j])
        for i, j in itertools.product(range(3), repeat=2)
    )
    np.testing.assert_allclose(got, formula, rtol=1e-6)
    np.testing.assert_allclose(got, [-0.5443787, -0.4733728], rtol=1e-6)  # 92/169, 80/169


@pytest.mark.parametrize("gradients", [ZERO_MEAN, np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 2.0]])])
def test_buffer_normalised_weights_give_the_uniform_gradient_times_a_constant_at_beta_one(
    gradients,
):
    """normalise="buffer" divides by (N·min P)^−β, one number per step: at β = 1 the expected
    update of the same enumeration is (N·min_j P(j)) · mean_i g_i, here 3/13 times the
    uniform gradient (0 for the review's example)."""
    buf = gradient_buffer(gradients, [1.0, 2.0, 10.0], track_min=True)
    got, prob = expected_update(buf, gradients, 1.0, "buffer")
    constant = 3 * prob.min()
    assert constant == pytest.approx(3 / 13)
    np.testing.assert_allclose(got, constant * gradients.mean(0), atol=1e-7)


def test_buffer_normalised_weights_match_numpy_and_never_exceed_one():
    example = jax.tree.map(lambda x: x[0], items(0, 1))
    buf = replay.add(replay.init(example, 16, prioritized=True, track_min=True), items(0, 10))
    priority = jnp.linspace(0.5, 4.5, 10)
    alpha, beta, eps = 0.7, 0.5, 1e-3
    buf = replay.update_priorities(buf, jnp.arange(10), priority, alpha, eps)
    words = jax.random.bits(jax.random.key(0), (5_000, buf.priorities.depth), jnp.uint32)
    _, idx, weights = jax.jit(replay.sample_prioritized, static_argnums=3)(
        buf, words, beta, "buffer"
    )
    p = (np.asarray(priority, np.float64) + eps) ** alpha
    prob = p / p.sum()
    weight = (10 * prob[np.asarray(idx)]) ** -beta / (10 * prob.min()) ** -beta
    np.testing.assert_allclose(weights, weight, rtol=1e-5)
    assert float(jnp.max(weights)) <= 1.0
    with pytest.raises(ValueError, match="track_min=True"):  # a tree without the min tree
        replay.sample_prioritized(prioritized_buffer(16, 10), words, beta, "buffer")
    with pytest.raises(ValueError, match="normalise = 'global' must be one of batch, buffer"):
        replay.sample_prioritized(buf, words, beta, "global")


def test_the_min_tree_follows_adds_wraparound_and_skipped_items():
    example = jax.tree.map(lambda x: x[0], items(0, 1))
    buf = replay.add(replay.init(example, 8, prioritized=True, track_min=True), items(0, 4))
    buf = replay.update_priorities(buf, jnp.array([0, 2]), jnp.array([3.0, 0.01]), 1.0, 0.0)
    buf = replay.add(buf, items(4, 2), False)  # skipped: mass 0, not the min
    assert float(sum_tree.min_mass(buf.priorities)) == pytest.approx(0.01)
    buf = replay.add(buf, items(4, 7))  # wraps: slot 2 (the 0.01) overwritten at the max
    stored = masses(buf)
    assert stored.min() > 0.01
    assert float(sum_tree.min_mass(buf.priorities)) == stored.min()


@pytest.mark.parametrize("jit", [False, True])
def test_a_repeated_index_sets_max_priority_from_the_mass_it_stored(jit):
    """A batch that draws item 1 twice with two different |δ|: the tree keeps one of the
    two masses, and max_priority (what new items get) is the max over the masses actually
    stored, not the mass of the copy that lost. Both orders, so whichever copy the scatter
    keeps, one order makes the larger one lose."""
    update = jax.jit(replay.update_priorities) if jit else replay.update_priorities
    for priority in ([3.0, 8.0], [8.0, 3.0]):
        buf = update(prioritized_buffer(8, 4), jnp.array([1, 1]), jnp.array(priority), 1.0, 0.0)
        stored = masses(buf)[1]
        assert stored in priority
        assert float(buf.max_priority) == max(1.0, stored), (priority, stored)
        buf = replay.add(buf, items(4, 1))  # a new item enters at that mass
        assert masses(buf)[4] == stored
