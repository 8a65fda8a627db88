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

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qlearn import policies
from qlearn.envs.finite import FiniteMDPError, FiniteMDPParams
from qlearn.hparams import HParamError


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
    """π[s, a] = 1 for the first maximising available action (what greedy evaluation plays,
    :func:`qlearn.policies.greedy`), [S, A] -> [S, A]. The ε-greedy behaviour distribution is
    :func:`qlearn.policies.epsilon_greedy_probs`."""
    return jax.nn.one_hot(policies.greedy(q, action_mask), q.shape[-1], dtype=jnp.float32)


def check_discount(mdp: FiniteMDPParams, gamma: jax.Array | float) -> None:
    """Raise :class:`FiniteMDPError` unless γ gives finite values on ``mdp``: γ in [0, 1], and
    γ = 1 only on an MDP where value iteration converges (episodes end: on a continuing MDP the
    undiscounted values are infinite and value iteration would run to its iteration cap and
    return a meaningless q*). Does nothing for a traced γ: the algorithms' configs call it on
    the concrete hyperparameters before anything compiles."""
    try:
        g = float(gamma)
        continuing = not bool(np.any(np.asarray(mdp.terminal)))
    except jax.errors.ConcretizationTypeError:
        return
    if not 0.0 <= g <= 1.0:
        raise FiniteMDPError(f"gamma = {g} must be in [0, 1]")
    if g < 1.0:
        return
    if continuing:
        raise FiniteMDPError(
            "gamma = 1 on a continuing MDP (no terminal states): its values are infinite and "
            "value iteration cannot converge; use gamma < 1"
        )
    cap = 10_000
    _, iterations = jax.jit(value_iteration, static_argnames="max_iterations")(
        mdp, 1.0, max_iterations=cap
    )
    if int(iterations) >= cap:
        raise FiniteMDPError(
            f"gamma = 1: value iteration did not converge in {cap:,} iterations (some states "
            "never reach a terminal state); use gamma < 1"
        )


def check_discounts(mdp: FiniteMDPParams, gammas: Any) -> None:
    """:func:`check_discount` for every distinct γ of ``gammas`` (a grid's values), raising
    :class:`~qlearn.hparams.HParamError` that names the hyperparameter."""
    for gamma in sorted(set(np.atleast_1d(np.asarray(gammas, np.float64)).tolist())):
        try:
            check_discount(mdp, gamma)
        except FiniteMDPError as e:
            raise HParamError(f"hyperparameter 'gamma' = {gamma:g}: {e}") from None


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
    check_discount(mdp, gamma)
    rewards, continuation = _live_model(mdp)
    num_states, num_actions = rewards.shape
    n = num_states * num_actions
    # P_π[(s,a), (s',a')] = p(s'|s,a) (1 − term(s')) π(a'|s')
    p_pi = jnp.einsum("sat,tb->satb", continuation, policy).reshape(n, n)
    q = jnp.linalg.solve(jnp.eye(n) - gamma * p_pi, rewards.reshape(n))
    return q.reshape(num_states, num_actions)


