"""Learners: the loss, the optimiser and (for replay) the target network — how a batch becomes
a parameter update.

A learner is a record of pure functions (:class:`Learner`) closed over the run's
hyperparameters, like an optax ``GradientTransformation``:

    init(key) -> state                          # parameters, optimiser state
    update(state, batch, keys) -> (state, Update)

``keys`` holds the per-update PRNG keys of the streams the learner names in ``streams``
(:data:`qlearn.algos.driver.STREAMS`). :class:`Update` carries the update's metrics and, as a
named output, each sample's new replay priority (what a prioritised source needs back).

Two learners: :func:`td_learner` (DQN: a replay loss on :class:`~qlearn.types.Transition`
batches, Double-Q / target network, noisy networks, IQN's τ key) and :func:`return_learner`
(PQN: a λ-return loss on :class:`~qlearn.types.ReturnBatch` minibatches, no target network).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from qlearn import diagnostics, interventions, losses, noisynet, recurrent
from qlearn.algos import deep_q
from qlearn.types import ConfigError, LossFn, LossOutput, Params, QFn, Transition

TD_FIELDS: dict[str, tuple[Any, str]] = {
    "target_network": (
        True,
        "bootstrap from a target network (else from θ itself)",
    ),
    "double_q": (
        True,
        "Double-Q target (built-in losses; munchausen picks its π′ by munchausen_next_policy). "
        "With noisy=true the online network selects a* under the same noise it is trained "
        "with (Fortunato et al. draw a separate one for the selection)",
    ),
}
"""The static fields of a TD learner (name -> (default, help)), declared by a config with
:func:`qlearn.types.table_field`."""


TD_HPARAMS: dict[str, dict[str, Any]] = {
    "target_tau": dict(
        default=0.02,
        low=0,
        high=1,
        low_open=True,
        help="target update rate τ",
    ),
    "target_period": dict(
        default=1,
        low=1,
        integer=True,
        help="gradient updates between target updates",
    ),
}
"""The hyperparameters of a TD learner's target network (name -> :func:`qlearn.hparams.field`
keywords), declared with :func:`qlearn.hparams.table_field`."""


@struct.dataclass
class LearnerState:
    """What a learner carries: the online parameters θ, the optimiser state and the number of
    updates done."""

    params: Params
    opt_state: optax.OptState
    updates: jax.Array


@struct.dataclass
class TargetLearnerState(LearnerState):
    """A :class:`LearnerState` with a target network θ⁻."""

    target_params: Params = None


@struct.dataclass
class Update:
    """What one update reports: ``metrics`` (``loss`` and the loss's own metrics),
    ``priority`` [B], each sample's new replay priority, or None where the loss reports none
    (:class:`~qlearn.types.LossOutput`), and ``grads``, the loss's gradient with respect to
    the parameters before clipping (what the diagnostics measure; the driver keeps none of
    it)."""

    metrics: dict[str, jax.Array]
    priority: jax.Array | None = None
    grads: Params = None


@dataclasses.dataclass(frozen=True)
class Learner:
    """The learner contract (see the module docstring)."""

    init: Callable[[jax.Array], LearnerState]
    update: Callable[[LearnerState, Any, dict[str, jax.Array]], tuple[LearnerState, Update]]
    streams: tuple[str, ...] = ()
    """the per-update key streams ``update`` reads from its ``keys``."""


def make_optimizer(hp: Any, decay_updates: int | None = None) -> optax.GradientTransformation:
    """Adam after global-norm clipping (``hp.max_grad_norm``), with (possibly traced) numbers
    from ``hp``. With ``decay_updates`` = U the step size of update u (counted from 0) is
    ``hp.lr · (1 − hp.lr_decay · u / U)`` (PQN's linear decay); else the constant ``hp.lr``."""
    if decay_updates is None:
        step_size: Any = hp.lr
    else:

        def step_size(count: jax.Array) -> jax.Array:
            return hp.lr * (1.0 - hp.lr_decay * count / decay_updates)

    return optax.chain(optax.clip_by_global_norm(hp.max_grad_norm), optax.adam(step_size))


def gradient_step(
    q_fn: QFn,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Params,
    target_params: Params,
    opt_state: optax.OptState,
    batch: Transition,
    hp: Any,
    key: jax.Array | None = None,
    noise: tuple[Any, Any] | None = None,
) -> tuple[Params, optax.OptState, Update]:
    """One optimiser step on ``loss_fn``'s gradient with respect to the online params.

    ``key``: the loss's PRNG key (a loss that samples; else None). ``noise``: (online, target)
    noise collections of a noisy network (:func:`qlearn.noisynet.sample_noise`), applied
    beside ``params`` and ``target_params``; the loss sees the noisy networks' variables, the
    gradient is the parameters' only. Returns (new params, new optimiser state, the
    :class:`Update`: ``{"loss": ..., **metrics}`` and the priorities).
    """
    online_noise, target_noise = (None, None) if noise is None else noise
    bootstrap = noisynet.with_noise(target_params, target_noise)

    def objective(p: Params) -> tuple[jax.Array, LossOutput]:
        out = loss_fn(q_fn, noisynet.with_noise(p, online_noise), bootstrap, batch, hp, key)
        return out.loss, out

    (loss, out), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (
        optax.apply_updates(params, updates),
        opt_state,
        Update({"loss": loss, **out.metrics}, out.priority, grads),
    )


def update_target(params: Params, target_params: Params, updates: jax.Array, hp: Any) -> Params:
    """θ⁻ ← (1 − τ)θ⁻ + τθ when ``updates`` is a multiple of ``hp.target_period``."""
    blended = optax.incremental_update(params, target_params, hp.target_tau)
    return optax.periodic_update(blended, target_params, updates, hp.target_period)


def td_learner(prog: deep_q.Program, hp: Any, target_network: bool) -> Learner:
    """DQN's learner: ``prog.loss`` (a :data:`~qlearn.types.LossFn`) bootstrapping from the
    target network θ⁻ (or from θ itself without ``target_network``), θ⁻ updated after each
    step (:func:`update_target`); on a :class:`~qlearn.recurrent.SequenceBatch` the loss sees
    its rows through :func:`qlearn.recurrent.rows_q_function`. A noisy network draws fresh
    online and target noise per update (stream ``noise``); a loss that samples (``iqn``: its
    levels τ) gets the update's key of the stream ``loss`` as its ``key`` argument."""
    q_fn, optimizer = prog.q_function(hp), make_optimizer(hp)
    samples = losses.samples(prog.config.loss, "transition")
    streams = (("loss",) if samples else ()) + (("noise",) if prog.noise is not None else ())

    def init(key: jax.Array) -> TargetLearnerState:
        variables = prog.init_params(key)
        params, _ = noisynet.split_variables(variables)
        if prog.noise is not None:
            params = noisynet.scale_noise(params, hp.noisy_sigma0)
        zero = jnp.zeros((), jnp.int32)
        return TargetLearnerState(params, optimizer.init(params), zero, params)

    def update(
        state: TargetLearnerState,
        batch: Transition | recurrent.SequenceBatch,
        keys: dict[str, jax.Array],
    ) -> tuple[TargetLearnerState, Update]:
        fn = q_fn
        if isinstance(batch, recurrent.SequenceBatch):  # replayed sequences of a recurrent net
            fn, batch = recurrent.rows_q_function(q_fn, batch.sequences), batch.transition
        noise = None
        if "noise" in keys:
            k_online, k_target = jax.random.split(keys["noise"])
            noise = (
                noisynet.sample_noise(prog.noise, k_online),
                noisynet.sample_noise(prog.noise, k_target),
            )
        bootstrap = state.target_params if target_network else state.params
        params, opt_state, out = gradient_step(
            fn,
            prog.loss,
            optimizer,
            state.params,
            bootstrap,
            state.opt_state,
            batch,
            hp,
            keys.get("loss"),
            noise,
        )
        updates = state.updates + 1
        target = state.target_params
        if target_network:
            target = update_target(params, target, updates, hp)
        return TargetLearnerState(params, opt_state, updates, target), out

    return Learner(init, update, streams)


def return_learner(prog: deep_q.Program, hp: Any, decay_updates: int) -> Learner:
    """PQN's learner: one optimiser step per minibatch on ``prog.loss`` (a
    :data:`~qlearn.types.ReturnLossFn` of the precomputed λ-targets), no target network; the
    step size decays linearly over ``decay_updates`` (:func:`make_optimizer`); a loss that
    samples gets the update's key of the stream ``loss``."""
    q_fn, optimizer = prog.q_function(hp), make_optimizer(hp, decay_updates)
    streams = ("loss",) if losses.samples(prog.config.loss, "return") else ()

    def init(key: jax.Array) -> LearnerState:
        params = prog.init_params(key)
        return LearnerState(params, optimizer.init(params), jnp.zeros((), jnp.int32))

    def update(
        state: LearnerState, batch: Any, keys: dict[str, jax.Array]
    ) -> tuple[LearnerState, Update]:
        sequences = batch.memory is not None  # a recurrent network's whole sequences
        fn = recurrent.sequence_q_function(q_fn, *batch.memory) if sequences else q_fn

        def objective(p: Params) -> tuple[jax.Array, LossOutput]:
            out = prog.loss(fn, p, batch, hp, keys.get("loss"))
            return out.loss, out

        (loss, out), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, **out.metrics}
        update = Update(metrics, out.priority, grads)
        return LearnerState(params, opt_state, state.updates + 1), update

    return Learner(init, update, streams)


INTERVENTION_FIELDS: dict[str, tuple[Any, str]] = {
    "intervention": (
        "none",
        "every intervention_period updates: 'none', 'redo' (ReDo, Sokar et al. 2023: the "
        "dormant units at τ = dormant_tau re-initialised, their outgoing weights zeroed), "
        "'reset' (the last reset_layers layers re-initialised, Nikishin et al. 2022) or "
        "'shrink_perturb' (θ ← shrink·θ + perturb·θ_fresh, Ash & Adams 2020); Adam's moments "
        "of what changed restart, the replay is kept",
    ),
    "reset_layers": (1, "intervention='reset': how many of the last layers are reset"),
}
"""The static fields of a learner's intervention (name -> (default, help))."""


INTERVENTION_HPARAMS: dict[str, dict[str, Any]] = {
    "intervention_period": dict(
        default=10_000, low=1, integer=True, help="gradient updates between interventions"
    ),
    "shrink": dict(default=0.8, low=0, high=1, help="shrink_perturb: λ of θ ← λθ + σθ_fresh"),
    "perturb": dict(default=0.2, low=0, help="shrink_perturb: σ of θ ← λθ + σθ_fresh"),
}
"""The hyperparameters of a learner's intervention (name -> :func:`qlearn.hparams.field`
keywords)."""


def with_intervention(learner: Learner, prog: deep_q.Program, hp: Any) -> Learner:
    """``learner`` with ``prog.config.intervention`` applied after every
    ``hp.intervention_period``-th update (:mod:`qlearn.interventions`; the fresh parameters
    from the update's key of the stream ``reinit``; ReDo scores the units on the update's
    batch). The target network is left to follow as it does. ``learner`` itself for 'none'."""
    kind = prog.config.intervention
    if kind == "none":
        return learner

    def intervene(state: LearnerState, batch: Any, key: jax.Array) -> LearnerState:
        fresh = learner.init(key).params
        if kind == "redo":
            acts = diagnostics.captured_activations(prog.network.apply, state.params, batch.obs)
            params, opt_state = interventions.redo(
                state.params, state.opt_state, fresh, acts, hp.dormant_tau
            )
        elif kind == "reset":
            params, opt_state = interventions.reset_last(
                state.params, state.opt_state, fresh, prog.config.reset_layers
            )
        else:
            params = interventions.shrink_perturb(state.params, fresh, hp.shrink, hp.perturb)
            opt_state = state.opt_state
        return state.replace(params=params, opt_state=opt_state)

    def update(state: LearnerState, batch: Any, keys: dict[str, jax.Array]) -> tuple:
        state, out = learner.update(state, batch, keys)
        due = state.updates % hp.intervention_period == 0
        state = jax.lax.cond(due, lambda s: intervene(s, batch, keys["reinit"]), lambda s: s, state)
        return state, out

    return Learner(learner.init, update, (*learner.streams, "reinit"))


def check_intervention(config: Any) -> None:
    """Raise :class:`~qlearn.types.ConfigError` unless ``config.intervention`` is known and
    fits the config's network: ``reset_layers`` between 1 and its number of layers, ReDo on
    a chain of layers it can recycle (:func:`qlearn.interventions.check_recyclable`)."""
    if config.intervention not in interventions.INTERVENTIONS:
        raise ConfigError(
            f"config.intervention = '{config.intervention}' must be one of "
            f"{', '.join(interventions.INTERVENTIONS)}"
        )
    if config.intervention == "none":
        return
    env, env_params = deep_q.make_env(config)
    shape = env.observation_space(env_params).shape
    network = deep_q.make_network(
        config, env.action_space(env_params).n, shape, config.value_head, config.noisy
    )
    obs = jnp.zeros((1, *shape))
    params = jax.eval_shape(network.init, jax.random.key(0), obs)
    layers = interventions.layer_names(params)
    if config.intervention == "reset" and not 1 <= config.reset_layers <= len(layers):
        raise ConfigError(
            f"config.reset_layers = {config.reset_layers} must be between 1 and the "
            f"network's {len(layers)} layers ({', '.join(layers)})"
        )
    if config.intervention in ("redo", "reset"):
        acts = jax.eval_shape(
            lambda p: diagnostics.captured_activations(network.apply, p, obs), params
        )
        try:
            interventions.check_recyclable(params, len(acts), config.intervention)
        except ValueError as e:
            raise ConfigError(str(e)) from None
