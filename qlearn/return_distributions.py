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
  W₁-projection onto N equally weighted atoms); Π_W₁ T^π is a γ-contraction in W_∞.

:func:`categorical_fixed_point` and :func:`quantile_fixed_point` iterate these operators
to their fixed points exactly (finite sums over next states and actions). They need rewards
that are deterministic given (s, a, s') (``reward_std`` = 0: every catalogue MDP but
``MaximizationBias``). Time-limit truncation is not modelled, as in
:func:`qlearn.dp.policy_evaluation`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from qlearn import networks, targets
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
    smallest atom whose cumulative weight reaches it."""
    order = jnp.argsort(atoms)
    cumulative = jnp.cumsum(weights[order])
    tau = networks.quantile_midpoints(num_quantiles)
    index = jnp.searchsorted(cumulative, tau * cumulative[-1], side="left")
    return atoms[order][jnp.minimum(index, atoms.shape[0] - 1)]


def quantile_fixed_point(
    mdp: FiniteMDPParams,
    policy: jax.Array,
    gamma: jax.Array | float,
    num_quantiles: int,
    *,
    tol: float = 1e-6,
    max_iterations: int = 20_000,
) -> jax.Array:
    """The fixed point of Π_W₁ T^π with ``num_quantiles`` equally weighted atoms: quantiles
    [S, A, N] at the midpoints τ̂. Rows of terminal states are 0.

    One step: (T^π θ)(s, a) is the mixture of the S·A·N atoms r(s, a, s') + γ(1 − term(s'))
    θ(s', a')_j with weights p(s'|s, a)·π(a'|s')/N; its midpoint quantiles are the new
    θ(s, a)."""
    gamma = jnp.asarray(gamma, jnp.float32)
    rewards, scale = _next_returns(mdp, gamma)
    num_states, num_actions, _ = rewards.shape
    n = num_quantiles
    weights = (
        mdp.transition_probs[:, :, :, None, None]
        * policy[None, None, :, :, None]
        * jnp.full(n, 1.0 / n)
    ).reshape(num_states, num_actions, -1)  # [S, A, S'·A'·N]
    project = jax.vmap(jax.vmap(quantile_projection, (0, 0, None)), (0, 0, None))
    terminal = mdp.terminal[:, None, None]

    def step(theta: jax.Array) -> jax.Array:
        atoms = rewards[..., None, None] + scale[None, None, :, None, None] * theta[None, None]
        new = project(atoms.reshape(num_states, num_actions, -1), weights, n)
        return jnp.where(terminal, 0.0, new)

    init = jnp.zeros((num_states, num_actions, n), jnp.float32)
    return _iterate(step, init, tol, max_iterations)


def cramer_distance(p: jax.Array, q: jax.Array, support: jax.Array) -> jax.Array:
    """The Cramér (ℓ₂) distance (∫ (F_p − F_q)² dx)^½ of two distributions on the same evenly
    spaced atoms ``support`` [K]: p, q [..., K] -> [...]. Their CDFs differ only between
    atoms, by the partial sums' difference, over intervals of width Δz."""
    gap = jnp.cumsum(p - q, axis=-1)[..., :-1]
    return jnp.sqrt((support[1] - support[0]) * jnp.sum(gap**2, axis=-1))


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
