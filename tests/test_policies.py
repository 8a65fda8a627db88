import jax
import jax.numpy as jnp
import numpy as np

from qlearn import policies


def test_linear_schedule_values_and_traced_zero_duration():
    sched = jax.jit(jax.vmap(policies.linear_schedule, (None, None, None, 0)))
    out = sched(jnp.float32(50), 1.0, 0.0, jnp.array([100.0, 50.0, 0.0]))
    np.testing.assert_allclose(out, [0.5, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(policies.linear_schedule(0, 1.0, 0.1, 10.0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(policies.linear_schedule(1000, 1.0, 0.1, 10.0), 0.1, rtol=1e-6)


def test_epsilon_greedy_extremes():
    q = jnp.tile(jnp.array([[0.0, 3.0, 1.0]]), (3000, 1))
    u = jax.random.uniform(jax.random.key(0), (3000,))
    np.testing.assert_array_equal(policies.epsilon_greedy(u, q, 0.0), 1)
    uniform = np.asarray(policies.epsilon_greedy(u, q, 1.0))
    counts = np.bincount(uniform, minlength=3)
    assert counts.min() > 900  # ≈1000 each
    mixed = np.asarray(policies.epsilon_greedy(u, q, 0.3))
    # greedy with probability 0.7 + 0.3/3 = 0.8
    assert abs(np.mean(mixed == 1) - 0.8) < 0.03


def test_epsilon_greedy_explores_uniformly_with_one_draw_per_row():
    """With u < ε the action is ⌊A·u/ε⌋: each action takes an equal share of [0, ε), the edges
    included (u just below ε is the last action, never A), and u ≥ ε is greedy."""
    q = jnp.array([[0.0, 0.0, 0.0, 5.0]] * 9)
    eps = 0.2
    u = jnp.array([0.0, 0.0499, 0.05, 0.0999, 0.1, 0.1499, 0.15, 0.19999999, 0.2])
    np.testing.assert_array_equal(policies.epsilon_greedy(u, q, eps), [0, 0, 1, 1, 2, 2, 3, 3, 3])
    # exploration frequency of each action ≈ ε/A for u ~ U[0, 1)
    u = jax.random.uniform(jax.random.key(1), (40_000,))
    actions = np.asarray(policies.epsilon_greedy(u, jnp.zeros((40_000, 4)).at[:, 3].set(1), 0.4))
    np.testing.assert_allclose(
        np.bincount(actions, minlength=4) / 40_000, [0.1, 0.1, 0.1, 0.7], atol=0.01
    )
