"""Acting in vectorised gymnax environments: stepping, episode-return accounting and greedy
evaluation. Shared by the algorithms; everything is a pure function of arrays and keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from qlearn import envs, policies, recurrent
from qlearn.types import Params, QFn, Transition


@struct.dataclass
class EpisodeStats:
    """Running returns of each env, and the returns of episodes completed since the last clear.

    Attributes:
      returns: float32 [N], return so far of each env's current episode.
      completed_sum: float32 [], sum of the returns of completed episodes.
      completed_count: int32 [], number of completed episodes.
    """

    returns: jax.Array
    completed_sum: jax.Array
    completed_count: jax.Array


def init_episode_stats(num_envs: int) -> EpisodeStats:
    return EpisodeStats(
        jnp.zeros(num_envs, jnp.float32), jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
    )


def record(stats: EpisodeStats, reward: jax.Array, done: jax.Array) -> EpisodeStats:
    """Add one step's rewards [N]; episodes with ``done`` [N] are counted and restarted.

    Only completed episodes enter ``completed_sum``: an episode in progress (or an env that
    has just reset) contributes nothing.
    """
    returns = stats.returns + reward
    return EpisodeStats(
        returns=jnp.where(done, 0.0, returns),
        completed_sum=stats.completed_sum + jnp.sum(jnp.where(done, returns, 0.0)),
        completed_count=stats.completed_count + jnp.sum(done, dtype=jnp.int32),
    )


def mean_completed_return(stats: EpisodeStats) -> jax.Array:
    """Mean return of the completed episodes, NaN when none completed."""
    count = stats.completed_count
    return jnp.where(count > 0, stats.completed_sum / jnp.maximum(count, 1), jnp.nan)


def clear_completed(stats: EpisodeStats) -> EpisodeStats:
    """Forget the completed episodes, keep the ones in progress."""
    return stats.replace(
        completed_sum=jnp.zeros_like(stats.completed_sum),
        completed_count=jnp.zeros_like(stats.completed_count),
    )


def reset_envs(env: Any, env_params: Any, key: jax.Array, num_envs: int) -> tuple[jax.Array, Any]:
    """Reset ``num_envs`` environments: (obs [N, ...], env_state)."""
    return jax.vmap(env.reset, (0, None))(jax.random.split(key, num_envs), env_params)


def step_envs(
    env: Any, env_params: Any, keys: jax.Array, env_state: Any, obs: jax.Array, action: jax.Array
) -> tuple[jax.Array, Any, Transition]:
    """Step N environments (auto-reset) with one key each (``keys`` [N]) and return (obs to
    act on next, env_state, transitions).

    The transition's ``next_obs`` is ``info["final_observation"]``: the true successor state
    even when the episode ended, while the returned obs is the first of the next episode; its
    ``next_action_mask`` is ``info["action_mask"]``, that state's available actions (envs
    with masks only).
    """
    next_obs, env_state, reward, terminated, truncated, info = envs.step_batch(
        env, env_params, keys, env_state, action
    )
    transition = Transition(
        obs=obs,
        action=action,
        reward=reward.astype(jnp.float32),
        next_obs=info["final_observation"],
        terminated=terminated,
        truncated=truncated,
        steps=jnp.ones_like(action, jnp.int32),
        next_action_mask=info.get("action_mask"),
    )
    return next_obs, env_state, transition


def evaluate(
    q_fn: QFn, params: Params, env: Any, env_params: Any, key: jax.Array, num_episodes: int
) -> jax.Array:
    """Mean undiscounted return of ``num_episodes`` greedy (ε = 0) episodes on fresh envs,
    greedy over the available actions (:func:`qlearn.envs.action_masks`); see
    :func:`episode_returns`."""
    return evaluate_episodes(q_fn, params, env, env_params, key, num_episodes)[0]


def evaluate_episodes(
    q_fn: QFn,
    params: Params,
    env: Any,
    env_params: Any,
    key: jax.Array,
    num_episodes: int,
    gamma: jax.Array | None = None,
    memory: recurrent.Memory | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """:func:`evaluate`'s mean return, and the mean over its episodes of what the env reports
    of an episode at its end (``env.episode_metrics(state)``, e.g. a Craftax achievement's
    rate; none for most envs): (mean return [], {name: mean []}). A recurrent ``q_fn`` acts
    with its ``memory`` from the episodes' start (:data:`qlearn.recurrent.Memory`, [N] =
    ``num_episodes``).

    With ``gamma``, also ``overestimation``: the mean over every (s_t, a_t) the greedy
    episodes visit of q̂(s_t, a_t) − G_t, G_t the γ-discounted return obtained from s_t (van
    Hasselt et al. 2016's measurement), computed in the same episodes
    (:func:`episode_outcomes`); the episodes and their returns are the same as without it."""

    def values(obs: jax.Array, mem: Any) -> tuple[jax.Array, Any]:
        if mem is None:
            return q_fn(params, obs), None
        q, carry = recurrent.step_values(q_fn, params, mem, obs)
        return q, (carry, jnp.zeros_like(mem[1]))  # no auto-reset: one episode per env

    def greedy(_: jax.Array, obs: jax.Array, mask: jax.Array | None, mem: Any = None) -> Any:
        q, mem = values(obs, mem)
        action = policies.greedy(q, mask)
        return action if memory is None else (action, mem)

    if gamma is None:
        returns, ends = episode_outcomes(greedy, env, env_params, key, num_episodes, None, memory)
        return jnp.mean(returns), {k: jnp.mean(v) for k, v in ends.items()}

    def valued(_: jax.Array, obs: jax.Array, mask: jax.Array | None, mem: Any = None) -> tuple:
        q, mem = values(obs, mem)
        out = policies.greedy(q, mask), jnp.max(policies.masked(q, mask), axis=-1)
        return out if memory is None else (out, mem)

    returns, ends = episode_outcomes(valued, env, env_params, key, num_episodes, gamma, memory)
    gap, steps = ends.pop("value_gap"), ends.pop("steps")
    out = {k: jnp.mean(v) for k, v in ends.items()}
    return jnp.mean(returns), out | {"overestimation": jnp.sum(gap) / jnp.sum(steps)}


def random_policy_returns(
    env: Any, env_params: Any, key: jax.Array, num_episodes: int
) -> jax.Array:
    """[num_episodes] undiscounted returns of the uniformly random policy (over the available
    actions): the "random" end of a normalised score."""
    num_actions = env.action_space(env_params).n

    def uniform(k: jax.Array, obs: jax.Array, mask: jax.Array | None) -> jax.Array:
        words = jax.random.bits(k, (obs.shape[0], policies.WORDS_PER_DECISION), jnp.uint32)
        q = jnp.zeros((obs.shape[0], num_actions))
        return policies.epsilon_greedy(words, q, jnp.float32(1.0), mask)

    return episode_returns(uniform, env, env_params, key, num_episodes)


def episode_returns(
    act: Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array],
    env: Any,
    env_params: Any,
    key: jax.Array,
    num_episodes: int,
) -> jax.Array:
    """[num_episodes] undiscounted returns of the policy ``act(key, obs [N, ...], mask) ->
    actions [N]`` on fresh envs; see :func:`episode_outcomes`."""
    return episode_outcomes(act, env, env_params, key, num_episodes)[0]


def episode_outcomes(
    act: Callable[[jax.Array, jax.Array, jax.Array | None], Any],
    env: Any,
    env_params: Any,
    key: jax.Array,
    num_episodes: int,
    gamma: jax.Array | None = None,
    memory: Any = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The undiscounted returns [num_episodes] of the policy ``act(key, obs [N, ...], mask) ->
    actions [N]`` on fresh envs (with a ``memory``, the policy's state from the episodes'
    start: ``act(key, obs, mask, memory) -> (actions, memory')``), and what the env reports of
    each episode at its end: where
    the env has ``episode_metrics(state) -> {name: []}``, those of the state each episode ended
    in ({name: [num_episodes]}), else {}.

    Runs until every episode has ended (termination or the env's time limit), so its cost
    follows episode length rather than a fixed horizon. It steps with the env's ``step_env``
    (no auto-reset: an ended episode's env is never used again), which spares the reset state
    gymnax's ``step`` draws at every step. ``act``'s key is folded off the step's, so a policy
    that ignores it leaves every random stream as it is.

    With ``gamma``, ``act`` returns (actions, v [N]), v its own estimate of the value of the
    action it takes, and each episode also reports ``steps`` (its length T) and ``value_gap``
    = Σ_{t<T} (v_t − G_t), G_t = Σ_{k≥t} γ^{k−t} r_k its discounted return from step t — summed
    forward, as Σ_t G_t = Σ_k r_k Σ_{j≤k} γʲ. An episode cut by the time limit completes each
    G_t with γ^{T−t} v_T, v_T the policy's estimate at the state it was cut in (a truncation
    bootstraps, as in training); a terminated one is the Monte-Carlo return alone.
    """
    k_reset, k_loop = jax.random.split(key)
    obs, state = reset_envs(env, env_params, k_reset, num_episodes)
    zeros = jnp.zeros(num_episodes, jnp.float32)
    done = jnp.zeros(num_episodes, bool)
    step = jax.vmap(env.step_env, (0, 0, 0, None))
    truncated = jax.vmap(env.is_truncated, (0, None))
    at_end = jax.vmap(env.episode_metrics) if hasattr(env, "episode_metrics") else None
    ends = {} if at_end is None else at_end(state)
    sums = None if gamma is None else ValueGap.zeros(num_episodes)

    def cond(carry):
        *_, done, _, _, t, _ = carry
        return jnp.logical_and(~jnp.all(done), t <= env_params.max_steps_in_episode)

    def policy(k: jax.Array, obs: jax.Array, mask: Any, mem: Any) -> tuple[Any, Any]:
        return (act(k, obs, mask), None) if mem is None else act(k, obs, mask, mem)

    def body(carry):
        key, obs, state, returns, done, ends, sums, t, mem = carry
        keys = jax.random.split(key, num_episodes + 1)  # one draw: next key and N step keys
        mask = envs.action_masks(env, env_params, state)
        action, mem = policy(jax.random.fold_in(keys[0], 1), obs, mask, mem)
        if sums is not None:
            action, value = action
        obs, state, reward, terminated, _ = step(keys[1:], state, action, env_params)
        returns = returns + jnp.where(done, 0.0, reward.astype(jnp.float32))
        ended = ~done & (terminated | truncated(state, env_params))
        if sums is not None:
            sums = sums.step(value, reward, done, ended & ~terminated, gamma)
        if at_end is not None:  # the state an episode ends in, kept from then on
            now = at_end(state)
            ends = {k: jnp.where(ended, now[k], v) for k, v in ends.items()}
        return keys[0], obs, state, returns, done | ended, ends, sums, t + 1, mem

    carry = (k_loop, obs, state, zeros, done, ends, sums, jnp.zeros((), jnp.int32), memory)
    key, obs, state, returns, _, ends, sums, _, mem = jax.lax.while_loop(cond, body, carry)
    if sums is not None:  # the episodes cut at the last step: their final states' estimates
        (_, value), _ = policy(key, obs, envs.action_masks(env, env_params, state), mem)
        sums = sums.settle(value)
        ends = ends | {"value_gap": sums.gap, "steps": sums.steps}
    return returns, ends


@struct.dataclass
class ValueGap:
    """The forward sums of :func:`episode_outcomes`'s ``value_gap``, per episode [N]: the gap
    Σ_t v_t − Σ_k r_k c_k − (the truncation bootstraps Σ_t γ^{T−t} v_T), c_k = Σ_{j≤k} γʲ
    (``discounts``, of the last step), the steps, and of an episode cut at the last step its
    bootstrap's weight γ·c_{T−1} until v_T is known (``pending``)."""

    gap: jax.Array
    steps: jax.Array
    discounts: jax.Array
    pending: jax.Array

    @classmethod
    def zeros(cls, n: int) -> ValueGap:
        z = jnp.zeros(n, jnp.float32)
        return cls(z, z, z, z)

    def settle(self, value: jax.Array) -> ValueGap:
        """The bootstraps of the episodes cut at the previous step, v_T = ``value``."""
        return self.replace(gap=self.gap - self.pending * value, pending=jnp.zeros_like(value))

    def step(
        self,
        value: jax.Array,
        reward: jax.Array,
        done: jax.Array,
        cut: jax.Array,
        gamma: jax.Array,
    ) -> ValueGap:
        """One step of every env: the value ``value`` of the action taken, its ``reward``,
        the envs already ``done`` before it (not counted) and those ``cut`` by the time limit
        at it (an episode cut at the previous step takes ``value`` as its v_T first)."""
        live = (~done).astype(jnp.float32)
        discounts = 1.0 + gamma * self.discounts  # c_k
        gap = value * (live - self.pending) - live * reward.astype(jnp.float32) * discounts
        return ValueGap(
            gap=self.gap + gap,
            steps=self.steps + live,
            discounts=discounts,
            pending=jnp.where(cut, gamma * discounts, 0.0),
        )
