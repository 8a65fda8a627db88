"""JAX env suites beyond gymnax — Navix, Craftax, XLand-MiniGrid, Jumanji, POPGym Arcade — behind
gymnax 1.x's contract, with the suite's time limit reported as truncation and only true ends as
termination.

An id is ``"<suite>:<the suite's own id>"``, e.g. ``"navix:Navix-DoorKey-5x5-v0"``,
``"craftax:Craftax-Classic-Symbolic-v1"``, ``"xminigrid:MiniGrid-Empty-8x8"``,
``"jumanji:Snake-v1"``, ``"popgym:BreakoutEasy"`` (POPGym Arcade: ``partial_obs=True`` makes
the POMDP twin of a game, ``pool=k`` averages k × k pixel blocks). :func:`make` returns a
:class:`SuiteEnv`, a gymnax ``Environment``: ``reset``/``step`` with ``(obs, state, reward,
terminated, truncated, info)``, auto-reset, and the true last observation of an episode in
``info["final_observation"]`` (gymnax's own ``step`` does that on top of the adapter's
non-resetting ``step_env``). Observations are float32, in the suite's own shape: an image stays
an image (the CNN takes it, the MLP flattens it), a vector a vector.

Each suite encodes the end of an episode its own way, and each adapter splits it back into
``terminated`` (a true end: bootstrap from 0) and ``truncated`` (the time limit: bootstrap from
the last observation):

* Navix: ``Timestep.step_type`` 2 (termination, which wins when both happen) or 1 (truncation).
* XLand-MiniGrid: a last step with discount 0 is a termination; one with discount 1 is the
  time limit (``step_num == max_steps``).
* Craftax folds its time limit into ``done`` (and into a discount of 0): the adapter terminates
  on death (health ≤ 0, or lava in Classic) or, in full Craftax, on beating the last boss, and
  truncates at ``timestep ≥ max_timesteps`` otherwise.
* POPGym Arcade folds its time limit into ``done``: the adapter counts the steps and calls an
  end at the game's limit a truncation, any other a termination.
* Jumanji ends most time-limited games with ``termination`` (discount 0) at the limit: the
  adapter truncates where the step count reached the env's ``time_limit``, and every
  single-discrete game's true end is computed exactly (in :mod:`qlearn.envs.backends`: Snake,
  Maze, PacMan, SlidingTilePuzzle; the others have no time limit), so a true end on the last
  step is still a termination. A game without such a rule would report an end on exactly the
  last step as truncation.

A smaller time limit than the suite's can also be set afterwards, gymnax-style, by replacing
``max_steps_in_episode`` in the params: the adapter counts the steps of each episode
(:class:`SuiteState` ``time``) and truncates there.

XLand-MiniGrid's ``XLand-*`` ids need their tasks: ``benchmark=NAME`` (XLand's own benchmarks,
e.g. ``trivial-21k``, from its data directory ``$XLAND_MINIGRID_DATA`` or downloaded) or
``benchmark=PATH`` (a saved one); a ruleset is drawn per episode at reset and kept in the state,
or fixed by ``ruleset_id=N``. Without them XLand would serve the empty goal (no reward, no end),
so the id is refused.

Action masks (Jumanji's ``timestep.observation.action_mask``) are the env's
``action_mask(state, params)`` and ``info["action_mask"]``, which every algorithm honours
(:mod:`qlearn.envs`). A state with no valid action (a boxed-in snake) offers every action, each
of which ends the game.

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

from qlearn.envs.backends import (
    Backend,
    SuiteError,
    check_kwargs,
    craftax_backend,
    jumanji_backend,
    navix_backend,
    popgym_backend,
    xminigrid_backend,
)

EXTRA = "envs"


@struct.dataclass
class SuiteState:
    """inner: the suite's own state (a timestep for Navix, (ruleset, timestep) for
    XLand-MiniGrid, the env state for Craftax, (state, timestep) for Jumanji); time: int32 [],
    the steps taken in this episode; truncated: bool [], whether the step that reached it hit
    the time limit without a true end."""

    inner: Any
    time: jax.Array
    truncated: jax.Array


@struct.dataclass
class SuiteParams:
    """max_steps_in_episode: the time limit (static). It starts as the suite's own limit; a
    smaller one (``params.replace(max_steps_in_episode=5)``) truncates episodes there, as
    gymnax's params do; a larger one than the env was made with is refused when stepping
    (make the env with it: ``envs.make(id, max_steps_in_episode=N)``)."""

    max_steps_in_episode: int = struct.field(pytree_node=False, default=1)


class SuiteEnv(Environment):
    """A :class:`Backend` as a gymnax environment (see the module docstring); ``resets`` > 0
    makes :meth:`step_batch` reset optimistically."""

    def __init__(self, backend: Backend, resets: int = 0):
        super().__init__()
        self.backend = backend
        self.resets = resets
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
        return self.backend.observe(obs), SuiteState(
            inner, jnp.zeros((), jnp.int32), jnp.zeros((), bool)
        )

    def step_env(
        self, key: jax.Array, state: SuiteState, action: jax.Array, params: SuiteParams
    ) -> tuple[jax.Array, SuiteState, jax.Array, jax.Array, dict[str, Any]]:
        limit = params.max_steps_in_episode
        if limit > self.backend.max_steps:
            raise SuiteError(
                f"{self.name}: max_steps_in_episode={limit} is beyond the limit of "
                f"{self.backend.max_steps} it was made with; make it with "
                f"envs.make({self.name!r}, max_steps_in_episode={limit})"
            )
        obs, inner, reward, terminated, truncated = self.backend.step(key, state.inner, action)
        time = state.time + 1
        terminated = jnp.asarray(terminated, bool)
        truncated = (jnp.asarray(truncated, bool) | (time >= limit)) & ~terminated
        info = {} if self.backend.extras is None else self.backend.extras(inner)
        if self.backend.mask is not None:
            info["action_mask"] = _any_valid(self.backend.mask(inner))
        reward = jnp.asarray(reward, jnp.float32)
        return (
            self.backend.observe(obs),
            SuiteState(inner, time, truncated),
            reward,
            terminated,
            info,
        )

    def is_truncated(self, state: SuiteState, params: SuiteParams) -> jax.Array:
        return state.truncated

    def episode_metrics(self, state: SuiteState) -> dict[str, jax.Array]:
        """What an episode that ended in ``state`` reports, {name: float32 []}: for Craftax,
        ``achievement_<name>`` (1 where the episode unlocked it) and ``achievements`` (how
        many); {} for the other suites. The algorithms log their means over the greedy
        evaluation episodes beside ``eval_return``."""
        return {} if self.backend.episode is None else self.backend.episode(state.inner)

    def step_batch(
        self, keys: jax.Array, state: SuiteState, action: jax.Array, params: SuiteParams
    ) -> tuple[jax.Array, SuiteState, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        """N envs' auto-resetting step (``keys`` [N], a batched ``state``), as gymnax's
        ``step`` vmapped, but with optimistic resets: where ``resets`` M < N, only M fresh
        episodes are generated per step (from the first M envs' reset keys), and the k-th env
        to end in this step starts fresh episode k mod M. The first M episodes to start in a
        step are thus independent draws of the suite's own reset distribution, and further
        ones repeat one of them (the same world and start; their futures differ by their own
        keys), as Craftax's ``OptimisticResetVecEnvWrapper`` does. With M ≥ N (or M = 0) every
        env resets from its own key: exactly gymnax's ``step``."""
        num_envs = keys.shape[0]
        if not 0 < self.resets < num_envs:
            return jax.vmap(self.step, (0, 0, 0, None))(keys, state, action, params)
        pairs = jax.vmap(jax.random.split)(keys)  # gymnax's (step key, reset key) per env
        obs_st, state_st, reward, terminated, info = jax.vmap(self.step_env, (0, 0, 0, None))(
            pairs[:, 0], state, action, params
        )
        truncated = state_st.truncated
        done = terminated | truncated
        fresh = jax.vmap(self.reset_env, (0, None))(pairs[: self.resets, 1], params)
        episode = (jnp.cumsum(done) - 1) % self.resets  # the k-th env to end gets k mod M

        def select(reset_leaf: jax.Array, step_leaf: jax.Array) -> jax.Array:
            reset_leaf = reset_leaf[episode]
            where = done.reshape(done.shape + (1,) * (step_leaf.ndim - 1))
            return jnp.where(where, reset_leaf, step_leaf)

        obs_re, state_re = fresh
        next_state = jax.tree.map(select, state_re, state_st)
        obs = select(obs_re, obs_st)
        info = {
            **info,
            "terminated": terminated,
            "truncated": truncated,
            "final_observation": obs_st,
        }
        return obs, next_state, reward, terminated, truncated, info

    def action_space(self, params: SuiteParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.backend.num_actions)

    def observation_space(self, params: SuiteParams | None = None) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, self._obs_shape, jnp.float32)


