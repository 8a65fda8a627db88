"""A replay buffer of transitions: a ring of fixed capacity, pure functions on a pytree, sampled
uniformly (:func:`sample`) or in proportion to priorities (:func:`sample_prioritized`).

Items are stored one transition each (obs, action, reward, next_obs, terminated, truncated), so
truncation is represented exactly. Measured against flashbax's item buffer in DQN's pattern
(10 envs added, 5 batches of 100 sampled per step, 8 seeds vmapped, 2 CPU cores) this ring is
about 2x faster and compiles faster; see the README's notes on performance.

Prioritised replay (Schaul et al. 2016, proportional variant): item i has a priority
p_i > 0, is drawn with probability P(i) = p_iᵅ / Σ_k p_kᵅ, and the loss weighs it by the
importance-sampling weight w_i = (N·P(i))^(−β) / max_batch w (N the number of items; the
normalisation by the batch's largest weight, as Dopamine does, only scales updates down).
New items get the largest priority mass given so far, so each is likely replayed once before
its TD error is known; :func:`update_priorities` sets p_i = |δ_i| + ε after an update. The
masses p_iᵅ live in a :mod:`qlearn.sum_tree`, drawn with an error independent of N.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from qlearn import sampling, sum_tree
from qlearn.types import Transition


@struct.dataclass
class ReplayBuffer:
    """Buffer state.

    Attributes:
      storage: a Transition whose leaves have a leading axis [capacity]. Items are written in
        insertion order at ``position``, wrapping around.
      position: int32 [], the index the next item is written to.
      size: int32 [], the number of valid items (≤ capacity).
      priorities: the priority masses pᵅ of the items (:mod:`qlearn.sum_tree`; 0 for a slot
        without a valid item), or None for a uniform buffer.
      max_priority: float32 [], the largest mass given so far (1 at the start), which new
        items get; None for a uniform buffer.
    """

    storage: Transition
    position: jax.Array
    size: jax.Array
    priorities: sum_tree.SumTree | None = None
    max_priority: jax.Array | None = None

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.storage)[0].shape[0]


def init(example: Transition, capacity: int, *, prioritized: bool = False) -> ReplayBuffer:
    """An empty buffer for items shaped like ``example`` (one unbatched transition), with a
    sum tree of priorities if ``prioritized``."""
    storage = jax.tree.map(
        lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.asarray(x).dtype), example
    )
    empty = jnp.zeros((), jnp.int32)
    if not prioritized:
        return ReplayBuffer(storage, empty, empty)
    return ReplayBuffer(storage, empty, empty, sum_tree.init(capacity), jnp.ones((), jnp.float32))


def words_per_sample(buffer: ReplayBuffer) -> int:
    """uint32 PRNG words one draw of ``buffer`` takes: 2 (uniform), the tree's depth
    (prioritised)."""
    return sampling.WORDS_PER_INDEX if buffer.priorities is None else buffer.priorities.depth


def add(buffer: ReplayBuffer, items: Transition, valid: jax.Array | bool = True) -> ReplayBuffer:
    """Append a batch of n items (leaves [n, ...]), overwriting the oldest when full.

    With ``valid`` false (traced is fine) the items are written where the next ones will go but
    neither ``position`` nor ``size`` moves, so they are never sampled and soon overwritten —
    a no-op that costs no copy of the buffer. (Only while the buffer is not yet full: then the
    write lands beyond the valid items.)
    """
    n = jax.tree.leaves(items)[0].shape[0]
    capacity = buffer.capacity
    idx = (buffer.position + jnp.arange(n)) % capacity
    if capacity % n == 0:  # the batch never straddles the end: one contiguous write
        storage = jax.tree.map(
            lambda s, x: jax.lax.dynamic_update_slice_in_dim(s, x, buffer.position, 0),
            buffer.storage,
            items,
        )
    else:
        storage = jax.tree.map(lambda s, x: s.at[idx].set(x), buffer.storage, items)
    added = n * jnp.asarray(valid, jnp.int32)
    priorities = buffer.priorities
    if priorities is not None:  # new items at the largest mass so far; skipped ones stay at 0
        mass = jnp.where(valid, buffer.max_priority, 0.0)
        priorities = sum_tree.update(priorities, idx, jnp.full(n, mass))
    return buffer.replace(
        storage=storage,
        position=(buffer.position + added) % capacity,
        size=jnp.minimum(buffer.size + added, capacity),
        priorities=priorities,
    )


def sample(buffer: ReplayBuffer, words: jax.Array) -> Transition:
    """B items drawn uniformly with replacement from the valid ones, exactly uniformly at any
    size (:func:`qlearn.sampling.uniform_index`), from ``words`` uint32 [B, 2]. Taking the
    words rather than a key lets the caller draw those of many updates at once. The buffer
    must hold at least one item (the configs guarantee it before the first update)."""
    idx = sampling.uniform_index(words, buffer.size)
    return jax.tree.map(lambda s: s[idx], buffer.storage)


def sample_prioritized(
    buffer: ReplayBuffer, words: jax.Array, beta: jax.Array
) -> tuple[Transition, jax.Array]:
    """B items drawn with replacement with probability P(i) = p_iᵅ / Σ pᵅ (the tree's
    masses), from ``words`` uint32 [B, depth] (:func:`words_per_sample`).

    Returns (batch, indices int32 [B]); ``batch.weight`` holds the importance-sampling weights
    w_i = (N·P(i))^(−β) / max_j w_j over the batch, N = ``buffer.size``: a loss that weighs
    sample i by w_i follows the gradient of the uniform loss in expectation when β = 1."""
    tree = buffer.priorities
    idx = sum_tree.sample(tree, words)
    prob = sum_tree.get(tree, idx) / sum_tree.total(tree)
    weight = (buffer.size.astype(jnp.float32) * prob) ** -beta
    batch = jax.tree.map(lambda s: s[idx], buffer.storage)
    return batch.replace(weight=weight / jnp.max(weight)), idx


def update_priorities(
    buffer: ReplayBuffer,
    idx: jax.Array,
    priority: jax.Array,
    alpha: jax.Array,
    eps: jax.Array,
) -> ReplayBuffer:
    """Set the priorities of items ``idx`` [B] to p = ``priority`` + ε (``priority`` ≥ 0, e.g.
    |δ|, [B]): their masses become pᵅ, and ``max_priority`` the largest mass so far. An index
    drawn twice in the batch takes one of its two priorities."""
    mass = (jax.lax.stop_gradient(priority) + eps) ** alpha
    return buffer.replace(
        priorities=sum_tree.update(buffer.priorities, idx, mass),
        max_priority=jnp.maximum(buffer.max_priority, jnp.max(mass)),
    )


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
        state_index=None if window.state_index is None else window.state_index[0],
    )
