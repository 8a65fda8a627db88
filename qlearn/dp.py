"""Exact dynamic programming on a finite MDP: the ground truth a Q-learner is measured against.

All functions are pure and jittable, and take the MDP as its arrays
(:class:`~qlearn.envs.finite.FiniteMDPParams`, S states, A actions). Values use the conventions
of :mod:`qlearn.envs.finite`: entering a terminal state ends the episode, so the bootstrap
through it is 0 and q(terminal, ·) = 0; unavailable actions (``action_mask``) are never chosen.

    q*(s,a)  = r(s,a) + γ Σ_s' p(s'|s,a) (1 − term(s')) max_a' q*(s',a')       (optimality)
    q^π(s,a) = r(s,a) + γ Σ_s' p(s'|s,a) (1 − term(s')) Σ_a' π(a'|s') q^π(s',a')  (evaluation)
    VE(q̂)    = Σ_{s,a} μ(s,a) (q(s,a) − q̂(s,a))²                                (value error)

Policies are arrays π[s, a] of action probabilities.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from qlearn.envs.finite import FiniteMDPError, FiniteMDPParams


def _continuation(mdp: FiniteMDPParams) -> jax.Array:
    """p(s'|s,a)·(1 − term(s')), [S, A, S]: the transitions that continue the episode."""
    return mdp.transition_probs * (1.0 - mdp.terminal.astype(jnp.float32))


def _live_model(mdp: FiniteMDPParams) -> tuple[jax.Array, jax.Array]:
    """(r, continuation) with the rows of terminal states zeroed: q(terminal, ·) = 0."""
    live = 1.0 - mdp.terminal.astype(jnp.float32)
    return mdp.rewards * live[:, None], _continuation(mdp) * live[:, None, None]


def masked_max(q: jax.Array, action_mask: jax.Array) -> jax.Array:
    """max over the available actions, [S, A] -> [S]."""
    return jnp.max(jnp.where(action_mask, q, -jnp.inf), axis=-1)


def bellman_optimality(q: jax.Array, mdp: FiniteMDPParams, gamma: jax.Array) -> jax.Array:
    """The Bellman optimality operator (T q)(s,a), [S, A] -> [S, A]."""
    rewards, continuation = _live_model(mdp)
    v = masked_max(q, mdp.action_mask)
    return rewards + gamma * jnp.einsum("sat,t->sa", continuation, v)


def value_iteration(
    mdp: FiniteMDPParams,
    gamma: jax.Array | float,
    *,
    tol: float = 1e-6,
    max_iterations: int = 100_000,
) -> tuple[jax.Array, jax.Array]:
    """q* by value iteration from q = 0, until max |T q − q| ≤ ``tol``.

    Returns:
      (q* [S, A], iterations int32 []). With γ < 1 the error after stopping is at most
      tol·γ/(1 − γ); with γ = 1 it converges when every policy's episodes end, and stops at
      ``max_iterations`` otherwise (compare the returned count against it).
    """

    def cond(carry: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
        _, delta, i = carry
        return (delta > tol) & (i < max_iterations)

    def body(carry: tuple[jax.Array, jax.Array, jax.Array]) -> tuple:
        q, _, i = carry
        q_new = bellman_optimality(q, mdp, gamma)
        return q_new, jnp.max(jnp.abs(q_new - q)), i + 1

    q0 = jnp.zeros_like(mdp.rewards)
    q, _, iterations = jax.lax.while_loop(cond, body, (q0, jnp.array(jnp.inf), jnp.int32(0)))
    return q, iterations


def greedy_policy(q: jax.Array, action_mask: jax.Array | None = None) -> jax.Array:
    """π[s, a] = 1 for the first maximising available action, [S, A] -> [S, A]."""
    if action_mask is not None:
        q = jnp.where(action_mask, q, -jnp.inf)
    return jax.nn.one_hot(jnp.argmax(q, axis=-1), q.shape[-1], dtype=jnp.float32)


def epsilon_greedy_policy(
    q: jax.Array, epsilon: jax.Array | float, action_mask: jax.Array | None = None
) -> jax.Array:
    """ε-greedy π[s, a]: ε spread uniformly over the available actions, 1 − ε on the greedy one."""
    mask = jnp.ones(q.shape, bool) if action_mask is None else action_mask
    uniform = mask / jnp.sum(mask, axis=-1, keepdims=True)
    return epsilon * uniform + (1.0 - epsilon) * greedy_policy(q, mask)


def _check_discount(mdp: FiniteMDPParams, gamma: jax.Array | float) -> None:
    """γ = 1 on a continuing MDP has no finite values: refuse it when both are known."""
    try:
        g = float(gamma)
        continuing = not bool(np.any(np.asarray(mdp.terminal)))
    except jax.errors.ConcretizationTypeError:
        return  # traced: the caller is responsible
    if not 0.0 <= g <= 1.0:
        raise FiniteMDPError(f"gamma = {g} must be in [0, 1]")
    if g == 1.0 and continuing:
        raise FiniteMDPError(
            "gamma = 1 on a continuing MDP (no terminal states): values are infinite; use gamma < 1"
        )


def policy_evaluation(
    mdp: FiniteMDPParams, policy: jax.Array, gamma: jax.Array | float
) -> jax.Array:
    """q^π by an exact linear solve of (I − γ P_π) q = r over the S·A state-action pairs.

    Args:
      mdp: the MDP.
      policy: π[s, a], [S, A].
      gamma: γ in [0, 1]; γ = 1 needs episodes that end under π.

    Returns:
      q^π, [S, A]. (A policy that never ends an episode under γ = 1 has infinite values: the
      solve returns non-finite numbers when traced.)

    Raises:
      FiniteMDPError: γ = 1 on a continuing MDP, or γ outside [0, 1] (when not traced).
    """
    _check_discount(mdp, gamma)
    rewards, continuation = _live_model(mdp)
    num_states, num_actions = rewards.shape
    n = num_states * num_actions
    # P_π[(s,a), (s',a')] = p(s'|s,a) (1 − term(s')) π(a'|s')
    p_pi = jnp.einsum("sat,tb->satb", continuation, policy).reshape(n, n)
    q = jnp.linalg.solve(jnp.eye(n) - gamma * p_pi, rewards.reshape(n))
    return q.reshape(num_states, num_actions)


def state_action_distribution(mdp: FiniteMDPParams, policy: jax.Array) -> jax.Array:
    """The on-policy distribution μ(s, a) = d(s) π(a|s) of following π, [S, A].

    d is the long-run fraction of time spent in each state: for a continuing MDP the stationary
    distribution of the state chain under π; for an episodic one the expected visits per
    episode, normalised (Sutton & Barto eq. 9.2). Both are the stationary distribution of the
    chain in which entering a terminal state restarts from ``initial_distribution``, so one
    solve covers both: d (I − P̃ + 1 hᵀ) = hᵀ. It assumes a single recurrent class (a unique
    stationary distribution; the system is singular otherwise and the result meaningless —
    check rank(I − P̃) = S − 1 on a new MDP). Time-limit truncation is not modelled.
    """
    h = mdp.initial_distribution
    p_end = jnp.sum(mdp.transition_probs * mdp.terminal.astype(jnp.float32), axis=-1)  # [S, A]
    restarted = _continuation(mdp) + p_end[..., None] * h  # [S, A, S]
    p_tilde = jnp.einsum("sa,sat->st", policy, restarted)
    num_states = h.shape[0]
    system = jnp.eye(num_states) - p_tilde + jnp.outer(jnp.ones(num_states), h)
    d = jnp.linalg.solve(system.T, h)
    return d[:, None] * policy


def value_error(q_hat: jax.Array, q_ref: jax.Array, mu: jax.Array) -> jax.Array:
    """VE = Σ_{s,a} μ(s,a) (q_ref(s,a) − q̂(s,a))², shapes [S, A] -> []."""
    return jnp.sum(mu * jnp.square(q_ref - q_hat))


def policy_value(mdp: FiniteMDPParams, policy: jax.Array, gamma: jax.Array | float) -> jax.Array:
    """J(π) = Σ_s h(s) Σ_a π(a|s) q^π(s,a): the expected return from the start, []."""
    q = policy_evaluation(mdp, policy, gamma)
    return jnp.einsum("s,sa,sa->", mdp.initial_distribution, policy, q)
