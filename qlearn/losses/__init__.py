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
(residual-gradient, Baird 1995; replay only), ``"dqn_reg"`` (Co-Reyes et al. 2021),
``"munchausen"`` (M-DQN, Vieillard et al. 2020), ``"iqn"`` (Dabney et al. 2018b), the
distributional ``"c51"`` (Bellemare et al. 2017) and ``"qr"`` (QR-DQN, Dabney et al. 2018),
and the classification losses ``"hl_gauss"`` and ``"two_hot"`` (Farebrother et al. 2024;
replay only). The last four read the head's outputs through ``q_fn.outputs``
(:class:`qlearn.networks.QFunction`): the contract is the same, the Q-network's head says what
its outputs are (:data:`HEAD_OF`). A tuple of specs becomes :func:`switch`: one compiled
program, the loss picked by the traced hyperparameter ``loss_index``, so a sweep vmaps over
losses like over any number.

For linear value functions v̂(x) = φ(x)ᵀw (x a state or a state-action pair),
:mod:`qlearn.losses.linear` writes the classic off-policy updates — semi-gradient TD, residual
gradient, TDC and GTD2 — as surrogate losses of (w, h) whose gradients ARE those updates, so
``w ← w − α ∂L/∂w`` and ``h ← h − β ∂L/∂h`` run any of them.

The package: :mod:`~qlearn.losses.td` (scalar TD losses and what they share),
:mod:`~qlearn.losses.distributional` (C51, QR-DQN, classification), :mod:`~qlearn.losses.linear`;
this module adds the switch between losses and the resolution of a config's loss, and every
loss is reached as ``losses.NAME``.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from qlearn.losses.distributional import (
    categorical_td_loss,
    classification_td_loss,
    cross_entropy_loss,
    iqn_td_loss,
    quantile_huber_loss,
    quantile_regression_td_loss,
    quantile_td_loss,
)
from qlearn.losses.linear import (
    LINEAR_LOSSES,
    LinearBatch,
    gtd2,
    linear_residual_gradient,
    linear_semi_gradient,
    linear_td_error,
    tdc,
)
from qlearn.losses.td import (
    REGRESSIONS,
    Regression,
    batch_mean,
    bootstrap_discount,
    dqn_reg_loss,
    huber,
    mse,
    munchausen_targets,
    munchausen_td_loss,
    residual_gradient_td_loss,
    return_regression_loss,
    semi_gradient_td_loss,
    td_diagnostics,
    td_errors,
    td_targets,
)
from qlearn.types import LossFn


def switch(loss_fns: Sequence[Callable]) -> Callable:
    """One loss that runs ``loss_fns[hparams.loss_index]`` (``lax.switch`` on a traced index),
    for either contract (``hparams`` is the last argument of both).

    Every branch is compiled into the program, so vmapping over ``loss_index`` compares K
    losses in one compile. The aux dicts are unified: an entry a branch does not report is NaN.
    ``loss_index`` must be in [0, K): ``lax.switch`` would clamp anything else, so callers
    validate it (see ``DQNConfig.validate_hparams``). (A non-scalar entry, such as the
    per-sample ``priority`` [B], is NaN of its shape.)
    """
    loss_fns = tuple(loss_fns)
    if not loss_fns:
        raise ValueError("switch needs at least one loss")

    def switched(q_fn, *args):
        hparams = args[-1]
        shapes = [jax.eval_shape(functools.partial(f, q_fn), *args)[1] for f in loss_fns]
        shape_of = {k: jnp.shape(v) for aux in reversed(shapes) for k, v in aux.items()}
        keys = sorted(shape_of)

        def branch(f: Callable) -> Callable:
            def run(*operands):
                loss, aux = f(q_fn, *operands)
                return loss, {
                    k: jnp.asarray(aux[k], jnp.float32)
                    if k in aux
                    else jnp.full(shape_of[k], jnp.nan, jnp.float32)
                    for k in keys
                }

            return run

        return jax.lax.switch(hparams.loss_index, [branch(f) for f in loss_fns], *args)

    return switched


BUILTIN = (
    "huber",
    "mse",
    "residual",
    "dqn_reg",
    "munchausen",
    "c51",
    "qr",
    "iqn",
    "hl_gauss",
    "two_hot",
)
RETURN_BUILTIN = ("huber", "mse")
MUNCHAUSEN_NEXT_POLICIES = ("target", "online")
"""Which network's softmax is π' at s' in the ``munchausen`` loss (:func:`resolve`)."""

