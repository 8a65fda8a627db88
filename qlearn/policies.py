"""Behaviour policies and exploration schedules. Safe for traced hyperparameters: no Python
control flow on values, so the same code runs under ``jax.vmap`` over a sweep."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def linear_schedule(
    step: jax.Array, start: jax.Array, end: jax.Array, duration: jax.Array
) -> jax.Array:
    """Linear interpolation from ``start`` (step 0) to ``end`` (step ≥ ``duration``).

    ``duration`` may be 0 (the schedule is ``end`` from the first step) and may be traced.
    """
    frac = jnp.where(duration > 0, step / jnp.maximum(duration, 1e-12), 1.0)
    return start + (end - start) * jnp.clip(frac, 0.0, 1.0)


def greedy(q_values: jax.Array) -> jax.Array:
    """argmax_a q[b, a]: [B, A] -> int32 [B]."""
    return jnp.argmax(q_values, axis=-1).astype(jnp.int32)


def epsilon_greedy(key: jax.Array, q_values: jax.Array, epsilon: jax.Array) -> jax.Array:
    """ε-greedy actions: uniform with probability ε, greedy otherwise. [B, A] -> int32 [B]."""
    k_explore, k_action = jax.random.split(key)
    batch, num_actions = q_values.shape
    explore = jax.random.uniform(k_explore, (batch,)) < epsilon
    random_actions = jax.random.randint(k_action, (batch,), 0, num_actions, dtype=jnp.int32)
    return jnp.where(explore, random_actions, greedy(q_values))
