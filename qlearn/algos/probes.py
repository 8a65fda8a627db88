"""Probes: measurements the driver takes beside training, which never change what is learned.

A probe is a record of pure functions (:class:`Probe`) over its own state:

    init() -> state
    start(state) -> state                   # at the start of each evaluation interval
    on_steps(state, trace) -> state         # the source's env steps (a StepTrace, or None)
    on_batch(state, batch, drawn) -> state  # each update's batch, and where it came from
    metrics(state, learner, env_steps) -> dict  # at each evaluation point (the learner's state)

Three probes: :func:`finite_mdp_probe` (a finite MDP's exact value errors, visits and the
replayed weighting, and the learned return distributions' distance to the truth),
:func:`noise_probe` (the mean σ of noisy layers) and :func:`diagnostics_probe` (learning
dynamics: dormant units, feature rank, norms, policy churn; :mod:`qlearn.diagnostics`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from qlearn import diagnostics, dp, envs, noisynet, policies
from qlearn import return_distributions as rd
from qlearn.algos import deep_q
from qlearn.algos.sources import Drawn, Source, StepTrace, example_batch
from qlearn.types import ConfigError, imported


def _same(state: Any, *_: Any) -> Any:
    """The default of a probe's hooks: nothing changes."""
    return state


@dataclasses.dataclass(frozen=True)
class Probe:
    """The probe contract (see the module docstring)."""

    name: str
    """its key in the run state's ``probes`` (``final_state.probes[name]``)."""
    metrics: Callable[[Any, Any, jax.Array], dict[str, jax.Array]]
    """(state, the learner's state, env steps) -> the probe's metrics at an evaluation
    point."""
    init: Callable[[], Any] = tuple
    start: Callable[[Any], Any] = _same
    on_steps: Callable[[Any, StepTrace | None], Any] = _same
    on_batch: Callable[[Any, Any, Drawn], Any] = _same


def noise_probe() -> Probe:
    """``noise_sigma``: the mean |σ| of the noisy layers' noise scales
    (:func:`qlearn.noisynet.mean_noise_scale`)."""

    def metrics(state: Any, learner: Any, env_steps: jax.Array) -> dict[str, jax.Array]:
        return {"noise_sigma": noisynet.mean_noise_scale(learner.params)}

    return Probe("noise", metrics)


def ground_truth(prog: deep_q.Program, hp: Any) -> dict[str, jax.Array]:
    """What a finite MDP's model gives (empty elsewhere): ``q_star`` [S, A] by value
    iteration, ``reachable`` [S, A] (:func:`qlearn.dp.reachable_pairs`), and for a categorical
    or quantile head ``eta`` [S, A, K], the fixed point of the projected distributional
    Bellman operator of the greedy policy of q*
    (:mod:`qlearn.return_distributions`) — the return distributions a distributional
    Q-learner converges to at best — where rewards are deterministic given (s, a, s').

    The projection is the learner's: C51's onto the head's atoms; for a quantile or iqn head
    the κ-Huber quantiles at the midpoints, κ = ``hp.huber_delta`` as in the built-in ``qr``
    and ``iqn`` losses (an iqn head is graded at its midpoints against this N-atom fixed
    point, not against the fixed point of its continuum of levels). No ``eta`` when
    ``n_step`` > 1: an n-step target bootstraps after n − 1 behaviour (ε-greedy) actions,
    uncorrected, so its fixed point Π T_b^(n−1) T^π depends on the behaviour policy b, which
    moves with ε and the learned Q and is mixed over the replay's ages; the model alone gives
    no truth to grade it against."""
    if not envs.is_finite(prog.config.env_id):
        return {}
    mdp = prog.env_params
    q_star = dp.value_iteration(mdp, hp.gamma)[0]
    truth = {"q_star": q_star, "reachable": dp.reachable_pairs(mdp)}
    if prog.head.truth and prog.config.n_step == 1 and rd.has_deterministic_rewards(mdp):
        greedy = dp.greedy_policy(q_star, mdp.action_mask)
        if prog.head.truth == "categorical":
            support = prog.q_function(hp).support
            truth["eta"] = rd.categorical_fixed_point(mdp, greedy, hp.gamma, support)
        else:
            truth["eta"] = rd.quantile_fixed_point(
                mdp, greedy, hp.gamma, prog.head.size, kappa=hp.huber_delta
            )
    return truth


@struct.dataclass
class FiniteCounts:
    """A finite MDP probe's counters, [S, A]: ``visits``, the state-action visits of every
    env step so far, and ``replayed``, the loss weights of the current (or last) interval's
    replayed samples summed per (s, a) (1 each for uniform replay, the importance weight for
    prioritised)."""

    visits: jax.Array
    replayed: jax.Array


