"""The suite adapters against each suite's own API, step by step, on the same keys and actions.

Each reference below drives the suite the way its own documentation does and reads the end of an
episode from the suite's own encoding (Navix step types, XLand-MiniGrid's discount, Craftax's
``done`` with the episode length counted here, Jumanji's last step with the length counted here),
resetting with the key gymnax's ``step`` resets with. The adapter must agree on every
observation, reward and end, say ``truncated`` (never ``terminated``) at the time limit, and
give the last real observation as ``final_observation``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import envs, hparams, losses, policies
from qlearn.algos import dqn, rollout
from qlearn.envs import suites

NONE, TRUNCATION, TERMINATION = 0, 1, 2
NUM_ENVS = 16


def navix_reference(limit):
    import navix

    env = navix.make("Navix-Empty-5x5-v0", max_steps=limit)

    def reset(key):
        ts = env.reset(key)
        return ts.observation, ts

    def step(key, ts, action, length):
        ts = env.step(ts, action)  # public step: no reset, as the previous step did not end
        return ts.observation, ts, ts.reward, ts.step_type  # 1 truncation, 2 termination

    return "navix:Navix-Empty-5x5-v0", reset, step


def xminigrid_reference(limit):
    import xminigrid

    env, params = xminigrid.make("MiniGrid-Empty-5x5", max_steps=limit)

    def reset(key):
        ts = env.reset(params, key)
        return ts.observation, ts

    def step(key, ts, action, length):
        ts = env.step(params, ts, action)
        last = ts.step_type == 2
        kind = jnp.where(last, jnp.where(ts.discount == 0, TERMINATION, TRUNCATION), NONE)
        return ts.observation, ts, ts.reward, kind

    return "xminigrid:MiniGrid-Empty-5x5", reset, step


def craftax_reference(limit):
    from craftax.craftax_env import make_craftax_env_from_name

    env = make_craftax_env_from_name("Craftax-Classic-Symbolic-v1", auto_reset=False)
    params = env.default_params.replace(max_timesteps=limit)

    def reset(key):
        return env.reset(key, params)

    def step(key, state, action, length):
        obs, state, reward, done, _ = env.step(key, state, action, params)
        timed_out = (length + 1 >= limit) & (state.player_health > 0)
        kind = jnp.where(done, jnp.where(timed_out, TRUNCATION, TERMINATION), NONE)
        return obs, state, reward, kind

    return "craftax:Craftax-Classic-Symbolic-v1", reset, step


def jumanji_reference(limit):
    import jumanji

    env = jumanji.make("Snake-v1", time_limit=limit)

    def reset(key):
        state, ts = env.reset(key)
        return ts.observation.grid, (state, ts)

    def step(key, inner, action, length):
        state, _ = inner
        valid = state.action_mask[action]
        state, ts = env.step(state, action)
        timed_out = (length + 1 >= limit) & valid & ~jnp.all(state.body)
        kind = jnp.where(ts.last(), jnp.where(timed_out, TRUNCATION, TERMINATION), NONE)
        return ts.observation.grid, (state, ts), ts.reward, kind

    return "jumanji:Snake-v1", reset, step


def popgym_reference(limit):
    import popgym_arcade

    env, params = popgym_arcade.make("BreakoutEasy")
    env.is_terminated = env.is_terminal  # gymnax 1.x's discount() asks it; the game has none

    def observe(frame):  # pool=4 (4 × 4 blocks averaged), scaled from 0–255 to [0, 1]
        return frame.astype(jnp.float32).reshape(32, 4, 32, 4, 3).mean(axis=(1, 3)) / 255.0

    def reset(key):
        obs, state = env.reset_env(key, params)
        return observe(obs), state

    def step(key, state, action, length):
        obs, state, reward, done, _ = env.step_env(key, state, action, params)
        timed_out = length + 1 >= limit  # the game's own limit is 2,000: this test's is shorter
        kind = jnp.where(done | timed_out, jnp.where(timed_out, TRUNCATION, TERMINATION), NONE)
        return observe(obs), state, reward, kind

    return "popgym:BreakoutEasy", reset, step, {"pool": 4}


REFERENCES = {  # suite -> (reference, time limit: long enough for random play to end some)
    "navix": (navix_reference, 40),
    "xminigrid": (xminigrid_reference, 40),
    "craftax": (craftax_reference, 12),
    "jumanji": (jumanji_reference, 12),
    "popgym": (popgym_reference, 40),
}


def lockstep(env_id, ref_reset, ref_step, limit, key, **kwargs):
    """Step the adapter (gymnax's auto-resetting ``step``; made with ``kwargs``) and the
    reference side by side in NUM_ENVS envs for 4 time limits of uniformly random actions: per
    step and env, the adapter's (obs, final_observation, reward, terminated, truncated) and the
    reference's (obs after any reset, last real obs, reward, end kind)."""
    env, params = envs.make(env_id, max_steps_in_episode=limit, **kwargs)

    def one(key):
        k0, k_loop = jax.random.split(key)
        obs, state = env.reset(k0, params)
        ref_obs, ref = ref_reset(k0)

        def body(carry, key):
            state, ref, length = carry
            k_act, k_env = jax.random.split(key)
            action = jax.random.randint(k_act, (), 0, env.num_actions)
            obs, state, reward, term, trunc, info = env.step(k_env, state, action, params)
            k_step, k_reset = jax.random.split(k_env)  # as gymnax's step splits its key
            real, ref_next, ref_reward, kind = ref_step(k_step, ref, action, length)
            reset_obs, ref_reset_state = ref_reset(k_reset)
            ended = kind != NONE
            ref = jax.tree.map(lambda a, b: jnp.where(ended, a, b), ref_reset_state, ref_next)
            ref_obs = jnp.where(ended, reset_obs, real)
            out = dict(
                obs=obs, final=info["final_observation"], reward=reward, term=term, trunc=trunc,
                ref_obs=ref_obs.astype(jnp.float32), ref_real=real.astype(jnp.float32),
                ref_reward=ref_reward, kind=kind,
            )  # fmt: skip
            return (state, ref, jnp.where(ended, 0, length + 1)), out

        first = jnp.abs(obs - ref_obs.astype(jnp.float32)).max()
        _, out = jax.lax.scan(body, (state, ref, 0), jax.random.split(k_loop, 4 * limit))
        return first, out

    return jax.tree.map(np.asarray, jax.jit(jax.vmap(one))(jax.random.split(key, NUM_ENVS)))


@pytest.mark.parametrize("suite", sorted(REFERENCES))
def test_the_adapter_steps_as_the_suite_does_and_truncates_at_its_time_limit(suite):
    reference, limit = REFERENCES[suite]
    env_id, ref_reset, ref_step, *kwargs = reference(limit)
    first, out = lockstep(
        env_id, ref_reset, ref_step, limit, jax.random.key(3), **next(iter(kwargs), {})
    )
    # equal up to one float32 rounding: the two sides are different compiled programs (Craftax's
    # light level differs in its last bit); every other suite agrees bitwise
    close = dict(rtol=0, atol=1e-6)
    assert first.max() <= close["atol"]  # the same first observation from the same reset key
    np.testing.assert_allclose(out["final"], out["ref_real"], **close)  # the true successor
    np.testing.assert_allclose(out["obs"], out["ref_obs"], **close)  # the next episode's start
    np.testing.assert_allclose(out["reward"], out["ref_reward"], **close)
    np.testing.assert_array_equal(out["term"], out["kind"] == TERMINATION)
    np.testing.assert_array_equal(out["trunc"], out["kind"] == TRUNCATION)
    trunc = out["trunc"]
    assert trunc.sum() >= 3, "the test must see the time limit"
    # at the time limit the final observation is the last real one, not the reset one
    moved = (out["final"][trunc] != out["obs"][trunc]).reshape(trunc.sum(), -1).any(axis=1)
    assert moved.any()
    if suite != "craftax":  # random play rarely dies in 12 Craftax steps: tested below
        assert out["term"].sum() >= 1, "the test must see a true end"


def test_craftax_death_is_a_termination_even_at_the_time_limit():
    env, params = envs.make("craftax:Craftax-Classic-Symbolic-v1", max_steps_in_episode=1)
    _, state = env.reset(jax.random.key(0), params)
    noop = jnp.int32(0)
    _, _, _, term, trunc, _ = env.step(jax.random.key(1), state, noop, params)
    assert not term and trunc  # one step, alive: the time limit
    dying = state.replace(inner=state.inner.replace(player_health=jnp.asarray(0, jnp.int32)))
    _, _, _, term, trunc, _ = env.step(jax.random.key(1), dying, noop, params)
    assert term and not trunc


def batch_steps(resets, n=8, limit=3, steps=7):
    """n Navix DoorKey envs (a random layout per episode) stepped in lockstep with random
    actions through ``envs.step_batch``; the time limit ends them all together every ``limit``
    steps. Per step: the obs and whether each env's episode ended."""
    env, params = envs.make(
        "navix:Navix-DoorKey-8x8-v0", max_steps_in_episode=limit, optimistic_resets=resets
    )

    def run(key):
        obs, state = rollout.reset_envs(env, params, key, n)

        def body(carry, key):
            obs, state = carry
            k_act, k_env = jax.random.split(key)
            action = jax.random.randint(k_act, (n,), 0, env.num_actions)
            obs, state, _, term, trunc, _ = envs.step_batch(
                env, params, jax.random.split(k_env, n), state, action
            )
            return (obs, state), (obs, term | trunc)

        return jax.lax.scan(body, (obs, state), jax.random.split(key, steps))[1]

    return jax.tree.map(np.asarray, jax.jit(run)(jax.random.key(0)))


def test_optimistic_resets_share_m_fresh_episodes_and_equal_gymnax_when_m_covers_every_env():
    """The logic is the adapter's, the same for every suite (Craftax is where it pays: see
    benchmarks/optimistic_resets.py); proven on a cheap env with random layouts."""
    plain = batch_steps(0)
    covered = batch_steps(8)  # M = N: every env resets from its own key, as gymnax's step
    for a, b in zip(plain, covered, strict=True):
        np.testing.assert_array_equal(a, b)
    obs, done = batch_steps(2)
    ended = np.flatnonzero(done.all(axis=1))
    assert list(ended) == [2, 5]  # all 8 end together at the limit
    for t in ended:
        first = obs[t]  # the first observations of the 8 new episodes
        np.testing.assert_array_equal(first[0::2], np.broadcast_to(first[0], first[0::2].shape))
        np.testing.assert_array_equal(first[1::2], np.broadcast_to(first[1], first[1::2].shape))
        assert not np.array_equal(first[0], first[1])  # two distinct fresh episodes
    with pytest.raises(suites.SuiteError, match="optimistic_resets=-1"):
        envs.make("craftax:Craftax-Classic-Symbolic-v1", optimistic_resets=-1)


def test_craftax_reports_each_greedy_episodes_achievements_beside_its_return():
    from craftax.craftax_classic.constants import Achievement

    env, params = envs.make("craftax:Craftax-Classic-Symbolic-v1", max_steps_in_episode=30)
    weights = jax.random.normal(jax.random.key(0), (1345, env.num_actions))

    def q_fn(w, obs):  # a fixed random linear policy: varied actions
        return obs @ w

    mean, ends = jax.jit(rollout.evaluate_episodes, static_argnums=(0, 2, 5))(
        q_fn, weights, env, params, jax.random.key(1), 8
    )
    names = {f"achievement_{a.name.lower()}" for a in Achievement}
    assert set(ends) == names | {"achievements"}
    _, state = env.reset(jax.random.key(2), params)
    info = jax.eval_shape(env.step_env, jax.random.key(3), state, jnp.int32(0), params)[-1]
    assert info["achievements"].shape == (22,) and info["achievements"].dtype == bool
    rates = np.array([ends[n] for n in sorted(names)])
    assert np.all((rates >= 0) & (rates <= 1)) and np.isfinite(mean)
    np.testing.assert_allclose(ends["achievements"], rates.sum(), rtol=1e-6)


@pytest.fixture(scope="module")
def snake():
    return envs.make("jumanji:Snake-v1")


def one_valid_action(env, params, key):
    """NUM_ENVS fresh Snake states whose mask allows one action each (the action itself)."""
    _, state = rollout.reset_envs(env, params, key, NUM_ENVS)
    only = jnp.arange(NUM_ENVS) % env.num_actions
    mask = jax.nn.one_hot(only, env.num_actions, dtype=bool)
    game, timestep = state.inner  # Jumanji keeps the mask in the timestep's observation
    observation = timestep.observation._replace(action_mask=mask)
    return state.replace(inner=(game, timestep.replace(observation=observation))), only


def test_with_one_valid_action_epsilon_one_only_takes_it_and_targets_skip_the_rest(snake):
    env, params = snake
    state, only = one_valid_action(env, params, jax.random.key(0))
    mask = envs.action_masks(env, params, state)
    np.testing.assert_array_equal(mask, jax.nn.one_hot(only, env.num_actions, dtype=bool))
    for i in range(20):
        words = jax.random.bits(
            jax.random.key(i), (NUM_ENVS, policies.WORDS_PER_DECISION), jnp.uint32
        )
        q = jax.random.normal(jax.random.key(100 + i), (NUM_ENVS, env.num_actions))
        np.testing.assert_array_equal(policies.epsilon_greedy(words, q, 1.0, mask), only)


def test_targets_never_bootstrap_from_a_snake_masked_action(snake):
    """Q(s', masked) = 1000 on every masked action of the reached states: the TD target must
    use the best valid action's value."""
    env, params = snake
    obs, state = rollout.reset_envs(env, params, jax.random.key(5), NUM_ENVS)
    action = jnp.zeros(NUM_ENVS, jnp.int32)
    keys = jax.random.split(jax.random.key(6), NUM_ENVS)
    _, _, tr = rollout.step_envs(env, params, keys, state, obs, action)
    mask = np.asarray(tr.next_action_mask)
    assert (~mask).any()  # walls: some reached state forbids some action
    values = jnp.where(tr.next_action_mask, jnp.arange(env.num_actions, dtype=jnp.float32), 1e3)

    def q_fn(params, x):
        return jnp.broadcast_to(values, (x.shape[0], env.num_actions))

    hp = hparams.to_arrays(dqn.DQNHParams(gamma=0.5))
    y = losses.td_targets(q_fn, None, None, tr, hp, double_q=False)
    best = np.where(mask, np.arange(env.num_actions), -np.inf).max(axis=1)
    live = 1.0 - np.asarray(tr.terminated, np.float32)
    np.testing.assert_allclose(y, np.asarray(tr.reward) + 0.5 * live * best)


def test_masked_random_play_never_makes_an_invalid_snake_move(snake):
    """ε = 1 over the valid actions: a Snake episode then ends only at the time limit or when
    the snake is boxed in (no valid action), never by a wall or its body."""
    env, params = snake

    def run(key):
        obs, state = rollout.reset_envs(env, params, key, NUM_ENVS)

        def body(carry, key):
            obs, state = carry
            k_act, k_env = jax.random.split(key)
            mask = envs.action_masks(env, params, state)
            boxed = ~jax.vmap(lambda inner: inner[1].observation.action_mask.any())(state.inner)
            words = jax.random.bits(k_act, (NUM_ENVS, policies.WORDS_PER_DECISION), jnp.uint32)
            q = jnp.zeros((NUM_ENVS, env.num_actions))
            action = policies.epsilon_greedy(words, q, 1.0, mask)
            keys = jax.random.split(k_env, NUM_ENVS)
            obs, state, tr = rollout.step_envs(env, params, keys, state, obs, action)
            return (obs, state), (tr.terminated, boxed)

        return jax.lax.scan(body, (obs, state), jax.random.split(key, 300))[1]

    terminated, boxed = jax.tree.map(np.asarray, jax.jit(run)(jax.random.key(7)))
    assert np.all(boxed[terminated])


JUMANJI_SINGLE_DISCRETE = {
    "CVRP-v1", "Game2048-v1", "GraphColoring-v1", "Knapsack-v1", "Maze-v0", "PacMan-v1",
    "SlidingTilePuzzle-v0", "Snake-v1", "TSP-v1",
}  # fmt: skip


def jumanji_single_discrete() -> list[str]:
    """Every Jumanji id that makes with one discrete action (the others are refused)."""
    made = []
    for env_id in suites.SUITES["jumanji"].ids():
        try:
            envs.make(f"jumanji:{env_id}")
        except suites.SuiteError:
            continue
        made.append(env_id)
    return made


def test_every_single_discrete_jumanji_game_is_served():
    assert JUMANJI_SINGLE_DISCRETE <= set(jumanji_single_discrete())


def masked_random_steps(env, params, num_envs, steps, key):
    """``steps`` steps of ε = 1 over the valid actions in ``num_envs`` envs through
    ``rollout.step_envs``: per step the mask acted on, the action taken, and the transition."""

    def run(key):
        obs, state = rollout.reset_envs(env, params, key, num_envs)

        def body(carry, key):
            obs, state = carry
            k_act, k_env = jax.random.split(key)
            mask = envs.action_masks(env, params, state)
            words = jax.random.bits(k_act, (num_envs, policies.WORDS_PER_DECISION), jnp.uint32)
            q = jnp.zeros((num_envs, env.num_actions))
            action = policies.epsilon_greedy(words, q, 1.0, mask)
            keys = jax.random.split(k_env, num_envs)
            obs, state, tr = rollout.step_envs(env, params, keys, state, obs, action)
            return (obs, state), (mask, action, tr)

        return jax.lax.scan(body, (obs, state), jax.random.split(key, steps))[1]

    return jax.tree.map(np.asarray, jax.jit(run)(key))


@pytest.mark.parametrize("game", sorted(JUMANJI_SINGLE_DISCRETE))
def test_every_jumanji_game_steps_and_masked_epsilon_greedy_takes_only_valid_actions(game):
    """50 masked random steps in 4 envs: every step runs (5 of these games once crashed on
    their first), the mask is the one the game's observation carries, and ε = 1 over the
    valid actions never takes a masked one; an episode's end is a termination or a truncation,
    never both."""
    env, params = envs.make(f"jumanji:{game}")
    _, state = rollout.reset_envs(env, params, jax.random.key(0), 4)
    own = np.asarray(state.inner[1].observation.action_mask).reshape(4, -1)
    mask, action, tr = masked_random_steps(env, params, 4, 50, jax.random.key(0))
    assert np.take_along_axis(mask, action[..., None], axis=2).all()
    offered = own.any(axis=1)  # a state with no valid action offers every action
    np.testing.assert_array_equal(mask[0][offered], own[offered])
    live = ~(tr.terminated | tr.truncated)[:-1]  # the next state is the one reached
    np.testing.assert_array_equal(mask[1:][live], tr.next_action_mask[:-1][live])
    assert not (tr.terminated & tr.truncated).any()


def test_jumanji_maze_ends_are_terminations_and_only_the_time_limit_truncates():
    """Maze's true end is exact (the agent on the target, or no valid action): a random walk
    with a time limit of 6 reaches both kinds of end, and every truncation is at the limit with
    the target not reached."""
    env, params = envs.make("jumanji:Maze-v0", max_steps_in_episode=6)
    _, _, tr = masked_random_steps(env, params, 32, 60, jax.random.key(1))
    assert tr.terminated.sum() >= 1 and tr.truncated.sum() >= 1
    assert np.all(tr.reward[tr.truncated] == 0)  # a truncation never reached the target
    assert np.all(tr.reward[tr.terminated] == 1)  # no walk is boxed in here: each end is the target


def test_a_smaller_time_limit_in_the_params_truncates_there_and_a_larger_one_is_refused():
    env, params = envs.make("navix:Navix-Empty-8x8-v0", max_steps_in_episode=40)
    short = params.replace(max_steps_in_episode=5)

    def run(params, key):
        _, state = env.reset(key, params)

        def body(state, key):
            _, state, _, term, trunc, _ = env.step(key, state, jnp.int32(0), params)
            return state, (term, trunc)  # turning left forever: never a true end

        return jax.lax.scan(body, state, jax.random.split(key, 12))[1]

    term, trunc = jax.tree.map(np.asarray, run(short, jax.random.key(0)))
    assert not term.any()
    np.testing.assert_array_equal(np.flatnonzero(trunc), [4, 9])
    with pytest.raises(suites.SuiteError, match="beyond the limit of 40"):
        run(params.replace(max_steps_in_episode=41), jax.random.key(0))


def xland_benchmark_file(path) -> str:
    """A saved XLand benchmark of two rulesets (go next to a red ball; next to a green key),
    in XLand-MiniGrid's own format."""
    from xminigrid import benchmarks
    from xminigrid.core.constants import TILES_REGISTRY, Colors, Tiles
    from xminigrid.core.goals import AgentNearGoal
    from xminigrid.core.rules import EmptyRule

    tiles = [TILES_REGISTRY[Tiles.BALL, Colors.RED], TILES_REGISTRY[Tiles.KEY, Colors.GREEN]]
    benchmarks.save_bz2_pickle(
        {
            "goals": np.stack([np.asarray(AgentNearGoal(tile=t).encode()) for t in tiles]),
            "rules": np.stack([np.asarray(EmptyRule().encode())[None]] * 2),
            "init_tiles": np.stack([np.asarray(t)[None] for t in tiles]),
            "num_rules": np.zeros(2, np.int32),
        },
        str(path),
    )
    return str(path)


def test_xland_needs_a_benchmark_and_samples_a_ruleset_per_episode(tmp_path):
    with pytest.raises(suites.SuiteError, match="needs its tasks: benchmark=NAME") as e:
        envs.make("xminigrid:XLand-MiniGrid-R1-9x9")
    assert "\n" not in str(e.value)
    with pytest.raises(suites.SuiteError, match="neither an XLand benchmark"):
        envs.make("xminigrid:XLand-MiniGrid-R1-9x9", benchmark="no-such-benchmark")
    path = xland_benchmark_file(tmp_path / "two.pkl")
    env, params = envs.make("xminigrid:XLand-MiniGrid-R1-9x9", benchmark=path)

    def run(key):
        obs, state = rollout.reset_envs(env, params, key, NUM_ENVS)

        def body(carry, key):
            obs, state = carry
            k_act, k_env = jax.random.split(key)
            action = jax.random.randint(k_act, (NUM_ENVS,), 0, env.num_actions)
            obs, state, tr = rollout.step_envs(
                env, params, jax.random.split(k_env, NUM_ENVS), state, obs, action
            )
            return (obs, state), (tr.reward, tr.terminated, state.inner[0].goal)

        return jax.lax.scan(body, (obs, state), jax.random.split(key, 240))[1]

    reward, term, goals = jax.tree.map(np.asarray, jax.jit(run)(jax.random.key(0)))
    assert reward.sum() > 0 and term.sum() > 0  # the empty goal earned 0 and never ended
    assert len({g.tobytes() for g in goals.reshape(-1, goals.shape[-1])}) == 2  # both tasks
    from xminigrid import benchmarks

    second = np.asarray(benchmarks.load_benchmark_from_path(path).goals[1])
    fixed, _ = envs.make("xminigrid:XLand-MiniGrid-R1-9x9", benchmark=path, ruleset_id=1)
    for i in range(4):  # every episode gets the fixed ruleset
        _, state = fixed.reset(jax.random.key(i), params)
        np.testing.assert_array_equal(state.inner[0].goal, second)
    with pytest.raises(suites.SuiteError, match="outside benchmark"):
        envs.make("xminigrid:XLand-MiniGrid-R1-9x9", benchmark=path, ruleset_id=2)


def test_sokoban_without_its_levels_fails_at_once_in_one_line():
    import socket
    import time

    from huggingface_hub import try_to_load_from_cache

    if isinstance(
        try_to_load_from_cache("InstaDeepAI/boxoban-levels", "unfiltered-train.npy"), str
    ):
        pytest.skip("the Boxoban levels are cached here")
    try:
        socket.getaddrinfo("huggingface.co", 443)
        pytest.skip("huggingface.co is reachable here: Sokoban downloads its levels")
    except OSError:
        pass
    start = time.perf_counter()
    with pytest.raises(suites.SuiteError, match="boxoban-levels") as e:
        envs.make("jumanji:Sokoban-v0")
    assert time.perf_counter() - start < 5  # it used to retry for ≈ 31 s, then a traceback
    assert "\n" not in str(e.value)


def test_an_unhashable_env_argument_is_refused_in_one_line_naming_it():
    from qlearn.types import ConfigError

    with pytest.raises(ConfigError, match=r"config\.env_kwargs: ruleset is a dict") as e:
        dqn.DQNConfig(env_id="xminigrid:XLand-MiniGrid-R1-9x9", env_kwargs={"ruleset": {}})
    assert "\n" not in str(e.value)


def test_navix_observations_are_named_rgb_is_scaled_and_category_ids_one_hot():
    key = jax.random.key(0)
    rgb, params = envs.make("navix:Navix-Empty-5x5-v0", observation="rgb")
    obs, _ = rgb.reset(key, params)
    assert obs.shape == (40, 40, 3) and 0.0 <= obs.min() and obs.max() == 1.0  # 255 -> 1
    raw, raw_params = envs.make("navix:Navix-Empty-5x5-v0")
    ids, _ = raw.reset(key, raw_params)  # symbolic: (entity, colour, state) ids, [5, 5, 3]
    hot, hot_params = envs.make("navix:Navix-Empty-5x5-v0", one_hot=11)
    codes, state = hot.reset(key, hot_params)
    assert codes.shape == (5, 5, 33)
    np.testing.assert_array_equal(codes.reshape(5, 5, 3, 11).argmax(-1), ids)
    np.testing.assert_array_equal(codes.reshape(5, 5, 3, 11).sum(-1), 1.0)
    _, _, _, _, _, info = hot.step(key, state, jnp.int32(2), hot_params)
    assert info["final_observation"].shape == (5, 5, 33)
    with pytest.raises(suites.SuiteError, match="observation='pixels' must be one of"):
        envs.make("navix:Navix-Empty-5x5-v0", observation="pixels")
    with pytest.raises(suites.SuiteError, match="one_hot needs integer category ids"):
        envs.make("craftax:Craftax-Classic-Pixels-v1", one_hot=4)
    with pytest.raises(suites.SuiteError, match="must be the number of categories"):
        envs.make("navix:Navix-Empty-5x5-v0", one_hot=1)


def test_bad_ids_and_action_spaces_fail_in_one_line():
    with pytest.raises(suites.SuiteError, match="multi-discrete action space"):
        envs.make("jumanji:BinPack-v2")
    with pytest.raises(suites.SuiteError, match="multi-discrete action space"):
        envs.make("jumanji:MultiCVRP-v0")  # a bounded integer array: one choice per vehicle
    with pytest.raises(suites.SuiteError, match="continuous action space"):
        envs.make("jumanji:SearchAndRescue-v0")
    with pytest.raises(suites.SuiteError, match="did you mean navix:Navix-Empty-8x8-v0"):
        envs.make("xminigrid:Navix-Empty-8x8-v0")  # an id of the wrong suite
    with pytest.raises(envs.UnknownEnvError, match="navix:Navix-DoorKey-5x5-v0"):
        envs.check_id("Navix-DoorKey-5x5")
    with pytest.raises(suites.SuiteError, match="no parameter"):
        envs.make("craftax:Craftax-Classic-Symbolic-v1", gravity=1.0)


def test_popgym_twins_share_their_dynamics_and_differ_in_what_they_show():
    """POPGym Arcade's Breakout and its POMDP twin (``partial_obs=True``): on the same keys and
    actions the same rewards and ends; the frames differ (the POMDP hides the falling ball and
    the ball's trail), in a small part of each."""
    twins = [envs.make("popgym:BreakoutEasy", pool=4, partial_obs=p) for p in (False, True)]

    def play(env, params, key):
        _, state = env.reset(key, params)

        def body(state, key):
            k_act, k_env = jax.random.split(key)
            action = jax.random.randint(k_act, (), 0, env.num_actions)
            obs, state, reward, term, trunc, _ = env.step(k_env, state, action, params)
            return state, (obs, reward, term, trunc)

        return jax.lax.scan(body, state, jax.random.split(key, 150))[1]

    keys = jax.random.split(jax.random.key(0), 4)
    mdp, pomdp = (
        jax.tree.map(np.asarray, jax.vmap(lambda k, e=e: play(*e, k))(keys)) for e in twins
    )
    for a, b in zip(mdp[1:], pomdp[1:], strict=True):
        np.testing.assert_array_equal(a, b)
    assert mdp[2].sum() >= 4  # random play loses the ball: true ends, not the 2,000-step limit
    assert not mdp[3].any()
    differ = (mdp[0] != pomdp[0]).reshape(4, 150, -1).mean(axis=2)  # fraction of pixels
    assert differ.max() > 0 and differ.mean() < 0.1
    assert mdp[0].shape[2:] == (32, 32, 3)


def test_popgym_arguments_are_checked_in_one_line():
    with pytest.raises(
        suites.SuiteError, match=r"pool=5 must be a whole divisor of obs_size = 128"
    ):
        envs.make("popgym:BreakoutEasy", pool=5)
    with pytest.raises(suites.SuiteError, match=r"has no parameter paddle_width"):
        envs.make("popgym:BreakoutEasy", paddle_width=3)
    with pytest.raises(suites.SuiteError, match=r"beyond the game's own limit 2000"):
        envs.make("popgym:BreakoutEasy", max_steps_in_episode=5_000)
    with pytest.raises(suites.SuiteError, match=r"popgym has no env 'Pong'"):
        envs.make("popgym:Pong")


def test_a_missing_suite_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(suites.SUITES, "navix", suites.SUITES["navix"].__class__(
        "navix_not_installed_here", suites.SUITES["navix"].ids, suites.SUITES["navix"].build
    ))  # fmt: skip
    with pytest.raises(suites.SuiteError, match=r'pip install "qlearn\[envs\]"') as e:
        envs.make("navix:Navix-Empty-8x8-v0")
    assert "\n" not in str(e.value)


def test_dqn_with_a_cnn_on_navix_and_pqn_on_masked_snake_train_end_to_end():
    """The suites are envs like any other: DQN's CNN takes Navix's [5, 5, 3] image, PQN's MLP
    flattens Snake's grid and honours its masks; every metric is finite."""
    from qlearn import algos

    dqn_config = dqn.DQNConfig(
        env_id="navix:Navix-Empty-5x5-v0", network="cnn", hidden_sizes=(16,), num_envs=2,
        total_steps=1_000, learning_starts=200, buffer_size=1_000, batch_size=16, num_evals=2,
        eval_episodes=2, max_episode_steps=20,
    )  # fmt: skip
    pqn = algos.get("pqn")
    pqn_config = pqn.config(
        env_id="jumanji:Snake-v1", num_envs=4, rollout_steps=8, total_steps=1_024,
        hidden_sizes=(16,), num_evals=2, eval_episodes=2, max_episode_steps=50,
    )  # fmt: skip
    for algorithm, config in ((algos.get("dqn"), dqn_config), (pqn, pqn_config)):
        _, m = jax.jit(algorithm.make_train(config))(jax.random.key(0), algorithm.hparams())
        assert np.all(np.isfinite(np.asarray(m["eval_return"]))), config.env_id
        assert np.all(np.asarray(m["train_episodes"]) > 0), config.env_id


def test_a_cnn_refuses_craftax_symbolic_vectors_before_compiling():
    from qlearn.types import ConfigError

    with pytest.raises(ConfigError, match=r"\(1345,\)") as e:
        dqn.DQNConfig(env_id="craftax:Craftax-Classic-Symbolic-v1", network="cnn")
    assert "\n" not in str(e.value)
