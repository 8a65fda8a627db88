"""The one loop every deep Q-learning algorithm runs: warm-up, evaluation intervals of
iterations, greedy evaluation, probes, reports and the resumable stages checkpoints need.

An algorithm is a composition (:class:`Agent`): its static :class:`~qlearn.algos.deep_q.
Program` and a ``build(hparams)`` that returns the three kinds of parts, each a record of pure
functions closed over the (possibly traced) hyperparameters:

- a **source** of batches (:class:`~qlearn.algos.sources.Source`: online replay for DQN, an
  on-policy rollout with its λ-targets for PQN), which owns the envs;
- a **learner** (:class:`~qlearn.algos.learners.Learner`): the loss, the optimiser and the
  target network, which owns the parameters;
- **probes** (:class:`~qlearn.algos.probes.Probe`): measurements beside training (a finite
  MDP's ground truth, noisy layers' σ) that never change what is learned.

One iteration (:func:`iteration`) is::

    source.next      act in the envs, and plan the iteration's U updates
    split_streams    the named per-update PRNG keys the parts asked for
    U × (source.batch -> learner.update -> source.feedback, probes see the batch drawn)

and the random streams are split in one place, in one order (:func:`run_keys`,
:func:`split_streams`), so a part that needs no key moves no other part's numbers.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from qlearn import hparams as hparams_lib
from qlearn.algos import deep_q, evaluation, rollout
from qlearn.algos.learners import Learner
from qlearn.algos.probes import Probe
from qlearn.algos.sources import Source

STREAMS = ("loss", "noise", "model", "reinit", "dataset")
"""The per-update key streams, in the order they are split off the loop key after the
source's own split: ``loss`` (a sampling loss's key, IQN's τ), ``noise`` (a noisy network's
online and target noise), ``model`` (coverage replay's model samples), ``reinit`` (an
intervention's fresh parameters), ``dataset`` (a dataset's samples mixed into replay)."""


class RunKeys(NamedTuple):
    """The four keys a run's key splits into, in this order."""

    init: jax.Array
    """the learner's parameters."""
    reset: jax.Array
    """the source's envs."""
    loop: jax.Array
    """the loop key, consumed by acting and split per iteration (:func:`split_streams`)."""
    eval: jax.Array
    """the greedy evaluations, one key per evaluation point."""


def run_keys(key: jax.Array) -> RunKeys:
    """A run's key split into :class:`RunKeys`."""
    return RunKeys(*jax.random.split(key, 4))


