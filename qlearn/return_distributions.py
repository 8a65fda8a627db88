"""Ground-truth return distributions on a finite MDP, and the distances a learned one is
measured by: the distributional counterpart of :mod:`qlearn.dp`.

The return Z^π(s, a) = Σ_t γᵗ R_t of following π after (s, a) has a law η^π(s, a), the fixed
point of the distributional Bellman operator (T^π η)(s, a) = Law(r(s, a, S') + γ Z(S', A')),
S' ~ p(·|s, a), A' ~ π(·|S'), Z ~ η(S', A'), and Z = 0 after entering a terminal state. A
distributional learner represents η in a finite family and so converges, at best, to the
fixed point of the PROJECTED operator Π T^π (Rowland et al. 2018):

* categorical (C51): Π_C, the Cramér projection onto evenly spaced atoms
  (:func:`qlearn.targets.categorical_projection`); Π_C T^π is a √γ-contraction in the Cramér
  distance, and its fixed point keeps the mean: Σ_k p_k z_k = q^π(s, a) when no atom of
  r + γz leaves the support;
* quantile (QR-DQN): Π_W₁, the N quantiles at the midpoints τ̂_i = (2i + 1)/2N (the
  W₁-projection onto N equally weighted atoms); Π_W₁ T^π is a γ-contraction in W_∞. A
  learner minimising the quantile HUBER loss of threshold κ (QR-DQN, IQN as qlearn trains
  them) projects instead by Π_κ, the κ-Huber quantiles at τ̂ (``kappa`` of
  :func:`quantile_fixed_point`), monotone and translation-equivariant like Π_W₁, so Π_κ T^π
  is a γ-contraction in W_∞ too; its fixed point differs from Π_W₁'s where returns spread
  over less than about κ.

:func:`categorical_fixed_point` and :func:`quantile_fixed_point` iterate these operators
to their fixed points exactly (finite sums over next states and actions). They need rewards
that are deterministic given (s, a, s') (``reward_std`` = 0: every catalogue MDP but
``MaximizationBias``). Time-limit truncation is not modelled, as in
:func:`qlearn.dp.policy_evaluation`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from qlearn import heads, targets
from qlearn.envs.finite import FiniteMDPParams


def has_deterministic_rewards(mdp: FiniteMDPParams) -> bool:
    """Whether every reward is a function of (s, a, s') (no Gaussian noise), as the fixed points
    here need. ``mdp`` must hold concrete arrays."""
    return bool(np.all(np.asarray(mdp.reward_std) == 0))


def _next_returns(mdp: FiniteMDPParams, gamma: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(r(s, a, s') [S, A, S], γ·(1 − terminal(s')) [S]): Z(s, a) = r + that · Z(s', a')."""
    live = 1.0 - mdp.terminal.astype(jnp.float32)
    return mdp.transition_rewards, gamma * live


def _iterate(step, init: jax.Array, tol: float, max_iterations: int) -> jax.Array:
    """Apply ``step`` from ``init`` until the largest change is ≤ ``tol`` (or the count)."""

    def cond(carry):
        _, change, i = carry
        return (change > tol) & (i < max_iterations)

    def body(carry):
        x, _, i = carry
        new = step(x)
        return new, jnp.max(jnp.abs(new - x)), i + 1

    x, _, _ = jax.lax.while_loop(cond, body, (init, jnp.float32(jnp.inf), 0))
    return x


def categorical_fixed_point(
    mdp: FiniteMDPParams,
    policy: jax.Array,
    gamma: jax.Array | float,
    support: jax.Array,
    *,
    tol: float = 1e-7,
    max_iterations: int = 20_000,
) -> jax.Array:
    """The fixed point of Π_C T^π on the atoms ``support`` [K] (evenly spaced): probabilities
    [S, A, K]. Rows of terminal states are δ₀ projected (their value is 0).

    One step: η̄(s') = Σ_a' π(a'|s') η(s', a'); (Π_C T^π η)(s, a) = Σ_s' p(s'|s, a)·
    Π_C[r(s, a, s') + γ(1 − term(s'))·z ~ η̄(s')] — the projection is linear in the
    probabilities, so mixing over a' before projecting is exact."""
    gamma = jnp.asarray(gamma, jnp.float32)
    rewards, scale = _next_returns(mdp, gamma)
    num_states, num_actions, _ = rewards.shape
    atoms = rewards[..., None] + scale[None, None, :, None] * support  # [S, A, S', K]
    project = targets.categorical_projection
    for _ in range(3):  # over s, a, s'
        project = jax.vmap(project, (0, 0, None))
    tiled = (num_states, num_actions, num_states, support.shape[0])
    zero = targets.categorical_projection(jnp.zeros(1), jnp.ones(1), support)
    terminal = mdp.terminal[:, None, None]

    def step(eta: jax.Array) -> jax.Array:
        mixed = jnp.einsum("sa,sak->sk", policy, eta)  # η̄(s'), [S', K]
        projected = project(atoms, jnp.broadcast_to(mixed[None, None], tiled), support)
        new = jnp.einsum("sat,satk->sak", mdp.transition_probs, projected)
        return jnp.where(terminal, zero, new)

    init = jnp.broadcast_to(zero, (num_states, num_actions, support.shape[0]))
    return _iterate(step, init, tol, max_iterations)


def quantile_projection(atoms: jax.Array, weights: jax.Array, num_quantiles: int) -> jax.Array:
    """Π_W₁ of the discrete distribution Σ_j weights_j δ(atoms_j) (weights summing to 1):
    its quantiles F⁻¹(τ̂_i) at the midpoints τ̂_i = (2i + 1)/2N, [N] — for each τ̂ the
    smallest atom whose cumulative weight reaches it.

    Where the CDF F equals τ̂ exactly on the gap between two consecutive atoms z_l < z_(l+1),
    the minimiser of the quantile loss Σ_j w_j |τ̂ − 1{atoms_j < θ}|·|atoms_j − θ| is all of
    [z_l, z_(l+1)]. This picks z_l, but whether the float32 cumulative sum reaches τ̂ at z_l
    or only past it is decided by rounding, so such a level may land anywhere on the gap's
    ends: a fixed point of these projections is then one point of a set (8 levels of
    ``Chain(5, slip=0.3)`` at γ 0.9, N 32 move by up to 0.15 between float32 and float64)."""
    order = jnp.argsort(atoms)
    cumulative = jnp.cumsum(weights[order])
    tau = heads.quantile_midpoints(num_quantiles)
    index = jnp.searchsorted(cumulative, tau * cumulative[-1], side="left")
    return atoms[order][jnp.minimum(index, atoms.shape[0] - 1)]


def huber_quantile_slope(
    theta: jax.Array, atoms: jax.Array, weights: jax.Array, tau: jax.Array, kappa: jax.Array
) -> jax.Array:
    """The derivative in θ of the quantile Huber loss of θ against Σ_j w_j δ(z_j),

        g(θ) = d/dθ Σ_j w_j ρ^κ_τ(z_j − θ) = Σ_j w_j |τ − 1{z_j < θ}|·clip(θ − z_j, −κ, κ),

    ρ^κ_τ(u) = |τ − 1{u < 0}|·L_κ(u), L_κ the Huber loss (½u² for |u| ≤ κ, κ(|u| − ½κ)
    beyond) as :func:`qlearn.losses.distributional.quantile_huber_loss` uses it (not divided
    by κ, where IQN's paper divides: the minimiser is the same). Every term is continuous and
    non-decreasing in θ, strictly increasing while |θ − z_j| < κ: g is piecewise linear with
    kinks at z_j and z_j ± κ. ``theta``, ``tau``, ``kappa`` [], ``atoms``, ``weights`` [M] ->
    []."""
    level = jnp.where(atoms < theta, 1.0 - tau, tau)
    return jnp.sum(weights * level * jnp.clip(theta - atoms, -kappa, kappa))


def huber_quantile(
    atoms: jax.Array, weights: jax.Array, tau: jax.Array, kappa: jax.Array, kinks: jax.Array
) -> jax.Array:
    """The κ-Huber τ-quantile of Σ_j w_j δ(z_j): θ* = argmin_θ Σ_j w_j ρ^κ_τ(z_j − θ), κ > 0,
    0 < τ < 1, exactly — the root of the slope g (:func:`huber_quantile_slope`).

    g is non-decreasing and linear between consecutive kinks (``kinks`` [3M]: the sorted
    z_j − κ, z_j, z_j + κ), with g(kinks[0]) = −τκΣw < 0 < (1 − τ)κΣw = g(kinks[−1]). A
    bisection over the kinks' indices (⌈log₂ 3M⌉ evaluations of g, O(M) each) finds the
    adjacent pair with g(k_lo) < 0 ≤ g(k_hi); θ* is the zero of the line through them. The
    loss is strictly convex near θ* (θ* unique) unless no atom of positive weight lies within
    κ of it, which needs cumulative weight exactly τ below a gap wider than 2κ between
    consecutive atoms z_l < z_(l+1): the minimiser is then [z_l + κ, z_(l+1) − κ], and float
    rounding picks the point. ``atoms``, ``weights`` [M] -> []."""

    def slope(theta: jax.Array) -> jax.Array:
        return huber_quantile_slope(theta, atoms, weights, tau, kappa)

    def halve(_: int, bounds: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        lo, hi = bounds
        mid = (lo + hi) // 2
        up = slope(kinks[mid]) >= 0
        return jnp.where(up, lo, mid), jnp.where(up, mid, hi)

    count = kinks.shape[0]
    lo, hi = jax.lax.fori_loop(
        0, max(1, math.ceil(math.log2(count))), halve, (jnp.int32(0), jnp.int32(count - 1))
    )
    g_lo, g_hi = slope(kinks[lo]), slope(kinks[hi])
    return kinks[lo] + (kinks[hi] - kinks[lo]) * (-g_lo / (g_hi - g_lo))


def huber_quantile_projection(
    atoms: jax.Array, weights: jax.Array, num_quantiles: int, kappa: jax.Array | float
) -> jax.Array:
    """Π_κ, the projection a QR-DQN learner with the quantile Huber loss of threshold κ makes:
    the κ-Huber quantiles (:func:`huber_quantile`) of Σ_j weights_j δ(atoms_j) at the
    midpoints τ̂_i = (2i + 1)/2N, [N] (increasing in i). κ = 0 is :func:`quantile_projection`
    exactly (the limit of L_κ/κ is |u|); κ at least the atoms' spread gives the τ̂-expectiles
    (L_κ is then ½u² on every pair). ``kappa`` may be traced; ``atoms``, ``weights`` [M]."""
    if isinstance(kappa, (int, float)) and kappa == 0:  # static: skip the Huber solve
        return quantile_projection(atoms, weights, num_quantiles)
    kappa = jnp.asarray(kappa, jnp.float32)
    safe = jnp.where(kappa > 0, kappa, 1.0)
    kinks = jnp.sort(jnp.concatenate([atoms - safe, atoms, atoms + safe]))
    tau = heads.quantile_midpoints(num_quantiles)
    levels = jax.vmap(huber_quantile, (None, None, 0, None, None))(atoms, weights, tau, safe, kinks)
    return jnp.where(kappa > 0, levels, quantile_projection(atoms, weights, num_quantiles))


def quantile_fixed_point(
    mdp: FiniteMDPParams,
    policy: jax.Array,
    gamma: jax.Array | float,
    num_quantiles: int,
    *,
    kappa: jax.Array | float = 0.0,
    tol: float = 1e-6,
    max_iterations: int = 20_000,
) -> jax.Array:
    """The fixed point of Π_κ T^π with ``num_quantiles`` equally weighted atoms: quantiles
    [S, A, N] at the midpoints τ̂. Rows of terminal states are 0.

    One step: (T^π θ)(s, a) is the mixture of the S·A·N atoms r(s, a, s') + γ(1 − term(s'))
    θ(s', a')_j with weights p(s'|s, a)·π(a'|s')/N; its projection is the new θ(s, a).
    ``kappa`` = 0 (default) projects by Π_W₁ (:func:`quantile_projection`, the midpoint
    quantiles), κ > 0 by the κ-Huber quantiles (:func:`huber_quantile_projection`): what
    QR-DQN and IQN minimise with ``huber_delta`` = κ (Dabney et al. 2018), whose fixed point
    differs from the W₁ one where returns spread over less than about κ — at κ = 1 by a
    μ-weighted W₁ of 0.11 on ``Chain(5, slip=0.3)`` (γ 0.9, N 32, the greedy policy of q*).
    Both projections are monotone and translation-equivariant, so non-expansive in W_∞, and
    Π_κ T^π is a γ-contraction: its fixed point is unique where the projection is
    single-valued. It is not where a level's minimiser is a set — cumulative weight exactly
    τ̂ below a gap between atoms (any gap at κ = 0, one wider than 2κ at κ > 0) — and float
    rounding then picks the point (:func:`quantile_projection`, :func:`huber_quantile`):
    common at κ = 0 where the transition probabilities let the CDF hit τ̂ exactly (a
    slippery Chain), impossible at κ ≥ half the spread of the returns (κ = 1 on a Chain).

    Cost per iteration: O(S·A·M log M) at κ = 0, O(S·A·N·M log M) at κ > 0, M = S·A·N."""
    gamma = jnp.asarray(gamma, jnp.float32)
    rewards, scale = _next_returns(mdp, gamma)
    num_states, num_actions, _ = rewards.shape
    n = num_quantiles
    weights = (
        mdp.transition_probs[:, :, :, None, None]
        * policy[None, None, :, :, None]
        * jnp.full(n, 1.0 / n)
    ).reshape(num_states, num_actions, -1)  # [S, A, S'·A'·N]
    project = jax.vmap(jax.vmap(huber_quantile_projection, (0, 0, None, None)), (0, 0, None, None))
    terminal = mdp.terminal[:, None, None]

    def step(theta: jax.Array) -> jax.Array:
        atoms = rewards[..., None, None] + scale[None, None, :, None, None] * theta[None, None]
        new = project(atoms.reshape(num_states, num_actions, -1), weights, n, kappa)
        return jnp.where(terminal, 0.0, new)

    init = jnp.zeros((num_states, num_actions, n), jnp.float32)
    return _iterate(step, init, tol, max_iterations)


def cramer_distance(p: jax.Array, q: jax.Array, support: jax.Array) -> jax.Array:
    """The Cramér (ℓ₂) distance (∫ (F_p − F_q)² dx)^½ of two distributions on the same
    increasing atoms ``support`` [K]: p, q [..., K] -> [...]. Their CDFs differ only between
    atoms, by the partial sums' difference d_k over [z_k, z_(k+1)]: (Σ_k Δ_k d_k²)^½ with each
    interval's own width Δ_k = z_(k+1) − z_k (float32 atoms away from 0 are evenly spaced
    only up to rounding; see :func:`qlearn.targets.categorical_projection`)."""
    gap = jnp.cumsum(p - q, axis=-1)[..., :-1]
    return jnp.sqrt(jnp.sum(jnp.diff(support) * gap**2, axis=-1))


def wasserstein1_quantiles(theta: jax.Array, theta_ref: jax.Array) -> jax.Array:
    """W₁ between two distributions of N equally weighted atoms, [..., N] -> [...]: the mean
    absolute difference of the sorted atoms (a learned head's quantiles need not be in
    order)."""
    return jnp.mean(jnp.abs(jnp.sort(theta, -1) - jnp.sort(theta_ref, -1)), axis=-1)


def distance_metrics(
    kind: str, learned: jax.Array, truth: jax.Array, mu: jax.Array, support: jax.Array | None
) -> dict[str, jax.Array]:
    """The μ-weighted distance of a learned head's distributions to the ground truth:
    ``return_cramer`` = Σ μ(s, a)·Cramér (``kind`` "categorical": ``learned`` the logits
    [S, A, K], ``truth`` probabilities) or ``return_w1`` = Σ μ(s, a)·W₁ ("quantile", "iqn":
    quantiles [S, A, N] both)."""
    if kind == "categorical":
        distance = cramer_distance(jax.nn.softmax(learned, axis=-1), truth, support)
        return {"return_cramer": jnp.sum(mu * distance)}
    if kind in ("quantile", "iqn"):  # an iqn head's outputs at its midpoints τ̂
        return {"return_w1": jnp.sum(mu * wasserstein1_quantiles(learned, truth))}
    raise ValueError(f"no ground-truth return distribution for a '{kind}' head")
