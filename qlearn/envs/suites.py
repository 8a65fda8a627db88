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
  adapter truncates where the step count reached the env's ``time_limit``, and every
  single-discrete game's true end is computed exactly (:func:`_jumanji_true_ends`: Snake,
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

EXTRA = "envs"


class SuiteError(ValueError):
    """An id, argument or action space an adapter cannot serve, or a missing optional suite."""


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


@dataclasses.dataclass(frozen=True)
class Backend:
    """One suite env's raw, non-resetting dynamics, as pure functions.

    reset(key) -> (obs, inner); step(key, inner, action) -> (obs, inner, reward, terminated,
    truncated), never resetting; mask(inner) -> bool [A] or None for an env without masks;
    extras(inner) -> what ``info`` carries beside (Craftax's ``achievements``), or None;
    episode(inner) -> what an episode ending in ``inner`` reports ({name: float32 []},
    Craftax's achievements), or None.
    ``obs`` is the suite's own observation; :class:`SuiteEnv` makes it float32, scaled from
    0–255 to [0, 1] where ``pixels`` (an RGB image of uint8), or one-hot encoded where
    ``one_hot`` K > 0 (integer category ids in [0, K): [..., C] -> [..., C·K]).
    """

    name: str
    num_actions: int
    max_steps: int
    reset: Callable[[jax.Array], tuple[Any, Any]]
    step: Callable[[jax.Array, Any, jax.Array], tuple[Any, Any, jax.Array, jax.Array, jax.Array]]
    mask: Callable[[Any], jax.Array] | None = None
    pixels: bool = False
    one_hot: int = 0
    extras: Callable[[Any], dict[str, jax.Array]] | None = None
    episode: Callable[[Any], dict[str, jax.Array]] | None = None

    def observe(self, obs: Any) -> jax.Array:
        """The suite's observation as the network sees it (see the class docstring)."""
        if self.one_hot:
            codes = jax.nn.one_hot(obs, self.one_hot, dtype=jnp.float32)  # [..., K]
            lead = obs.shape[:-1] if obs.ndim == 3 else obs.shape
            return codes.reshape(*lead, -1) if obs.ndim != 1 else codes.reshape(-1)
        if self.pixels:
            return jnp.asarray(obs, jnp.float32) / 255.0
        return jnp.asarray(obs, jnp.float32)


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


# -- the suites ---------------------------------------------------------------------------------


NAVIX_OBSERVATIONS = (
    "symbolic",
    "symbolic_first_person",
    "categorical",
    "categorical_first_person",
    "rgb",
    "rgb_first_person",
)
"""The names ``observation=`` takes for a Navix env (``navix.observations``' functions; the
env's own default is its id's, symbolic for the MiniGrid ports). The ``rgb`` ones are scaled
to [0, 1]; the symbolic and categorical ones are category ids, for ``one_hot=K``."""


def _navix(env_id: str, max_steps: int | None, kwargs: dict[str, Any]) -> Backend:
    import navix

    if "observation_fn" in kwargs:  # a function: not hashable into a config, nor JSON
        raise SuiteError(f"navix:{env_id}: name the observation function: observation=NAME")
    name = kwargs.pop("observation", None)
    if name is not None:
        if name not in NAVIX_OBSERVATIONS:
            raise SuiteError(
                f"navix:{env_id}: observation='{name}' must be one of "
                f"{', '.join(NAVIX_OBSERVATIONS)}"
            )
        kwargs = kwargs | {"observation_fn": getattr(navix.observations, name)}
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

    pixels = name is not None and name.startswith("rgb")
    return Backend(
        f"navix:{env_id}", len(env.action_set), int(env.max_steps), reset, step, pixels=pixels
    )


