"""User losses the tests plug in by function and by import path (``user_losses:NAME``), one
per loss contract of :mod:`qlearn.losses`."""

import jax.numpy as jnp


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