HEAD_OF = {
    "huber": "scalar",
    "mse": "scalar",
    "residual": "scalar",
    "dqn_reg": "scalar",
    "munchausen": "scalar",
    "c51": "categorical",
    "qr": "quantile",
    "iqn": "iqn",
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


def resolve(
    spec: str | LossFn | Sequence[str | LossFn],
    *,
    double_q: bool,
    munchausen_next_policy: str = "target",
    iqn_target_quantiles: int | None = None,
    iqn_action_quantiles: int | None = None,
) -> LossFn:
    """The replay loss (:data:`~qlearn.types.LossFn`) a config names.

    Args:
      spec: ``"huber"`` or ``"mse"`` (the semi-gradient TD loss with that regression),
        ``"residual"`` (:func:`residual_gradient_td_loss`), ``"dqn_reg"``
        (:func:`dqn_reg_loss`), ``"munchausen"`` (:func:`munchausen_td_loss`), ``"c51"``
        (:func:`categorical_td_loss`), ``"qr"`` (:func:`quantile_td_loss`), ``"iqn"``
        (:func:`iqn_td_loss`), ``"hl_gauss"``
        and ``"two_hot"`` (:func:`classification_td_loss`), an import path
        ``"package.module:function"``, a loss function itself, or a tuple of these
        (:func:`switch` over them, chosen by ``hparams.loss_index``).
      double_q: target of the semi-gradient and distributional losses (a user loss computes
        its own target; ``munchausen`` has its own switch).
      munchausen_next_policy: the network whose softmax is π' at s' in ``munchausen``:
        ``"target"`` (Vieillard et al. 2020) or ``"online"`` (the Double-Q-style variant).
      iqn_target_quantiles: N', the target's sampled levels in ``iqn`` (None: N).
      iqn_action_quantiles: K, the sampled levels ``iqn`` chooses the target's a* by (None:
        the head's midpoints).
    """
    if munchausen_next_policy not in MUNCHAUSEN_NEXT_POLICIES:
        raise ValueError(
            f"config.munchausen_next_policy = '{munchausen_next_policy}' must be one of "
            f"{', '.join(MUNCHAUSEN_NEXT_POLICIES)}"
        )
    builtin = {
        "huber": functools.partial(semi_gradient_td_loss, regression=huber, double_q=double_q),
        "mse": functools.partial(semi_gradient_td_loss, regression=mse, double_q=double_q),
        "residual": residual_gradient_td_loss,
        "dqn_reg": functools.partial(dqn_reg_loss, double_q=double_q),
        "munchausen": functools.partial(
            munchausen_td_loss, double_q=munchausen_next_policy == "online"
        ),
        "c51": functools.partial(categorical_td_loss, double_q=double_q),
        "qr": functools.partial(quantile_td_loss, double_q=double_q),
        "iqn": functools.partial(
            iqn_td_loss,
            double_q=double_q,
            num_target=iqn_target_quantiles,
            num_select=iqn_action_quantiles,
        ),
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


__all__ = [
    "BUILTIN",
    "HEAD_OF",
    "LINEAR_LOSSES",
    "MUNCHAUSEN_NEXT_POLICIES",
    "REGRESSIONS",
    "RETURN_BUILTIN",
    "LinearBatch",
    "Regression",
    "batch_mean",
    "bootstrap_discount",
    "categorical_td_loss",
    "check_heads",
    "classification_td_loss",
    "cross_entropy_loss",
    "dqn_reg_loss",
    "gtd2",
    "huber",
    "iqn_td_loss",
    "linear_residual_gradient",
    "linear_semi_gradient",
    "linear_td_error",
    "mse",
    "munchausen_targets",
    "munchausen_td_loss",
    "quantile_huber_loss",
    "quantile_regression_td_loss",
    "quantile_td_loss",
    "residual_gradient_td_loss",
    "resolve",
    "resolve_return_loss",
    "return_regression_loss",
    "semi_gradient_td_loss",
    "spec_name",
    "switch",
    "td_diagnostics",
    "td_errors",
    "td_targets",
    "tdc",
]
