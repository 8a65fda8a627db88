"""TD losses: semi-gradient, residual-gradient and gradient-TD, and a switch between them.

Q-learning minimises the μ-weighted value error VE(θ) = Σ μ(s,a) (q(s,a) − q̂(s,a;θ))². The
unknown q is replaced by the bootstrap target y; holding y fixed in the gradient
(``jax.lax.stop_gradient``) makes the update a **semi-gradient** — regression with y as the
label:

    ∇_θ L = −2 · E[(y − q̂(s,a;θ)) ∇_θ q̂(s,a;θ)]      (MSE)

Replay losses (DQN) have one signature (:data:`qlearn.types.LossFn`)::

    loss(q_fn, online_params, target_params, batch, hparams) -> (scalar, aux)

and compute their own targets from a :class:`~qlearn.types.Transition` batch. λ-return losses
(PQN) have another (:data:`qlearn.types.ReturnLossFn`), because the Q(λ) targets of a rollout
are computed once, before its epochs::

    loss(q_fn, params, batch, hparams) -> (scalar, aux)  # ReturnBatch(obs, action, target)

A user-written loss with the algorithm's signature plugs into ``make_train`` unchanged: pass the
function itself, or its import path ``"package.module:function"``, as ``config.loss``. Built-in
names: ``"huber"`` and ``"mse"`` (semi-gradient; both contracts), ``"residual"``
(residual-gradient, Baird 1995; replay only), ``"dqn_reg"`` (Co-Reyes et al. 2021), the
distributional ``"c51"`` (Bellemare et al. 2017) and ``"qr"`` (QR-DQN, Dabney et al. 2018),
and the classification losses ``"hl_gauss"`` and ``"two_hot"`` (Farebrother et al. 2024;
replay only). The last four read the head's outputs through ``q_fn.outputs``
(:class:`qlearn.networks.QFunction`): the contract is the same, the Q-network's head says what
its outputs are (:data:`HEAD_OF`). A tuple of specs becomes :func:`switch`: one compiled
program, the loss picked by the traced hyperparameter ``loss_index``, so a sweep vmaps over
losses like over any number.

For linear value functions v̂(x) = φ(x)ᵀw (x a state or a state-action pair) the second half of
this module writes the classic off-policy updates — semi-gradient TD, residual gradient, TDC
and GTD2 — as surrogate losses of (w, h) whose gradients ARE those updates, so
``w ← w − α ∂L/∂w`` and ``h ← h − β ∂L/∂h`` run any of them.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from qlearn import networks, policies, targets
from qlearn.types import LossFn, Params, QFn, ReturnBatch, Transition

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
) -> jax.Array:
    """The (not yet stop-gradiented) TD targets y of a batch, shape [B].

    discount_t = γ^steps·(1 − terminated): a truncated transition bootstraps from ``next_obs``.
    With ``double_q`` the online network selects the next action and the target network
    evaluates it. The max (or the selection) ranges over the actions available at
    ``next_obs`` (``batch.next_action_mask``; all when None).
    """
    discount_t = bootstrap_discount(batch, hparams.gamma)
    mask = batch.next_action_mask
    q_t_value = q_fn(target_params, batch.next_obs)
    if double_q:
        q_t_selector = policies.masked(q_fn(online_params, batch.next_obs), mask)
        return jax.vmap(targets.double_q_learning)(
            batch.reward, discount_t, q_t_value, q_t_selector
        )
    return jax.vmap(targets.q_learning)(batch.reward, discount_t, policies.masked(q_t_value, mask))


def semi_gradient_td_loss(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    *,
    regression: Regression = huber,
    double_q: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Semi-gradient TD loss  L(θ) = mean_i ℓ(sg(y_i) − q̂(s_i, a_i; θ)).

    Args:
      q_fn: ``q_fn(params, obs[B, ...]) -> [B, A]``.
      online_params: θ, the parameters being trained.
      target_params: θ⁻, used for the bootstrap (pass ``online_params`` for no target network).
      batch: a :class:`~qlearn.types.Transition` batch with leading axis B.
      hparams: provides ``gamma`` (and ``huber_delta`` for Huber regression).
      regression: ℓ, per-sample loss of the TD error (:func:`mse` or :func:`huber`).
      double_q: use the Double Q-learning target.

    Returns:
      (scalar loss, aux) with aux = {q_mean: mean q̂(s,a), target_mean: mean y,
      td_abs: mean |y − q̂|, q_abs_max: max |q̂(s, ·)| over the batch}.
    """
    y = td_targets(q_fn, online_params, target_params, batch, hparams, double_q=double_q)
    y = jax.lax.stop_gradient(y)  # the semi-gradient: the target is a label, not a function of θ
    q_tm1 = q_fn(online_params, batch.obs)
    q_sa = jnp.take_along_axis(q_tm1, batch.action[:, None], axis=-1)[:, 0]
    td_error = y - q_sa
    loss = jnp.mean(regression(td_error, hparams))
    return loss, td_diagnostics(q_tm1, q_sa, y)


