"""Scalar TD losses of one value per action: the semi-gradient regressions (MSE, Huber) on
the TD target, the residual gradient, DQNReg, and the semi-gradient λ-return regression, with
the targets and diagnostics they share (see :mod:`qlearn.losses` for the contracts)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from qlearn import policies, targets
from qlearn.types import LossOutput, Params, QFn, ReturnBatch, Transition

Regression = Callable[[jax.Array, Any], jax.Array]
"""``regression(td_error[B], hparams) -> per-sample loss[B]``."""


def mse(td_error: jax.Array, hparams: Any) -> jax.Array:
    """Squared error δ², so that ∂/∂q̂ = −2δ (δ = y − q̂). Shape [B] -> [B]."""
    del hparams
    return jnp.square(td_error)


def huber(td_error: jax.Array, hparams: Any) -> jax.Array:
    """Huber loss with threshold κ = ``hparams.huber_delta``: ½δ² for |δ| ≤ κ, κ(|δ| − ½κ)
    beyond (optax.huber_loss, the loss of Mnih et al. 2015). Shape [B] -> [B]."""
    return optax.huber_loss(td_error, delta=hparams.huber_delta)


REGRESSIONS: dict[str, Regression] = {"mse": mse, "huber": huber}


def bootstrap_discount(batch: Transition, gamma: jax.Array) -> jax.Array:
    """discount_t = γ^steps · (1 − terminated), [B]: zero only at a true termination; an
    n-step transition (``steps`` = m) bootstraps m steps ahead."""
    return gamma ** jnp.asarray(batch.steps, jnp.float32) * (
        1.0 - batch.terminated.astype(jnp.float32)
    )


def td_targets(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    *,
    double_q: bool,
    rescale: bool = False,
) -> jax.Array:
    """The (not yet stop-gradiented) TD targets y of a batch, shape [B].

    discount_t = γ^steps·(1 − terminated): a truncated transition bootstraps from ``next_obs``.
    With ``double_q`` the online network selects the next action and the target network
    evaluates it. The max (or the selection) ranges over the actions available at
    ``next_obs`` (``batch.next_action_mask``; all when None). With ``rescale`` the network's
    values live in R2D2's rescaled space: y = h(r + discount_t · h⁻¹(q⁻(s′, a*)))
    (:func:`qlearn.targets.signed_hyperbolic`; a* is the same, h being increasing).
    """
    discount_t = bootstrap_discount(batch, hparams.gamma)
    mask = batch.next_action_mask
    q_t_value = q_fn(target_params, batch.next_obs)
    if rescale:
        q_t_value = targets.signed_parabolic(q_t_value)
    if double_q:
        q_t_selector = policies.masked(q_fn(online_params, batch.next_obs), mask)
        y = jax.vmap(targets.double_q_learning)(batch.reward, discount_t, q_t_value, q_t_selector)
    else:
        q_t_value = policies.masked(q_t_value, mask)
        y = jax.vmap(targets.q_learning)(batch.reward, discount_t, q_t_value)
    return targets.signed_hyperbolic(y) if rescale else y


def batch_mean(per_sample: jax.Array, batch: Transition) -> jax.Array:
    """The loss of a batch from its per-sample terms ℓ_i [B]: mean_i ℓ_i, or mean_i w_i ℓ_i
    with prioritised replay's importance-sampling weights ``batch.weight`` when present."""
    if batch.weight is None:
        return jnp.mean(per_sample)
    return jnp.mean(batch.weight * per_sample)


