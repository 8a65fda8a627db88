"""PQN's source of batches: on-policy rollouts of the envs, their Q(λ) targets under the
parameters that acted, and shuffled minibatches of them (:func:`rollout_source`)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from qlearn import policies, recurrent, targets
from qlearn.algos import deep_q
from qlearn.algos.sources import Drawn, EnvLoop, Source, act, start_envs
from qlearn.types import Params, ReturnBatch, Transition


@struct.dataclass
class RolloutState:
    """A rollout source's state: its envs (a rollout is used up by the iteration that made
    it, so nothing else is kept)."""

    loop: EnvLoop


def q_lambda_targets(
    reward: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    q_next_max: jax.Array,
    gamma: jax.Array | float,
    lam: jax.Array | float,
) -> jax.Array:
    """Q(λ) targets of a rollout, all arrays [T, N] (time first):

        G_t = r_t + γ(1 − terminated_t) [(1 − λ_t) q_next_max_t + λ_t G_{t+1}],
        λ_t = λ(1 − truncated_t),  G_T := q_next_max_{T−1} (the bootstrap past the end),

    where ``q_next_max_t = max_a Q(s_{t+1}, a)`` is the value of the state reached at step t
    (the final observation when the step was truncated). λ = 0 gives the one-step Q-learning
    targets; λ = 1 the discounted return to the end of each episode or of the rollout.
    """
    discount = gamma * (1.0 - terminated.astype(jnp.float32))
    lam_t = lam * (1.0 - truncated.astype(jnp.float32))
    return jax.vmap(targets.lambda_returns, in_axes=1, out_axes=1)(
        reward, discount, q_next_max, lam_t
    )


def rollout_batch(prog: deep_q.Program, hp: Any, params: Params, tr: Transition) -> ReturnBatch:
    """The N·T training pairs of a rollout ``tr`` (leaves [T, N, ...]): observations, actions
    and their Q(λ) targets (:func:`q_lambda_targets`) under ``params``, flattened."""
    config, obs_shape = prog.config, prog.obs_shape
    size = config.num_envs * config.rollout_steps
    # The parameters are fixed during the rollout, so the values of the T·N successor
    # states are one batched forward pass after it rather than T small ones inside it.
    q_next = prog.q_function(hp)(params, tr.next_obs.reshape(size, *obs_shape))
    if tr.next_action_mask is not None:  # max over the actions available there
        q_next = policies.masked(q_next, tr.next_action_mask.reshape(size, -1))
    q_next_max = jnp.max(q_next, axis=-1).reshape(config.rollout_steps, config.num_envs)
    g = q_lambda_targets(tr.reward, tr.terminated, tr.truncated, q_next_max, hp.gamma, hp.lam)
    return ReturnBatch(
        obs=tr.obs.reshape(size, *obs_shape), action=tr.action.reshape(-1), target=g.reshape(-1)
    )


def sequence_batch(
    prog: deep_q.Program,
    hp: Any,
    params: Params,
    tr: Transition,
    memory: recurrent.Memory,
    first: jax.Array,
) -> ReturnBatch:
    """:func:`rollout_batch` of a recurrent network: the rollout's N sequences of T steps
    (leaves [T, N, ...], unflattened) with their Q(λ) targets and ``memory`` = (the carry at
    the rollout's start [N, ...], ``first`` [T, N]: step t starts an episode). The value of
    each next state is the network's one step on it from the carry that has seen o_0..o_t —
    for a step that ended an episode, on the final observation, before any reset (the rows
    ahead of :func:`qlearn.recurrent.rows_q_function`)."""
    q_fn, steps, num_envs = prog.q_function(hp), *first.shape
    size = steps * num_envs
    seqs = recurrent.Sequences(tr.obs, tr.next_obs, first, memory[0])
    q_next = recurrent.rows_q_function(q_fn, seqs)(params, size + jnp.arange(size))
    if tr.next_action_mask is not None:
        q_next = policies.masked(q_next, tr.next_action_mask.reshape(size, -1))
    q_next_max = jnp.max(q_next, axis=-1).reshape(steps, num_envs)
    g = q_lambda_targets(tr.reward, tr.terminated, tr.truncated, q_next_max, hp.gamma, hp.lam)
    return ReturnBatch(tr.obs, tr.action, g, (memory[0], first))


def sequence_minibatches(data: ReturnBatch, order: jax.Array) -> ReturnBatch:
    """The minibatches of whole sequences ``order`` [U, n] (env indices) picks from a rollout's
    :func:`sequence_batch` ``data``: leaves [U, T·n, ...] (time-major rows), the carries
    [U, n, ...] and the first flags [U, T, n]."""
    steps, count = data.action.shape[0], order.shape[1]

    def pick(x: jax.Array) -> jax.Array:  # [T, N, ...] -> [U, T·n, ...]
        x = jnp.moveaxis(x[:, order], 1, 0)
        return x.reshape(order.shape[0], steps * count, *x.shape[3:])

    carry, first = data.memory
    return ReturnBatch(
        pick(data.obs),
        pick(data.action),
        pick(data.target),
        (jax.tree.map(lambda c: c[order], carry), jnp.moveaxis(first[:, order], 1, 0)),
    )


def rollout_source(prog: deep_q.Program, hp: Any) -> Source:
    """PQN's source. ``next``: a rollout of T = ``rollout_steps`` ε-greedy steps of the N
    envs with the learner's parameters, its Q(λ) targets under the same parameters
    (:func:`rollout_batch`), and ``num_epochs`` shuffles of its N·T pairs, each cut into
    ``num_minibatches`` minibatches M: the plan is the minibatches themselves, leaves
    [epochs·M, N·T / M, ...] (every epoch's copy at once: the updates read them as scan
    slices, which keeps the arithmetic of nested epoch and minibatch loops bitwise). With a
    recurrent network, each minibatch is N / M of the envs' whole sequences instead, with the
    carry each started the rollout with (:func:`sequence_batch`, :func:`sequence_minibatches`;
    PQN-RNN, Gallici et al. 2024)."""
    config = prog.config
    size = config.num_envs * config.rollout_steps
    epochs, minibatches = config.num_epochs, config.num_minibatches

    def init(params: Params, reset_key: jax.Array, key: jax.Array) -> tuple:
        return RolloutState(start_envs(prog, reset_key)), key, None

    def next_(state: RolloutState, params: Params, key: jax.Array) -> tuple:
        def step(carry: tuple, _: Any) -> tuple[tuple, tuple]:
            loop, key = carry
            first = None if loop.memory is None else loop.memory[1]
            key, loop, tr = act(prog, hp, params, loop, key)
            return (loop, key), (tr, first)

        (loop, key), (tr, first) = jax.lax.scan(
            step, (state.loop, key), length=config.rollout_steps
        )
        key, k_epochs = jax.random.split(key)
        rows = size if first is None else config.num_envs  # transitions or whole sequences
        orders = jax.vmap(lambda k: jax.random.permutation(k, rows))(
            jax.random.split(k_epochs, epochs)
        )
        order = orders.reshape(epochs * minibatches, rows // minibatches)
        if first is not None:
            data = sequence_batch(prog, hp, params, tr, state.loop.memory, first)
            return RolloutState(loop), key, sequence_minibatches(data, order), None
        data = rollout_batch(prog, hp, params, tr)
        return RolloutState(loop), key, jax.tree.map(lambda v: v[order], data), None

    def batch(state: RolloutState, x: dict[str, Any]) -> tuple[ReturnBatch, Drawn]:
        return x["plan"], Drawn()

    return Source(init, next_, batch, (epochs, minibatches))