def _xminigrid(env_id: str, max_steps: int | None, kwargs: dict[str, Any]) -> Backend:
    import xminigrid

    benchmark, ruleset_id = kwargs.pop("benchmark", None), kwargs.pop("ruleset_id", None)
    xland = env_id.startswith("XLand-")
    if xland and benchmark is None:
        raise SuiteError(
            f"xminigrid:{env_id} needs its tasks: benchmark=NAME (one of "
            f"{', '.join(_xland_benchmarks())}) or benchmark=PATH (a saved benchmark), and "
            "optionally ruleset_id=N for one fixed ruleset; without them XLand serves the "
            "empty goal"
        )
    if not xland and (benchmark is not None or ruleset_id is not None):
        raise SuiteError(f"xminigrid:{env_id} takes no benchmark: only XLand-* ids have rulesets")
    if max_steps is not None:
        kwargs = kwargs | {"max_steps": max_steps}
    env, params = xminigrid.make(env_id, **kwargs)
    last = 2  # xminigrid.types.StepType.LAST
    rulesets = _xland_rulesets(benchmark, ruleset_id) if xland else None

    def reset(key):
        if rulesets is None:
            timestep = env.reset(params, key)
            return timestep.observation, timestep
        k_rules, key = jax.random.split(key)
        ruleset = rulesets(k_rules)  # one per episode, kept in the state
        timestep = env.reset(params.replace(ruleset=ruleset), key)
        return timestep.observation, (ruleset, timestep)

    def step(key, inner, action):
        if rulesets is None:
            nxt = env.step(params, inner, action)  # the base env never resets
            new = nxt
        else:
            ruleset, timestep = inner
            nxt = env.step(params.replace(ruleset=ruleset), timestep, action)
            new = (ruleset, nxt)
        ended = nxt.step_type == last
        return (
            nxt.observation,
            new,
            nxt.reward,
            ended & (nxt.discount == 0),
            ended & (nxt.discount > 0),
        )

    return Backend(
        f"xminigrid:{env_id}", int(env.num_actions(params)), int(params.max_steps), reset, step
    )


def _xland_benchmarks() -> tuple[str, ...]:
    from xminigrid import benchmarks

    return benchmarks.registered_benchmarks()


def _xland_rulesets(benchmark: str, ruleset_id: int | None) -> Callable[[jax.Array], Any]:
    """key -> the XLand ruleset of an episode: one drawn uniformly from ``benchmark`` (a name
    of XLand-MiniGrid's benchmarks, loaded from its data directory or downloaded, or the path of
    a saved one) at each reset, or always its ``ruleset_id``-th."""
    from pathlib import Path

    from xminigrid import benchmarks

    if benchmark in _xland_benchmarks():
        cached = Path(benchmarks.DATA_PATH, benchmarks.NAME2HFFILENAME[benchmark]).exists()
        try:
            tasks = benchmarks.load_benchmark(benchmark)
        except OSError as e:  # not downloaded, and no network
            where = "" if cached else f" (not in {benchmarks.DATA_PATH}, and the download failed)"
            raise SuiteError(
                f"XLand benchmark '{benchmark}' cannot be loaded{where}: {e}"
            ) from None
    elif Path(benchmark).is_file():
        tasks = benchmarks.load_benchmark_from_path(benchmark)
    else:
        raise SuiteError(
            f"benchmark='{benchmark}' is neither an XLand benchmark "
            f"({', '.join(_xland_benchmarks())}) nor a file"
        )
    if ruleset_id is None:
        return tasks.sample_ruleset
    count = tasks.num_rulesets()
    if not 0 <= int(ruleset_id) < count:
        raise SuiteError(
            f"ruleset_id={ruleset_id} is outside benchmark '{benchmark}' (0..{count - 1})"
        )
    fixed = tasks.get_ruleset(int(ruleset_id))
    return lambda key: fixed


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
        from craftax.craftax_classic.constants import Achievement, BlockType

        def true_end(state):
            row, col = state.player_position[0], state.player_position[1]
            return (state.player_health <= 0) | (state.map[row, col] == BlockType.LAVA.value)
    else:
        from craftax.craftax.constants import Achievement
        from craftax.craftax.util.game_logic_utils import has_beaten_boss

        def true_end(state):
            return (state.player_health <= 0) | has_beaten_boss(state, env.static_env_params)

    names = tuple(a.name.lower() for a in sorted(Achievement, key=lambda a: a.value))

    def reset(key):
        return env.reset_env(key, params)

    def step(key, state, action):
        obs, nxt, reward, _, _ = env.step_env(key, state, action, params)  # done: either end
        terminated = true_end(nxt)
        return obs, nxt, reward, terminated, nxt.timestep >= params.max_timesteps

    return Backend(
        f"craftax:{env_id}",
        int(env.num_actions),
        int(params.max_timesteps),
        reset,
        step,
        extras=lambda state: {"achievements": state.achievements},
        episode=lambda state: _achievements(state.achievements, names),
    )


def _achievements(unlocked: jax.Array, names: tuple[str, ...]) -> dict[str, jax.Array]:
    """Craftax's achievements bool [K] as per-episode metrics: one 0/1 per achievement
    (``achievement_<name>``) and their count (``achievements``)."""
    unlocked = unlocked.astype(jnp.float32)
    rates = {f"achievement_{name}": unlocked[i] for i, name in enumerate(names)}
    return rates | {"achievements": jnp.sum(unlocked)}


