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


def epsilon_greedy(uniform: jax.Array, q_values: jax.Array, epsilon: jax.Array) -> jax.Array:
    """ε-greedy actions from one uniform draw u ~ U[0, 1) per row: [B], [B, A] -> int32 [B].

    Row b explores when u_b < ε and then takes action ⌊A·u_b/ε⌋, which is uniform over the A
    actions because u_b/ε is uniform on [0, 1) given u_b < ε; otherwise it is greedy. One draw
    per decision instead of split + uniform + randint: on CPU each PRNG call inside a loop
    body is a loop of its own.
    """
    num_actions = q_values.shape[-1]
    explore = uniform < epsilon
    scaled = uniform / jnp.maximum(epsilon, jnp.finfo(jnp.float32).tiny) * num_actions
    random_actions = jnp.minimum(scaled.astype(jnp.int32), num_actions - 1)
    return jnp.where(explore, random_actions, greedy(q_values))
