"""A uniform replay buffer of transitions: a ring of fixed capacity, pure functions on a pytree.

Items are stored one transition each (obs, action, reward, next_obs, terminated, truncated), so
truncation is represented exactly. Measured against flashbax's item buffer in DQN's pattern
(10 envs added, 5 batches of 100 sampled per step, 8 seeds vmapped, 2 CPU cores) this ring is
about 2x faster and compiles faster; see the README's notes on performance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from qlearn.types import Transition


@struct.dataclass
class ReplayBuffer:
    """Buffer state.

    Attributes:
      storage: a Transition whose leaves have a leading axis [capacity]. Items are written in
        insertion order at ``position``, wrapping around.
      position: int32 [], the index the next item is written to.
      size: int32 [], the number of valid items (≤ capacity).
    """

    storage: Transition
    position: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.storage)[0].shape[0]


def init(example: Transition, capacity: int) -> ReplayBuffer:
    """An empty buffer for items shaped like ``example`` (one unbatched transition)."""
    storage = jax.tree.map(
        lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.asarray(x).dtype), example
    )
    return ReplayBuffer(storage, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def add(buffer: ReplayBuffer, items: Transition) -> ReplayBuffer:
    """Append a batch of n items (leaves [n, ...]), overwriting the oldest when full."""
    n = jax.tree.leaves(items)[0].shape[0]
    capacity = buffer.capacity
    if capacity % n == 0:  # the batch never straddles the end: one contiguous write
        storage = jax.tree.map(
            lambda s, x: jax.lax.dynamic_update_slice_in_dim(s, x, buffer.position, 0),
            buffer.storage,
            items,
        )
    else:
        idx = (buffer.position + jnp.arange(n)) % capacity
        storage = jax.tree.map(lambda s, x: s.at[idx].set(x), buffer.storage, items)
    return ReplayBuffer(
        storage,
        (buffer.position + n) % capacity,
        jnp.minimum(buffer.size + n, capacity),
    )


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Transition:
    """``batch_size`` items drawn uniformly with replacement from the valid ones."""
    idx = jax.random.randint(key, (batch_size,), 0, buffer.size)
    return jax.tree.map(lambda s: s[idx], buffer.storage)
