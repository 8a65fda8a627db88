"""Semi-gradient TD losses.

Q-learning minimises the μ-weighted value error VE(θ) = Σ μ(s,a) (q(s,a) − q̂(s,a;θ))². The
unknown q is replaced by the bootstrap target y; holding y fixed in the gradient
(``jax.lax.stop_gradient``) makes the update a **semi-gradient** — regression with y as the
label:

    ∇_θ L = −2 · E[(y − q̂(s,a;θ)) ∇_θ q̂(s,a;θ)]      (MSE)

Every loss has one signature (see :data:`qlearn.types.LossFn`)::

    loss(q_fn, online_params, target_params, batch, hparams) -> (scalar, aux)

so a user-written loss with that signature plugs into ``make_train`` unchanged: pass the function
itself, or its import path ``"package.module:function"``, as ``config.loss``.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from qlearn import targets
from qlearn.types import LossFn, Params, QFn, Transition

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

    discount_t = γ·(1 − terminated): a truncated transition bootstraps from ``next_obs``.
    With ``double_q`` the online network selects the next action and the target network
    evaluates it.
    """
    discount_t = hparams.gamma * (1.0 - batch.terminated.astype(jnp.float32))
    q_t_value = q_fn(target_params, batch.next_obs)
    if double_q:
        q_t_selector = q_fn(online_params, batch.next_obs)
        return jax.vmap(targets.double_q_learning)(
            batch.reward, discount_t, q_t_value, q_t_selector
        )
    return jax.vmap(targets.q_learning)(batch.reward, discount_t, q_t_value)


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
    aux = {
        "q_mean": jnp.mean(q_sa),
        "target_mean": jnp.mean(y),
        "td_abs": jnp.mean(jnp.abs(td_error)),
        "q_abs_max": jnp.max(jnp.abs(q_tm1)),
    }
    return loss, aux


def resolve(spec: str | LossFn, *, double_q: bool) -> LossFn:
    """The loss function a config names.

    Args:
      spec: ``"huber"`` or ``"mse"`` (the semi-gradient TD loss with that regression), an
        import path ``"package.module:function"``, or a loss function itself.
      double_q: target of the built-in losses (a user loss computes its own target).
    """
    if callable(spec):
        return spec
    if spec in REGRESSIONS:
        return functools.partial(
            semi_gradient_td_loss, regression=REGRESSIONS[spec], double_q=double_q
        )
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
        f"config.loss = '{spec}' is not one of {sorted(REGRESSIONS)} "
        "nor an import path 'package.module:function'"
    )


def spec_name(spec: str | LossFn) -> str:
    """A JSON-storable name for a loss spec: the string itself, or 'module:qualname'."""
    if isinstance(spec, str):
        return spec
    return f"{spec.__module__}:{spec.__qualname__}"
