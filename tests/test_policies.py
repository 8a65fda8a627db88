"""The one ε-greedy of qlearn: exact probabilities, masks, ties, and draws from integer bits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import policies, sampling


def words(n, seed=0):
    return jax.random.bits(jax.random.key(seed), (n, policies.WORDS_PER_DECISION), jnp.uint32)


def frequencies(actions, num_actions):
    return np.bincount(np.asarray(actions), minlength=num_actions) / len(actions)


def test_linear_schedule_values_and_traced_zero_duration():
    sched = jax.jit(jax.vmap(policies.linear_schedule, (None, None, None, 0)))
    out = sched(jnp.float32(50), 1.0, 0.0, jnp.array([100.0, 50.0, 0.0]))
    np.testing.assert_allclose(out, [0.5, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(policies.linear_schedule(0, 1.0, 0.1, 10.0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(policies.linear_schedule(1000, 1.0, 0.1, 10.0), 0.1, rtol=1e-6)


@pytest.mark.parametrize(
    ("q", "mask", "eps", "expected"),
    [
        # greedy 1; ε spread over all 3
        ([0.0, 3.0, 1.0], None, 0.3, [0.1, 0.8, 0.1]),
        # the 9 is unavailable: exploration over 3 actions, the greedy share on action 1
        ([1.0, 5.0, 9.0, 0.0], [True, True, False, True], 0.3, [0.1, 0.8, 0.0, 0.1]),
        # 0 and 1 tie among the available ones: they share the greedy mass
        ([5.0, 5.0, 1.0, 9.0], [True, True, True, False], 0.3, [0.45, 0.45, 0.1, 0.0]),
        ([0.0, 0.0, 0.0], None, 0.0, [1 / 3, 1 / 3, 1 / 3]),
    ],
)
def test_sampled_actions_follow_the_exact_distribution(q, mask, eps, expected):
    n = 40_000
    q = jnp.tile(jnp.array([q]), (n, 1))
    m = None if mask is None else jnp.tile(jnp.array([mask]), (n, 1))
    probs = policies.epsilon_greedy_probs(q[0], eps, None if m is None else m[0])
    np.testing.assert_allclose(probs, expected, rtol=1e-6, atol=1e-7)
    freq = frequencies(policies.epsilon_greedy(words(n), q, eps, m), len(expected))
    np.testing.assert_allclose(freq, expected, atol=0.01)
    if mask is not None:
        assert freq[~np.array(mask)].sum() == 0  # a masked action is never taken


def test_with_all_but_one_action_masked_every_decision_takes_it():
    q = jax.random.normal(jax.random.key(2), (5_000, 6))
    mask = jnp.zeros((5_000, 6), bool).at[:, 4].set(True)
    for eps in (0.0, 0.5, 1.0):
        np.testing.assert_array_equal(policies.epsilon_greedy(words(5_000), q, eps, mask), 4)
    np.testing.assert_array_equal(policies.greedy(q, mask), 4)


def test_exploration_probability_is_exact_for_tiny_epsilon():
    """ε = 1e-6: a float32 uniform on its 2⁻²³ grid explores with probability 9·2⁻²³ ≈ 1.07e-6
    (7% too often); here the explore test is a threshold on 32 integer bits, so exactly the
    words below ε·2³² explore."""
    eps = 1e-6
    threshold = eps * 2.0**32  # 4294.967...
    edge = jnp.array([0, 4294, 4295, 2**32 - 1], jnp.uint32)
    np.testing.assert_array_equal(sampling.bernoulli(edge, eps), [True, True, False, False])
    assert int(np.ceil(threshold)) / 2**32 == pytest.approx(eps, rel=1e-4)
    np.testing.assert_array_equal(sampling.bernoulli(edge, 1.0), True)
    np.testing.assert_array_equal(sampling.bernoulli(edge, 0.0), False)


def test_uniform_index_is_the_exact_64_bit_formula():
    rng = np.random.default_rng(0)
    w = rng.integers(0, 2**32, size=(20_000, 2), dtype=np.uint64)
    big = [(int(h) << 32) | int(lo) for h, lo in w]
    for n in (1, 3, 1_000_003, 2**31 - 1):
        got = np.asarray(sampling.uniform_index(jnp.asarray(w, jnp.uint32), n))
        np.testing.assert_array_equal(got, [(n * x) >> 64 for x in big])


def test_uniform_index_is_uniform_over_a_million_slots_and_beyond_two_to_the_23():
    """Chi-square over 1M slots (4M draws): ⌊u·n⌋ from float32 uniforms gives 8 or 9 of its
    2²³ values to each slot, a statistic ≈ 1M + 14,000 (10 standard deviations off)."""
    n, draws = 1_000_000, 4_000_000
    bits = jax.random.bits(jax.random.key(7), (draws, 2), jnp.uint32)
    counts = np.bincount(np.asarray(sampling.uniform_index(bits, n)), minlength=n)
    assert counts.size == n
    expected = draws / n
    chi2 = float(np.sum((counts - expected) ** 2) / expected)
    assert abs(chi2 - (n - 1)) < 5 * np.sqrt(2 * (n - 1)), chi2
    big = 2**24 + 3  # slots above 2²³ are reached, half of the draws
    high = np.asarray(sampling.uniform_index(bits[:100_000], big)) >= 2**23
    assert abs(high.mean() - (big - 2**23) / big) < 0.01
