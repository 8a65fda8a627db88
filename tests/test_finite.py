"""The FiniteMDP environment: gymnax interface, auto-reset, truncation, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import envs
from qlearn.envs import FiniteMDPError, finite_mdp_params


def two_state_params(**kw):
    # state 0 -> (a=0: stay, reward 1) (a=1: to terminal state 1, reward 5)
    p = np.zeros((2, 2, 2))
    p[0, 0, 0] = p[0, 1, 1] = p[1, :, 1] = 1.0
    return finite_mdp_params(p, [[1.0, 5.0], [0.0, 0.0]], [1.0, 0.0], terminal=[False, True], **kw)


def test_step_follows_the_gymnax_six_tuple_with_auto_reset():
    params = two_state_params()
    env = envs.FiniteMDP(params)
    obs, state = env.reset(jax.random.key(0), params)
    np.testing.assert_array_equal(obs, [1.0, 0.0])  # one-hot features by default
    obs, state, r, term, trunc, info = env.step(jax.random.key(1), state, 1, params)
    assert float(r) == 5.0 and bool(term) and not bool(trunc)
    np.testing.assert_array_equal(info["final_observation"], [0.0, 1.0])  # the terminal state
    np.testing.assert_array_equal(obs, [1.0, 0.0])  # already reset to the start
    assert int(state.time) == 0


def test_time_limit_truncates_and_keeps_the_final_observation():
    params = two_state_params(max_steps_in_episode=3)
    env = envs.FiniteMDP(params)
    _, state = env.reset(jax.random.key(0), params)
    flags = []
    for t in range(3):
        _, state, r, term, trunc, info = env.step(jax.random.key(t), state, 0, params)
        flags.append((float(r), bool(term), bool(trunc)))
    assert flags == [(1.0, False, False), (1.0, False, False), (1.0, False, True)]
    np.testing.assert_array_equal(info["final_observation"], [1.0, 0.0])


def test_vmaps_over_envs_and_over_mdps():
    _, a = envs.make("Garnet", n_states=5, seed=0)
    env, b = envs.make("Garnet", n_states=5, seed=1)
    both = jax.tree.map(lambda x, y: jnp.stack([x, y]), a, b)
    keys = jax.random.split(jax.random.key(0), 2)
    obs, state = jax.vmap(env.reset)(keys, both)
    out = jax.vmap(env.step)(keys, state, jnp.array([0, 1]), both)
    assert obs.shape == (2, 5) and out[2].shape == (2,)
    # the rewards are the two MDPs' own r(s, a)
    s = np.asarray(state.state)
    np.testing.assert_allclose(out[2], [a.rewards[s[0], 0], b.rewards[s[1], 1]])


def test_spaces():
    env, params = envs.make("Garnet", n_states=7, n_actions=3, feature_dim=4)
    assert env.action_space(params).n == 3 and env.num_actions == 3
    assert env.observation_space(params).shape == (4,)
    assert env.state_space(params).n == 7


@pytest.mark.parametrize(
    "change, message",
    [
        (
            dict(transition_probs=np.full((2, 2, 2), 0.6)),
            r"transition_probs\[0, 0, :\] sums to 1.2",
        ),
        (dict(transition_probs=np.array([[[1.5, -0.5]] * 2] * 2)), "not a probability"),
        (dict(transition_probs=np.zeros((2, 2))), r"shape \[S, A, S\]"),
        (dict(rewards=np.zeros((3, 2))), r"rewards must have shape \[2, 2\]"),
        (dict(initial_distribution=[0.5, 0.4]), "initial_distribution sums to 0.9"),
        (dict(features=np.zeros((3, 4))), "features must have shape"),
        (dict(action_mask=[[True, True], [False, False]]), r"action_mask\[1\] allows no action"),
        (dict(max_steps_in_episode=0), "max_steps_in_episode"),
    ],
)
def test_bad_arrays_raise_a_clear_error(change, message):
    args = dict(
        transition_probs=np.full((2, 2, 2), 0.5),
        rewards=np.zeros((2, 2)),
        initial_distribution=[0.5, 0.5],
    )
    args |= change
    with pytest.raises(FiniteMDPError, match=message):
        finite_mdp_params(
            args.pop("transition_probs"),
            args.pop("rewards"),
            args.pop("initial_distribution"),
            **args,
        )
