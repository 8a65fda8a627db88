"""Probes: measurements the driver takes beside training, which never change what is learned.

A probe is a record of pure functions (:class:`Probe`) over its own state:

    init() -> state
    start(state) -> state                   # at the start of each evaluation interval
    on_steps(state, trace) -> state         # the source's env steps (a StepTrace, or None)
    on_batch(state, batch, drawn) -> state  # each update's batch, and where it came from
    metrics(state, params, env_steps) -> dict   # at each evaluation point

Two probes: :func:`finite_mdp_probe` (a finite MDP's exact value errors, visits and the
replayed weighting, and the learned return distributions' distance to the truth) and
:func:`noise_probe` (the mean σ of noisy layers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from qlearn import dp, envs, noisynet, policies
from qlearn import return_distributions as rd
from qlearn.algos import deep_q
from qlearn.algos.sources import Drawn, StepTrace
from qlearn.types import Params


def _same(state: Any, *_: Any) -> Any:
    """The default of a probe's hooks: nothing changes."""
    return state


@dataclasses.dataclass(frozen=True)
class Probe:
    """The probe contract (see the module docstring)."""

    name: str
    """its key in the run state's ``probes`` (``final_state.probes[name]``)."""
    metrics: Callable[[Any, Params, jax.Array], dict[str, jax.Array]]
    init: Callable[[], Any] = tuple
    start: Callable[[Any], Any] = _same
    on_steps: Callable[[Any, StepTrace | None], Any] = _same
    on_batch: Callable[[Any, Any, Drawn], Any] = _same


def noise_probe() -> Probe:
    """``noise_sigma``: the mean |σ| of the noisy layers' noise scales
    (:func:`qlearn.noisynet.mean_noise_scale`)."""

    def metrics(state: Any, params: Params, env_steps: jax.Array) -> dict[str, jax.Array]:
        return {"noise_sigma": noisynet.mean_noise_scale(params)}

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


def finite_mdp_probe(prog: deep_q.Program, hp: Any, truth: dict[str, jax.Array]) -> Probe:
    """The exact errors of a run on a finite MDP at each evaluation point, against ``truth``
    (:func:`ground_truth`): :func:`qlearn.dp.error_metrics` of q̂ on every state (the
    μ-weighted value errors under the current ε-greedy behaviour, the visits and the
    interval's replayed batches; the greedy policy's value and return) and, where ``truth``
    has ``eta``, :func:`qlearn.return_distributions.distance_metrics` of the learned return
    distributions (an iqn head at its midpoints τ̂). The source must trace its steps and
    keep each item's state index (``record_states``: :attr:`Drawn.state`)."""
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

    def metrics(counts: FiniteCounts, params: Params, env_steps: jax.Array) -> dict:
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
        return out

    return Probe("finite_mdp", metrics, init, start, on_steps, on_batch)
