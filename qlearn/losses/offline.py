"""Losses for learning from a fixed dataset: CQL's conservative penalty beside any replay loss,
and behaviour cloning.

CQL(H) for discrete actions (Kumar et al. 2020, eq. 4) adds to the TD loss

    α · E_{(s, a) ~ D} [ log Σ_b exp q̂(s, b) − q̂(s, a) ]

which pushes q̂ down on every action (through the soft maximum) and up on the dataset's
actions: values of actions the data never take are pushed below those it does, the remedy for
bootstrapping from unvisited actions (extrapolation error, Fujimoto et al. 2019). Its gradient
is ∇ = α · E[Σ_b softmax(q̂(s, ·))_b ∇q̂(s, b) − ∇q̂(s, a)]. The penalty reads the Q-values
``q_fn(params, obs)``, so it applies to every head (a distributional head's mean).

Cal-QL (Nakamoto et al. 2023) calibrates that penalty: the push-down term reads
max(q̂(s, b), G(s)), G(s) a reference value of the behaviour policy — here the Monte-Carlo
return-to-go of the transition's episode in the data (``batch.return_to_go``) — so

    α · E_{(s, a) ~ D} [ log Σ_b exp max(q̂(s, b), G(s)) − q̂(s, a) ]

stops pushing q̂(s, b) down once it is below G(s) (its gradient there is 0), and keeps pushing
q̂(s, a) up: the learned values stay conservative but no lower than the data's own returns, so
fine-tuning does not first have to climb out of an underestimate (the unlearning at the start of
online fine-tuning that Cal-QL removes). Where G is unknown (−∞: online samples, episodes the
data cut) max(q̂, G) = q̂, CQL's penalty to the bit.

DR3 (Kumar et al. 2021) adds c · E_{(s, a, s') ~ D} [φ(s) · φ(s')], φ the online network's
penultimate features: an explicit penalty on the feature co-adaptation of consecutive states
that the TD update's implicit regularisation builds up (terms of transitions that end in a
terminal state, which bootstrap from nothing, are left out).

Behaviour cloning reads q̂(s, ·) as the logits of a policy and minimises the cross-entropy of
the dataset's actions, − E log softmax(q̂(s, ·))_a: the greedy policy of q̂ then imitates the
data's most frequent action in each state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from qlearn import diagnostics
from qlearn.losses.td import batch_mean
from qlearn.types import LossFn, LossOutput, Params, QFn, Transition


def conservative_penalty(q_all: jax.Array, action: jax.Array) -> jax.Array:
    """CQL(H)'s per-sample penalty logsumexp_b q̂(s, b) − q̂(s, a), [B, A], [B] -> [B]: > 0,
    and near 0 only where a dominates every other action. The soft maximum runs over every
    action: a transition keeps no mask of the actions available at ``obs``."""
    q_sa = jnp.take_along_axis(q_all, action[:, None], axis=1)[:, 0]
    return jax.nn.logsumexp(q_all, axis=1) - q_sa


def calibrated_penalty(q_all: jax.Array, action: jax.Array, reference: jax.Array) -> jax.Array:
    """Cal-QL's per-sample penalty logsumexp_b max(q̂(s, b), G(s)) − q̂(s, a), [B, A], [B],
    [B] -> [B]: :func:`conservative_penalty` of the Q-values floored at the reference value
    G(s) (−∞: no floor, CQL's penalty exactly). Its gradient in q̂(s, b) is
    softmax_b(max(q̂, G))·1[q̂(s, b) > G(s)] − 1[b = a]."""
    q_sa = jnp.take_along_axis(q_all, action[:, None], axis=1)[:, 0]
    return jax.nn.logsumexp(jnp.maximum(q_all, reference[:, None]), axis=1) - q_sa


def penalised(
    loss_fn: LossFn,
    penalty: Callable[[QFn, Params, Transition], jax.Array],
    weight: str,
    metric: str,
) -> LossFn:
    """``loss_fn`` plus ``hparams.<weight>`` × the batch mean (with the batch's weights,
    :func:`qlearn.losses.batch_mean`) of ``penalty(q_fn, online_params, batch)`` [B]; at weight
    0 the loss itself, to the bit. Metric ``metric``: the penalty's batch mean. The priorities
    are the loss's."""

    def loss(
        q_fn: QFn,
        online_params: Params,
        target_params: Params,
        batch: Transition,
        hparams: Any,
        key: jax.Array | None = None,
    ) -> LossOutput:
        out = loss_fn(q_fn, online_params, target_params, batch, hparams, key)
        value = batch_mean(penalty(q_fn, online_params, batch), batch)
        total = out.loss + getattr(hparams, weight) * value
        return LossOutput(total, {**out.metrics, metric: value}, out.priority)

    return loss


def conservative(loss_fn: LossFn, calibrated: bool = False) -> LossFn:
    """``loss_fn`` plus CQL(H)'s penalty (:func:`conservative_penalty` of the online Q-values)
    weighted by ``hparams.cql_alpha`` (:func:`penalised`; metric ``cql_penalty``);
    ``calibrated``: Cal-QL's (:func:`calibrated_penalty`, floored at ``batch.return_to_go``,
    which the batch must carry)."""

    def penalty(q_fn: QFn, params: Params, batch: Transition) -> jax.Array:
        q_all = q_fn(params, batch.obs)
        if not calibrated:
            return conservative_penalty(q_all, batch.action)
        if batch.return_to_go is None:
            raise ValueError("Cal-QL's penalty needs the batch's return_to_go; it has none")
        return calibrated_penalty(q_all, batch.action, batch.return_to_go)

    return penalised(loss_fn, penalty, "cql_alpha", "cql_penalty")


def feature_dot(q_fn: QFn, params: Params, batch: Transition) -> jax.Array:
    """φ(s) · φ(s') [B] of the penultimate features of ``q_fn``'s network (the flattened
    observations for one without hidden layers), 0 where the transition terminated. ``q_fn``:
    a :class:`~qlearn.networks.QFunction` (its network's ``apply``) or a qlearn network's
    ``apply`` itself."""
    apply = getattr(q_fn, "apply", q_fn)

    def features(obs: jax.Array) -> jax.Array:
        acts = diagnostics.captured_activations(apply, params, obs)
        return diagnostics.features_of(acts, obs)

    dot = jnp.sum(features(batch.obs) * features(batch.next_obs), axis=1)
    return jnp.where(batch.terminated, 0.0, dot)


def dr3(loss_fn: LossFn) -> LossFn:
    """``loss_fn`` plus DR3's penalty φ(s)·φ(s') (:func:`feature_dot`) weighted by
    ``hparams.dr3_weight`` (:func:`penalised`; metric ``dr3_dot``)."""
    return penalised(loss_fn, feature_dot, "dr3_weight", "dr3_dot")


def behaviour_cloning_loss(
    q_fn: QFn,
    online_params: Params,
    target_params: Params,
    batch: Transition,
    hparams: Any,
    key: jax.Array | None = None,
) -> LossOutput:
    """Behaviour cloning: the cross-entropy − log softmax(q̂(s, ·))_a of the batch's actions,
    averaged with its weights; metrics ``bc_accuracy`` (the fraction of samples whose greedy
    action is the data's) and ``q_mean``; priorities the per-sample cross-entropy. No
    bootstrap: ``target_params``, rewards and ``next_obs`` are unused."""
    logits = q_fn(online_params, batch.obs)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=1), batch.action[:, None], 1)[:, 0]
    accuracy = jnp.mean(jnp.argmax(logits, axis=1) == batch.action)
    metrics = {"bc_accuracy": accuracy, "q_mean": jnp.mean(logits)}
    return LossOutput(batch_mean(nll, batch), metrics, nll)