def finite_mdp_probe(
    prog: deep_q.Program, hp: Any, truth: dict[str, jax.Array], diagnose: bool = False
) -> Probe:
    """The exact errors of a run on a finite MDP at each evaluation point, against ``truth``
    (:func:`ground_truth`): :func:`qlearn.dp.error_metrics` of q̂ on every state (the
    μ-weighted value errors under the current ε-greedy behaviour, the visits and the
    interval's replayed batches; the greedy policy's value and return) and, where ``truth``
    has ``eta``, :func:`qlearn.return_distributions.distance_metrics` of the learned return
    distributions (an iqn head at its midpoints τ̂). With ``diagnose``, the exact
    over-estimation too (:func:`value_gaps`). The source must trace its steps and keep each
    item's state index (``record_states``: :attr:`Drawn.state`)."""
    mdp, q_fn = prog.env_params, prog.q_function(hp)
    shape = mdp.rewards.shape

    def init() -> FiniteCounts:
        return FiniteCounts(jnp.zeros(shape), jnp.zeros(shape))

    def start(counts: FiniteCounts) -> FiniteCounts:  # this interval's replayed weights only
        return counts.replace(replayed=jnp.zeros_like(counts.replayed))

    def on_steps(counts: FiniteCounts, trace: StepTrace | None) -> FiniteCounts:
        return counts.replace(visits=counts.visits.at[trace.state, trace.action].add(1.0))

    def on_batch(counts: FiniteCounts, batch: Any, drawn: Drawn) -> FiniteCounts:
        weight = jnp.ones(batch.action.shape) if batch.weight is None else batch.weight
        return counts.replace(replayed=counts.replayed.at[drawn.state, batch.action].add(weight))

    def metrics(counts: FiniteCounts, learner: Any, env_steps: jax.Array) -> dict:
        params = learner.params
        q_all = q_fn(params, mdp.features)  # every state, [S, A]
        epsilon = deep_q.epsilon_schedule(prog.config, hp)(env_steps)
        behaviour = policies.epsilon_greedy_probs(q_all, epsilon, mdp.action_mask)
        mu = dp.state_action_distribution(mdp, behaviour)
        out = dp.error_metrics(
            mdp, q_all, truth["q_star"], behaviour, counts.visits, hp.gamma, counts.replayed, mu
        )
        if "eta" in truth:
            learned = q_fn.outputs(params, mdp.features)  # [S, A, K]
            out |= rd.distance_metrics(prog.head.truth, learned, truth["eta"], mu, q_fn.support)
        if diagnose:
            out |= value_gaps(mdp, q_all, truth["q_star"], counts.visits, hp.gamma)
        return out

    return Probe("finite_mdp", metrics, init, start, on_steps, on_batch)


def value_gaps(
    mdp: Any, q_hat: jax.Array, q_star: jax.Array, visits: jax.Array, gamma: jax.Array
) -> dict[str, jax.Array]:
    """A finite MDP's exact over-estimation of q̂ [S, A]: the mean of q̂ − q* and of q̂ − q^π
    (π = greedy(q̂), :func:`qlearn.dp.policy_evaluation`) over the reachable pairs
    (``overest_star``, ``overest_pi``), split into the pairs the behaviour policy has taken
    (``visits`` > 0: ``_visited``) and those it has not (``_unvisited``; NaN while there are
    none). q^π is infinite where the greedy policy never ends an episode under γ = 1."""
    reachable = dp.reachable_pairs(mdp)
    q_pi = dp.policy_evaluation(mdp, dp.greedy_policy(q_hat, mdp.action_mask), gamma)
    out = {}
    for name, truth in (("star", q_star), ("pi", q_pi)):
        gap = q_hat - truth
        for suffix, where in (
            ("", reachable),
            ("_visited", reachable & (visits > 0)),
            ("_unvisited", reachable & (visits == 0)),
        ):
            out[f"overest_{name}{suffix}"] = jnp.sum(jnp.where(where, gap, 0.0)) / jnp.sum(where)
    return out


DIAGNOSTIC_FIELDS: dict[str, tuple[Any, str]] = {
    "diagnostics": (
        False,
        "learning-dynamics diagnostics at each evaluation point: dormant units, feature rank, "
        "norms, policy churn (docs: Diagnostics); off, the run's program and metrics are as "
        "without them",
    ),
    "diagnostics_batch": (
        256,
        "probe states the diagnostics are measured on: the last ones the learner was trained "
        "on (replayed or rollout batches)",
    ),
    "custom_diagnostics": (
        (),
        "your own diagnostics, measured with the built-in ones (diagnostics=true) on the same "
        "probe states: functions fn(q_fn, params, obs, learner_state) -> {name: scalar} (obs "
        "the diagnostics_batch probe states), or their import paths 'package.module:function'",
    ),
}
"""The static fields of the diagnostics probe (name -> (default, help)), declared by a config
with :func:`qlearn.types.table_field`."""