def power_sum(
    m: jax.Array, horizon: jax.Array | int, *, stochastic: bool = False, bits: int = 31
) -> jax.Array:
    """Σ_{t<H} Mᵗ for a square matrix M [n, n] and an integer horizon H < 2^bits (traced is
    fine), by doubling: O(bits) matrix products, no linear solve (so it stays finite and fast
    for any M, singular I − M included). A Python-int H sets ``bits`` to its bit length, so
    only its own bits cost products (2 per bit, 1 more per set bit).

    Repeated squaring doubles a rounding error in a row sum at every step; for a stochastic M
    (``stochastic=True``) the powers are renormalised to rows summing to 1, which keeps long
    horizons exact to float32 precision.
    """
    if isinstance(horizon, int | np.integer):
        bits = max(int(horizon).bit_length(), 1)
    n = m.shape[0]
    eye = jnp.eye(n, dtype=m.dtype)
    horizon = jnp.asarray(horizon, jnp.int32)

    def fix(power: jax.Array) -> jax.Array:
        return power / jnp.sum(power, axis=-1, keepdims=True) if stochastic else power

    def step(i: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        power, total = carry  # Mᵏ, Σ_{t<k} Mᵗ for k = the bits of H read so far
        total, power = total + power @ total, fix(power @ power)  # k -> 2k
        bit = (horizon >> (bits - 1 - i)) & 1
        total = total + bit * power  # k -> k + 1 when the bit is set
        power = jax.lax.cond(bit == 1, lambda p: fix(p @ m), lambda p: p, power)
        return power, total

    _, total = jax.lax.fori_loop(0, bits, step, (eye, jnp.zeros_like(m)))
    return total


def state_action_distribution(
    mdp: FiniteMDPParams, policy: jax.Array, horizon: int = 2**24
) -> jax.Array:
    """The on-policy distribution μ(s, a) = d(s) π(a|s) of following π, [S, A].

    d is the long-run fraction of time spent in each state when starting from
    ``initial_distribution`` h: for a continuing MDP the stationary distribution of the state
    chain under π; for an episodic one the expected visits per episode, normalised (Sutton &
    Barto eq. 9.2). Both are the long-run visit frequencies of the chain P̃ in which entering a
    terminal state restarts from h, computed as the average d = (1/T) h Σ_{t<T} P̃ᵗ over
    T = ``horizon`` steps by doubling — defined for every chain (periodic ones, and ones with
    several closed classes, where d depends on h), without a linear solve. The error is
    O(mixing time / T). Time-limit truncation is not modelled.
    """
    h = mdp.initial_distribution
    p_end = jnp.sum(mdp.transition_probs * mdp.terminal.astype(jnp.float32), axis=-1)  # [S, A]
    restarted = _continuation(mdp) + p_end[..., None] * h  # [S, A, S]
    p_tilde = jnp.einsum("sa,sat->st", policy, restarted)
    d = h @ power_sum(p_tilde, horizon, stochastic=True) / horizon
    return d[:, None] * policy


def reachable_pairs(mdp: FiniteMDPParams) -> jax.Array:
    """bool [S, A]: the (s, a) an agent can act in — s reachable from a state of the initial
    distribution by available actions, not terminal (a terminal state is never acted in), and
    a available in s. Reachability is S rounds of one-step expansion (S ≥ path lengths)."""
    live = ~mdp.terminal
    possible = mdp.transition_probs > 0
    step = jnp.any(possible & mdp.action_mask[..., None], axis=1) & live[:, None]  # [S, S']

    def expand(_: Any, reach: jax.Array) -> jax.Array:
        return reach | jnp.any(reach[:, None] & step, axis=0)

    reach = jax.lax.fori_loop(0, mdp.num_states, expand, mdp.initial_distribution > 0)
    return (reach & live)[:, None] & mdp.action_mask


def value_error(q_hat: jax.Array, q_ref: jax.Array, mu: jax.Array) -> jax.Array:
    """VE = Σ_{s,a} μ(s,a) (q_ref(s,a) − q̂(s,a))², shapes [S, A] -> []."""
    return jnp.sum(mu * jnp.square(q_ref - q_hat))


def policy_value(
    mdp: FiniteMDPParams,
    policy: jax.Array,
    gamma: jax.Array | float,
    horizon: jax.Array | int | None = None,
) -> jax.Array:
    """J(π): the expected return of an episode that starts from ``initial_distribution`` and
    follows π for at most ``horizon`` steps (default: the MDP's own time limit,
    ``max_steps_in_episode``), [] — J = h · Σ_{t<H} (γ P_π)ᵗ r_π by doubling.

    This is what a greedy evaluation episode in the environment returns on average, and it is
    finite for every policy, including one that never ends an episode under γ = 1 (it then
    collects its rewards for H steps). With γ < 1 and a long time limit it equals Σ h π q^π.
    """
    horizon = mdp.max_steps_in_episode if horizon is None else horizon
    rewards, continuation = _live_model(mdp)
    p_pi = jnp.einsum("sa,sat->st", policy, continuation)
    r_pi = jnp.sum(policy * rewards, axis=-1)
    return mdp.initial_distribution @ power_sum(gamma * p_pi, horizon) @ r_pi


def error_metrics(
    mdp: FiniteMDPParams,
    q_hat: jax.Array,
    q_star: jax.Array,
    behaviour: jax.Array,
    visits: jax.Array,
    gamma: jax.Array | float,
    replayed: jax.Array | None = None,
    mu: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """What only a finite MDP can tell about a learner's q̂ [S, A], each a scalar:

    ``ve_behaviour`` = Σ μ_b (q* − q̂)² under the exact on-policy distribution of the behaviour
    policy π_b [S, A]; ``ve_empirical``, the same under the visit frequencies ``visits`` [S, A];
    ``ve_uniform``, the same under the uniform μ over the pairs an agent can act in
    (:func:`reachable_pairs`: the error everywhere, where the behaviour policy goes or not);
    ``greedy_value`` = J_γ(greedy(q̂)), the greedy policy's exact expected γ-DISCOUNTED
    return from the start within the MDP's time limit (:func:`policy_value`), the objective q*
    maximises; ``greedy_return`` = J_1, its expected UNDISCOUNTED return in the same episodes,
    which is what a greedy evaluation episode (``eval_return``) measures.

    With ``replayed`` [S, A] (the loss weight a replay learner's batches put on each (s, a),
    unnormalised) also ``ve_replayed``, the VE under that weighting μ_r — the μ the learner's
    loss actually weighs — and ``replay_tv`` = ½ Σ |μ_r − μ_b|, its total-variation distance
    to the on-policy μ_b (0: replay weighs pairs as the behaviour policy visits them; 1: on
    pairs it never visits). ``mu``: μ_b if the caller has it already (else computed).
    """
    mu = state_action_distribution(mdp, behaviour) if mu is None else mu
    uniform = reachable_pairs(mdp).astype(jnp.float32)
    greedy = greedy_policy(q_hat, mdp.action_mask)
    metrics = {
        "ve_behaviour": value_error(q_hat, q_star, mu),
        "ve_empirical": value_error(q_hat, q_star, visits / jnp.maximum(jnp.sum(visits), 1)),
        "ve_uniform": value_error(q_hat, q_star, uniform / jnp.sum(uniform)),
        "greedy_value": policy_value(mdp, greedy, gamma),
        "greedy_return": policy_value(mdp, greedy, 1.0),
    }
    if replayed is not None:
        mu_r = replayed / jnp.maximum(jnp.sum(replayed), 1e-30)
        metrics["ve_replayed"] = value_error(q_hat, q_star, mu_r)
        metrics["replay_tv"] = 0.5 * jnp.sum(jnp.abs(mu_r - mu))
    return metrics
