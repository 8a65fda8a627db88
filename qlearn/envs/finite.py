"""Finite MDPs with exact dynamics, as gymnax environments.

A :class:`FiniteMDP` is a gymnax ``Environment`` (same ``reset``/``step`` 6-tuple, auto-reset,
time limit as truncation, vmappable) whose model lives in its params as arrays
(:class:`FiniteMDPParams`), so dynamic programming (:mod:`qlearn.dp`) computes the exact q* and
q^π of the very environment an agent trains on — and a sweep can even vmap over MDPs.

Conventions:
  * states are 0..S-1 and actions 0..A-1; ``action_mask[s, a]`` marks the actions available in
    s (all, unless a catalogue MDP says otherwise). Policies and DP respect the mask; an
    unavailable action taken anyway follows its row of the arrays like any other.
  * entering a terminal state ends the episode (``terminated``); a terminal state is never acted
    in, so its values are 0 by definition. The episode restarts from ``initial_distribution``.
  * ``transition_rewards[s, a, s']`` is the reward of the transition s, a → s' (the same for
    every s' unless the builder says otherwise); ``step`` samples the transition, then pays
    ``transition_rewards[s, a, s'] + reward_std[s, a] · N(0, 1)``. ``rewards[s, a]`` is its
    expectation Σ_s' p(s'|s, a) transition_rewards[s, a, s'], what DP uses.
  * the observation of state s is the feature vector ``features[s]`` (one-hot by default).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces
from gymnax.environments.environment import Environment


class FiniteMDPError(ValueError):
    """A finite MDP's arrays are inconsistent (shapes, probabilities)."""


@struct.dataclass
class FiniteMDPParams:
    """The model of a finite MDP, as arrays (S states, A actions, d features)."""

    transition_probs: jax.Array
    """p(s' | s, a), [S, A, S]; every row sums to 1."""
    rewards: jax.Array
    """expected reward r(s, a), [S, A]."""
    transition_rewards: jax.Array
    """reward of each transition r(s, a, s'), [S, A, S] (its expectation is ``rewards``)."""
    reward_std: jax.Array
    """standard deviation of the Gaussian reward noise, [S, A] (0: deterministic)."""
    initial_distribution: jax.Array
    """distribution of the first state of an episode, [S]."""
    terminal: jax.Array
    """bool [S]: entering s ends the episode."""
    action_mask: jax.Array
    """bool [S, A]: the actions available in each state."""
    features: jax.Array
    """φ(s), [S, d]: the observation of state s."""
    max_steps_in_episode: int = 1_000
    """time limit (truncation)."""

    @property
    def num_states(self) -> int:
        return self.transition_probs.shape[0]

    @property
    def num_actions(self) -> int:
        return self.transition_probs.shape[1]


@struct.dataclass
class FiniteMDPState:
    state: jax.Array
    """the current state index, int32 []."""
    time: jax.Array
    """steps taken in the current episode, int32 []."""


def finite_mdp_params(
    transition_probs: Any,
    rewards: Any,
    initial_distribution: Any,
    *,
    terminal: Any = None,
    action_mask: Any = None,
    features: Any = None,
    reward_std: Any = None,
    max_steps_in_episode: int = 1_000,
    atol: float = 1e-5,
) -> FiniteMDPParams:
    """Validated :class:`FiniteMDPParams` from array-likes.

    Args:
      transition_probs: p(s'|s, a), [S, A, S].
      rewards: r(s, a), [S, A] (paid whatever the next state), or r(s, a, s'), [S, A, S]
        (the reward of each transition; its expectation under p becomes ``rewards``).
      initial_distribution: [S].
      terminal: bool [S] (default: none, a continuing MDP).
      action_mask: bool [S, A] (default: every action everywhere).
      features: [S, d] (default: one-hot, d = S).
      reward_std: [S, A] (default: deterministic rewards).
      max_steps_in_episode: the time limit, ≥ 1.
      atol: tolerance on "sums to 1".

    Raises:
      FiniteMDPError: naming the first inconsistency found.
    """
    p = np.asarray(transition_probs, np.float64)
    if p.ndim != 3 or p.shape[0] != p.shape[2]:
        raise FiniteMDPError(f"transition_probs must have shape [S, A, S], got {p.shape}")
    num_states, num_actions, _ = p.shape
    if num_states < 1 or num_actions < 1:
        raise FiniteMDPError(f"an MDP needs ≥ 1 state and action, got shape {p.shape}")

    r_given = np.asarray(rewards, np.float64)
    if r_given.shape == (num_states, num_actions, num_states):
        r_next = r_given
    else:
        r_next = _shaped("rewards", rewards, None, (num_states, num_actions), np.float64)[..., None]
        r_next = np.broadcast_to(r_next, p.shape)
    r = np.sum(p * r_next, axis=-1) if r_given.ndim == 3 else r_next[..., 0]
    h = _shaped("initial_distribution", initial_distribution, None, (num_states,), np.float64)
    term = _shaped("terminal", terminal, np.zeros(num_states, bool), (num_states,), bool)
    mask = _shaped(
        "action_mask", action_mask, np.ones((num_states, num_actions), bool),
        (num_states, num_actions), bool,
    )  # fmt: skip
    std = _shaped("reward_std", reward_std, np.zeros_like(r), (num_states, num_actions), np.float64)
    phi = np.asarray(np.eye(num_states) if features is None else features, np.float64)
    if phi.ndim != 2 or phi.shape[0] != num_states:
        raise FiniteMDPError(f"features must have shape [S={num_states}, d], got {phi.shape}")

    _check_values(p, h, term, mask, r_next, std, phi, max_steps_in_episode, atol)
    return FiniteMDPParams(
        transition_probs=jnp.asarray(p, jnp.float32),
        rewards=jnp.asarray(r, jnp.float32),
        transition_rewards=jnp.asarray(r_next, jnp.float32),
        reward_std=jnp.asarray(std, jnp.float32),
        initial_distribution=jnp.asarray(h, jnp.float32),
        terminal=jnp.asarray(term),
        action_mask=jnp.asarray(mask),
        features=jnp.asarray(phi, jnp.float32),
        max_steps_in_episode=int(max_steps_in_episode),
    )


