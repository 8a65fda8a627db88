"""Environments: ``make(env_id)`` returns a gymnax ``(env, env_params)`` pair.

Every gymnax id is served; qlearn's finite MDPs with exact dynamics (:mod:`.finite`,
:mod:`.catalog`): ``Baird``, ``CliffWalking``, ``MaximizationBias``, ``Chain``, ``Garnet``,
``TMaze`` (a finite POMDP); and
the ids of the optional suites Navix, Craftax, XLand-MiniGrid and Jumanji as
``"<suite>:<id>"`` (:mod:`.suites`), e.g. ``"navix:Navix-DoorKey-5x5-v0"``.
gymnax ≥ 1.0 environments return ``(obs, state, reward, terminated, truncated, info)`` from
``step``, auto-reset, and put the true last observation of an episode in
``info["final_observation"]``; the finite MDPs follow the same interface.

Action masks: an env whose states restrict the actions has a method
``action_mask(state, params) -> bool [A]`` (True = available) and puts the mask of the state
its ``step`` reached (before any auto-reset) in ``info["action_mask"]``. :func:`action_masks`
reads them for a batch of envs; every algorithm acts and bootstraps over available actions only.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any

import gymnax
import jax
from gymnax.environments.environment import Environment

from qlearn.envs import suites
from qlearn.envs.catalog import CATALOG
from qlearn.envs.finite import FiniteMDP, FiniteMDPError, FiniteMDPParams, finite_mdp_params
from qlearn.envs.suites import SuiteError
from qlearn.types import ConfigError, config_field

__all__ = [
    "CATALOG",
    "EnvConfig",
    "FiniteMDP",
    "FiniteMDPError",
    "FiniteMDPParams",
    "SuiteError",
    "UnknownEnvError",
    "action_masks",
    "check_id",
    "finite_mdp_params",
    "is_finite",
    "kwargs_tuple",
    "make",
    "make_for",
    "registered_ids",
    "step_batch",
    "suites",
]


class UnknownEnvError(ValueError):
    """The env id is not registered."""


def registered_ids(with_suites: bool = True) -> tuple[str, ...]:
    """Every env id ``make`` accepts: gymnax's, qlearn's finite MDPs, then (``with_suites``) the
    prefixed ids of the installed optional suites (importing them)."""
    own = (*gymnax.registered_envs, *CATALOG)
    return (*own, *suites.suite_ids()) if with_suites else own


def kwargs_tuple(kwargs: Any) -> tuple[tuple[str, Any], ...]:
    """Env arguments as sorted (name, value) pairs, hashable for a static config: from a dict,
    or from pairs (lists of two, when read back from JSON)."""
    pairs = tuple(
        sorted((str(k), v) for k, v in (kwargs.items() if isinstance(kwargs, dict) else kwargs))
    )
    for name, value in pairs:
        try:
            hash(value)
        except TypeError:
            raise ConfigError(
                f"config.env_kwargs: {name} is a {type(value).__name__}, which a static config "
                "cannot hold (it must be hashable: numbers, strings, tuples); name it instead, "
                "e.g. XLand's ruleset by benchmark=NAME|PATH and ruleset_id=N"
            ) from None
    return pairs


def is_finite(env_id: str) -> bool:
    """Whether ``env_id`` is one of qlearn's finite MDPs (exact dynamics available)."""
    return env_id in CATALOG


def check_id(env_id: str) -> None:
    """Raise :class:`UnknownEnvError` for an unknown id, listing the closest matches of every
    suite; a suite id (``"navix:..."``) is checked by its suite (:class:`SuiteError`: the suite
    is missing, or lacks the id)."""
    if suites.is_suite_id(env_id):
        suites.check_id(env_id)
        return
    if env_id in registered_ids(with_suites=False):
        return
    ids = registered_ids()
    lowered = {i.lower(): i for i in ids}
    close = difflib.get_close_matches(env_id.lower(), list(lowered), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(lowered[c] for c in close)}?" if close else ""
    raise UnknownEnvError(f"unknown env '{env_id}'{hint} (all ids: qlearn.envs.registered_ids())")


def action_masks(env: Any, env_params: Any, env_state: Any) -> jax.Array | None:
    """bool [N, A]: the actions available in the current state of each of N envs (a batched
    ``env_state``), or None for an env without action masks (every action, always)."""
    if not hasattr(env, "action_mask"):
        return None
    return jax.vmap(env.action_mask, (0, None))(env_state, env_params)


def step_batch(
    env: Any, env_params: Any, keys: jax.Array, env_state: Any, action: jax.Array
) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
    """The auto-resetting step of N envs (``keys`` [N], a batched ``env_state``): gymnax's
    ``step`` vmapped, or the env's own ``step_batch`` where it has one (a suite env's
    optimistic resets, :meth:`qlearn.envs.suites.SuiteEnv.step_batch`)."""
    if hasattr(env, "step_batch"):
        return env.step_batch(keys, env_state, action, env_params)
    return jax.vmap(env.step, (0, 0, 0, None))(keys, env_state, action, env_params)


def make(env_id: str, **kwargs: Any) -> tuple[Environment, Any]:
    """``(env, env_params)`` for a registered id.

    Args:
      env_id: e.g. ``"CartPole-v1"``, ``"Garnet"`` or ``"jumanji:Snake-v1"``; see
        :func:`registered_ids`.
      **kwargs: for a gymnax env, fields of its params to replace, e.g.
        ``max_steps_in_episode=200`` for a shorter time limit; for a finite MDP, the arguments
        of its builder in :mod:`qlearn.envs.catalog`, e.g. ``n_states=20, seed=3``; for a
        suite, ``max_steps_in_episode`` (its own time limit) and its constructor's arguments.
    """
    check_id(env_id)
    if suites.is_suite_id(env_id):
        return suites.make(env_id, **kwargs)
    if env_id in CATALOG:
        return _make_finite(env_id, kwargs)
    return _make_gymnax(env_id, kwargs)


def _make_finite(env_id: str, kwargs: dict[str, Any]) -> tuple[FiniteMDP, FiniteMDPParams]:
    builder = CATALOG[env_id]
    suites.check_kwargs(env_id, kwargs, set(inspect.signature(builder).parameters), ValueError)
    return builder(**kwargs)


def _make_gymnax(env_id: str, param_overrides: dict[str, Any]) -> tuple[Environment, Any]:
    env, env_params = gymnax.make(env_id)
    if param_overrides:
        suites.check_kwargs(
            env_id, param_overrides, {f.name for f in dataclasses.fields(env_params)}, ValueError
        )
        env_params = env_params.replace(**param_overrides)
    return env, env_params


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """The env fields an algorithm's config starts with (DQN, PQN): which env, its arguments,
    and an optional time limit. :func:`make_for` builds the env they name."""

    env_id: str = config_field(
        "CartPole-v1",
        "gymnax id, qlearn finite MDP, or <suite>:<id> (navix, craftax, xminigrid, jumanji)",
    )
    env_kwargs: tuple[tuple[str, Any], ...] = config_field(
        (), "env arguments as (name, value) pairs: a finite MDP's builder, or gymnax params"
    )
    max_episode_steps: int | None = config_field(None, "override the env's time limit (truncation)")


def make_for(config: EnvConfig) -> tuple[Any, Any]:
    """The (env, env_params) pair a config trains on."""
    kwargs = dict(config.env_kwargs)
    if config.max_episode_steps is not None:
        kwargs["max_steps_in_episode"] = config.max_episode_steps
    return make(config.env_id, **kwargs)