DIAGNOSTIC_HPARAMS: dict[str, dict[str, Any]] = {
    "dormant_tau": dict(
        default=0.1,
        low=0,
        help="τ of the dormant units (score s_i ≤ τ, Sokar et al. 2023); τ = 0 (units that "
        "never fire) is reported beside it",
    ),
    "srank_delta": dict(
        default=0.01,
        low=0,
        high=1,
        low_open=True,
        high_open=True,
        help="δ of the features' srank (Kumar et al. 2021)",
    ),
}
"""The hyperparameters the diagnostics read (name -> :func:`qlearn.hparams.field` keywords),
declared with :func:`qlearn.hparams.table_field`."""

DIAGNOSTICS_SEED = 0x0D1A6
"""The key of the diagnostics' own random numbers (a sampling loss's key or a noisy network's
noise in the hypothetical update), folded with the env steps: never a training stream."""


def custom_diagnostics(config: Any) -> tuple[Callable, ...]:
    """The functions ``config.custom_diagnostics`` names (imported where given as paths);
    :class:`~qlearn.types.ConfigError` naming the field for anything else."""
    out = []
    for entry in config.custom_diagnostics:
        try:
            fn = imported(entry, "custom_diagnostics") if isinstance(entry, str) else entry
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if not callable(fn):
            raise ConfigError(
                f"config.custom_diagnostics: {entry!r} is not a function "
                "fn(q_fn, params, obs, learner_state) -> {name: scalar} nor its import path"
            )
        out.append(fn)
    return tuple(out)


