"""A sequence replay (R2D2, Kapturowski et al. 2019): the steps of N envs in a ring, replayed as
sequences of L consecutive steps of one env, a new sequence starting every P = L − overlap
steps, sampled uniformly or by priority. Pure functions, like :mod:`qlearn.replay`.

Each env step is stored once (leaves [C, N, ...], C steps of each env, a multiple of P), so
overlapping sequences cost no copies: sequence k of env e is the rows kP, …, kP + L − 1 (mod C)
of column e. It is *complete* once its last step is written and *valid* until its first step
is overwritten, so the valid sequences of each env are k_min ≤ k ≤ k_max with

    k_max = ⌊(W − L) / P⌋,   k_min = max(0, ⌈(W − C) / P⌉),   W = steps written per env,

and at least one exists once W ≥ L if C ≥ L + P − 1 (:func:`init` asks C ≥ L + P). A sequence
runs on across episode ends: whatever a learner needs to cut it there (the reset flags, the
terminations) is in the steps. Prioritised replay keeps a mass per sequence slot
((k mod K)·N + e, K = C / P) in a :mod:`qlearn.sum_tree`: a completed sequence gets the largest
mass so far, one whose first step is overwritten gets 0; the learner's new priorities are the
η-mixture of its steps' |δ| (:func:`mixed_priority`) and go in with
:func:`qlearn.replay.update_priorities`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from qlearn import replay, sampling, sum_tree
from qlearn.types import Transition


@struct.dataclass
class SequenceReplay:
    """Buffer state.

    Attributes:
      steps: the stored steps, a pytree with leaves [C, N, ...] (row W mod C holds step W of
        every env).
      written: int32 [], the steps written per env so far (W).
      priorities: the masses of the K·N sequence slots, or None for uniform replay.
      max_priority: float32 [], the largest mass given so far (1 at the start), or None.
      length: L, the steps of a sequence (static).
      period: P, the steps between the starts of consecutive sequences (static).
    """

    steps: Any
    written: jax.Array
    priorities: sum_tree.SumTree | None = None
    max_priority: jax.Array | None = None
    length: int = struct.field(pytree_node=False, default=1)
    period: int = struct.field(pytree_node=False, default=1)

    @property
    def capacity(self) -> int:
        """C, the steps of each env the ring holds."""
        return jax.tree.leaves(self.steps)[0].shape[0]

    @property
    def num_envs(self) -> int:
        return jax.tree.leaves(self.steps)[0].shape[1]

    @property
    def slots(self) -> int:
        """K·N: the sequences the ring can hold at once."""
        return self.capacity // self.period * self.num_envs


def init(
    example: Any,
    capacity: int,
    num_envs: int,
    length: int,
    period: int,
    *,
    prioritized: bool = False,
    track_min: bool = False,
) -> SequenceReplay:
    """An empty buffer for steps shaped like ``example`` (one env's step) of ``num_envs`` envs,
    holding ``capacity`` steps of each, rounded down to a multiple of ``period``; sequences of
    ``length`` steps starting every ``period``. ValueError unless 1 ≤ period ≤ length and the
    ring holds length + period steps (so a valid sequence always exists once one is done)."""
    if not 1 <= period <= length:
        raise ValueError(f"period = {period} must be between 1 and length = {length}")
    rows = capacity // period * period
    if rows < length + period:
        raise ValueError(
            f"capacity = {capacity} steps of each env must hold length + period = "
            f"{length + period} steps"
        )
    steps = jax.tree.map(
        lambda x: jnp.zeros((rows, num_envs, *jnp.shape(x)), jnp.asarray(x).dtype), example
    )
    zero = jnp.zeros((), jnp.int32)
    if not prioritized:
        return SequenceReplay(steps, zero, length=length, period=period)
    tree = sum_tree.init(rows // period * num_envs, track_min=track_min)
    return SequenceReplay(steps, zero, tree, jnp.ones((), jnp.float32), length, period)


def add(buffer: SequenceReplay, step: Any) -> SequenceReplay:
    """Write one step of every env (leaves [N, ...]) at row W mod C. Prioritised: the slots of
    the sequences whose first step this overwrites drop to mass 0, then those of the sequences
    this step completes get the largest mass so far."""
    row = buffer.written % buffer.capacity
    steps = jax.tree.map(
        lambda s, x: jax.lax.dynamic_update_index_in_dim(s, x, row, 0), buffer.steps, step
    )
    written = buffer.written + 1
    tree = buffer.priorities
    if tree is not None:
        period, envs = buffer.period, jnp.arange(buffer.num_envs)
        per_env = buffer.capacity // period

        def set_slots(t: sum_tree.SumTree, k: jax.Array, mass: jax.Array) -> sum_tree.SumTree:
            slots = (k % per_env) * buffer.num_envs + envs
            return sum_tree.update(t, slots, jnp.full(envs.shape, mass))

        old = buffer.written - buffer.capacity  # the step this write overwrites
        stale = (old >= 0) & (old % period == 0)
        tree = jax.lax.cond(stale, lambda t: set_slots(t, old // period, 0.0), lambda t: t, tree)
        first = written - buffer.length  # the first step of a sequence this write completes
        done = (first >= 0) & (first % period == 0)
        tree = jax.lax.cond(
            done, lambda t: set_slots(t, first // period, buffer.max_priority), lambda t: t, tree
        )
    return buffer.replace(steps=steps, written=written, priorities=tree)


def valid_range(buffer: SequenceReplay) -> tuple[jax.Array, jax.Array]:
    """(k_min, count): the first valid sequence of each env and how many there are (int32 []),
    as in the module docstring; count ≥ 1 once ``length`` steps are written."""
    period = buffer.period
    last = (buffer.written - buffer.length) // period
    first = jnp.maximum(0, -((buffer.capacity - buffer.written) // period))  # ⌈(W − C)/P⌉
    return first, last - first + 1


def gather(buffer: SequenceReplay, slot: jax.Array) -> Any:
    """The sequences in ``slot`` int32 [B] ((k mod K)·N + e): leaves [B, L, ...]."""
    start = slot // buffer.num_envs * buffer.period
    rows = (start[:, None] + jnp.arange(buffer.length)) % buffer.capacity
    env = (slot % buffer.num_envs)[:, None]
    return jax.tree.map(lambda s: s[rows, env], buffer.steps)


def sample(buffer: SequenceReplay, words: jax.Array) -> tuple[Any, jax.Array]:
    """B sequences drawn uniformly with replacement from the valid ones (of every env), from
    ``words`` uint32 [B, 2]: (sequences, leaves [B, L, ...]; their slots int32 [B])."""
    first, count = valid_range(buffer)
    j = sampling.uniform_index(words, count * buffer.num_envs)
    k = first + j // buffer.num_envs
    slot = (k % (buffer.capacity // buffer.period)) * buffer.num_envs + j % buffer.num_envs
    return gather(buffer, slot), slot


def sample_prioritized(
    buffer: SequenceReplay, words: jax.Array, beta: jax.Array, normalise: str = "batch"
) -> tuple[Any, jax.Array, jax.Array]:
    """B sequences drawn with probability ∝ their masses, from ``words`` uint32 [B, depth]:
    (sequences [B, L, ...], slots int32 [B], importance weights float32 [B] of
    :func:`qlearn.replay.importance_weights` over the valid sequences)."""
    drawn = sum_tree.draw(buffer.priorities, words)
    _, count = valid_range(buffer)
    size = count * buffer.num_envs
    weight = replay.importance_weights(drawn, size, beta, normalise)
    return gather(buffer, drawn.index), drawn.index, weight


def words_per_sample(buffer: SequenceReplay) -> int:
    """uint32 PRNG words one draw takes: 2 (uniform), the tree's depth (prioritised)."""
    return sampling.WORDS_PER_INDEX if buffer.priorities is None else buffer.priorities.depth


def mixed_priority(td_abs: jax.Array, eta: jax.Array) -> jax.Array:
    """R2D2's sequence priority p = η·max_t |δ_t| + (1 − η)·mean_t |δ_t| from the per-step
    |δ| [T, B] of B sequences: [B]."""
    return eta * jnp.max(td_abs, axis=0) + (1.0 - eta) * jnp.mean(td_abs, axis=0)


def n_step_rows(seq: Transition, burn_in: int, n: int, gamma: jax.Array) -> Transition:
    """The n-step transitions of the trained steps of B sequences, as the rows a recurrent
    learner regresses (:class:`qlearn.recurrent.SequenceBatch`).

    Args:
      seq: one-step transitions of B sequences of L steps, time-major: leaves [L, B, ...].
      burn_in: the first steps, not trained (T = L − burn_in rows per sequence).
      n: the n of the n-step targets.
      gamma: the discount γ.

    Returns:
      Leaves [T·B, ...], row t·B + b for step burn_in + t of sequence b: its action; reward
      Σ_{k<m} γᵏ r_{t+k} and (terminated, truncated, next_action_mask) of step t + m − 1, where
      m ≤ n stops at the first episode end and at the sequence's last step (so a target never
      crosses an episode end); ``steps`` = m; ``obs`` = the row's own number and ``next_obs`` =
      T·B + (t + m − 1)·B + b, the rows of :func:`qlearn.recurrent.rows_q_function` that give
      q̂ at the step and one step after step t + m − 1.
    """
    length, batch = seq.reward.shape
    steps = length - burn_in
    t = burn_in + jnp.arange(steps)
    idx = t[:, None] + jnp.arange(n)  # [T, n]: the steps an n-step target may span
    inside = (idx < length)[..., None]
    idx = jnp.minimum(idx, length - 1)
    done = (seq.terminated | seq.truncated)[idx] & inside  # [T, n, B]
    ended_before = (jnp.cumsum(done, axis=1) - done) > 0
    used = inside & ~ended_before
    m = jnp.sum(used, axis=1).astype(jnp.int32)  # [T, B], 1..n
    powers = gamma ** jnp.arange(n, dtype=jnp.float32)
    reward = jnp.sum(jnp.where(used, powers[:, None] * seq.reward[idx], 0.0), axis=1)
    last = t[:, None] + m - 1
    sequence = jnp.arange(batch)

    def at_last(x: jax.Array) -> jax.Array:
        picked = x[last, sequence]  # [T, B, ...]
        return picked.reshape(steps * batch, *picked.shape[2:])

    mask = seq.next_action_mask
    return Transition(
        obs=jnp.arange(steps * batch, dtype=jnp.int32),
        action=seq.action[burn_in:].reshape(-1),
        reward=reward.reshape(-1),
        next_obs=(steps * batch + (last - burn_in) * batch + sequence).reshape(-1),
        terminated=at_last(seq.terminated),
        truncated=at_last(seq.truncated),
        steps=m.reshape(-1),
        next_action_mask=None if mask is None else at_last(mask),
    )


update_priorities = replay.update_priorities
"""The sampled slots' new priorities: :func:`qlearn.replay.update_priorities` (the same masses
p = (priority + ε)ᵅ and running maximum)."""
