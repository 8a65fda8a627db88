"""Environments: ``make(env_id)`` returns a gymnax ``(env, env_params)`` pair.

Every gymnax id is served. gymnax ≥ 1.0 environments return
``(obs, state, reward, terminated, truncated, info)`` from ``step``, auto-reset, and put the
true last observation of an episode in ``info["final_observation"]``.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import gymnax
from gymnax.environments.environment import Environment


class UnknownEnvError(ValueError):
    """The env id is not registered."""


def registered_ids() -> tuple[str, ...]:
    """Every env id ``make`` accepts."""
    return tuple(gymnax.registered_envs)


def check_id(env_id: str) -> None:
    """Raise :class:`UnknownEnvError` for an unknown id, listing the closest matches."""
    ids = registered_ids()
    if env_id in ids:
        return
    lowered = {i.lower(): i for i in ids}
    close = difflib.get_close_matches(env_id.lower(), list(lowered), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(lowered[c] for c in close)}?" if close else ""
    raise UnknownEnvError(f"unknown env '{env_id}'{hint} (all ids: qlearn.envs.registered_ids())")


def make(env_id: str, **param_overrides: Any) -> tuple[Environment, Any]:
    """``(env, env_params)`` for a registered id.

    Args:
      env_id: e.g. ``"CartPole-v1"``; see :func:`registered_ids`.
      **param_overrides: fields of the env's params to replace, e.g.
        ``max_steps_in_episode=200`` for a shorter time limit.
    """
    check_id(env_id)
    env, env_params = gymnax.make(env_id)
    if param_overrides:
        known = {f.name for f in dataclasses.fields(env_params)}
        unknown = sorted(set(param_overrides) - known)
        if unknown:
            raise ValueError(
                f"{env_id} has no parameter {', '.join(unknown)} (its parameters: "
                f"{', '.join(sorted(known))})"
            )
        env_params = env_params.replace(**param_overrides)
    return env, env_params