def split_streams(
    key: jax.Array, needed: tuple[str, ...], count: int
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The ``count`` per-update keys of each stream of ``needed``, split off ``key`` in the
    order of :data:`STREAMS` (only the needed ones): ``(key', {name: keys [count]})``."""
    unknown = set(needed) - set(STREAMS)
    if unknown:
        raise ValueError(f"unknown key streams {sorted(unknown)}; known: {', '.join(STREAMS)}")
    out = {}
    for name in STREAMS:
        if name in needed:
            key, k = jax.random.split(key)
            out[name] = jax.random.split(k, count)
    return key, out


class Pretraining(NamedTuple):
    """A stage before a run's first interval: ``learner`` trained for ``iterations`` of
    ``source`` (offline-to-online: a dataset's updates before the envs are met). Its metrics
    are not kept; its learner state is where the run's learner starts."""

    source: Source
    learner: Learner
    iterations: int


PRETRAINING_SALT = 1
"""What a run's key is folded with (``jax.random.fold_in``) for its pretraining's own
:class:`RunKeys`: the pretraining of the run of ``key`` is the run of ``fold_in(key, 1)`` of its
source and learner, so its network is the one an offline run of that key learns."""


class Parts(NamedTuple):
    """What :attr:`Agent.build` returns for one set of hyperparameters."""

    source: Source
    learner: Learner
    probes: tuple[Probe, ...] = ()
    pretraining: Pretraining | None = None


@dataclasses.dataclass(frozen=True)
class Agent:
    """A deep Q-learning algorithm as the driver runs it."""

    prog: deep_q.Program
    build: Callable[[Any], Parts]
    """hyperparameters (arrays) -> the parts, closed over them."""
    iterations_per_eval: int
    """iterations (one ``source.next`` and its updates) per evaluation interval."""
    count: Callable[[Any], jax.Array] = lambda state: state.source.loop.env_steps
    """run state -> the units of progress done so far (what ``progress`` is told per
    interval): env steps, or an offline learner's updates."""


@struct.dataclass
class RunState:
    """Everything a run carries from one iteration to the next."""

    source: Any
    """the source's state (``source.loop``: the training envs)."""
    learner: Any
    """the learner's state (``learner.params``: θ)."""
    probes: dict[str, Any]
    """each probe's state, by the probe's name."""
    key: jax.Array
    """the loop key."""


def init(agent: Agent, key: jax.Array, hp: Any) -> RunState:
    """The state of the run of ``key`` before its first interval: the learner's parameters
    (initialised, or after the parts' :class:`Pretraining`), the source's envs (and whatever it
    collects before the first update: DQN's warm-up), the probes' counters."""
    hp = hparams_lib.to_arrays(hp)
    parts = agent.build(hp)
    keys = run_keys(key)
    if parts.pretraining is None:
        learner = parts.learner.init(keys.init)
    else:
        learner = pretrain(parts.pretraining, jax.random.fold_in(key, PRETRAINING_SALT))
    source, loop_key, trace = parts.source.init(learner.params, keys.reset, keys.loop)
    probes = {p.name: p.on_steps(p.init(), trace) for p in parts.probes}
    return RunState(source, learner, probes, loop_key)


def pretrain(pre: Pretraining, key: jax.Array) -> Any:
    """The learner state after ``pre.iterations`` iterations of ``pre.source`` from a learner
    initialised by ``key`` (its keys :func:`run_keys` as a run's; no probes, no evaluation)."""
    keys = run_keys(key)
    learner = pre.learner.init(keys.init)
    source, loop_key, _ = pre.source.init(learner.params, keys.reset, keys.loop)
    state = RunState(source, learner, {}, loop_key)
    body = functools.partial(iteration, Parts(pre.source, pre.learner))
    state, _ = jax.lax.scan(body, state, length=pre.iterations)
    return state.learner


def iteration(
    parts: Parts, state: RunState, _: Any = None
) -> tuple[RunState, dict[str, jax.Array]]:
    """One ``source.next`` and the updates it plans (metrics: leaves [*source.plan_shape])."""
    source, learner = parts.source, parts.learner
    src, key, plan, trace = source.next(state.source, state.learner.params, state.key)
    probes = {p.name: p.on_steps(state.probes[p.name], trace) for p in parts.probes}
    needed = learner.streams + source.streams
    key, streams = split_streams(key, needed, jax.tree.leaves(plan)[0].shape[0])

    def update(carry: tuple, x: dict[str, Any]) -> tuple[tuple, dict[str, jax.Array]]:
        src, lrn, probe_states = carry
        batch, drawn = source.batch(src, x)
        lrn, out = learner.update(lrn, batch, x)
        src = source.feedback(src, drawn, out)
        probe_states = {
            p.name: p.on_batch(probe_states[p.name], batch, drawn) for p in parts.probes
        }
        return (src, lrn, probe_states), out.metrics

    (src, lrn, probes), m = jax.lax.scan(
        update, (src, state.learner, probes), {"plan": plan, **streams}
    )
    m = jax.tree.map(lambda v: v.reshape(*source.plan_shape, *v.shape[1:]), m)
    return RunState(src, lrn, probes, key), m


def interval(
    agent: Agent,
    parts: Parts,
    key: jax.Array,
    hp: Any,
    state: RunState,
    xs: tuple[jax.Array, jax.Array],
) -> tuple[RunState, dict[str, jax.Array]]:
    """One evaluation interval of the run of ``key``: ``iterations_per_eval`` iterations, then
    the greedy evaluation with key ``xs[0]``, the probes' metrics and the report
    (:func:`evaluation.report`) of the progress :attr:`Agent.count` made; ``xs[1]`` is the
    interval's index (the first one counts the steps the source took before it, DQN's
    warm-up)."""
    prog = agent.prog
    k_eval_i, index = xs
    loop = state.source.loop
    done_before = jnp.where(index == 0, 0, agent.count(state))
    state = state.replace(probes={p.name: p.start(state.probes[p.name]) for p in parts.probes})
    state, m = jax.lax.scan(
        functools.partial(iteration, parts), state, length=agent.iterations_per_eval
    )
    loop, params = state.source.loop, state.learner.params
    eval_return, metrics = evaluation.evaluate_interval(prog, hp, params, loop, k_eval_i, m)
    for probe in parts.probes:
        measured = probe.metrics(state.probes[probe.name], state.learner, loop.env_steps)
        if clash := sorted(set(measured) & set(metrics)):
            raise ValueError(f"probe '{probe.name}' reports {clash}, which the run already has")
        metrics |= measured
    done = agent.count(state) - done_before
    evaluation.report(prog, key, hp, index, done, eval_return, metrics)
    loop = loop.replace(episodes=rollout.clear_completed(loop.episodes))
    return state.replace(source=state.source.replace(loop=loop)), metrics


def run_intervals(
    agent: Agent,
    key: jax.Array,
    hp: Any,
    state: RunState,
    first: jax.Array,
    count: int,
) -> tuple[RunState, dict[str, jax.Array]]:
    """Evaluation intervals ``first .. first + count - 1`` of the run of ``key`` (metrics
    [count]); the evaluation keys are the run's, whichever call runs an interval."""
    hp = hparams_lib.to_arrays(hp)
    index = first + jnp.arange(count)
    eval_keys = jax.random.split(run_keys(key).eval, agent.prog.config.num_evals)[index]
    body = functools.partial(interval, agent, agent.build(hp), key, hp)
    return jax.lax.scan(body, state, (eval_keys, index))


def make_stages(agent: Agent) -> tuple[Callable, Callable]:
    """The two stages of a run, so that a long run can stop and resume at evaluation points
    (:mod:`qlearn.checkpoint`):

    ``init(key, hp) -> state`` (:func:`init`);
    ``run_intervals(key, hp, state, first, count) -> (state, metrics)``: evaluation intervals
    ``first .. first + count - 1`` (``count`` static; metrics [count]; :func:`run_intervals`).
    ``train`` is ``run_intervals(key, hp, init(key, hp), 0, num_evals)``, and running the
    intervals in several calls gives the same numbers."""
    return functools.partial(init, agent), functools.partial(run_intervals, agent)


def make_train(agent: Agent) -> Callable[[jax.Array, Any], tuple[RunState, dict[str, jax.Array]]]:
    """``train(key, hparams) -> (final_state, metrics)``: :func:`init`, then every evaluation
    interval (metrics [num_evals])."""
    start, run = make_stages(agent)

    def train(key: jax.Array, hp: Any) -> tuple[RunState, dict[str, jax.Array]]:
        return run(key, hp, start(key, hp), jnp.int32(0), agent.prog.config.num_evals)

    return train
