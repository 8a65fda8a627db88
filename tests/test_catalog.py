"""Each catalogue MDP against an independent plain-Python implementation of the same MDP."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import envs
from qlearn.envs import catalog

# --- plain-Python models, written from the book's descriptions, not from the arrays ----------


def py_cliff(s, a):
    """(next state, reward, terminated) of cliff walking, by grid logic."""
    row, col = divmod(s, 12)
    row += {0: -1, 2: 1}.get(a, 0)
    col += {1: 1, 3: -1}.get(a, 0)
    row, col = min(max(row, 0), 3), min(max(col, 0), 11)
    if row == 3 and 1 <= col <= 10:
        return 36, -100.0, False
    return row * 12 + col, -1.0, (row, col) == (3, 11)


def py_chain_distribution(n, slip, s, a):
    """{next state: probability} and expected reward of the slippery chain."""
    forward = 1 if a == 1 else -1
    dist = {}
    for step, prob in ((forward, 1 - slip), (-forward, slip)):
        nxt = min(max(s + step, 0), n - 1)
        if prob > 0:
            dist[nxt] = dist.get(nxt, 0.0) + prob
    return dist, dist.get(n - 1, 0.0)


def py_baird_distribution(s, a):
    return ({i: 1 / 6 for i in range(6)} if a == 0 else {6: 1.0}), 0.0


def array_distribution(params, s, a):
    p = np.asarray(params.transition_probs[s, a])
    return {int(i): float(p[i]) for i in np.nonzero(p)[0]}


def assert_same_distribution(ours, theirs):
    assert set(ours) == set(theirs)
    for k in ours:
        assert ours[k] == pytest.approx(theirs[k], abs=1e-6)


def rollout(env, params, actions, key):
    """Step one env through ``actions``: (state index before, reward, terminated, truncated)."""
    _obs, state = env.reset(jax.random.key(key), params)
    out = []
    for t, a in enumerate(actions):
        before = int(state.state)
        _obs, state, r, term, trunc, info = env.step(
            jax.random.fold_in(jax.random.key(key), t), state, jnp.int32(a), params
        )
        out.append((before, int(info["state"]), float(r), bool(term), bool(trunc)))
    return out


def test_cliff_walking_matches_grid_logic_step_by_step():
    env, params = envs.make("CliffWalking")
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 4, 400)
    s = catalog.CLIFF_START
    for i, (before, after, r, term, _trunc) in enumerate(rollout(env, params, actions, 0)):
        assert before == s, i
        nxt, rew, done = py_cliff(s, int(actions[i]))
        assert (after, r, term) == (nxt, rew, done), i
        s = catalog.CLIFF_START if done else nxt


def test_cliff_walking_edge_path_returns_minus_13():
    env, params = envs.make("CliffWalking")
    path = [catalog.UP] + [catalog.RIGHT] * 11 + [catalog.DOWN]
    steps = rollout(env, params, path, 1)
    assert sum(r for *_, r, _t, _tr in steps) == -13.0
    assert [t for *_, t, _tr in steps] == [False] * 12 + [True]
    assert all(p[1] == catalog.CLIFF_START for p in rollout(env, params, [catalog.RIGHT], 2))


@pytest.mark.parametrize("slip", [0.0, 0.2])
def test_chain_arrays_match_plain_python(slip):
    n = 6
    _env, params = envs.make("Chain", n_states=n, slip=slip)
    for s in range(n - 1):
        for a in range(2):
            dist, reward = py_chain_distribution(n, slip, s, a)
            assert_same_distribution(array_distribution(params, s, a), dist)
            assert float(params.rewards[s, a]) == pytest.approx(reward)
    assert np.asarray(params.terminal).tolist() == [False] * (n - 1) + [True]


def test_a_slippery_chain_pays_the_reward_of_the_transition_that_happened():
    """From n − 2, 'right' with slip 0.3: 1 when it reaches the end, 0 when it slips back (the
    expectation 0.7 stays in the arrays, for DP)."""
    n = 6
    env, params = envs.make("Chain", n_states=n, slip=0.3)
    state = env.reset(jax.random.key(0), params)[1].replace(state=jnp.int32(n - 2))
    keys = jax.random.split(jax.random.key(1), 4_000)
    _, after, reward, terminated, _ = jax.vmap(env.step_env, (0, None, None, None))(
        keys, state, jnp.int32(1), params
    )
    reached = np.asarray(after.state) == n - 1
    np.testing.assert_array_equal(np.asarray(reward), reached.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(terminated), reached)
    assert abs(reached.mean() - 0.7) < 0.03
    assert float(params.rewards[n - 2, 1]) == pytest.approx(0.7)


def test_chain_episode_right_all_the_way():
    env, params = envs.make("Chain", n_states=5)
    steps = rollout(env, params, [1, 1, 1, 1], 0)
    assert [(b, a, r, t) for b, a, r, t, _ in steps] == [
        (0, 1, 0.0, False),
        (1, 2, 0.0, False),
        (2, 3, 0.0, False),
        (3, 4, 1.0, True),
    ]


def test_baird_arrays_features_and_sampling():
    env, params = envs.make("Baird")
    for s in range(7):
        for a in range(2):
            dist, reward = py_baird_distribution(s, a)
            assert_same_distribution(array_distribution(params, s, a), dist)
            assert float(params.rewards[s, a]) == reward
    # v̂(i) = 2 w_i + w_8 (upper states), v̂(7) = w_7 + 2 w_8, in the book's numbering
    w = np.arange(1.0, 9.0)
    v = np.asarray(params.features) @ w
    np.testing.assert_allclose(v[:6], 2 * w[:6] + w[7])
    np.testing.assert_allclose(v[6], w[6] + 2 * w[7])
    # dashed lands uniformly on the upper states: empirical frequencies from 6000 steps
    keys = jax.random.split(jax.random.key(0), 6000)
    state = envs.finite.FiniteMDPState(state=jnp.int32(6), time=jnp.int32(0))
    step = jax.vmap(lambda k: env.step(k, state, jnp.int32(0), params)[5]["state"])
    counts = np.bincount(np.asarray(step(keys)), minlength=7)
    assert counts[6] == 0
    np.testing.assert_allclose(counts[:6] / 6000, 1 / 6, atol=0.02)


def test_maximization_bias_dynamics_and_reward_noise():
    env, params = envs.make("MaximizationBias")
    assert np.asarray(params.action_mask[catalog.MAXBIAS_A]).sum() == 2
    assert np.asarray(params.action_mask[catalog.MAXBIAS_B]).all()
    steps = rollout(env, params, [catalog.MAXBIAS_RIGHT], 0)
    assert steps[0][1:4] == (catalog.MAXBIAS_END, 0.0, True)
    steps = rollout(env, params, [catalog.MAXBIAS_LEFT, 3], 0)
    assert steps[0][1:4] == (catalog.MAXBIAS_B, 0.0, False)
    assert steps[1][1] == catalog.MAXBIAS_END and steps[1][3]
    # rewards from B: N(−0.1, 1), sampled in step
    state = envs.finite.FiniteMDPState(state=jnp.int32(catalog.MAXBIAS_B), time=jnp.int32(0))
    keys = jax.random.split(jax.random.key(1), 20_000)
    rewards = np.asarray(jax.vmap(lambda k: env.step(k, state, jnp.int32(4), params)[2])(keys))
    assert rewards.mean() == pytest.approx(-0.1, abs=0.03)
    assert rewards.std() == pytest.approx(1.0, abs=0.03)


def test_garnet_is_reproducible_by_seed_and_branching_holds():
    _, a = envs.make("Garnet", n_states=12, n_actions=3, branching=4, seed=5)
    _, b = envs.make("Garnet", n_states=12, n_actions=3, branching=4, seed=5)
    _, c = envs.make("Garnet", n_states=12, n_actions=3, branching=4, seed=6)
    np.testing.assert_array_equal(a.transition_probs, b.transition_probs)
    assert not np.array_equal(a.transition_probs, c.transition_probs)
    assert ((np.asarray(a.transition_probs) > 0).sum(-1) == 4).all()
    _, f = envs.make("Garnet", n_states=12, feature_dim=5)
    assert f.features.shape == (12, 5)


def test_garnet_sampling_matches_its_arrays():
    env, params = envs.make("Garnet", n_states=6, n_actions=2, branching=3, seed=0)
    s, a = 2, 1
    state = envs.finite.FiniteMDPState(state=jnp.int32(s), time=jnp.int32(0))
    keys = jax.random.split(jax.random.key(0), 20_000)
    nxt = jax.vmap(lambda k: env.step(k, state, jnp.int32(a), params)[5]["state"])(keys)
    freq = np.bincount(np.asarray(nxt), minlength=6) / len(keys)
    np.testing.assert_allclose(freq, params.transition_probs[s, a], atol=0.015)


def test_make_rejects_unknown_builder_argument():
    with pytest.raises(ValueError, match="Garnet has no parameter n_stats"):
        envs.make("Garnet", n_stats=3)
    with pytest.raises(envs.UnknownEnvError, match="did you mean Baird"):
        envs.make("Bairdd")
    with pytest.raises(envs.FiniteMDPError, match="branching"):
        envs.make("Garnet", n_states=3, branching=5)


# --- T-maze ------------------------------------------------------------------------------------


def py_tmaze(length, cue, x, a, wrong=-1.0):
    """(next position or None at the end, reward, observation index of (cue, x)) by maze
    logic: forward/back along the corridor, up/down end the episode at the junction only."""
    seen = cue if x == 0 else (2 if x < length else 3)
    if a == 0:
        return min(x + 1, length), 0.0, seen
    if a == 1:
        return max(x - 1, 0), 0.0, seen
    if x < length:
        return x, 0.0, seen
    return None, (1.0 if (a == 2) == (cue == 0) else wrong), seen


@pytest.mark.parametrize("length, wrong", [(1, -1.0), (4, -1.0), (4, -0.025)])
def test_tmaze_arrays_match_maze_logic_and_hide_the_cue(length, wrong):
    _, params = envs.make("TMaze", length=length, wrong_reward=wrong)
    cells, end = length + 1, 2 * (length + 1)
    for cue in (0, 1):
        for x in range(cells):
            s = cue * cells + x
            for a in range(4):
                nxt, reward, seen = py_tmaze(length, cue, x, a, wrong)
                assert params.transition_probs[s, a, end if nxt is None else cue * cells + nxt] == 1
                assert params.rewards[s, a] == reward
            assert np.argmax(params.features[s]) == seen
    # the cue shows at the start only: every other observation is the same under both cues
    np.testing.assert_array_equal(params.features[1:cells], params.features[cells + 1 : end])
    assert not np.array_equal(params.features[0], params.features[cells])
    assert params.initial_distribution[0] == params.initial_distribution[cells] == 0.5


def test_tmaze_optimum_is_q_star_at_the_start():
    from qlearn import dp

    length, gamma = 6, 0.9
    _, params = envs.make("TMaze", length=length)
    q_star = dp.value_iteration(params, gamma)[0]
    for start in (0, length + 1):
        np.testing.assert_allclose(
            q_star[start].max(), catalog.tmaze_optimal_return(length, gamma), rtol=1e-5
        )


@pytest.mark.parametrize("gamma, wrong", [(1.0, -1.0), (0.9, -1.0), (0.9, -0.025), (1.0, 0.0)])
def test_tmaze_memoryless_bound_is_the_best_policy_of_the_observation(gamma, wrong):
    """Every deterministic policy of the observation alone (4 observations → 4⁴ policies),
    evaluated exactly over the hidden states (dp.policy_value, the episodes' time limit): the
    best reaches the closed-form bound and none passes it (a stochastic one cannot either: the
    bound is linear in each observation's action probabilities)."""
    import itertools

    from qlearn import dp

    length = 3
    _, params = envs.make("TMaze", length=length, wrong_reward=wrong)
    seen = np.argmax(np.asarray(params.features), axis=1)  # observation of each state
    choices = np.asarray(list(itertools.product(range(4), repeat=4)))  # [256, observations]
    policies = jnp.asarray(np.eye(4)[choices[:, seen]])  # [256, S, A]
    values = jax.jit(jax.vmap(lambda pi: dp.policy_value(params, pi, gamma)))(policies)
    bound = catalog.tmaze_memoryless_bound(length, gamma)
    assert float(jnp.max(values)) == pytest.approx(bound, abs=1e-5)
    assert bound < catalog.tmaze_optimal_return(length, gamma)


def test_tmaze_rejects_bad_lengths():
    with pytest.raises(ValueError, match="length"):
        envs.make("TMaze", length=0)
    with pytest.raises(ValueError, match="max_steps_in_episode"):
        envs.make("TMaze", length=5, max_steps_in_episode=5)
    for wrong in (-1.5, 0.1):
        with pytest.raises(ValueError, match="wrong_reward"):
            envs.make("TMaze", length=5, wrong_reward=wrong)
