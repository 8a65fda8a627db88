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
    batch = replay.sample(buf, jax.random.key(0), 4000)
    values, counts = np.unique(np.asarray(batch.reward), return_counts=True)
    np.testing.assert_array_equal(values, [10, 11, 12, 13])
    assert counts.min() > 900  # ≈1000 each
    np.testing.assert_array_equal(batch.obs[:, 0], batch.reward)  # fields stay aligned
