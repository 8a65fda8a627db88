import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import replay
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
