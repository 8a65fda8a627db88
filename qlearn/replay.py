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

from qlearn import sampling
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


def add(buffer: ReplayBuffer, items: Transition, valid: jax.Array | bool = True) -> ReplayBuffer:
    """Append a batch of n items (leaves [n, ...]), overwriting the oldest when full.

    With ``valid`` false (traced is fine) the items are written where the next ones will go but
    neither ``position`` nor ``size`` moves, so they are never sampled and soon overwritten —
    a no-op that costs no copy of the buffer. (Only while the buffer is not yet full: then the
    write lands beyond the valid items.)
    """
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
    added = n * jnp.asarray(valid, jnp.int32)
    return ReplayBuffer(
        storage,
        (buffer.position + added) % capacity,
        jnp.minimum(buffer.size + added, capacity),
    )


def sample(buffer: ReplayBuffer, words: jax.Array) -> Transition:
    """B items drawn uniformly with replacement from the valid ones, exactly uniformly at any
    size (:func:`qlearn.sampling.uniform_index`), from ``words`` uint32 [B, 2]. Taking the
    words rather than a key lets the caller draw those of many updates at once. The buffer
    must hold at least one item (the configs guarantee it before the first update)."""
    idx = sampling.uniform_index(words, buffer.size)
    return jax.tree.map(lambda s: s[idx], buffer.storage)


def n_step_transition(window: Transition, gamma: jax.Array) -> Transition:
    """The n-step transition of the OLDEST step of a window, for each of N envs.

    Args:
      window: the last n one-step transitions, oldest first: leaves [n, N, ...].
      gamma: the discount γ.

    Returns:
      Leaves [N, ...]: (obs, action) of the oldest step; ``reward`` = Σ_{k<m} γᵏ r_k and
      (next_obs, terminated, truncated) of step m − 1, where m ≤ n stops at the first episode
      end in the window (steps after it belong to the next episode); ``steps`` = m.
    """
    n = window.reward.shape[0]
    done = (window.terminated | window.truncated).astype(jnp.int32)  # [n, N]
    used = (jnp.cumsum(done, axis=0) - done) == 0  # no earlier step of the window ended it
    m = jnp.sum(used, axis=0).astype(jnp.int32)  # [N], 1..n
    powers = gamma ** jnp.arange(n, dtype=jnp.float32)
    reward = jnp.sum(jnp.where(used, powers[:, None] * window.reward, 0.0), axis=0)

    def at_last(x: jax.Array) -> jax.Array:
        index = (m - 1).reshape(1, -1, *([1] * (x.ndim - 2)))
        return jnp.take_along_axis(x, index, axis=0)[0]

    return Transition(
        obs=window.obs[0],
        action=window.action[0],
        reward=reward,
        next_obs=at_last(window.next_obs),
        terminated=at_last(window.terminated),
        truncated=at_last(window.truncated),
        steps=m,
        next_action_mask=None
        if window.next_action_mask is None
        else at_last(window.next_action_mask),
    )
