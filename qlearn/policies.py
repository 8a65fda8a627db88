"""Behaviour policies and exploration schedules: THE ε-greedy of qlearn (DQN, PQN and the
tabular methods act with :func:`epsilon_greedy`; DP and the true-error metrics use its exact
distribution, :func:`epsilon_greedy_probs`), greedy actions, and schedules.

Every function takes an optional ``mask`` (bool [..., A], True = available): masked actions are
never chosen, by exploration or greedily, and carry no probability. Safe for traced
hyperparameters: no Python control flow on values, so the same code runs under ``jax.vmap``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from qlearn import sampling

WORDS_PER_DECISION = 1 + sampling.WORDS_PER_INDEX
"""uint32 words :func:`epsilon_greedy` consumes per decision: one for the explore test, two for
the action index (a uniform available action when exploring, a uniform tied best otherwise)."""


def linear_schedule(
    step: jax.Array, start: jax.Array, end: jax.Array, duration: jax.Array
) -> jax.Array:
    """Linear interpolation from ``start`` (step 0) to ``end`` (step ≥ ``duration``).

    ``duration`` may be 0 (the schedule is ``end`` from the first step) and may be traced.
    """
    frac = jnp.where(duration > 0, step / jnp.maximum(duration, 1e-12), 1.0)
    return start + (end - start) * jnp.clip(frac, 0.0, 1.0)


def masked(q_values: jax.Array, mask: jax.Array | None) -> jax.Array:
    """q with unavailable actions at −∞ (for max/argmax), or q itself when ``mask`` is None.
    Every row must allow at least one action."""
    return q_values if mask is None else jnp.where(mask, q_values, -jnp.inf)


def greedy(q_values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """The first maximiser among the available actions: [B, A] (mask [B, A]) -> int32 [B]."""
    return jnp.argmax(masked(q_values, mask), axis=-1).astype(jnp.int32)


def _nth(allowed: jax.Array, k: jax.Array) -> jax.Array:
    """Index of the k-th (0-based) True entry of each row of ``allowed`` [B, A]: int32 [B]."""
    rank = jnp.cumsum(allowed.astype(jnp.int32), axis=-1)
    return jnp.argmax(allowed & (rank == k[..., None] + 1), axis=-1).astype(jnp.int32)


def epsilon_greedy(
    words: jax.Array, q_values: jax.Array, epsilon: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    """ε-greedy actions: words uint32 [B, :data:`WORDS_PER_DECISION`], q [B, A] -> int32 [B].

    With probability ε (word 0, :func:`qlearn.sampling.bernoulli`) a uniformly random
    available action, otherwise a uniformly random one of the tied greedy actions (words 1–2,
    :func:`qlearn.sampling.uniform_index`): with no tie, the greedy action itself. Its
    distribution is exactly :func:`epsilon_greedy_probs`.
    """
    allowed = jnp.ones(q_values.shape, bool) if mask is None else mask
    q = masked(q_values, mask)
    best = allowed & (q == jnp.max(q, axis=-1, keepdims=True))
    explore = sampling.bernoulli(words[..., 0], epsilon)
    choices = jnp.where(explore[..., None], allowed, best)
    count = jnp.sum(choices, axis=-1)
    return _nth(choices, sampling.uniform_index(words[..., 1:], count))


def epsilon_greedy_probs(
    q_values: jax.Array, epsilon: jax.Array | float, mask: jax.Array | None = None
) -> jax.Array:
    """π[..., a] of :func:`epsilon_greedy`: ε spread uniformly over the available actions,
    1 − ε uniformly over the tied greedy ones. [..., A] -> [..., A]."""
    allowed = jnp.ones(q_values.shape, bool) if mask is None else mask
    q = masked(q_values, mask)
    best = allowed & (q == jnp.max(q, axis=-1, keepdims=True))
    uniform = allowed / jnp.sum(allowed, axis=-1, keepdims=True)
    greedy_share = best / jnp.sum(best, axis=-1, keepdims=True)
    return epsilon * uniform + (1.0 - epsilon) * greedy_share
