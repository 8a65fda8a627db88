"""TD targets, as pure per-transition functions in the style of rlax.

Each function returns the bootstrap target y for ONE transition; batch it with ``jax.vmap``.
``discount_t`` is γ·(1 − terminated_t): zero only at a true termination, γ at a time-limit
truncation (which bootstraps from the final observation). Targets do not stop gradients
themselves: the loss does that, in one place (see :mod:`qlearn.losses`).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def q_learning(r_t: jax.Array, discount_t: jax.Array, q_t: jax.Array) -> jax.Array:
    """Watkins' Q-learning target  y = r_t + discount_t · max_a q_t[a].

    Args:
      r_t: reward, shape [].
      discount_t: γ·(1 − terminated_t), shape [].
      q_t: action values at the next state s_t, shape [A].

    Returns:
      The target y, shape [].
    """
    chex.assert_rank([r_t, discount_t, q_t], [0, 0, 1])
    return r_t + discount_t * jnp.max(q_t)


def double_q_learning(
    r_t: jax.Array, discount_t: jax.Array, q_t_value: jax.Array, q_t_selector: jax.Array
) -> jax.Array:
    """Double Q-learning target  y = r_t + discount_t · q_t_value[argmax_a q_t_selector[a]].

    van Hasselt (2010); in Double DQN the selector is the online network and the value the
    target network, which removes the maximisation bias of ``max``.

    Args:
      r_t: reward, shape [].
      discount_t: γ·(1 − terminated_t), shape [].
      q_t_value: values used to evaluate the chosen action at s_t, shape [A].
      q_t_selector: values used to choose the action at s_t, shape [A].

    Returns:
      The target y, shape [].
    """
    chex.assert_rank([r_t, discount_t, q_t_value, q_t_selector], [0, 0, 1, 1])
    return r_t + discount_t * q_t_value[jnp.argmax(q_t_selector)]