def check_diagnostics(config: Any, updates_per_interval: int, batch_size: int) -> None:
    """Raise :class:`~qlearn.types.ConfigError` unless ``diagnostics_batch`` ≥ 1, the
    ``custom_diagnostics`` are functions (and ask for ``diagnostics``) and, with
    ``diagnostics`` on, an evaluation interval's updates (``updates_per_interval`` batches of
    ``batch_size``) give at least that many probe states before the first evaluation."""
    if config.diagnostics_batch < 1:
        raise ConfigError(f"config.diagnostics_batch = {config.diagnostics_batch} must be ≥ 1")
    if not isinstance(config.custom_diagnostics, tuple):
        raise ConfigError(
            f"config.custom_diagnostics = {config.custom_diagnostics!r} must be a tuple of "
            "functions or import paths"
        )
    custom_diagnostics(config)
    if config.custom_diagnostics and not config.diagnostics:
        raise ConfigError("config.custom_diagnostics are measured with diagnostics=true")
    batches = -(-config.diagnostics_batch // batch_size)
    if config.diagnostics and updates_per_interval < batches:
        raise ConfigError(
            f"config.diagnostics_batch = {config.diagnostics_batch} needs {batches} batches of "
            f"{batch_size} before the first evaluation, and an evaluation interval has "
            f"{updates_per_interval} updates: lower diagnostics_batch or num_evals"
        )


@struct.dataclass
class RecentBatches:
    """The last k batches the learner was trained on (leaves [k, B, ...]) and how many it has
    been shown in all."""

    batches: Any
    seen: jax.Array


def diagnostics_probe(prog: deep_q.Program, hp: Any, learner: Any, example: Any) -> Probe:
    """Learning-dynamics diagnostics at each evaluation point, on the ``diagnostics_batch``
    most recent training states (kept from the last k batches of the shapes ``example``,
    :func:`qlearn.algos.sources.example_batch`) — :func:`diagnose`."""
    size = prog.config.diagnostics_batch
    rows = example.obs.shape[0]
    count = -(-size // rows)

    def init() -> RecentBatches:
        ring = jax.tree.map(lambda s: jnp.zeros((count, *s.shape), s.dtype), example)
        return RecentBatches(ring, jnp.zeros((), jnp.int32))

    def on_batch(state: RecentBatches, batch: Any, drawn: Drawn) -> RecentBatches:
        slot = state.seen % count
        ring = jax.tree.map(lambda r, x: r.at[slot].set(x), state.batches, batch)
        return RecentBatches(ring, state.seen + 1)

    def metrics(state: RecentBatches, learner_state: Any, env_steps: jax.Array) -> dict:
        last = jax.tree.map(lambda r: r[(state.seen - 1) % count], state.batches)
        return diagnose(prog, hp, learner, learner_state, state.batches.obs, size, last, env_steps)

    return Probe("diagnostics", metrics, init, on_batch=on_batch)


def diagnosed(prog: deep_q.Program, hp: Any, source: Source, learner: Any) -> tuple[Probe, ...]:
    """The diagnostics probe of a run whose config asks for it (``diagnostics``), on the
    batches ``source`` gives ``learner``; () otherwise."""
    if not prog.config.diagnostics:
        return ()
    return (diagnostics_probe(prog, hp, learner, example_batch(source, learner)),)


def diagnose(
    prog: deep_q.Program,
    hp: Any,
    learner: Any,
    state: Any,
    obs: jax.Array,
    size: int,
    batch: Any,
    env_steps: jax.Array,
) -> dict[str, jax.Array]:
    """The diagnostics of the learner's ``state`` on the first ``size`` probe states of
    ``obs`` [k, B, ...] (k training batches of B; the network is applied one batch at a time,
    at the size training applies it) (:mod:`qlearn.diagnostics`):

    - ``dormant`` / ``dormant_zero``: the fraction of all hidden units that are τ-dormant at
      τ = ``hp.dormant_tau`` / τ = 0, and ``dormant_layer{i}`` per hidden layer (at τ);
    - ``srank`` (δ = ``hp.srank_delta``) and ``erank`` of the penultimate features;
    - ``param_norm``, ``grad_norm`` (before clipping) and ``update_ratio`` ‖θ' − θ‖/‖θ‖, of
      all parameters and ``_{layer}`` per layer group, for one update on ``batch`` (the last
      training batch) that is measured, not kept;
    - ``churn_update``: the fraction of probe states whose greedy action that update changes;
      ``churn_target`` (learners with a target network): the fraction where the online and
      target networks' greedy actions differ — the churn across (up to) one target period.
      Greedy over all actions (probe states keep no action masks).
    """
    q_fn, params = prog.q_function(hp), state.params

    def per_batch(fn: Callable[[jax.Array], Any]) -> Any:
        out = jax.lax.map(fn, obs)  # [k, B, ...]
        return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:])[:size], out)

    acts = per_batch(lambda o: diagnostics.captured_activations(prog.network.apply, params, o))
    per_layer, dormant = diagnostics.dormant_fractions(acts, hp.dormant_tau)
    flat = obs.reshape(-1, *obs.shape[2:])[:size]
    sigma = diagnostics.singular_values(diagnostics.features_of(acts, flat))  # one SVD
    srank, erank = diagnostics.ranks_of(sigma, hp.srank_delta)
    out = {
        "dormant": dormant,
        "dormant_zero": diagnostics.dormant_fractions(acts, 0.0)[1],
        **{f"dormant_layer{i}": per_layer[i] for i in range(len(acts))},
        "srank": srank.astype(jnp.float32),
        "erank": erank,
    }
    key = jax.random.fold_in(jax.random.key(DIAGNOSTICS_SEED), env_steps)
    keys = {name: jax.random.fold_in(key, i) for i, name in enumerate(learner.streams)}
    new, update = learner.update(state, batch, keys)
    for name, values in (
        ("param_norm", diagnostics.group_norms(params)),
        ("grad_norm", diagnostics.group_norms(update.grads)),
        ("update_ratio", diagnostics.update_ratios(params, new.params)),
    ):
        out |= {name if group == "all" else f"{name}_{group}": v for group, v in values.items()}
    q_now = per_batch(lambda o: q_fn(params, o))
    out["churn_update"] = diagnostics.churn(q_now, per_batch(lambda o: q_fn(new.params, o)))
    if getattr(prog.config, "target_network", False):
        q_target = per_batch(lambda o: q_fn(state.target_params, o))
        out["churn_target"] = diagnostics.churn(q_now, q_target)
    for fn in custom_diagnostics(prog.config):
        out |= custom_values(fn, fn(q_fn, params, flat, state), out)
    return out


def custom_values(fn: Callable, values: Any, built_in: dict) -> dict[str, jax.Array]:
    """A custom diagnostic's ``values`` as float32 scalars, or a ValueError naming ``fn`` if
    they are not a dict of new names to scalars."""
    name = getattr(fn, "__qualname__", repr(fn))
    if not isinstance(values, dict):
        raise ValueError(f"custom diagnostic {name} returned {type(values).__name__}, not a dict")
    out = {}
    for k, v in values.items():
        v = jnp.asarray(v, jnp.float32)
        if k in built_in or v.shape != ():
            raise ValueError(
                f"custom diagnostic {name}: '{k}' must be a new name with a scalar value "
                f"(got shape {v.shape}{', a built-in name' if k in built_in else ''})"
            )
        out[k] = v
    return out
