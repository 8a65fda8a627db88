"""The toolkit DQN and PQN share: one set of checks, one ε schedule, one ε-greedy env step."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import envs, noisynet
from qlearn.algos import deep_q, dqn, pqn
from qlearn.types import ConfigError


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_envs": True}, "config.num_envs = True must be an integer ≥ 1"),
        ({"activation": "swish2"}, "config.activation = 'swish2' must be one of"),
        ({"divergence_bound": 0.0}, "config.divergence_bound = 0.0 must be > 0"),
        ({"env_id": "Pendulum-v1"}, "has a continuous action space"),
        ({"hidden_sizes": (16, 0)}, "must be positive widths"),
    ],
)
def test_shared_fields_get_the_same_error_in_dqn_and_pqn(change, message):
    for config in (dqn.DQNConfig, pqn.PQNConfig):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            config(**change)


def test_the_epsilon_schedule_decays_linearly_then_stays():
    config = dqn.DQNConfig(total_steps=10_000)
    hp = dqn.DQNHParams(eps_start=1.0, eps_end=0.1, eps_decay_fraction=0.5)
    eps = deep_q.epsilon_schedule(config, hp)
    np.testing.assert_allclose(
        [float(eps(jnp.asarray(t))) for t in (0, 2_500, 5_000, 9_000)],
        [1.0, 0.55, 0.1, 0.1],
        rtol=1e-6,
    )


def test_an_explore_step_is_greedy_at_epsilon_zero_and_steps_every_env():
    env, env_params = envs.make("CartPole-v1")
    obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.key(0), 5), env_params)

    def q_fn(params, o):
        return jnp.stack([o[:, 0], -o[:, 0]], axis=-1)  # action 0 iff x > 0

    prog = deep_q.Program(None, env, env_params, SimpleNamespace(apply=q_fn), None, None)
    key, action, next_obs, _, tr, memory = deep_q.explore_step(
        prog, None, None, jax.random.key(1), state, obs, jnp.float32(0.0)
    )
    np.testing.assert_array_equal(action, np.where(obs[:, 0] > 0, 0, 1))
    np.testing.assert_array_equal(tr.action, action)
    np.testing.assert_array_equal(tr.obs, obs)
    assert next_obs.shape == obs.shape
    assert not np.array_equal(jax.random.key_data(key), jax.random.key_data(jax.random.key(1)))
    assert memory is None  # a feed-forward network carries none


def test_a_noisy_network_acts_with_fresh_noise_for_each_env():
    """At ε = 0 a noise-free network acts the same in every env that shows the same
    observation; a noisy one draws each env's noise apart."""
    env, env_params = envs.make("CartPole-v1")
    num_envs = 64
    obs, state = jax.vmap(env.reset, (0, None))(
        jax.random.split(jax.random.key(0), num_envs), env_params
    )
    obs = jnp.broadcast_to(obs[:1], obs.shape)
    actions = {}
    for noisy in (False, True):
        config = dqn.DQNConfig(noisy=noisy, hidden_sizes=(8,))
        prog = deep_q.program(config, None, None, config.value_head, noisy)
        variables = prog.network.init(jax.random.key(1), obs[:1])
        params, _ = noisynet.split_variables(variables)
        _, action, *_ = deep_q.explore_step(
            prog, None, params, jax.random.key(2), state, obs, jnp.float32(0.0)
        )
        actions[noisy] = np.asarray(action)
    assert np.unique(actions[False]).size == 1
    assert 0.1 < actions[True].mean() < 0.9, actions[True]
