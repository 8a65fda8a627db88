"""JAX env suites beyond gymnax — Navix, Craftax, XLand-MiniGrid, Jumanji — behind gymnax 1.x's
contract, with the suite's time limit reported as truncation and only true ends as termination.

An id is ``"<suite>:<the suite's own id>"``, e.g. ``"navix:Navix-DoorKey-5x5-v0"``,
``"craftax:Craftax-Classic-Symbolic-v1"``, ``"xminigrid:MiniGrid-Empty-8x8"``,
``"jumanji:Snake-v1"``. :func:`make` returns a :class:`SuiteEnv`, a gymnax ``Environment``:
``reset``/``step`` with ``(obs, state, reward, terminated, truncated, info)``, auto-reset, and the
true last observation of an episode in ``info["final_observation"]`` (gymnax's own ``step`` does
that on top of the adapter's non-resetting ``step_env``). Observations are float32, in the
suite's own shape: an image stays an image (the CNN takes it, the MLP flattens it), a vector a
vector.

Each suite encodes the end of an episode its own way, and each adapter splits it back into
``terminated`` (a true end: bootstrap from 0) and ``truncated`` (the time limit: bootstrap from
the last observation):

* Navix: ``Timestep.step_type`` 2 (termination, which wins when both happen) or 1 (truncation).
* XLand-MiniGrid: a last step with discount 0 is a termination; one with discount 1 is the
  time limit (``step_num == max_steps``).
* Craftax folds its time limit into ``done`` (and into a discount of 0): the adapter terminates
  on death (health ≤ 0, or lava in Classic) or, in full Craftax, on beating the last boss, and
  truncates at ``timestep ≥ max_timesteps`` otherwise.
* Jumanji ends most time-limited games with ``termination`` (discount 0) at the limit: the
  adapter truncates where the step count reached the env's ``time_limit``. For Snake the true
  ends are known exactly (an invalid move, a full board), so a death on the last step is still a
  termination; for the other games an end on exactly the last step is reported as truncation.

Action masks (Jumanji's ``observation.action_mask``) are the env's ``action_mask(state,
params)`` and ``info["action_mask"]``, which every algorithm honours (:mod:`qlearn.envs`). A
state with no valid action (a boxed-in snake) offers every action, each of which ends the game.

The suites are optional (``pip install "qlearn[envs]"``); only the suite an id names is imported.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces
from gymnax.environments.environment import Environment

EXTRA = "envs"


class SuiteError(ValueError):
    """An id, argument or action space an adapter cannot serve, or a missing optional suite."""


@struct.dataclass
class SuiteState:
    """inner: the suite's own state (a timestep for Navix and XLand-MiniGrid, the env state for
    Craftax, (state, timestep) for Jumanji); truncated: bool [], whether the step that reached
    it hit the time limit without a true end."""

    inner: Any
    truncated: jax.Array


@struct.dataclass
class SuiteParams:
    """max_steps_in_episode: the suite's time limit (static)."""

    max_steps_in_episode: int = struct.field(pytree_node=False, default=1)


@dataclasses.dataclass(frozen=True)
class Backend:
    """One suite env's raw, non-resetting dynamics, as pure functions.

    reset(key) -> (obs, inner); step(key, inner, action) -> (obs, inner, reward, terminated,
    truncated), never resetting; mask(inner) -> bool [A] or None for an env without masks.
    ``obs`` is the suite's own observation; :class:`SuiteEnv` makes it float32.
    """

    name: str
    num_actions: int
    max_steps: int
    reset: Callable[[jax.Array], tuple[Any, Any]]
    step: Callable[[jax.Array, Any, jax.Array], tuple[Any, Any, jax.Array, jax.Array, jax.Array]]
    mask: Callable[[Any], jax.Array] | None = None