def munchausen_targets(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    *,
    double_q: bool,
) -> jax.Array:
    """The Munchausen-DQN targets (Vieillard et al. 2020), shape [B]:

        y = r + α·τ·clip(log π(a|s), l₀, 0)
              + discount_t · Σ_a' π'(a'|s') (q⁻(s', a') − τ log π'(a'|s')),

    π = softmax(q⁻(s, ·)/τ) of the target network, π' the same at s', over the actions
    available at s' (``batch.next_action_mask``): the paper's target, where the target network
    gives both. With ``double_q`` π' is instead the softmax of the ONLINE network's q(s', ·)/τ
    (the values still q⁻), a Double-Q-style variant (DQN's ``munchausen_next_policy =
    'online'``). τ = ``hparams.munchausen_tau``, α = ``munchausen_alpha``, l₀ =
    ``munchausen_clip``, discount_t = γ^steps·(1 − terminated). The soft bootstrap tends to
    max_a' q⁻(s', a') as τ → 0; α = 0 is soft (entropy-regularised) Q-learning.

    n-step transitions (``steps`` = m > 1): r is the stored Σ_{k<m} γᵏ r_k, and the log-policy
    terms of the intermediate steps are DROPPED (their states and actions are not stored).
    Unrolling the soft Bellman equation along the stored actions a_0 .. a_{m−1} would give

        Σ_{k<m} γᵏ r_k + α·τ·clip(log π(a_0|s_0), l₀, 0)
          + Σ_{1≤k<m} γᵏ (α·τ·clip(log π(a_k|s_k), l₀, 0) − τ log π(a_k|s_k))
          + γᵐ Σ_a' π'(a'|s_m)(q⁻(s_m, a') − τ log π'(a'|s_m)),

    and this target is it without the middle sum (the intermediate Munchausen bonuses and
    entropy terms), and without an off-policy correction; at m = 1 the two agree. The softmax
    at s ranges over every action: replay does not store the action mask of s (DQN refuses
    this loss on an env with masks)."""
    tau = hparams.munchausen_tau
    discount_t = bootstrap_discount(batch, hparams.gamma)
    q_t = q_fn(target_params, batch.next_obs)
    selector = q_fn(online_params, batch.next_obs) if double_q else q_t
    log_pi_t = jax.nn.log_softmax(policies.masked(selector, batch.next_action_mask) / tau, -1)
    pi_t = jnp.exp(log_pi_t)  # 0 at an unavailable action, where log π' is −∞
    soft_value = jnp.sum(jnp.where(pi_t > 0, pi_t * (q_t - tau * log_pi_t), 0.0), axis=-1)
    log_pi = jax.nn.log_softmax(q_fn(target_params, batch.obs) / tau, axis=-1)
    log_pi_a = jnp.take_along_axis(log_pi, batch.action[:, None], axis=-1)[:, 0]
    bonus = hparams.munchausen_alpha * tau * jnp.clip(log_pi_a, hparams.munchausen_clip, 0.0)
    return batch.reward + bonus + discount_t * soft_value


