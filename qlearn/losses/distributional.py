"""Distributional and classification losses, read from a value head's outputs
(``q_fn.outputs``, :class:`qlearn.networks.QFunction`): C51, QR-DQN, IQN, and HL-Gauss /
two-hot classification (see :mod:`qlearn.losses` for the contract)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from qlearn import heads, policies, targets
from qlearn.losses.td import batch_mean, bootstrap_discount, td_diagnostics, td_targets
from qlearn.types import LossOutput, Params, QFn, Transition


def cross_entropy_loss(
    q_fn: QFn, params: Params, batch: Transition, labels: jax.Array, target: jax.Array
) -> LossOutput:
    """−mean_i Σ_k labels_ik log softmax(ℓ(s_i, a_i; θ))_k for the logits of a categorical or
    histogram head (``q_fn.outputs``) and fixed ``labels`` [B, K] (weighted by
    ``batch.weight`` under prioritised replay); ``target`` [B] is the labels' value (for the
    metrics, on the head's expectations). ``priority`` is each sample's cross-entropy."""
    logits = q_fn.outputs(params, batch.obs)  # [B, A, K]
    logits_sa = jnp.take_along_axis(logits, batch.action[:, None, None], axis=1)[:, 0]
    per_sample = -jnp.sum(labels * jax.nn.log_softmax(logits_sa, axis=-1), axis=-1)
    q_all = jax.nn.softmax(logits, axis=-1) @ q_fn.support
    q_sa = jnp.take_along_axis(q_all, batch.action[:, None], axis=-1)[:, 0]
    return LossOutput(
        batch_mean(per_sample, batch), td_diagnostics(q_all, q_sa, target), per_sample
    )


def categorical_td_loss(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    key: jax.Array | None = None,
    *,
    double_q: bool = False,
) -> LossOutput:
    """C51 (Bellemare et al. 2017): the cross-entropy of the online distribution of (s, a)
    against the projected target distribution m (:func:`qlearn.targets.categorical_q_learning`),

        L(θ) = −mean_i Σ_k sg(m_i)_k log softmax(ℓ(s_i, a_i; θ))_k,

    the distributional semi-gradient: m is a label. ``q_fn`` is a
    :class:`~qlearn.networks.QFunction` with a categorical head (its ``support`` the atoms);
    the next action is chosen by the target distribution's expectation, or with ``double_q`` by
    the online network's, over the actions available at ``next_obs``.

    Returns a :class:`~qlearn.types.LossOutput` like :func:`semi_gradient_td_loss`, on
    expectations: q_mean, td_abs and q_abs_max of Σ p z, target_mean of Σ m z; ``priority``
    each sample's cross-entropy.
    """
    z = q_fn.support
    discount_t = bootstrap_discount(batch, hparams.gamma)
    probs_t = jax.nn.softmax(q_fn.outputs(target_params, batch.next_obs), axis=-1)  # [B, A, K]
    selector = q_fn(online_params, batch.next_obs) if double_q else probs_t @ z
    selector = policies.masked(selector, batch.next_action_mask)
    m = jax.vmap(targets.categorical_q_learning, (0, 0, None, 0, 0))(
        batch.reward, discount_t, z, probs_t, selector
    )
    m = jax.lax.stop_gradient(m)  # the target distribution is a label
    return cross_entropy_loss(q_fn, online_params, batch, m, m @ z)


def classification_td_loss(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    key: jax.Array | None = None,
    *,
    encode: str = "hl_gauss",
    double_q: bool = False,
) -> LossOutput:
    """Value learning as classification (Farebrother et al. 2024): the scalar TD target y of
    :func:`td_targets` (from the head's expectations), encoded as a label over the histogram
    head's bins — ``"hl_gauss"`` (:func:`qlearn.targets.hl_gauss`, σ =
    ``hparams.hl_gauss_sigma`` bin widths) or ``"two_hot"`` (:func:`qlearn.targets.two_hot`) —
    and the cross-entropy of the online logits of (s, a) against it,

        L(θ) = −mean_i Σ_k sg(label(y_i))_k log softmax(ℓ(s_i, a_i; θ))_k.

    ``q_fn`` is a :class:`~qlearn.networks.QFunction` with a histogram head (``support`` its
    bin centres). Returns a :class:`~qlearn.types.LossOutput` like
    :func:`semi_gradient_td_loss`, on expectations."""
    y = td_targets(q_fn, online_params, target_params, batch, hparams, double_q=double_q)
    y = jax.lax.stop_gradient(y)  # the label is fixed: semi-gradient
    centres = q_fn.support
    if encode == "hl_gauss":
        sigma = hparams.hl_gauss_sigma * (centres[1] - centres[0])
        labels = jax.vmap(targets.hl_gauss, (0, None, None))(y, centres, sigma)
    elif encode == "two_hot":
        labels = jax.vmap(targets.two_hot, (0, None))(y, centres)
    else:
        raise ValueError(f"unknown label encoding '{encode}'")
    return cross_entropy_loss(q_fn, online_params, batch, labels, y)


def quantile_huber_loss(
    dist: jax.Array, tau: jax.Array, target: jax.Array, kappa: jax.Array
) -> jax.Array:
    """The quantile Huber loss of one sample (Dabney et al. 2018, as rlax writes it):

        Σ_i mean_j |τ_i − 1{u_ij < 0}| · L_κ(u_ij),   u_ij = target_j − dist_i,

    L_κ the Huber loss (½u² for |u| ≤ κ, κ(|u| − ½κ) beyond), NOT divided by κ: QR-DQN's
    ρ^κ_τ and rlax's ``quantile_regression_loss``. IQN's paper (Dabney et al. 2018b) and
    Dopamine write L_κ(u)/κ; the two agree at κ = 1 (the default) and otherwise differ by a
    constant factor 1/κ on the loss, its gradient (Adam nearly ignores it, global-norm
    clipping does not), the priorities and the ``loss`` metric. ``dist`` [N] estimates the
    quantiles ``tau`` [N] of the distribution sampled by ``target`` [N'] (held fixed by the
    caller). Returns a scalar.

    The sums over i and j are written as products with vectors of ones (and 1/N′): XLA:CPU
    runs the [B, N, N′] reduction as a slow library reduce but a product as a fast one (IQN
    with shared levels, CartPole, 8 runs: 5.8 s → 4.2 s per run of 20k steps); the values
    differ from a reduction only by the order of the additions."""
    u = target[None, :] - dist[:, None]
    weight = jnp.abs(tau[:, None] - jax.lax.stop_gradient((u < 0).astype(jnp.float32)))
    terms = weight * optax.huber_loss(u, delta=kappa)  # [N, N']
    return jnp.ones(terms.shape[0]) @ terms @ jnp.full(terms.shape[1], 1.0 / terms.shape[1])


def quantile_regression_td_loss(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    key: jax.Array | None = None,
    *,
    double_q: bool,
    tau: jax.Array | None = None,
    tau_t: jax.Array | None = None,
    tau_select: jax.Array | None = None,
) -> LossOutput:
    """What QR-DQN and IQN share: the quantile Huber loss (:func:`quantile_huber_loss`, κ =
    ``hparams.huber_delta``, not divided by κ) of the online values θ(s, a) at the levels
    ``tau`` [B, N] (None: a quantile head's midpoints τ̂; [N]: one set shared by the batch)
    against the target samples r + γ θ⁻(s', a*) at the levels ``tau_t`` [B, N'] or [N']
    (:func:`qlearn.targets.quantile_q_learning`), held fixed (semi-gradient), averaged over the
    batch (:func:`batch_mean`). a* maximises the target network's expected value, or with
    ``double_q`` the online network's, over the actions available at ``next_obs``; the expected
    value is the head's (q_fn: an iqn head's mean at its midpoints τ̂, embedded once for the
    batch when ``tau`` is shared), or with ``tau_select`` [B, K] or [K] the mean of the outputs
    at those K levels (IQN's sampled action selection). Returns a
    :class:`~qlearn.types.LossOutput` like :func:`semi_gradient_td_loss`, on expectations;
    ``priority`` is each sample's loss."""
    shared = tau is None or tau.ndim == 1  # one set of levels for every sample

    def expected(params: Params, obs: jax.Array) -> jax.Array:
        """q̂ [B, A]; with levels shared by the batch, at midpoints embedded once for it."""
        if tau is None or not shared:
            return q_fn(params, obs)
        return q_fn.mean_at(params, obs, heads.quantile_midpoints(q_fn.head.size))

    discount_t = bootstrap_discount(batch, hparams.gamma)
    dist_t = q_fn.outputs(target_params, batch.next_obs, tau_t)  # [B, A, N']
    if tau_select is not None:  # the mean at K sampled levels, of the selecting network
        selecting = online_params if double_q else target_params
        selector = q_fn.mean_at(selecting, batch.next_obs, tau_select)
    elif double_q:
        selector = expected(online_params, batch.next_obs)
    else:  # a quantile head's expectation is the mean of these very quantiles
        selector = (
            jnp.mean(dist_t, -1) if tau_t is None else expected(target_params, batch.next_obs)
        )
    selector = policies.masked(selector, batch.next_action_mask)
    target = jax.vmap(targets.quantile_q_learning)(batch.reward, discount_t, dist_t, selector)
    target = jax.lax.stop_gradient(target)  # the target samples are labels
    dist = q_fn.outputs(online_params, batch.obs, tau)  # [B, A, N]
    dist_sa = jnp.take_along_axis(dist, batch.action[:, None, None], axis=1)[:, 0]  # [B, N]
    levels = heads.quantile_midpoints(dist.shape[-1]) if tau is None else tau
    per_sample = jax.vmap(quantile_huber_loss, (0, None if shared else 0, 0, None))(
        dist_sa, levels, target, hparams.huber_delta
    )
    q_all = jnp.mean(dist, axis=-1) if tau is None else expected(online_params, batch.obs)
    q_sa = jnp.take_along_axis(q_all, batch.action[:, None], axis=-1)[:, 0]
    metrics = td_diagnostics(q_all, q_sa, target.mean(-1))
    return LossOutput(batch_mean(per_sample, batch), metrics, per_sample)


def quantile_td_loss(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    key: jax.Array | None = None,
    *,
    double_q: bool = False,
) -> LossOutput:
    """QR-DQN (Dabney et al. 2018): :func:`quantile_regression_td_loss` of a quantile head's
    N quantiles θ(s, a) at the midpoints τ̂ against the target quantiles r + γ θ⁻(s', a*).
    ``q_fn`` is a :class:`~qlearn.networks.QFunction` with a quantile head.

    Returns a :class:`~qlearn.types.LossOutput` like :func:`semi_gradient_td_loss`, on the
    quantiles' means.
    """
    return quantile_regression_td_loss(
        q_fn, online_params, target_params, batch, hparams, double_q=double_q
    )


def iqn_td_loss(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    key: jax.Array | None = None,
    *,
    double_q: bool = False,
    num_target: int | None = None,
    num_select: int | None = None,
    shared_levels: bool = False,
) -> LossOutput:
    """IQN (Dabney et al. 2018b): :func:`quantile_regression_td_loss` of the online values
    Z_τ(s, a; θ) at N levels τ ~ U(0, 1) against the target samples r + γ Z_τ'(s', a*; θ⁻)
    at N' fresh levels τ', the levels drawn per sample from ``key``: N = ``q_fn.head.size``
    (DQN's ``num_quantiles``), N' = ``num_target`` (None: N). a* maximises the mean of Z(s', ·)
    (the target network's, the online one's with ``double_q``): at the head's midpoints τ̂
    when ``num_select`` is None (deterministic), else at ``num_select`` = K levels τ̃ ~ U(0, 1)
    drawn per sample, an unbiased estimate of ∫₀¹ Z_τ dτ. The paper uses N = N' = 64, K = 32.
    The τ, τ' keys are ``jax.random.split(key)`` (whatever N', K), τ̃'s is
    ``fold_in(key, 1)``. ``shared_levels``: each of τ, τ', τ̃ is drawn once for the whole
    batch ([N], not [B, N]): every sample's loss is still an unbiased estimate, the cosine
    embedding runs once per level instead of once per (sample, level), and the samples' levels
    are correlated.

    Returns a :class:`~qlearn.types.LossOutput` like :func:`quantile_td_loss`.
    """
    if key is None:
        raise ValueError("the iqn loss samples quantile levels: it needs a PRNG key")
    size = None if shared_levels else batch.action.shape[0]
    num_online = q_fn.head.size
    num_target = num_online if num_target is None else num_target
    k_online, k_target = jax.random.split(key)
    tau = heads.sample_levels(k_online, size, num_online)
    tau_t = heads.sample_levels(k_target, size, num_target)
    tau_select = None
    if num_select is not None:
        k_select = jax.random.fold_in(key, 1)
        tau_select = heads.sample_levels(k_select, size, num_select)
    return quantile_regression_td_loss(
        q_fn,
        online_params,
        target_params,
        batch,
        hparams,
        double_q=double_q,
        tau=tau,
        tau_t=tau_t,
        tau_select=tau_select,
    )