class MaskedSuiteEnv(SuiteEnv):
    """A :class:`SuiteEnv` whose states restrict the actions."""

    def action_mask(self, state: SuiteState, params: SuiteParams) -> jax.Array:
        """bool [A]: the actions available in ``state`` (all, where none is)."""
        return _any_valid(self.backend.mask(state.inner))


def _any_valid(mask: jax.Array) -> jax.Array:
    mask = jnp.asarray(mask, bool).reshape(-1)
    return mask | ~jnp.any(mask)


@dataclasses.dataclass(frozen=True)
class Suite:
    """An optional env suite: its import name, how to list its ids and build a backend."""

    module: str
    ids: Callable[[], list[str]]
    build: Callable[[str, int | None, dict[str, Any]], Backend]
    install: str = ""
    """how to install it, where not the ``envs`` extra."""


SUITES: dict[str, Suite] = {
    "navix": Suite(
        "navix", lambda: sorted(importlib.import_module("navix").registry()), navix_backend
    ),
    "craftax": Suite(
        "craftax",
        lambda: [
            "Craftax-Classic-Pixels-v1",
            "Craftax-Classic-Symbolic-v1",
            "Craftax-Pixels-v1",
            "Craftax-Symbolic-v1",
        ],
        craftax_backend,
    ),
    "xminigrid": Suite(
        "xminigrid",
        lambda: sorted(importlib.import_module("xminigrid").registered_environments()),
        xminigrid_backend,
    ),
    "jumanji": Suite(
        "jumanji",
        lambda: sorted(importlib.import_module("jumanji").registered_environments()),
        jumanji_backend,
    ),
    "popgym": Suite(
        "popgym_arcade",
        lambda: list(importlib.import_module("popgym_arcade.registration").REGISTERED_ENVIRONMENTS),
        popgym_backend,
        "pip install dm-pix jaxtyping && pip install --no-deps popgym-arcade (its "
        "stable-gymnax dependency would replace gymnax 1.x; `make install` does this)",
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
        how = SUITES[suite].install or (
            f'pip install "qlearn[{EXTRA}]" (or pip install {SUITES[suite].module})'
        )
        raise SuiteError(f"{suite} is not installed: {how}")


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
    limit, ``one_hot=K`` one-hot encodes integer observations into K categories (ids ≥ K
    encode as zeros), ``optimistic_resets=M`` generates only M fresh episodes per batched step
    (:meth:`SuiteEnv.step_batch`), ``observation=NAME`` picks a Navix env's observation function
    (:data:`NAVIX_OBSERVATIONS`); every other keyword goes to the suite's constructor or
    params."""
    check_id(env_id)
    suite, _, name = env_id.partition(":")
    max_steps = kwargs.pop("max_steps_in_episode", None)
    one_hot = kwargs.pop("one_hot", 0)
    resets = kwargs.pop("optimistic_resets", 0)
    if isinstance(resets, bool) or not isinstance(resets, int) or resets < 0:
        raise SuiteError(f"{env_id}: optimistic_resets={resets!r} must be an integer ≥ 0")
    build = SUITES[suite].build
    try:
        backend = build(name, max_steps, dict(kwargs))
    except TypeError as e:  # an argument the suite's constructor does not take
        raise SuiteError(f"{env_id}: {e}") from None
    if one_hot:
        backend = _with_one_hot(env_id, backend, one_hot)
    env = (SuiteEnv if backend.mask is None else MaskedSuiteEnv)(backend, resets)
    return env, env.default_params


def _with_one_hot(env_id: str, backend: Backend, size: Any) -> Backend:
    """``backend`` with its integer observations one-hot encoded into ``size`` categories."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise SuiteError(f"{env_id}: one_hot={size!r} must be the number of categories (≥ 2)")
    obs, _ = jax.eval_shape(backend.reset, jax.random.key(0))
    if not jnp.issubdtype(obs.dtype, jnp.integer):
        raise SuiteError(
            f"{env_id}: one_hot needs integer category ids; its observations are {obs.dtype}"
        )
    return dataclasses.replace(backend, one_hot=size)


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