def td_errors(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    *,
    double_q: bool,
    target_fn: Callable[..., jax.Array] = td_targets,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The semi-gradient TD errors δ = sg(y) − q̂(s, a; θ) of a batch, y of ``target_fn``
    (:func:`td_targets` or :func:`munchausen_targets`) held fixed: (δ [B], q̂(s, ·) [B, A],
    q̂(s, a) [B], y [B])."""
    y = target_fn(q_fn, online_params, target_params, batch, hparams, double_q=double_q)
    y = jax.lax.stop_gradient(y)  # the semi-gradient: the target is a label, not a function of θ
    q_tm1 = q_fn(online_params, batch.obs)
    q_sa = jnp.take_along_axis(q_tm1, batch.action[:, None], axis=-1)[:, 0]
    return y - q_sa, q_tm1, q_sa, y


def semi_gradient_td_loss(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    key: jax.Array | None = None,
    *,
    regression: Regression = huber,
    double_q: bool = False,
    rescale: bool = False,
) -> LossOutput:
    """Semi-gradient TD loss  L(θ) = mean_i ℓ(sg(y_i) − q̂(s_i, a_i; θ))  (weighted by
    ``batch.weight`` under prioritised replay, :func:`batch_mean`).

    Args:
      q_fn: ``q_fn(params, obs[B, ...]) -> [B, A]``.
      online_params: θ, the parameters being trained.
      target_params: θ⁻, used for the bootstrap (pass ``online_params`` for no target network).
      batch: a :class:`~qlearn.types.Transition` batch with leading axis B.
      hparams: provides ``gamma`` (and ``huber_delta`` for Huber regression).
      key: unused (the loss does not sample).
      regression: ℓ, per-sample loss of the TD error (:func:`mse` or :func:`huber`).
      double_q: use the Double Q-learning target.
      rescale: R2D2's value rescaling of the target (:func:`td_targets`).

    Returns:
      :class:`~qlearn.types.LossOutput`: the loss, the metrics of :func:`td_diagnostics`
      (q_mean: mean q̂(s,a), target_mean: mean y, td_abs: mean |y − q̂|, q_abs_max: max
      |q̂(s, ·)| over the batch) and the priorities |δ| [B].
    """
    target_fn = functools.partial(td_targets, rescale=rescale)
    td_error, q_tm1, q_sa, y = td_errors(
        q_fn, online_params, target_params, batch, hparams, double_q=double_q, target_fn=target_fn
    )
    loss = batch_mean(regression(td_error, hparams), batch)
    return LossOutput(loss, td_diagnostics(q_tm1, q_sa, y), jnp.abs(td_error))


def munchausen_td_loss(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    key: jax.Array | None = None,
    *,
    double_q: bool = False,
) -> LossOutput:
    """Munchausen DQN (Vieillard et al. 2020): the semi-gradient Huber loss (κ =
    ``hparams.huber_delta``) on the targets of :func:`munchausen_targets`, held fixed; with
    ``double_q`` False (the default, and the paper's) π' at s' is the target network's, with
    True the online network's. n-step transitions drop the intermediate log-policy terms
    (:func:`munchausen_targets`). Returns a :class:`~qlearn.types.LossOutput` like
    :func:`semi_gradient_td_loss`."""
    td_error, q_tm1, q_sa, y = td_errors(
        q_fn,
        online_params,
        target_params,
        batch,
        hparams,
        double_q=double_q,
        target_fn=munchausen_targets,
    )
    loss = batch_mean(huber(td_error, hparams), batch)
    return LossOutput(loss, td_diagnostics(q_tm1, q_sa, y), jnp.abs(td_error))


def residual_gradient_td_loss(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    key: jax.Array | None = None,
) -> LossOutput:
    """Residual-gradient loss (Baird 1995): the mean squared Bellman error with NO stop-gradient,

        L(θ) = mean_i (r_i + γ_i max_a q̂(s'_i, a; θ) − q̂(s_i, a_i; θ))²,

    so ∇L = −2 E[δ (∇q̂(s,a;θ) − γ_i ∇q̂(s', a*; θ))]: the gradient also moves the bootstrap.
    The bootstrap uses θ itself (``target_params`` is ignored: a frozen copy would make it a
    semi-gradient again). With stochastic transitions one sample of s' gives a biased gradient
    of the true Bellman error (the double-sampling problem).

    Returns a :class:`~qlearn.types.LossOutput` like :func:`semi_gradient_td_loss`.
    """
    del target_params
    discount_t = bootstrap_discount(batch, hparams.gamma)
    q_next = policies.masked(q_fn(online_params, batch.next_obs), batch.next_action_mask)
    y = jax.vmap(targets.q_learning)(batch.reward, discount_t, q_next)
    q_tm1 = q_fn(online_params, batch.obs)
    q_sa = jnp.take_along_axis(q_tm1, batch.action[:, None], axis=-1)[:, 0]
    td_error = y - q_sa
    loss = batch_mean(jnp.square(td_error), batch)
    return LossOutput(loss, td_diagnostics(q_tm1, q_sa, y), jnp.abs(td_error))


def dqn_reg_loss(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    key: jax.Array | None = None,
    *,
    double_q: bool = False,
    rescale: bool = False,
) -> LossOutput:
    """DQNReg (Co-Reyes et al. 2021, the loss their search evolved): the squared TD error plus
    a penalty on the value itself, L(θ) = mean_i (w·q̂(s_i, a_i; θ) + (sg(y_i) − q̂(s_i, a_i;
    θ))²), w = ``hparams.dqn_reg_weight`` (0.1 in the paper), y of :func:`td_targets` (with
    ``rescale``: R2D2's value rescaling). Returns a :class:`~qlearn.types.LossOutput` like
    :func:`semi_gradient_td_loss`."""
    target_fn = functools.partial(td_targets, rescale=rescale)
    td_error, q_tm1, q_sa, y = td_errors(
        q_fn, online_params, target_params, batch, hparams, double_q=double_q, target_fn=target_fn
    )
    loss = batch_mean(hparams.dqn_reg_weight * q_sa + jnp.square(td_error), batch)
    return LossOutput(loss, td_diagnostics(q_tm1, q_sa, y), jnp.abs(td_error))


def return_regression_loss(
    q_fn: QFn,
    params: Params,
    batch: ReturnBatch,
    hparams: Any,
    key: jax.Array | None = None,
    *,
    regression: Regression = mse,
) -> LossOutput:
    """The semi-gradient loss of a λ-return algorithm, L(θ) = mean_i ℓ(sg(G_i) − q̂(s_i, a_i; θ))
    on a :class:`~qlearn.types.ReturnBatch` (its targets G precomputed over the rollout).
    Returns a :class:`~qlearn.types.LossOutput` like :func:`semi_gradient_td_loss`, without
    priorities."""
    q_all = q_fn(params, batch.obs)
    q_sa = jnp.take_along_axis(q_all, batch.action[:, None], axis=-1)[:, 0]
    target = jax.lax.stop_gradient(batch.target)  # semi-gradient: G is a label
    td_error = target - q_sa
    return LossOutput(jnp.mean(regression(td_error, hparams)), td_diagnostics(q_all, q_sa, target))


def td_diagnostics(q_all: jax.Array, q_sa: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    """The metrics every built-in loss reports, from q̂(s, ·) [B, A], q̂(s, a) [B] and the
    targets y [B]: q_mean = mean q̂(s,a), target_mean = mean y, td_abs = mean |y − q̂(s,a)|,
    q_abs_max = max |q̂(s, ·)| (what divergence detection watches)."""
    return {
        "q_mean": jnp.mean(q_sa),
        "target_mean": jnp.mean(target),
        "td_abs": jnp.mean(jnp.abs(target - q_sa)),
        "q_abs_max": jnp.max(jnp.abs(q_all)),
    }