def residual_gradient_td_loss(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Residual-gradient loss (Baird 1995): the mean squared Bellman error with NO stop-gradient,

        L(θ) = mean_i (r_i + γ_i max_a q̂(s'_i, a; θ) − q̂(s_i, a_i; θ))²,

    so ∇L = −2 E[δ (∇q̂(s,a;θ) − γ_i ∇q̂(s', a*; θ))]: the gradient also moves the bootstrap.
    The bootstrap uses θ itself (``target_params`` is ignored: a frozen copy would make it a
    semi-gradient again). With stochastic transitions one sample of s' gives a biased gradient
    of the true Bellman error (the double-sampling problem).

    Returns (loss, aux) like :func:`semi_gradient_td_loss`.
    """
    del target_params
    discount_t = bootstrap_discount(batch, hparams.gamma)
    q_next = policies.masked(q_fn(online_params, batch.next_obs), batch.next_action_mask)
    y = jax.vmap(targets.q_learning)(batch.reward, discount_t, q_next)
    q_tm1 = q_fn(online_params, batch.obs)
    q_sa = jnp.take_along_axis(q_tm1, batch.action[:, None], axis=-1)[:, 0]
    td_error = y - q_sa
    return jnp.mean(jnp.square(td_error)), td_diagnostics(q_tm1, q_sa, y)


def cross_entropy_loss(
    q_fn: QFn, params: Params, batch: Transition, labels: jax.Array, target: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """−mean_i Σ_k labels_ik log softmax(ℓ(s_i, a_i; θ))_k for the logits of a categorical or
    histogram head (``q_fn.outputs``) and fixed ``labels`` [B, K]; ``target`` [B] is the
    labels' value (for the aux diagnostics, on the head's expectations)."""
    logits = q_fn.outputs(params, batch.obs)  # [B, A, K]
    logits_sa = jnp.take_along_axis(logits, batch.action[:, None, None], axis=1)[:, 0]
    loss = -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(logits_sa, axis=-1), axis=-1))
    q_all = jax.nn.softmax(logits, axis=-1) @ q_fn.support
    q_sa = jnp.take_along_axis(q_all, batch.action[:, None], axis=-1)[:, 0]
    return loss, td_diagnostics(q_all, q_sa, target)


def categorical_td_loss(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    *,
    double_q: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """C51 (Bellemare et al. 2017): the cross-entropy of the online distribution of (s, a)
    against the projected target distribution m (:func:`qlearn.targets.categorical_q_learning`),

        L(θ) = −mean_i Σ_k sg(m_i)_k log softmax(ℓ(s_i, a_i; θ))_k,

    the distributional semi-gradient: m is a label. ``q_fn`` is a
    :class:`~qlearn.networks.QFunction` with a categorical head (its ``support`` the atoms);
    the next action is chosen by the target distribution's expectation, or with ``double_q`` by
    the online network's, over the actions available at ``next_obs``.

    Returns (loss, aux) like :func:`semi_gradient_td_loss`, on expectations: q_mean, td_abs and
    q_abs_max of Σ p z, target_mean of Σ m z.
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
    *,
    encode: str = "hl_gauss",
    double_q: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Value learning as classification (Farebrother et al. 2024): the scalar TD target y of
    :func:`td_targets` (from the head's expectations), encoded as a label over the histogram
    head's bins — ``"hl_gauss"`` (:func:`qlearn.targets.hl_gauss`, σ =
    ``hparams.hl_gauss_sigma`` bin widths) or ``"two_hot"`` (:func:`qlearn.targets.two_hot`) —
    and the cross-entropy of the online logits of (s, a) against it,

        L(θ) = −mean_i Σ_k sg(label(y_i))_k log softmax(ℓ(s_i, a_i; θ))_k.

    ``q_fn`` is a :class:`~qlearn.networks.QFunction` with a histogram head (``support`` its
    bin centres). Returns (loss, aux) like :func:`semi_gradient_td_loss`, on expectations."""
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


def dqn_reg_loss(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    *,
    double_q: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """DQNReg (Co-Reyes et al. 2021, the loss their search evolved): the squared TD error plus
    a penalty on the value itself, L(θ) = mean_i (w·q̂(s_i, a_i; θ) + (sg(y_i) − q̂(s_i, a_i;
    θ))²), w = ``hparams.dqn_reg_weight`` (0.1 in the paper), y of :func:`td_targets`.
    Returns (loss, aux) like :func:`semi_gradient_td_loss`."""
    y = td_targets(q_fn, online_params, target_params, batch, hparams, double_q=double_q)
    y = jax.lax.stop_gradient(y)
    q_all = q_fn(online_params, batch.obs)
    q_sa = jnp.take_along_axis(q_all, batch.action[:, None], axis=-1)[:, 0]
    loss = jnp.mean(hparams.dqn_reg_weight * q_sa + jnp.square(y - q_sa))
    return loss, td_diagnostics(q_all, q_sa, y)


def quantile_huber_loss(
    dist: jax.Array, tau: jax.Array, target: jax.Array, kappa: jax.Array
) -> jax.Array:
    """The quantile Huber loss of one sample (Dabney et al. 2018, as rlax writes it):

        Σ_i mean_j |τ_i − 1{u_ij < 0}| · L_κ(u_ij),   u_ij = target_j − dist_i,

    L_κ the Huber loss (½u² for |u| ≤ κ, κ(|u| − ½κ) beyond). ``dist`` [N] estimates the
    quantiles ``tau`` [N] of the distribution sampled by ``target`` [N'] (held fixed by the
    caller). Returns a scalar."""
    u = target[None, :] - dist[:, None]
    weight = jnp.abs(tau[:, None] - jax.lax.stop_gradient((u < 0).astype(jnp.float32)))
    return jnp.sum(jnp.mean(weight * optax.huber_loss(u, delta=kappa), axis=-1))


def quantile_td_loss(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    *,
    double_q: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """QR-DQN (Dabney et al. 2018): the quantile Huber loss (:func:`quantile_huber_loss`,
    κ = ``hparams.huber_delta``) of the online quantiles θ(s, a) at the midpoints τ̂ against
    the target quantiles r + γ θ⁻(s', a*) (:func:`qlearn.targets.quantile_q_learning`), held
    fixed (semi-gradient), averaged over the batch. ``q_fn`` is a
    :class:`~qlearn.networks.QFunction` with a quantile head; a* as in
    :func:`categorical_td_loss`.

    Returns (loss, aux) like :func:`semi_gradient_td_loss`, on the quantiles' means.
    """
    discount_t = bootstrap_discount(batch, hparams.gamma)
    dist_t = q_fn.outputs(target_params, batch.next_obs)  # [B, A, N]
    selector = q_fn(online_params, batch.next_obs) if double_q else jnp.mean(dist_t, axis=-1)
    selector = policies.masked(selector, batch.next_action_mask)
    target = jax.vmap(targets.quantile_q_learning)(batch.reward, discount_t, dist_t, selector)
    target = jax.lax.stop_gradient(target)  # the target quantiles are labels
    dist = q_fn.outputs(online_params, batch.obs)
    dist_sa = jnp.take_along_axis(dist, batch.action[:, None, None], axis=1)[:, 0]  # [B, N]
    tau = networks.quantile_midpoints(dist.shape[-1])
    per_sample = jax.vmap(quantile_huber_loss, (0, None, 0, None))(
        dist_sa, tau, target, hparams.huber_delta
    )
    q_all = jnp.mean(dist, axis=-1)
    return jnp.mean(per_sample), td_diagnostics(q_all, jnp.mean(dist_sa, -1), target.mean(-1))


def return_regression_loss(
    q_fn: QFn,
    params: Params,
    batch: ReturnBatch,
    hparams: Any,
    *,
    regression: Regression = mse,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The semi-gradient loss of a λ-return algorithm, L(θ) = mean_i ℓ(sg(G_i) − q̂(s_i, a_i; θ))
    on a :class:`~qlearn.types.ReturnBatch` (its targets G precomputed over the rollout).
    Returns (loss, aux) like :func:`semi_gradient_td_loss`."""
    q_all = q_fn(params, batch.obs)
    q_sa = jnp.take_along_axis(q_all, batch.action[:, None], axis=-1)[:, 0]
    target = jax.lax.stop_gradient(batch.target)  # semi-gradient: G is a label
    td_error = target - q_sa
    return jnp.mean(regression(td_error, hparams)), td_diagnostics(q_all, q_sa, target)


def td_diagnostics(q_all: jax.Array, q_sa: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    """The aux entries every built-in loss reports, from q̂(s, ·) [B, A], q̂(s, a) [B] and the
    targets y [B]: q_mean = mean q̂(s,a), target_mean = mean y, td_abs = mean |y − q̂(s,a)|,
    q_abs_max = max |q̂(s, ·)| (what divergence detection watches)."""
    return {
        "q_mean": jnp.mean(q_sa),
        "target_mean": jnp.mean(target),
        "td_abs": jnp.mean(jnp.abs(target - q_sa)),
        "q_abs_max": jnp.max(jnp.abs(q_all)),
    }


def switch(loss_fns: Sequence[Callable]) -> Callable:
    """One loss that runs ``loss_fns[hparams.loss_index]`` (``lax.switch`` on a traced index),
    for either contract (``hparams`` is the last argument of both).

    Every branch is compiled into the program, so vmapping over ``loss_index`` compares K
    losses in one compile. The aux dicts are unified: an entry a branch does not report is NaN.
    ``loss_index`` must be in [0, K): ``lax.switch`` would clamp anything else, so callers
    validate it (see ``DQNConfig.validate_hparams``).
    """
    loss_fns = tuple(loss_fns)
    if not loss_fns:
        raise ValueError("switch needs at least one loss")

    def switched(q_fn, *args):
        hparams = args[-1]
        shapes = [jax.eval_shape(functools.partial(f, q_fn), *args)[1] for f in loss_fns]
        keys = sorted(set().union(*shapes))

        def branch(f: Callable) -> Callable:
            def run(*operands):
                loss, aux = f(q_fn, *operands)
                nan = jnp.full((), jnp.nan, jnp.float32)
                return loss, {k: jnp.asarray(aux.get(k, nan), jnp.float32) for k in keys}

            return run

        return jax.lax.switch(hparams.loss_index, [branch(f) for f in loss_fns], *args)

    return switched


BUILTIN = ("huber", "mse", "residual", "dqn_reg", "c51", "qr", "hl_gauss", "two_hot")
RETURN_BUILTIN = ("huber", "mse")

HEAD_OF = {
    "huber": "scalar",
    "mse": "scalar",
    "residual": "scalar",
    "dqn_reg": "scalar",
    "c51": "categorical",
    "qr": "quantile",
    "hl_gauss": "histogram",
    "two_hot": "histogram",
}
"""The value head (:data:`qlearn.networks.HEADS`) each built-in replay loss needs."""


def check_heads(spec: Any, head: str) -> None:
    """Raise ValueError if a built-in loss named in ``spec`` (a name or a tuple) needs another
    head than ``head`` (a user's loss reads the head it is given, unchecked)."""
    for name in spec if isinstance(spec, tuple | list) else (spec,):
        if isinstance(name, str) and HEAD_OF.get(name, head) != head:
            raise ValueError(
                f"config.loss = '{name}' needs config.head = '{HEAD_OF[name]}' "
                f"(config.head is '{head}')"
            )


def resolve(spec: str | LossFn | Sequence[str | LossFn], *, double_q: bool) -> LossFn:
    """The replay loss (:data:`~qlearn.types.LossFn`) a config names.

    Args:
      spec: ``"huber"`` or ``"mse"`` (the semi-gradient TD loss with that regression),
        ``"residual"`` (:func:`residual_gradient_td_loss`), ``"dqn_reg"``
        (:func:`dqn_reg_loss`), ``"c51"`` (:func:`categorical_td_loss`), ``"qr"``
        (:func:`quantile_td_loss`), ``"hl_gauss"`` and ``"two_hot"``
        (:func:`classification_td_loss`), an import path
        ``"package.module:function"``, a loss function itself, or a tuple of these
        (:func:`switch` over them, chosen by ``hparams.loss_index``).
      double_q: target of the semi-gradient and distributional losses (a user loss computes
        its own target).
    """
    builtin = {
        "huber": functools.partial(semi_gradient_td_loss, regression=huber, double_q=double_q),
        "mse": functools.partial(semi_gradient_td_loss, regression=mse, double_q=double_q),
        "residual": residual_gradient_td_loss,
        "dqn_reg": functools.partial(dqn_reg_loss, double_q=double_q),
        "c51": functools.partial(categorical_td_loss, double_q=double_q),
        "qr": functools.partial(quantile_td_loss, double_q=double_q),
        "hl_gauss": functools.partial(classification_td_loss, encode="hl_gauss", double_q=double_q),
        "two_hot": functools.partial(classification_td_loss, encode="two_hot", double_q=double_q),
    }
    return _resolve(spec, builtin)


def resolve_return_loss(spec: str | Callable | Sequence[str | Callable]) -> Callable:
    """The λ-return loss (:data:`~qlearn.types.ReturnLossFn`) a config names: ``"huber"`` or
    ``"mse"`` (:func:`return_regression_loss`), an import path, a function, or a tuple of
    these (:func:`switch`)."""
    builtin = {
        name: functools.partial(return_regression_loss, regression=REGRESSIONS[name])
        for name in RETURN_BUILTIN
    }
    return _resolve(spec, builtin)


def _resolve(spec: Any, builtin: dict[str, Callable]) -> Callable:
    """A function, a tuple of specs (:func:`switch`), a built-in name or an import path."""
    if callable(spec):
        return spec
    if isinstance(spec, tuple | list):
        return switch([_resolve(s, builtin) for s in spec])
    if spec in builtin:
        return builtin[spec]
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            fn = functools.reduce(getattr, attr.split("."), importlib.import_module(module_name))
        except (ImportError, AttributeError) as e:
            raise ValueError(f"config.loss = '{spec}' cannot be imported: {e}") from None
        if not callable(fn):
            raise ValueError(f"config.loss = '{spec}' is not callable")
        return fn
    raise ValueError(
        f"config.loss = '{spec}' is not one of {', '.join(builtin)} "
        "nor an import path 'package.module:function'"
    )


def spec_name(spec: str | LossFn | Sequence[str | LossFn]) -> str | list[str]:
    """A JSON-storable name for a loss spec: the string itself, 'module:qualname', or a list."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, tuple | list):
        return [spec_name(s) for s in spec]  # type: ignore[misc]
    return f"{spec.__module__}:{spec.__qualname__}"


# --- linear value functions: semi-gradient, residual-gradient, TDC, GTD2 -----------------------


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
