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
    greedy = policies.epsilon_greedy(jax.random.key(0), q, 0.0)
    np.testing.assert_array_equal(greedy, 1)
    uniform = np.asarray(policies.epsilon_greedy(jax.random.key(1), q, 1.0))
    counts = np.bincount(uniform, minlength=3)
    assert counts.min() > 900  # ≈1000 each
    mixed = np.asarray(policies.epsilon_greedy(jax.random.key(2), q, 0.3))
    # greedy with probability 0.7 + 0.3/3 = 0.8
    assert abs(np.mean(mixed == 1) - 0.8) < 0.03
