"""User losses the tests plug in by function and by import path (``user_losses:NAME``), one
per loss contract of :mod:`qlearn.losses`, and a loss record with a hyperparameter of its own
(:data:`PENALISED`)."""

import jax
import jax.numpy as jnp
from flax import struct

from qlearn import hparams, losses
from qlearn.losses import LossOutput, LossRecord


def my_zero_loss(q_fn, online_params, target_params, batch, hparams, key):
    """A replay loss (:data:`qlearn.types.LossFn`): zero, with a metric of its own."""
    q = q_fn(online_params, batch.obs)
    return LossOutput(0.0 * jnp.sum(q), {"q_mean": jnp.mean(q), "my_stat": jnp.float32(7.0)})


def my_return_loss(q_fn, params, batch, hparams, key):
    """A λ-return loss (:data:`qlearn.types.ReturnLossFn`): the mean absolute error to the
    targets, semi-gradient, with a metric of its own."""
    q = jnp.take_along_axis(q_fn(params, batch.obs), batch.action[:, None], axis=-1)[:, 0]
    loss = jnp.mean(jnp.abs(jax.lax.stop_gradient(batch.target) - q))
    return LossOutput(loss, {"my_stat": jnp.float32(7)})


def my_old_loss(q_fn, online_params, target_params, batch, hparams):
    """A loss of the contract before ``key`` and :class:`~qlearn.losses.LossOutput`: five
    arguments, a (loss, aux) tuple (refused by name)."""
    return jnp.float32(0.0), {}


def my_tuple_loss(q_fn, online_params, target_params, batch, hparams, key):
    """The right arguments, the old (loss, aux) tuple as its output (refused when traced)."""
    return jnp.mean(q_fn(online_params, batch.obs)), {}


def my_sampling_loss(q_fn, online_params, target_params, batch, hparams, key):
    """A loss that samples: the Huber TD loss on a random half of the batch (a mask drawn
    from ``key``), with the mask's mean as a metric — the key reaches it only through its
    record's ``samples=True`` (:data:`SAMPLING`)."""
    out = losses.semi_gradient_td_loss(
        q_fn, online_params, target_params, batch, hparams, regression=losses.huber
    )
    keep = jax.random.bernoulli(key, 0.5, batch.action.shape).astype(jnp.float32)
    return LossOutput(out.loss * jnp.mean(keep), out.metrics | {"kept": jnp.mean(keep)})


SAMPLING = LossRecord(
    "user_losses:SAMPLING", lambda options: my_sampling_loss, samples=True, head=None
)


@struct.dataclass
class PenaltyHParams:
    """The hyperparameters of :data:`PENALISED`, its own."""

    penalty_weight: float = hparams.field(0.0, low=0, help="weight w of the mean q̂² penalty")


def penalised_huber(q_fn, online_params, target_params, batch, hp, key):
    """The Huber TD loss plus w · mean q̂(s, ·)², w the loss's own hyperparameter."""
    out = losses.semi_gradient_td_loss(
        q_fn, online_params, target_params, batch, hp, regression=losses.huber, double_q=True
    )
    penalty = jnp.mean(q_fn(online_params, batch.obs) ** 2)
    return LossOutput(
        out.loss + hp.penalty_weight * penalty,
        out.metrics | {"weight_seen": hp.penalty_weight},
        out.priority,
    )


PENALISED = LossRecord(
    "user_losses:PENALISED",
    lambda options: penalised_huber,
    hparams=PenaltyHParams,
    summary="Huber TD + penalty_weight · mean q̂²",
)
