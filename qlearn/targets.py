"""TD targets, as pure functions in the style (and argument order) of rlax.

Per-transition targets (:func:`q_learning`, :func:`double_q_learning`, :func:`sarsa`,
:func:`expected_sarsa`) return the bootstrap target y of ONE transition; batch them with
``jax.vmap``. Their distributional counterparts return a target *distribution*:
:func:`categorical_q_learning` (C51: probabilities on fixed atoms, through
:func:`categorical_projection`) and :func:`quantile_q_learning` (QR-DQN: quantile values);
:func:`two_hot` and :func:`hl_gauss` turn a scalar target into the label of a classification
loss.
:func:`signed_hyperbolic` and :func:`signed_parabolic` are R2D2's invertible value rescaling h
and its inverse h⁻¹ (Pohlen et al. 2018; Kapturowski et al. 2019).
Sequence targets (:func:`n_step_bootstrapped_returns`, :func:`lambda_returns`) take a
trajectory of length T and return the target of every step of it.

``discount_t`` is γ·(1 − terminated_t): zero only at a true termination, γ at a time-limit
truncation (which bootstraps from the final observation). Targets do not stop gradients
themselves: the loss does that, in one place (see :mod:`qlearn.losses`).

Sequence conventions (as rlax): index t is the transition s_t, a_t → r_t, s_{t+1}, so
``r_t[t]``, ``discount_t[t]`` and ``v_t[t]`` all belong to it, and ``v_t[t]`` is the bootstrap
value of the state *reached* by it, s_{t+1} (for a truncated step: of the final observation, not
of the reset observation that follows). For Peng's Q(λ), as PQN uses it,
``v_t[t] = max_a q(s_{t+1}, a)``.
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


def sarsa(r_t: jax.Array, discount_t: jax.Array, q_t: jax.Array, a_t: jax.Array) -> jax.Array:
    """Sarsa target  y = r_t + discount_t · q_t[a_t], with a_t the action actually taken next.

    Args:
      r_t: reward, shape [].
      discount_t: γ·(1 − terminated_t), shape [].
      q_t: action values at the next state s_t, shape [A].
      a_t: the next action, integer shape [].

    Returns:
      The target y, shape [].
    """
    chex.assert_rank([r_t, discount_t, q_t, a_t], [0, 0, 1, 0])
    return r_t + discount_t * q_t[a_t]


def expected_sarsa(
    r_t: jax.Array, discount_t: jax.Array, q_t: jax.Array, probs_a_t: jax.Array
) -> jax.Array:
    """Expected Sarsa target  y = r_t + discount_t · Σ_a π(a|s_t) q_t[a].

    With π greedy this is :func:`q_learning`; with π the behaviour policy it is on-policy.

    Args:
      r_t: reward, shape [].
      discount_t: γ·(1 − terminated_t), shape [].
      q_t: action values at the next state s_t, shape [A].
      probs_a_t: the policy's action probabilities at s_t, shape [A].

    Returns:
      The target y, shape [].
    """
    chex.assert_rank([r_t, discount_t, q_t, probs_a_t], [0, 0, 1, 1])
    return r_t + discount_t * jnp.dot(probs_a_t, q_t)


RESCALING_EPS = 1e-3
"""ε of the value rescaling h (:func:`signed_hyperbolic`): Pohlen et al.'s and R2D2's 10⁻³."""


def signed_hyperbolic(x: jax.Array, eps: float = RESCALING_EPS) -> jax.Array:
    """The value rescaling h(x) = sign(x)(√(|x| + 1) − 1) + εx (Pohlen et al. 2018), elementwise:
    strictly increasing, so argmax is unchanged; it squashes large returns like √|x|, with the
    εx term keeping h⁻¹ Lipschitz. R2D2 regresses q̂ on h(r + γⁿ h⁻¹(q⁻(s′, a*))). Computed as
    |x| / (√(|x| + 1) + 1), which is √(|x| + 1) − 1 without its cancellation near 0 (rlax
    subtracts, losing float32's relative precision there)."""
    magnitude = jnp.abs(x)
    return jnp.sign(x) * magnitude / (jnp.sqrt(magnitude + 1.0) + 1.0) + eps * x


def signed_parabolic(x: jax.Array, eps: float = RESCALING_EPS) -> jax.Array:
    """h⁻¹, the inverse of :func:`signed_hyperbolic`, elementwise: with u = √(|y| + 1) − 1 ≥ 0,
    h(y) = x means εu² + (1 + 2ε)u − |x| = 0, so

        u = 2|x| / (1 + 2ε + √((1 + 2ε)² + 4ε|x|)),   h⁻¹(x) = sign(x) · u(u + 2),

    the root and (u + 1)² − 1 in forms without cancellation, so h⁻¹(h(y)) = y to float32
    precision at every magnitude (``tests/test_targets.py``)."""
    magnitude = jnp.abs(x)
    b = 1.0 + 2.0 * eps
    u = 2.0 * magnitude / (b + jnp.sqrt(b * b + 4.0 * eps * magnitude))
    return jnp.sign(x) * u * (u + 2.0)


def n_step_bootstrapped_returns(
    r_t: jax.Array,
    discount_t: jax.Array,
    v_t: jax.Array,
    n: int,
    lambda_t: jax.Array | float = 1.0,
) -> jax.Array:
    """n-step returns of every step of a sequence, shape [T] (rlax's signature and maths).

        G_t = r_t + d_t r_{t+1} + … + d_t⋯d_{t+n-2} r_{t+n-1} + d_t⋯d_{t+n-1} v_{t+n-1}

    (d = ``discount_t``), folded from the far end of each window as
    G ← r_k + d_k [(1 − λ_k) v_k + λ_k G]. A termination inside the window (d = 0) zeroes
    everything after it. A time-limit truncation at step k must stop the window there while
    still bootstrapping from v_k (the final observation's value), or the next episode's rewards
    leak in: pass ``lambda_t = 1 − truncated_t`` (as for :func:`lambda_returns`). Near the end
    of the sequence the window is cut short and bootstraps from the last value v_{T-1}. n = 1
    gives the one-step targets r_t + d_t v_t.

    Args:
      r_t: rewards, shape [T].
      discount_t: γ·(1 − terminated), shape [T].
      v_t: bootstrap values of the states reached, shape [T] (see the module conventions).
      n: the window, a Python int ≥ 1.
      lambda_t: 1 to continue the window past step k, 0 to stop it there (bootstrapping from
        v_k); a scalar or shape [T]. Values between interpolate as in rlax.

    Returns:
      The targets, shape [T].
    """
    chex.assert_rank([r_t, discount_t, v_t], 1)
    chex.assert_equal_shape([r_t, discount_t, v_t])
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n = {n!r} must be an integer ≥ 1")
    length = r_t.shape[0]
    lam = jnp.broadcast_to(jnp.asarray(lambda_t, v_t.dtype), v_t.shape)
    # the value each window bootstraps from: v_{min(t+n-1, T-1)}
    returns = v_t[jnp.minimum(jnp.arange(length) + n - 1, length - 1)]
    # fold the window from its far end: beyond the sequence, reward 0, discount 1, λ 1
    r_pad = jnp.concatenate([r_t, jnp.zeros(n - 1, r_t.dtype)])
    d_pad = jnp.concatenate([discount_t, jnp.ones(n - 1, discount_t.dtype)])
    lam_pad = jnp.concatenate([lam, jnp.ones(n - 1, lam.dtype)])
    v_pad = jnp.concatenate([v_t, jnp.full(n - 1, v_t[-1], v_t.dtype)])
    for i in reversed(range(n)):
        lam_i, v_i = lam_pad[i : i + length], v_pad[i : i + length]
        returns = r_pad[i : i + length] + d_pad[i : i + length] * (
            (1.0 - lam_i) * v_i + lam_i * returns
        )
    return returns


def lambda_returns(
    r_t: jax.Array, discount_t: jax.Array, v_t: jax.Array, lambda_: jax.Array | float
) -> jax.Array:
    """λ-returns of every step of a sequence, shape [T], by a reverse scan:

        G_{T-1} = r_{T-1} + d_{T-1} v_{T-1}
        G_t     = r_t + d_t [(1 − λ_t) v_t + λ_t G_{t+1}]

    λ = 0 gives the one-step targets r_t + d_t v_t; λ = 1 the discounted return to the end of
    the sequence, bootstrapped from v_{T-1}. A termination (d_t = 0) cuts the recursion. A
    time-limit truncation at step t must cut it too, while still bootstrapping from v_t (the
    final observation's value): pass ``lambda_ = λ·(1 − truncated_t)`` as an array.

    Args:
      r_t: rewards, shape [T].
      discount_t: γ·(1 − terminated), shape [T].
      v_t: bootstrap values of the states reached, shape [T] (see the module conventions).
      lambda_: λ, a scalar or per-step array of shape [T].

    Returns:
      The targets, shape [T].
    """
    chex.assert_rank([r_t, discount_t, v_t], 1)
    chex.assert_equal_shape([r_t, discount_t, v_t])
    lambda_t = jnp.broadcast_to(jnp.asarray(lambda_, v_t.dtype), v_t.shape)

    def backward(g_next: jax.Array, xs: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
        r, d, v, lam = xs
        g = r + d * ((1.0 - lam) * v + lam * g_next)
        return g, g

    # the last step has no G_{T}: seeding the scan with v_{T-1} makes it r + d·v_{T-1}
    _, returns = jax.lax.scan(backward, v_t[-1], (r_t, discount_t, v_t, lambda_t), reverse=True)
    return returns


# -- distributional targets ----------------------------------------------------------------


def categorical_projection(z_p: jax.Array, probs: jax.Array, z_q: jax.Array) -> jax.Array:
    """Project the distribution Σ_j probs_j δ(z_p[j]) onto the increasing atoms z_q
    (Bellemare et al. 2017; the Cramér projection of Rowland et al. 2018): each source atom,
    clipped to [z_q[0], z_q[−1]], x_j ∈ [z_q[l], z_q[l+1]], splits its mass between those two
    neighbours in proportion to closeness,

        m_l += probs_j · (z_q[l+1] − x_j) / Δ_l,   m_(l+1) += probs_j · (x_j − z_q[l]) / Δ_l,

    Δ_l = z_q[l+1] − z_q[l]; mass beyond the support lands on its end atoms. On evenly spaced
    atoms this is m_i = Σ_j probs_j · max(0, 1 − |x_j − z_q[i]| / Δz). Each atom's own
    interval is used, not one Δz = z_q[1] − z_q[0]: float32 atoms away from 0 are evenly
    spaced only up to their rounding, and a single Δz carries z_q[0]'s rounding into
    (x − z_q[0]) / Δz multiplied by up to K − 1 (errors to 1.3e-3 in a terminal target at
    (−80.2, −79.6, 50) atoms, where this is within 1e-6 of the float64 projection onto the
    same atoms). l is found by binary search (``searchsorted``), then two scatter-adds: O(K
    log K) work per sample where the formula above is O(K²).

    Args:
      z_p: source atoms, [Kp] (any order).
      probs: their probabilities, [Kp].
      z_q: the target support, strictly increasing, [K ≥ 2].

    Returns:
      The projected probabilities m, [K] (summing to Σ probs).
    """
    chex.assert_rank([z_p, probs, z_q], [1, 1, 1])
    k = z_q.shape[0]
    x = jnp.clip(z_p, z_q[0], z_q[-1])
    low = jnp.clip(jnp.searchsorted(z_q, x, side="right") - 1, 0, k - 2)
    frac = (x - z_q[low]) / (z_q[low + 1] - z_q[low])
    m = jnp.zeros(k, probs.dtype).at[low].add(probs * (1.0 - frac))
    return m.at[low + 1].add(probs * frac)


def categorical_q_learning(
    r_t: jax.Array,
    discount_t: jax.Array,
    z: jax.Array,
    probs_t: jax.Array,
    q_t_selector: jax.Array,
) -> jax.Array:
    """The C51 target distribution of one transition: the distribution of r_t + discount_t·Z
    with Z ~ probs_t[a*], a* = argmax_a q_t_selector[a], projected back onto the atoms z.

    Args:
      r_t: reward, shape [].
      discount_t: γ·(1 − terminated_t), shape [].
      z: the atoms, [K].
      probs_t: the next state's distributions (of the target network), [A, K].
      q_t_selector: values that choose a* ([A]; the expectation of ``probs_t`` for
        Q-learning, the online network's for Double Q-learning; masked actions at −inf).

    Returns:
      Target probabilities, [K].
    """
    chex.assert_rank([r_t, discount_t, z, probs_t, q_t_selector], [0, 0, 1, 2, 1])
    return categorical_projection(r_t + discount_t * z, probs_t[jnp.argmax(q_t_selector)], z)


def two_hot(y: jax.Array, z: jax.Array) -> jax.Array:
    """The two-hot encoding of a scalar y on evenly spaced values z [K]: y clipped to
    [z_0, z_{K−1}], its mass split between its two neighbours in z in proportion to closeness,
    so Σ_k p_k z_k = clip(y) (rlax's ``transform_to_2hot``; the projection of δ(y), see
    :func:`categorical_projection`). Returns [K]."""
    chex.assert_rank([y, z], [0, 1])
    return categorical_projection(y[None], jnp.ones(1, z.dtype), z)


def hl_gauss(y: jax.Array, centres: jax.Array, sigma: jax.Array) -> jax.Array:
    """The HL-Gauss label of a scalar y (Imani & White 2018; Farebrother et al. 2024): the mass
    that N(y, σ²) puts in each of the K equal bins with ``centres`` [K], renormalised to the
    bins' span,

        p_k = (Φ((e_{k+1} − y)/σ) − Φ((e_k − y)/σ)) / (Φ((e_K − y)/σ) − Φ((e_0 − y)/σ)),

    e_k the bin edges (centres ± half a bin width), y first clipped to [e_0, e_K] (so a label
    always exists). Each bin's mass is computed on the side of y where Φ is far from 1, as
    Φ(−a) − Φ(−b) above y: float32 keeps the tails a few σ out. Returns [K]."""
    chex.assert_rank([y, centres, sigma], [0, 1, 0])
    half = (centres[1] - centres[0]) / 2
    edges = jnp.concatenate([centres - half, centres[-1:] + half])
    t = (edges - jnp.clip(y, edges[0], edges[-1])) / sigma
    below = jax.scipy.special.ndtr(t[1:]) - jax.scipy.special.ndtr(t[:-1])
    above = jax.scipy.special.ndtr(-t[:-1]) - jax.scipy.special.ndtr(-t[1:])
    mass = jnp.where(t[:-1] + t[1:] > 0, above, below)
    return mass / jnp.sum(mass)


def quantile_q_learning(
    r_t: jax.Array, discount_t: jax.Array, dist_t: jax.Array, q_t_selector: jax.Array
) -> jax.Array:
    """The QR-DQN target quantiles of one transition: r_t + discount_t·θ_j(s_t, a*),
    a* = argmax_a q_t_selector[a].

    Args:
      r_t: reward, shape [].
      discount_t: γ·(1 − terminated_t), shape [].
      dist_t: the next state's quantile values (of the target network), [A, N].
      q_t_selector: values that choose a* ([A]: the mean of ``dist_t``, or the online
        network's for Double Q-learning; masked actions at −inf).

    Returns:
      Target quantile values, [N].
    """
    chex.assert_rank([r_t, discount_t, dist_t, q_t_selector], [0, 0, 2, 1])
    return r_t + discount_t * dist_t[jnp.argmax(q_t_selector)]
