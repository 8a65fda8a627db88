"""User losses the tests plug in by function and by import path (``user_losses:NAME``), one
per loss contract of :mod:`qlearn.losses`, and a loss record with a hyperparameter of its own
(:data:`PENALISED`)."""

import jax.numpy as jnp
from flax import struct

from qlearn import hparams, losses
from qlearn.losses import LossRecord


def my_zero_loss(q_fn, online_params, target_params, batch, hparams):
    """A replay loss (:data:`qlearn.types.LossFn`): zero, with an aux entry of its own."""
    q = q_fn(online_params, batch.obs)
    return 0.0 * jnp.sum(q), {"q_mean": jnp.mean(q), "my_stat": jnp.float32(7.0)}


def my_return_loss(q_fn, params, batch, hparams):
    """A λ-return loss (:data:`qlearn.types.ReturnLossFn`): the mean absolute error to the
    targets, semi-gradient, with an aux entry of its own."""
    import jax

    q = jnp.take_along_axis(q_fn(params, batch.obs), batch.action[:, None], axis=-1)[:, 0]
    return jnp.mean(jnp.abs(jax.lax.stop_gradient(batch.target) - q)), {"my_stat": jnp.float32(7)}


@struct.dataclass
class PenaltyHParams:
    """The hyperparameters of :data:`PENALISED`, its own."""

    penalty_weight: float = hparams.field(0.0, low=0, help="weight w of the mean q̂² penalty")


def penalised_huber(q_fn, online_params, target_params, batch, hp):
    """The Huber TD loss plus w · mean q̂(s, ·)², w the loss's own hyperparameter."""
    loss, aux = losses.semi_gradient_td_loss(
        q_fn, online_params, target_params, batch, hp, regression=losses.huber, double_q=True
    )
    penalty = jnp.mean(q_fn(online_params, batch.obs) ** 2)
    return loss + hp.penalty_weight * penalty, aux | {"weight_seen": hp.penalty_weight}


PENALISED = LossRecord(
    "user_losses:PENALISED",
    lambda options: penalised_huber,
    hparams=PenaltyHParams,
    summary="Huber TD + penalty_weight · mean q̂²",
)