class SuiteEnv(Environment):
    """A :class:`Backend` as a gymnax environment (see the module docstring)."""

    def __init__(self, backend: Backend):
        super().__init__()
        self.backend = backend
        obs, _ = jax.eval_shape(self.reset_env, jax.random.key(0), self.default_params)
        self._obs_shape = tuple(obs.shape)

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def default_params(self) -> SuiteParams:
        return SuiteParams(max_steps_in_episode=self.backend.max_steps)

    @property
    def num_actions(self) -> int:
        return self.backend.num_actions

    def reset_env(self, key: jax.Array, params: SuiteParams) -> tuple[jax.Array, SuiteState]:
        obs, inner = self.backend.reset(key)
        return _float(obs), SuiteState(inner, jnp.zeros((), bool))

    def step_env(
        self, key: jax.Array, state: SuiteState, action: jax.Array, params: SuiteParams
    ) -> tuple[jax.Array, SuiteState, jax.Array, jax.Array, dict[str, Any]]:
        obs, inner, reward, terminated, truncated = self.backend.step(key, state.inner, action)
        terminated = jnp.asarray(terminated, bool)
        truncated = jnp.asarray(truncated, bool) & ~terminated
        info = (
            {}
            if self.backend.mask is None
            else {"action_mask": _any_valid(self.backend.mask(inner))}
        )
        reward = jnp.asarray(reward, jnp.float32)
        return _float(obs), SuiteState(inner, truncated), reward, terminated, info

    def is_truncated(self, state: SuiteState, params: SuiteParams) -> jax.Array:
        return state.truncated

    def action_space(self, params: SuiteParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.backend.num_actions)

    def observation_space(self, params: SuiteParams | None = None) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, self._obs_shape, jnp.float32)


class MaskedSuiteEnv(SuiteEnv):
    """A :class:`SuiteEnv` whose states restrict the actions."""

    def action_mask(self, state: SuiteState, params: SuiteParams) -> jax.Array:
        """bool [A]: the actions available in ``state`` (all, where none is)."""
        return _any_valid(self.backend.mask(state.inner))


def _float(obs: Any) -> jax.Array:
    return jnp.asarray(obs, jnp.float32)


def _any_valid(mask: jax.Array) -> jax.Array:
    mask = jnp.asarray(mask, bool).reshape(-1)
    return mask | ~jnp.any(mask)


# -- the suites ---------------------------------------------------------------------------------


def _navix(env_id: str, max_steps: int | None, kwargs: dict[str, Any]) -> Backend:
    import navix

    env = navix.make(env_id, **({} if max_steps is None else {"max_steps": max_steps}), **kwargs)
    truncation, termination = 1, 2  # navix.environments.environment.StepType

    def reset(key):
        timestep = env.reset(key)
        return timestep.observation, timestep

    def step(key, timestep, action):
        nxt = env._step(timestep, action)  # the transition; env.step resets after a last step
        return (
            nxt.observation,
            nxt,
            nxt.reward,
            nxt.step_type == termination,
            (nxt.step_type == truncation),
        )

    return Backend(f"navix:{env_id}", len(env.action_set), int(env.max_steps), reset, step)


def _xminigrid(env_id: str, max_steps: int | None, kwargs: dict[str, Any]) -> Backend:
    import xminigrid

    if max_steps is not None:
        kwargs = kwargs | {"max_steps": max_steps}
    env, params = xminigrid.make(env_id, **kwargs)
    last = 2  # xminigrid.types.StepType.LAST

    def reset(key):
        timestep = env.reset(params, key)
        return timestep.observation, timestep

    def step(key, timestep, action):
        nxt = env.step(params, timestep, action)  # the base env never resets
        ended = nxt.step_type == last
        return (
            nxt.observation,
            nxt,
            nxt.reward,
            ended & (nxt.discount == 0),
            ended & (nxt.discount > 0),
        )

    return Backend(
        f"xminigrid:{env_id}", int(env.num_actions(params)), int(params.max_steps), reset, step
    )