def _shaped(name: str, value: Any, default: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``value`` (or ``default`` when None) as an array of ``shape``, else FiniteMDPError."""
    out = np.asarray(default if value is None else value, dtype)
    if out.shape != shape:
        raise FiniteMDPError(f"{name} must have shape {list(shape)}, got {list(out.shape)}")
    return out


def _check_values(
    p: np.ndarray,
    h: np.ndarray,
    term: np.ndarray,
    mask: np.ndarray,
    r_next: np.ndarray,
    std: np.ndarray,
    phi: np.ndarray,
    max_steps_in_episode: Any,
    atol: float,
) -> None:
    """Raise FiniteMDPError at the first inconsistency of an MDP's shaped arrays:
    probabilities that are negative or do not sum to 1, initial mass on a terminal state, a
    state with no action, non-finite numbers, a negative reward spread, a bad time limit."""
    for name, x in (("transition_probs", p), ("initial_distribution", h)):
        if not np.all(np.isfinite(x)) or np.any(x < 0):
            s = tuple(int(i) for i in np.argwhere(~(x >= 0))[0])
            raise FiniteMDPError(f"{name}{list(s)} = {x[s]} is not a probability (must be ≥ 0)")
    row_sums = p.sum(-1)
    bad = np.argwhere(np.abs(row_sums - 1) > atol)
    if len(bad):
        s, a = bad[0]
        raise FiniteMDPError(
            f"transition_probs[{s}, {a}, :] sums to {row_sums[s, a]:.6g}, not 1 "
            f"({len(bad)} such rows)"
        )
    if abs(h.sum() - 1) > atol:
        raise FiniteMDPError(f"initial_distribution sums to {h.sum():.6g}, not 1")
    if np.any(h[term] > 0):
        raise FiniteMDPError("initial_distribution puts mass on a terminal state")
    if not np.all(mask.any(-1)):
        s = int(np.argwhere(~mask.any(-1))[0, 0])
        raise FiniteMDPError(f"action_mask[{s}] allows no action")
    for name, x in (("rewards", r_next), ("reward_std", std), ("features", phi)):
        if not np.all(np.isfinite(x)):
            raise FiniteMDPError(f"{name} has non-finite entries")
    if np.any(std < 0):
        raise FiniteMDPError("reward_std must be ≥ 0")
    if not isinstance(max_steps_in_episode, int | np.integer) or max_steps_in_episode < 1:
        raise FiniteMDPError(f"max_steps_in_episode = {max_steps_in_episode!r} must be ≥ 1")


class FiniteMDP(Environment):
    """A gymnax environment driven by a :class:`FiniteMDPParams` model.

    The instance only fixes the shapes (S, A, d) and a name; the dynamics are its params, so one
    compiled program serves every MDP of the same shapes.
    """

    def __init__(self, params: FiniteMDPParams, name: str = "FiniteMDP"):
        super().__init__()
        self._params = params
        self._name = name
        self.num_states = params.num_states
        self._num_actions = params.num_actions
        self.feature_dim = params.features.shape[1]

    @property
    def default_params(self) -> FiniteMDPParams:
        return self._params

    @property
    def name(self) -> str:
        return self._name

    @property
    def num_actions(self) -> int:
        return self._num_actions

    def step_env(
        self, key: jax.Array, state: FiniteMDPState, action: jax.Array, params: FiniteMDPParams
    ) -> tuple[jax.Array, FiniteMDPState, jax.Array, jax.Array, dict[str, Any]]:
        k_next, k_reward = jax.random.split(key)
        s, a = state.state, jnp.asarray(action, jnp.int32)
        probs = params.transition_probs[s, a]
        next_state = jax.random.choice(k_next, self.num_states, p=probs).astype(jnp.int32)
        noise = jax.random.normal(k_reward, (), jnp.float32)
        reward = params.transition_rewards[s, a, next_state] + params.reward_std[s, a] * noise
        terminated = params.terminal[next_state]
        new = FiniteMDPState(state=next_state, time=state.time + 1)
        info = {"state": next_state, "action_mask": params.action_mask[next_state]}
        return params.features[next_state], new, reward, terminated, info

    def reset_env(
        self, key: jax.Array, params: FiniteMDPParams
    ) -> tuple[jax.Array, FiniteMDPState]:
        s0 = jax.random.choice(key, self.num_states, p=params.initial_distribution)
        state = FiniteMDPState(state=s0.astype(jnp.int32), time=jnp.zeros((), jnp.int32))
        return params.features[state.state], state

    def action_mask(self, state: FiniteMDPState, params: FiniteMDPParams) -> jax.Array:
        """bool [A]: the actions available in ``state``."""
        return params.action_mask[state.state]

    def get_obs(self, state: FiniteMDPState, params: FiniteMDPParams, key: Any = None) -> Any:
        return params.features[state.state]

    def is_terminated(self, state: FiniteMDPState, params: FiniteMDPParams) -> jax.Array:
        return params.terminal[state.state]

    def action_space(self, params: FiniteMDPParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self._num_actions)

    def observation_space(self, params: FiniteMDPParams | None = None) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (self.feature_dim,), jnp.float32)

    def state_space(self, params: FiniteMDPParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_states)
