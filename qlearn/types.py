"""Types shared across qlearn: the transition batch and the function signatures.

A *transition* carries ``terminated`` and ``truncated`` separately: a time-limit truncation
bootstraps from the true final observation (``next_obs``); only termination cuts the bootstrap.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable
from typing import Any

import jax
from flax import struct

Params = Any
"""A pytree of network parameters."""

QFn = Callable[[Params, jax.Array], jax.Array]
"""``q_fn(params, obs[B, *obs_shape]) -> q_values[B, num_actions]``."""


@struct.dataclass
class LossOutput:
    """What a loss returns: the scalar it is minimised as, its diagnostics, and (optionally)
    each sample's new replay priority.

    Attributes:
      loss: float32 [], the value differentiated (the learner's gradient is ∇_θ ``loss``).
      metrics: scalar diagnostics, logged per update; the built-in losses report ``q_mean``,
        ``target_mean``, ``td_abs`` and ``q_abs_max`` (:func:`qlearn.losses.td_diagnostics`).
      priority: float32 [B], each sample's new priority for prioritised replay (the
        built-ins: |δ|, or the sample's loss for the distributional ones), or None for a loss
        that reports none (prioritised replay then refuses it). Not a metric.
    """

    loss: jax.Array
    metrics: dict[str, jax.Array] = struct.field(default_factory=dict)
    priority: jax.Array | None = None


LossFn = Callable[..., LossOutput]
"""``loss(q_fn, online_params, target_params, batch, hparams, key) -> LossOutput``: the loss
contract of replay algorithms (DQN), ``batch`` a :class:`Transition` batch; the loss computes
its own targets, and weighs its samples by ``batch.weight`` when that is not None
(:func:`qlearn.losses.batch_mean`). ``key`` is a PRNG key, one per update, for a loss whose
record says it ``samples`` (IQN's quantile levels τ; :class:`qlearn.losses.LossRecord`), and
None for every other loss."""

ReturnLossFn = Callable[..., LossOutput]
"""``loss(q_fn, params, batch, hparams, key) -> LossOutput``: the loss contract of λ-return
algorithms (PQN). The targets of a whole rollout are computed once, before its epochs, and
``batch`` is a :class:`ReturnBatch` minibatch carrying them; ``key`` as for :data:`LossFn`."""


@struct.dataclass
class Transition:
    """One transition (leaves unbatched) or a batch of them (leading axis B).

    Attributes:
      obs: s_tm1, shape [*obs_shape].
      action: a_tm1, int32 [].
      reward: r_t, float32 [].
      next_obs: s_t, the true successor of ``obs`` (``info["final_observation"]`` at an
        episode's end, never the observation after auto-reset), [*obs_shape].
      terminated: the episode ended in a terminal state: no bootstrap, bool [].
      truncated: the episode was cut by a time limit: bootstrap from ``next_obs``, bool [].
      steps: env steps the transition spans, int32 [] (1; m ≤ n for an n-step transition,
        whose ``reward`` is Σ_{k<m} γᵏ r_k): the bootstrap discount is γ^steps·(1 − terminated)
        (:func:`qlearn.losses.bootstrap_discount`).
      next_action_mask: bool [A], the actions available at ``next_obs`` (the max/argmax of a
        target ranges over these only), or None for an env without action masks.
      weight: float32 [], the importance-sampling weight of a sampled transition of
        prioritised replay (:func:`qlearn.replay.sample_prioritized`): a loss averages its
        per-sample terms with these weights (:func:`qlearn.losses.batch_mean`). None (not
        stored, and for uniform replay): an unweighted mean.
      return_to_go: float32 [], G(s): the Monte-Carlo discounted return the data's episode
        earned from ``obs`` on (at the dataset's γ; −∞ where unknown), the reference value of
        Cal-QL's calibrated penalty (:func:`qlearn.losses.calibrated_penalty`). None (not
        stored): every transition that is not a Cal-QL run's dataset sample.

    What a transition is not (kept elsewhere, so it does not grow a field per feature): a
    sampling loss's PRNG key (the loss's ``key`` argument, :data:`LossFn`) and what a probe
    counts of a batch (the source's :class:`qlearn.algos.sources.Drawn`).
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    steps: jax.Array
    next_action_mask: jax.Array | None = None
    weight: jax.Array | None = None
    return_to_go: jax.Array | None = None


@struct.dataclass
class ReturnBatch:
    """A minibatch of a rollout with its precomputed targets (leading axis B).

    Attributes:
      obs: s_t, [B, *obs_shape].
      action: a_t, int32 [B].
      target: G_t, the λ-return target of (s_t, a_t), float32 [B] — computed with the
        parameters of the rollout, so a semi-gradient loss regresses q̂(s_t, a_t; θ) on it as
        a label (``jax.lax.stop_gradient``).
    """

    obs: jax.Array
    action: jax.Array
    target: jax.Array
    memory: Any = None
    """of a recurrent network's batch of n whole sequences of T steps (rows time-major, row
    t·n + b step t of sequence b): (the carry at their start [n, ...], bool [T, n]: the step
    starts an episode), what :func:`qlearn.recurrent.sequence_q_function` unrolls from; None
    for a feed-forward network's batch of single steps."""


class ConfigError(ValueError):
    """A static config field has a value that is not accepted; the message names the field."""


def imported(path: str, field: str) -> Any:
    """The object an import path ``"package.module:attribute"`` names, for the config field
    ``field`` (a user's loss, diagnostic, ...); ValueError naming the field if it cannot be
    imported."""
    module_name, _, attr = path.partition(":")
    try:
        return functools.reduce(getattr, attr.split("."), importlib.import_module(module_name))
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(f"config.{field} = '{path}' cannot be imported: {e}") from None


def config_field(default: Any, help: str) -> Any:
    """A static config field with a help text (shown by ``qlearn train --help``)."""
    return dataclasses.field(default=default, metadata={"help": help})


def table_field(
    table: dict[str, tuple[Any, str]], name: str, default: Any = dataclasses.MISSING
) -> Any:
    """The static config field ``name`` of a module's ``table`` (name -> (default, help)): the
    part that reads a field declares it once, and each config lists the fields it has, in its
    own order (which stored specs keep), overriding the default where it differs."""
    value, text = table[name]
    return config_field(value if default is dataclasses.MISSING else default, text)