def _craftax(env_id: str, max_steps: int | None, kwargs: dict[str, Any]) -> Backend:
    from craftax.craftax_env import make_craftax_env_from_name

    env = make_craftax_env_from_name(env_id, auto_reset=False)
    params = env.default_params
    check_kwargs(env_id, kwargs, {f.name for f in dataclasses.fields(params)})
    params = params.replace(**kwargs)
    if max_steps is not None:
        params = params.replace(max_timesteps=max_steps)
    classic = "Classic" in env_id
    if classic:
        from craftax.craftax_classic.constants import BlockType

        def true_end(state):
            row, col = state.player_position[0], state.player_position[1]
            return (state.player_health <= 0) | (state.map[row, col] == BlockType.LAVA.value)
    else:
        from craftax.craftax.util.game_logic_utils import has_beaten_boss

        def true_end(state):
            return (state.player_health <= 0) | has_beaten_boss(state, env.static_env_params)

    def reset(key):
        return env.reset_env(key, params)

    def step(key, state, action):
        obs, nxt, reward, _, _ = env.step_env(key, state, action, params)  # done: either end
        terminated = true_end(nxt)
        return obs, nxt, reward, terminated, nxt.timestep >= params.max_timesteps

    return Backend(
        f"craftax:{env_id}", int(env.num_actions), int(params.max_timesteps), reset, step
    )


JUMANJI_IMAGES = {"Snake-v1": "grid"}
"""Jumanji games whose observation is one image field (kept [H, W, C]); every other game's
observation is its fields but the action mask, flattened and concatenated."""


def _jumanji(env_id: str, max_steps: int | None, kwargs: dict[str, Any]) -> Backend:
    import jumanji
    from jumanji import specs

    if max_steps is not None:
        kwargs = kwargs | {"time_limit": max_steps}
    try:
        env = jumanji.make(env_id, **kwargs)
    except TypeError as e:
        raise SuiteError(f"jumanji:{env_id}: {e}") from None
    spec = env.action_spec
    if not isinstance(spec, specs.DiscreteArray):
        kind = "multi-discrete" if isinstance(spec, specs.MultiDiscreteArray) else "continuous"
        raise SuiteError(
            f"jumanji:{env_id} has a {kind} action space ({type(spec).__name__}, shape "
            f"{tuple(spec.shape)}); Q-learning here needs one discrete action"
        )
    limit = getattr(env, "time_limit", None)
    image = JUMANJI_IMAGES.get(env_id)

    def observe(observation):
        if image is not None:
            return getattr(observation, image)
        fields = {k: v for k, v in observation._asdict().items() if k != "action_mask"}
        return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in jax.tree.leaves(fields)])

    def reset(key):
        state, timestep = env.reset(key)
        return observe(timestep.observation), state

    if env_id == "Snake-v1":

        def true_end(state, action, nxt):  # an invalid move, or a board full of snake
            return ~state.action_mask[action] | jnp.all(nxt.body)
    else:

        def true_end(state, action, nxt):
            return ~at_limit(nxt)

    def at_limit(state):
        if limit is None:
            return jnp.zeros((), bool)
        return state.step_count >= limit

    def step(key, state, action):
        nxt, timestep = env.step(state, action)  # the base env never resets
        ended = timestep.last()
        terminated = ended & true_end(state, action, nxt)
        return (
            observe(timestep.observation),
            nxt,
            timestep.reward,
            terminated,
            (ended & at_limit(nxt)),
        )

    has_mask = "action_mask" in env.observation_spec.generate_value()._fields
    return Backend(
        f"jumanji:{env_id}",
        int(spec.num_values),
        int(limit) if limit is not None else _NO_LIMIT,
        reset,
        step,
        (lambda state: state.action_mask) if has_mask else None,
    )


_NO_LIMIT = 2**31 - 1  # a game that ends itself (e.g. 2048): no time limit


@dataclasses.dataclass(frozen=True)
class Suite:
    """An optional env suite: its import name, how to list its ids and build a backend."""

    module: str
    ids: Callable[[], list[str]]
    build: Callable[[str, int | None, dict[str, Any]], Backend]


