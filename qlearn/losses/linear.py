"""Linear value functions v̂(x) = φ(x)ᵀw: semi-gradient TD, residual gradient, TDC and GTD2
as surrogate losses of (w, h) whose gradients ARE the published off-policy updates."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class LinearBatch:
    """Transitions for a linear value function v̂(x) = φ(x)ᵀw, leading axis B.

    ``phi_next`` is φ of the next point — for expected updates (dynamic programming), its
    expectation under the target policy; ``rho`` the importance ratio π(a|s)/b(a|s) of an
    off-policy sample (1 on-policy and for expected updates).
    """

    phi: jax.Array
    """φ(x_t), [B, d]."""
    reward: jax.Array
    """r_t (or its expectation), [B]."""
    discount: jax.Array
    """γ·(1 − terminated), [B]."""
    phi_next: jax.Array
    """φ(x_{t+1}) or E_π[φ(x_{t+1})], [B, d]."""
    rho: jax.Array
    """importance ratio, [B]."""


def linear_td_error(w: jax.Array, batch: LinearBatch) -> jax.Array:
    """δ = r + γ φ'ᵀw − φᵀw, [B] (differentiable in w through both terms)."""
    return batch.reward + batch.discount * (batch.phi_next @ w) - batch.phi @ w


def _secondary(h: jax.Array, batch: LinearBatch, delta: jax.Array) -> jax.Array:
    """½ ρ (δ − φᵀh)²: its h-gradient step is h ← h + β ρ (δ − φᵀh) φ (δ held fixed)."""
    return 0.5 * jnp.mean(batch.rho * jnp.square(jax.lax.stop_gradient(delta) - batch.phi @ h))


def linear_semi_gradient(w: jax.Array, h: jax.Array, batch: LinearBatch) -> jax.Array:
    """½ mean ρ (sg(y) − φᵀw)²: the step is w ← w + α mean ρ δ φ (off-policy TD(0); with
    expected ``phi_next`` and ρ = 1, semi-gradient expected DP). ``h`` is unused."""
    del h
    y = jax.lax.stop_gradient(batch.reward + batch.discount * (batch.phi_next @ w))
    return 0.5 * jnp.mean(batch.rho * jnp.square(y - batch.phi @ w))


def linear_residual_gradient(w: jax.Array, h: jax.Array, batch: LinearBatch) -> jax.Array:
    """½ mean ρ δ²: the step is w ← w + α mean ρ δ (φ − γφ'). ``h`` is unused."""
    del h
    return 0.5 * jnp.mean(batch.rho * jnp.square(linear_td_error(w, batch)))


def tdc(w: jax.Array, h: jax.Array, batch: LinearBatch) -> jax.Array:
    """TDC (Sutton et al. 2009), off-policy: the steps are

    w ← w + α mean ρ (δ φ − γ φ' (φᵀh)),     h ← h + β mean ρ (δ − φᵀh) φ.
    """
    delta = linear_td_error(w, batch)
    sg_delta, sg_h_phi = jax.lax.stop_gradient(delta), jax.lax.stop_gradient(batch.phi @ h)
    primary = -jnp.mean(
        batch.rho * (sg_delta * (batch.phi @ w) - sg_h_phi * batch.discount * (batch.phi_next @ w))
    )
    return primary + _secondary(h, batch, delta)


def gtd2(w: jax.Array, h: jax.Array, batch: LinearBatch) -> jax.Array:
    """GTD2 (Sutton et al. 2009), off-policy: the steps are

    w ← w + α mean ρ (φ − γφ') (φᵀh),     h ← h + β mean ρ (δ − φᵀh) φ.
    """
    delta = linear_td_error(w, batch)
    sg_h_phi = jax.lax.stop_gradient(batch.phi @ h)
    primary = -jnp.mean(
        batch.rho * sg_h_phi * (batch.phi @ w - batch.discount * (batch.phi_next @ w))
    )
    return primary + _secondary(h, batch, delta)


LINEAR_LOSSES: dict[str, Callable[[jax.Array, jax.Array, LinearBatch], jax.Array]] = {
    "semi_gradient": linear_semi_gradient,
    "residual_gradient": linear_residual_gradient,
    "tdc": tdc,
    "gtd2": gtd2,
}