JUMANJI_IMAGES = {"Snake-v1": "grid"}
"""Jumanji games whose observation is one image field (kept [H, W, C]); every other game's
observation is its fields but the action mask, flattened and concatenated."""


def _jumanji_true_ends(env: Any) -> dict[str, Callable[[Any, Any, Any, Any], jax.Array]]:
    """Jumanji game -> its true end, exactly: ``end(state, timestep, action, next_state)`` of a
    step that ended the episode, True where the end is not the time limit (Jumanji reports both
    as ``termination``). Snake: an invalid move or a board full of snake; Maze: the agent on
    the target or no valid action left; PacMan: the player dead or every pellet eaten;
    SlidingTilePuzzle: the puzzle solved. The single-discrete games without a time limit
    (CVRP, Game2048, GraphColoring, Knapsack, TSP) end only truly."""
    return {
        "Snake-v1": lambda state, ts, action, nxt: (
            ~ts.observation.action_mask[action] | jnp.all(nxt.body)
        ),
        "Maze-v0": lambda state, ts, action, nxt: (
            (nxt.agent_position == nxt.target_position) | ~jnp.any(nxt.action_mask)
        ),
        "PacMan-v1": lambda state, ts, action, nxt: (nxt.dead == 1) | (nxt.pellets == 0),
        "SlidingTilePuzzle-v0": lambda state, ts, action, nxt: jnp.array_equal(
            nxt.puzzle, env.solved_puzzle
        ),
    }


def _jumanji(env_id: str, max_steps: int | None, kwargs: dict[str, Any]) -> Backend:
    import jumanji
    from jumanji import specs

    if env_id == "Sokoban-v0" and "generator" not in kwargs:
        _require_hub_file(
            "jumanji:Sokoban-v0", "InstaDeepAI/boxoban-levels", "unfiltered-train.npy"
        )
    if max_steps is not None:
        kwargs = kwargs | {"time_limit": max_steps}
    try:
        env = jumanji.make(env_id, **kwargs)
    except TypeError as e:
        raise SuiteError(f"jumanji:{env_id}: {e}") from None
    spec = env.action_spec
    if not isinstance(spec, specs.DiscreteArray):
        # an integer bounded array (MultiCVRP's) is one discrete choice per entry too
        discrete = jnp.issubdtype(spec.dtype, jnp.integer)
        kind = "multi-discrete" if discrete else "continuous"
        raise SuiteError(
            f"jumanji:{env_id} has a {kind} action space ({type(spec).__name__}, shape "
            f"{tuple(spec.shape)}); Q-learning here needs one discrete action"
        )
    limit = getattr(env, "time_limit", None)
    image = JUMANJI_IMAGES.get(env_id)
    has_mask = "action_mask" in env.observation_spec.generate_value()._fields

    def observe(observation):
        if image is not None:
            return getattr(observation, image)
        fields = {k: v for k, v in observation._asdict().items() if k != "action_mask"}
        return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in jax.tree.leaves(fields)])

    def reset(key):
        state, timestep = env.reset(key)
        return observe(timestep.observation), (state, timestep)

    def at_limit(state):
        if limit is None:
            return jnp.zeros((), bool)
        return state.step_count >= limit

    # a game without its exact rule: an end on exactly the last step counts as the time limit
    true_end = _jumanji_true_ends(env).get(env_id, lambda state, ts, action, nxt: ~at_limit(nxt))

    def step(key, inner, action):
        state, timestep = inner
        nxt, next_timestep = env.step(state, action)  # the base env never resets
        ended = next_timestep.last()
        terminated = ended & true_end(state, timestep, action, nxt)
        return (
            observe(next_timestep.observation),
            (nxt, next_timestep),
            next_timestep.reward,
            terminated,
            (ended & at_limit(nxt)),
        )

    return Backend(
        f"jumanji:{env_id}",
        int(spec.num_values),
        int(limit) if limit is not None else _NO_LIMIT,
        reset,
        step,
        (lambda inner: inner[1].observation.action_mask) if has_mask else None,
    )


def _require_hub_file(env_id: str, repo: str, filename: str) -> None:
    """Raise :class:`SuiteError` at once, in one line, when a file the env downloads from the
    Hugging Face Hub is neither cached nor reachable (instead of retrying for half a minute
    and ending in a traceback)."""
    import socket

    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, filename), str):
        return
    try:
        socket.getaddrinfo("huggingface.co", 443)
    except OSError:
        raise SuiteError(
            f"{env_id} needs {filename} of huggingface.co/{repo}, which is neither in the local "
            "Hugging Face cache nor reachable from here"
        ) from None


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
