"""TD losses: semi-gradient, residual-gradient and gradient-TD, and a switch between them.

Q-learning minimises the μ-weighted value error VE(θ) = Σ μ(s,a) (q(s,a) − q̂(s,a;θ))². The
unknown q is replaced by the bootstrap target y; holding y fixed in the gradient
(``jax.lax.stop_gradient``) makes the update a **semi-gradient** — regression with y as the
label:

    ∇_θ L = −2 · E[(y − q̂(s,a;θ)) ∇_θ q̂(s,a;θ)]      (MSE)

Replay losses (DQN) have one signature (:data:`qlearn.types.LossFn`)::

    loss(q_fn, online_params, target_params, batch, hparams, key) -> LossOutput

and compute their own targets from a :class:`~qlearn.types.Transition` batch. λ-return losses
(PQN) have another (:data:`qlearn.types.ReturnLossFn`), because the Q(λ) targets of a rollout
are computed once, before its epochs::

    loss(q_fn, params, batch, hparams, key) -> LossOutput  # ReturnBatch(obs, action, target)

:class:`LossOutput` ``(loss, metrics, priority)`` holds the scalar that is differentiated, the
scalar diagnostics logged per update, and each sample's new replay priority [B] (or None).
``key`` is a PRNG key for a loss whose :class:`LossRecord` says it ``samples`` (IQN), else None.

A user-written loss with the algorithm's signature plugs into ``make_train`` unchanged: pass the
function itself, or its import path ``"package.module:function"``, as ``config.loss``. Built-in
names: ``"huber"`` and ``"mse"`` (semi-gradient; both contracts), ``"residual"``
(residual-gradient, Baird 1995; replay only), ``"dqn_reg"`` (Co-Reyes et al. 2021),
``"munchausen"`` (M-DQN, Vieillard et al. 2020), ``"iqn"`` (Dabney et al. 2018b), the
distributional ``"c51"`` (Bellemare et al. 2017) and ``"qr"`` (QR-DQN, Dabney et al. 2018),
the classification losses ``"hl_gauss"`` and ``"two_hot"`` (Farebrother et al. 2024;
replay only), and ``"bc"`` (behaviour cloning, for offline datasets:
:mod:`~qlearn.losses.offline`, which also holds CQL's penalty). The distributional and
classification ones read the head's outputs through ``q_fn.outputs``
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
from qlearn.losses.offline import (
    behaviour_cloning_loss,
    calibrated_penalty,
    conservative,
    conservative_penalty,
    dr3,
    feature_dot,
)
from qlearn.losses.registry import (
    TABLE,
    LossOptions,
    LossRecord,
    builtin,
    check_heads,
    declared_hparams,
    register,
    resolve_spec,
    samples,
    spec_name,
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
from qlearn.types import ConfigError, LossFn, LossOutput


def switch(loss_fns: Sequence[Callable]) -> Callable:
    """One loss that runs ``loss_fns[hparams.loss_index]`` (``lax.switch`` on a traced index),
    for either contract (both end with ``hparams, key``).

    Every branch is compiled into the program, so vmapping over ``loss_index`` compares K
    losses in one compile. The branches' outputs are unified: a metric a branch does not
    report is NaN, and so are the priorities [B] of a branch that reports none while another
    does. ``loss_index`` must be in [0, K): ``lax.switch`` would clamp anything else, so
    callers validate it (see ``DQNConfig.validate_hparams``).
    """
    loss_fns = tuple(loss_fns)
    if not loss_fns:
        raise ValueError("switch needs at least one loss")

    def switched(q_fn, *args):
        hparams = args[-2]
        shapes = [jax.eval_shape(functools.partial(f, q_fn), *args) for f in loss_fns]
        shape_of = {k: jnp.shape(v) for out in reversed(shapes) for k, v in out.metrics.items()}
        priority = next((out.priority for out in shapes if out.priority is not None), None)

        def nan(shape: tuple[int, ...]) -> jax.Array:
            return jnp.full(shape, jnp.nan, jnp.float32)

        def branch(f: Callable) -> Callable:
            def run(*operands):
                out = f(q_fn, *operands)
                metrics = {
                    k: jnp.asarray(out.metrics[k], jnp.float32) if k in out.metrics else nan(v)
                    for k, v in shape_of.items()
                }
                if priority is None:
                    return LossOutput(out.loss, metrics)
                own = out.priority
                own = nan(priority.shape) if own is None else own.astype(jnp.float32)
                return LossOutput(out.loss, metrics, own)

            return run

        return jax.lax.switch(hparams.loss_index, [branch(f) for f in loss_fns], *args)

    return switched


RESCALABLE = ("huber", "mse", "dqn_reg")
"""The built-in losses that take ``value_rescaling`` (R2D2's h on their scalar TD target)."""

MUNCHAUSEN_NEXT_POLICIES = ("target", "online")
"""Which network's softmax is π' at s' in the ``munchausen`` loss (:func:`resolve`)."""


OPTION_FIELDS: dict[str, tuple[Any, str]] = {
    "munchausen_next_policy": (
        "target",
        "munchausen loss (other losses ignore it): the network whose softmax is π′ at s′: "
        "'target' (q⁻; Vieillard et "
        "al. 2020 use the target network for the log-policy bonus at s and for π′) or 'online' "
        "(q, Double-Q style: what loss=munchausen did with double_q=true before this field)",
    ),
    "value_rescaling": (
        False,
        "R2D2's invertible value rescaling (Pohlen et al. 2018): the network's values are "
        "h(q), the target h(r + γⁿ h⁻¹(q⁻(s′, a*))), h(x) = sign(x)(√(|x| + 1) − 1) + 10⁻³x; "
        "losses huber, mse, dqn_reg",
    ),
}
"""The static fields that specialise built-in losses (:class:`LossOptions`; name -> (default,
help)), declared by a config with :func:`qlearn.types.table_field`."""


HPARAMS: dict[str, dict[str, Any]] = {
    "hl_gauss_sigma": dict(
        default=0.75,
        low=0,
        low_open=True,
        help="σ of the HL-Gauss labels, in bin widths",
    ),
    "dqn_reg_weight": dict(
        default=0.1,
        low=0,
        help="weight of the value penalty of the dqn_reg loss",
    ),
    "munchausen_tau": dict(
        default=0.03,
        low=0,
        low_open=True,
        help="munchausen loss: softmax temperature τ",
    ),
    "munchausen_alpha": dict(
        default=0.9,
        low=0,
        high=1,
        help="munchausen loss: weight α of the scaled log-policy bonus",
    ),
    "munchausen_clip": dict(
        default=-1.0,
        high=0,
        help="munchausen loss: log π is clipped to [l₀, 0]",
    ),
    "cql_alpha": dict(
        default=0.0,
        low=0,
        help="CQL(H)'s α: the weight of logsumexp_b q̂(s, b) − q̂(s, a) beside the loss "
        "(Kumar et al. 2020; :func:`conservative`), where a dataset is learned from (an "
        "online run with a dataset: in its offline updates); 0: off",
    ),
    "dr3_weight": dict(
        default=0.0,
        low=0,
        help="DR3's c: the weight of φ(s)·φ(s′), the penultimate features' dot product over "
        "the batch's transitions (Kumar et al. 2021; :func:`dr3`), where a dataset is learned "
        "from; 0: off",
    ),
}
"""The hyperparameters the built-in losses read beyond the algorithm's (name ->
:func:`qlearn.hparams.field` keywords), declared by DQN's class with
:func:`qlearn.hparams.table_field` (a new loss declares its own in its record instead)."""


def _semi_gradient(regression: Regression) -> Callable[[LossOptions], LossFn]:
    return lambda o: functools.partial(
        semi_gradient_td_loss, regression=regression, double_q=o.double_q, rescale=o.value_rescaling
    )


def _classification(encode: str) -> Callable[[LossOptions], LossFn]:
    return lambda o: functools.partial(classification_td_loss, encode=encode, double_q=o.double_q)


for _record in (
    LossRecord("huber", _semi_gradient(huber), summary="semi-gradient TD, Huber (κ = huber_delta)"),
    LossRecord("mse", _semi_gradient(mse), summary="semi-gradient TD, squared error"),
    LossRecord(
        "residual", lambda o: residual_gradient_td_loss, summary="residual gradient (Baird 1995)"
    ),
    LossRecord(
        "dqn_reg",
        lambda o: functools.partial(dqn_reg_loss, double_q=o.double_q, rescale=o.value_rescaling),
        summary="DQN-Reg (Co-Reyes et al. 2021): + dqn_reg_weight · q̂",
    ),
    LossRecord(
        "munchausen",
        lambda o: functools.partial(
            munchausen_td_loss, double_q=o.munchausen_next_policy == "online"
        ),
        summary="M-DQN (Vieillard et al. 2020): munchausen_tau, _alpha, _clip",
    ),
    LossRecord(
        "c51",
        lambda o: functools.partial(categorical_td_loss, double_q=o.double_q),
        head="categorical",
        summary="C51 (Bellemare et al. 2017)",
    ),
    LossRecord(
        "qr",
        lambda o: functools.partial(quantile_td_loss, double_q=o.double_q),
        head="quantile",
        summary="QR-DQN (Dabney et al. 2018)",
    ),
    LossRecord(
        "iqn",
        lambda o: functools.partial(
            iqn_td_loss,
            double_q=o.double_q,
            num_target=o.iqn_target_quantiles,
            num_select=o.iqn_action_quantiles,
            shared_levels=o.iqn_shared_levels,
        ),
        head="iqn",
        samples=True,
        summary="IQN (Dabney et al. 2018b)",
    ),
    LossRecord(
        "hl_gauss",
        _classification("hl_gauss"),
        head="histogram",
        summary="HL-Gauss classification (Farebrother et al. 2024): hl_gauss_sigma",
    ),
    LossRecord(
        "two_hot",
        _classification("two_hot"),
        head="histogram",
        summary="two-hot classification (Farebrother et al. 2024)",
    ),
    LossRecord(
        "bc",
        lambda o: behaviour_cloning_loss,
        head=None,
        summary="behaviour cloning: cross-entropy of the data's actions under softmax(q̂)",
    ),
    *(
        LossRecord(
            name,
            lambda o, r=REGRESSIONS[name]: functools.partial(return_regression_loss, regression=r),
            batch="return",
            summary=f"regression on the λ-return targets, {name}",
        )
        for name in ("huber", "mse")
    ),
):
    register(_record)

BUILTIN = builtin("transition")
RETURN_BUILTIN = builtin("return")
HEAD_OF = {name: r.head for name, r in TABLE["transition"].items()}
"""The value head (:data:`qlearn.heads.HEADS`) each built-in replay loss needs."""


def resolve(
    spec: str | LossFn | LossRecord | Sequence[str | LossFn | LossRecord],
    *,
    double_q: bool,
    munchausen_next_policy: str = "target",
    iqn_target_quantiles: int | None = None,
    iqn_action_quantiles: int | None = None,
    value_rescaling: bool = False,
    iqn_shared_levels: bool = False,
) -> LossFn:
    """The replay loss (:data:`~qlearn.types.LossFn`) a config names: a name of
    :data:`~qlearn.losses.registry.TABLE` (the built-ins: ``"huber"``, ``"mse"``,
    ``"residual"``, ``"dqn_reg"``, ``"munchausen"``, ``"c51"``, ``"qr"``, ``"iqn"``,
    ``"hl_gauss"``, ``"two_hot"``, ``"bc"``), an import path ``"package.module:function"`` (or of a
    :class:`LossRecord`), a loss function or record itself, or a tuple of these
    (:func:`switch` over them, chosen by ``hparams.loss_index``).

    Args:
      double_q: target of the semi-gradient and distributional losses (a user loss computes
        its own target; ``munchausen`` has its own switch).
      munchausen_next_policy: the network whose softmax is π' at s' in ``munchausen``:
        ``"target"`` (Vieillard et al. 2020) or ``"online"`` (the Double-Q-style variant).
      iqn_target_quantiles: N', the target's sampled levels in ``iqn`` (None: N).
      iqn_action_quantiles: K, the sampled levels ``iqn`` chooses the target's a* by (None:
        the head's midpoints).
      value_rescaling: R2D2's rescaled targets h(r + γⁿ h⁻¹(q⁻)) in the losses of
        :data:`RESCALABLE` (others refuse it: :func:`check_config`).
      iqn_shared_levels: ``iqn`` draws its levels once per batch, not per sample.
    """
    if munchausen_next_policy not in MUNCHAUSEN_NEXT_POLICIES:
        raise ValueError(
            f"config.munchausen_next_policy = '{munchausen_next_policy}' must be one of "
            f"{', '.join(MUNCHAUSEN_NEXT_POLICIES)}"
        )
    options = LossOptions(
        double_q=double_q,
        munchausen_next_policy=munchausen_next_policy,
        iqn_target_quantiles=iqn_target_quantiles,
        iqn_action_quantiles=iqn_action_quantiles,
        iqn_shared_levels=iqn_shared_levels,
        value_rescaling=value_rescaling,
    )
    return resolve_spec(spec, "transition", options, switch)


def check_config(config: Any, *, masks_actions: bool) -> None:
    """Raise :class:`~qlearn.types.ConfigError` unless a replay config's ``loss`` resolves
    with its options (:attr:`loss_options`) and suits its head, and a ``munchausen`` loss
    (which needs each replayed state's action mask, not stored) is not asked of an env that
    ``masks_actions``."""
    try:
        check_heads(config.loss, config.head)
        resolve(config.loss, **config.loss_options)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    names = config.loss if isinstance(config.loss, tuple) else (config.loss,)
    if config.loss_options.get("value_rescaling") and not set(names) <= set(RESCALABLE):
        raise ConfigError(
            f"config.value_rescaling rescales the scalar TD target of the losses "
            f"{', '.join(RESCALABLE)}; config.loss = {config.loss!r} has another"
        )
    if "munchausen" in names and masks_actions:
        raise ConfigError(
            f"config.loss = 'munchausen' needs the action mask of each replayed state s "
            f"(its log-policy bonus), which replay does not store, and {config.env_id} has "
            "action masks"
        )


def resolve_return_loss(spec: str | Callable | Sequence[str | Callable]) -> Callable:
    """The λ-return loss (:data:`~qlearn.types.ReturnLossFn`) a config names: ``"huber"`` or
    ``"mse"`` (:func:`return_regression_loss`), an import path, a function or record, or a
    tuple of these (:func:`switch`)."""
    return resolve_spec(spec, "return", LossOptions(), switch)


__all__ = [
    "BUILTIN",
    "HEAD_OF",
    "LINEAR_LOSSES",
    "MUNCHAUSEN_NEXT_POLICIES",
    "REGRESSIONS",
    "RESCALABLE",
    "RETURN_BUILTIN",
    "TABLE",
    "LinearBatch",
    "LossOptions",
    "LossOutput",
    "LossRecord",
    "Regression",
    "batch_mean",
    "behaviour_cloning_loss",
    "bootstrap_discount",
    "calibrated_penalty",
    "categorical_td_loss",
    "check_heads",
    "classification_td_loss",
    "conservative",
    "conservative_penalty",
    "cross_entropy_loss",
    "declared_hparams",
    "dqn_reg_loss",
    "dr3",
    "feature_dot",
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
    "register",
    "residual_gradient_td_loss",
    "resolve",
    "resolve_return_loss",
    "return_regression_loss",
    "samples",
    "semi_gradient_td_loss",
    "spec_name",
    "switch",
    "td_diagnostics",
    "td_errors",
    "td_targets",
    "tdc",
]
