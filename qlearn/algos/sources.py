"""Sources of batches: where a deep Q-learner's data come from. A source owns the envs it acts
in (:class:`EnvLoop`) and whatever it keeps of their transitions.

A source is a record of pure functions (:class:`Source`), closed over the run's
hyperparameters, like an optax ``GradientTransformation``:

    init(params, reset_key, loop_key) -> (state, loop_key, trace)
        the envs, and whatever is collected before the first update (DQN's warm-up);
    next(state, params, loop_key) -> (state, loop_key, plan, trace)
        act in the envs with the learner's ``params``, and plan the iteration's U updates
        (``plan``: leaves [U, ...], the driver scans over it);
    batch(state, x) -> (batch, drawn)
        the batch of one update, from its slice ``x["plan"]`` of the plan and its keys, and
        what the source knows of where it came from (:class:`Drawn`);
    feedback(state, drawn, update) -> state
        what the update tells the source (a prioritised replay's new priorities).

``trace`` is what the env steps show the probes (:mod:`qlearn.algos.probes`): a
:class:`StepTrace` of each step's (state, action) where the source was asked to record it, else
None. Two sources: :func:`replay_source` (DQN: ε-greedy steps into a replay buffer, uniform,
prioritised or coverage sampling, n-step items) and :func:`rollout_source` (PQN: on-policy
rollouts with their Q(λ) targets, in shuffled minibatches).

This module holds the contract and what every source shares (the envs, one ε-greedy step);
the sources are :mod:`qlearn.algos.replay_source` and :mod:`qlearn.algos.rollout_source`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from qlearn import recurrent
from qlearn.algos import deep_q, rollout
from qlearn.algos.learners import Update
from qlearn.types import Params, Transition


@struct.dataclass
class EnvLoop:
    """The envs a source acts in: their state, the observations to act on [N, ...], the env
    steps taken (summed over the envs), the training episodes' returns and the agent's memory
    of each env."""

    env_state: Any
    obs: jax.Array
    env_steps: jax.Array
    episodes: rollout.EpisodeStats
    memory: recurrent.Memory | None = None
    """a recurrent network's memory of each env (:data:`qlearn.recurrent.Memory`); None for a
    feed-forward one."""


@struct.dataclass
class StepTrace:
    """The finite MDP's state and the action of each env step a source took, int32 [k, N]."""

    state: jax.Array
    action: jax.Array


@struct.dataclass
class Drawn:
    """What a source knows of a batch it drew beyond the batch itself (its fields None where
    the source does not keep them)."""

    index: jax.Array | None = None
    """int32 [B]: the replay slot of each sample (prioritised replay's feedback sets their
    priorities)."""
    state: jax.Array | None = None
    """int32 [B]: the finite MDP's state of each sample's ``obs``, kept where the source
    records states (the finite-MDP probe counts the replayed weighting by it)."""


def no_feedback(state: Any, drawn: Drawn, update: Update) -> Any:
    """The default :attr:`Source.feedback`: the updates tell the source nothing."""
    return state


@dataclasses.dataclass(frozen=True)
class Source:
    """The source contract (see the module docstring)."""

    init: Callable[[Params, jax.Array, jax.Array], tuple[Any, jax.Array, StepTrace | None]]
    next: Callable[[Any, Params, jax.Array], tuple[Any, jax.Array, Any, StepTrace | None]]
    batch: Callable[[Any, dict[str, Any]], tuple[Any, Drawn]]
    plan_shape: tuple[int, ...]
    """how the U updates of an iteration are arranged, for their metrics (PQN: epochs ×
    minibatches)."""
    feedback: Callable[[Any, Drawn, Update], Any] = no_feedback
    streams: tuple[str, ...] = ()
    """the per-update key streams ``batch`` reads."""


def start_envs(prog: deep_q.Program, key: jax.Array) -> EnvLoop:
    """``prog.config.num_envs`` fresh envs, nothing counted yet (a recurrent network's memory
    at its initial carry, every env at an episode's start)."""
    num_envs = prog.config.num_envs
    obs, env_state = rollout.reset_envs(prog.env, prog.env_params, key, num_envs)
    zero = jnp.zeros((), jnp.int32)
    memory = recurrent.initial_memory(prog.network, num_envs) if prog.recurrent else None
    return EnvLoop(env_state, obs, zero, rollout.init_episode_stats(num_envs), memory)


def act(
    prog: deep_q.Program, hp: Any, params: Params, loop: EnvLoop, key: jax.Array
) -> tuple[jax.Array, EnvLoop, Transition]:
    """One ε-greedy step of the envs at ε(``loop.env_steps``) (:func:`deep_q.explore_step`):
    ``(key', loop', transitions [N])``."""
    epsilon = deep_q.epsilon_schedule(prog.config, hp)(loop.env_steps)
    key, _, obs, env_state, tr, memory = deep_q.explore_step(
        prog, hp, params, key, loop.env_state, loop.obs, epsilon, loop.memory
    )
    done = tr.terminated | tr.truncated
    loop = EnvLoop(
        env_state,
        obs,
        loop.env_steps + prog.num_envs,
        rollout.record(loop.episodes, tr.reward, done),
        memory,
    )
    return key, loop, tr


def example_batch(source: Source, learner: Any) -> Any:
    """The shapes and dtypes (``jax.ShapeDtypeStruct`` leaves) of one batch ``source`` gives
    ``learner``: traced, never run (what a probe that keeps batches allocates)."""
    key = jax.random.key(0)
    params = jax.eval_shape(learner.init, key).params
    state = jax.eval_shape(lambda p: source.init(p, key, key)[0], params)
    plan = jax.eval_shape(lambda s, p: source.next(s, p, key)[2], state, params)
    x = {"plan": jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape[1:], v.dtype), plan)}
    x |= {name: key for name in source.streams}
    return jax.eval_shape(lambda s, x: source.batch(s, x)[0], state, x)