SUITES: dict[str, Suite] = {
    "navix": Suite("navix", lambda: sorted(importlib.import_module("navix").registry()), _navix),
    "craftax": Suite(
        "craftax",
        lambda: [
            "Craftax-Classic-Pixels-v1",
            "Craftax-Classic-Symbolic-v1",
            "Craftax-Pixels-v1",
            "Craftax-Symbolic-v1",
        ],
        _craftax,
    ),
    "xminigrid": Suite(
        "xminigrid",
        lambda: sorted(importlib.import_module("xminigrid").registered_environments()),
        _xminigrid,
    ),
    "jumanji": Suite(
        "jumanji",
        lambda: sorted(importlib.import_module("jumanji").registered_environments()),
        _jumanji,
    ),
}
"""suite prefix -> :class:`Suite`."""


def is_suite_id(env_id: str) -> bool:
    """Whether ``env_id`` names a suite (``"<suite>:..."``), installed or not."""
    return env_id.partition(":")[0] in SUITES and ":" in env_id


def installed(suite: str) -> bool:
    """Whether the suite's package can be imported."""
    return importlib.util.find_spec(SUITES[suite].module) is not None


def require(suite: str) -> None:
    """Raise :class:`SuiteError` in one line when the suite is not installed."""
    if not installed(suite):
        raise SuiteError(
            f'{suite} is not installed: pip install "qlearn[{EXTRA}]" (or pip install '
            f"{SUITES[suite].module})"
        )


def suite_ids() -> list[str]:
    """Every prefixed id of the installed suites."""
    return [f"{name}:{i}" for name, suite in SUITES.items() if installed(name) for i in suite.ids()]


def check_id(env_id: str) -> None:
    """Raise :class:`SuiteError` for a suite id whose suite is missing or lacks the id (with the
    closest ids of every installed suite: an id of the wrong suite is found there)."""
    suite, _, name = env_id.partition(":")
    require(suite)
    if name in SUITES[suite].ids():
        return
    ids = suite_ids()
    close = difflib.get_close_matches(env_id.lower(), [i.lower() for i in ids], n=3, cutoff=0.4)
    lowered = {i.lower(): i for i in ids}
    hint = f"; did you mean {', '.join(lowered[c] for c in close)}?" if close else ""
    raise SuiteError(f"{suite} has no env '{name}'{hint}")


def make(env_id: str, **kwargs: Any) -> tuple[SuiteEnv, SuiteParams]:
    """``(env, env_params)`` for a suite id; ``max_steps_in_episode`` sets the suite's own time
    limit, every other keyword goes to the suite's constructor or params."""
    check_id(env_id)
    suite, _, name = env_id.partition(":")
    max_steps = kwargs.pop("max_steps_in_episode", None)
    build = SUITES[suite].build
    try:
        backend = build(name, max_steps, dict(kwargs))
    except TypeError as e:  # an argument the suite's constructor does not take
        raise SuiteError(f"{env_id}: {e}") from None
    env = (SuiteEnv if backend.mask is None else MaskedSuiteEnv)(backend)
    return env, env.default_params


def check_kwargs(
    env_id: str, given: dict[str, Any], known: set[str], error: type[Exception] = SuiteError
) -> None:
    """Raise ``error`` naming the arguments of ``given`` that are not in ``known``."""
    unknown = sorted(set(given) - known)
    if unknown:
        raise error(
            f"{env_id} has no parameter {', '.join(unknown)} (its parameters: "
            f"{', '.join(sorted(known))})"
        )


__all__ = [
    "EXTRA",
    "SUITES",
    "Backend",
    "MaskedSuiteEnv",
    "SuiteEnv",
    "SuiteError",
    "SuiteParams",
    "SuiteState",
    "check_id",
    "check_kwargs",
    "installed",
    "is_suite_id",
    "make",
    "require",
    "suite_ids",
]
