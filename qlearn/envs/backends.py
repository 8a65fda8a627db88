"""The suites' own dynamics, one :class:`Backend` per env: what each suite's reset and step
return, split into qlearn's terms (observation, true end, time limit, action mask, what an
episode reports). :mod:`qlearn.envs.suites` wraps a backend as a gymnax environment and
holds the registry of suites; each builder here imports only its own suite.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


class SuiteError(ValueError):
    """An id, argument or action space an adapter cannot serve, or a missing optional suite."""


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


def navix_backend(env_id: str, max_steps: int | None, kwargs: dict[str, Any]) -> Backend:
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


def xminigrid_backend(env_id: str, max_steps: int | None, kwargs: dict[str, Any]) -> Backend:
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


def craftax_backend(env_id: str, max_steps: int | None, kwargs: dict[str, Any]) -> Backend:
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


def jumanji_backend(env_id: str, max_steps: int | None, kwargs: dict[str, Any]) -> Backend:
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


def popgym_backend(env_id: str, max_steps: int | None, kwargs: dict[str, Any]) -> Backend:
    """POPGym Arcade (Wang et al. 2025): pixel games with a fully observable (MDP) and a
    partially observable (POMDP, ``partial_obs=True``) twin of each, the same dynamics drawn
    two ways. Frames are ``obs_size`` (128 or 256) square RGB; ``pool=k`` averages k × k
    pixel blocks (128 / 4 = 32 × 32 × 3). The games fold their time limit into ``done`` (and
    Breakout into its ``terminated``), so the adapter counts each episode's steps itself and
    calls an end at the game's limit a truncation, any other end a termination."""
    import popgym_arcade

    name = f"popgym:{env_id}"
    check_kwargs(name, kwargs, {"partial_obs", "obs_size", "pool"})
    pool = kwargs.pop("pool", 1)
    env, params = popgym_arcade.make(env_id, **kwargs)
    # the games were written for gymnax 0.0.x: gymnax 1.x's discount(), which their step_env
    # calls for an info entry unused here, asks an is_terminated() they do not define
    env.is_terminated = env.is_terminal
    size = int(env.obs_size)
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1 or size % pool:
        raise SuiteError(f"{name}: pool={pool!r} must be a whole divisor of obs_size = {size}")
    limit = int(params.max_steps_in_episode)
    if max_steps is not None and max_steps > limit:
        raise SuiteError(
            f"{name}: max_steps_in_episode={max_steps} is beyond the game's own limit {limit}"
        )

    def observe(frame: jax.Array) -> jax.Array:
        if pool == 1:
            return frame
        blocks = frame.astype(jnp.float32).reshape(size // pool, pool, size // pool, pool, 3)
        return blocks.mean(axis=(1, 3))

    def reset(key):
        obs, state = env.reset_env(key, params)
        return observe(obs), (state, jnp.zeros((), jnp.int32))

    def step(key, inner, action):
        state, steps = inner
        obs, nxt, reward, done, _ = env.step_env(key, state, action, params)
        steps = steps + 1
        at_limit = steps >= limit
        return observe(obs), (nxt, steps), reward, done & ~at_limit, done & at_limit

    return Backend(
        name,
        int(env.action_space(params).n),
        limit if max_steps is None else max_steps,
        reset,
        step,
        pixels=True,
    )


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
