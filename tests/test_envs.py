import jax
import pytest

from qlearn import envs


def test_unknown_id_lists_close_matches():
    with pytest.raises(envs.UnknownEnvError, match="did you mean CartPole-v1"):
        envs.make("cartpole-v1x")
    with pytest.raises(envs.UnknownEnvError, match="did you mean Breakout-MinAtar"):
        envs.make("Breakout-Minatar")


def test_param_override_and_unknown_param():
    _env, params = envs.make("CartPole-v1", max_steps_in_episode=7)
    assert params.max_steps_in_episode == 7
    with pytest.raises(ValueError, match="has no parameter gravityy"):
        envs.make("CartPole-v1", gravityy=1.0)


# MNISTBandit downloads MNIST when made: not possible offline. The suites' ids are tested
# against their own APIs in test_suites.py.
OWN_IDS = [i for i in envs.registered_ids(with_suites=False) if i != "MNISTBandit-bsuite"]


@pytest.mark.parametrize("env_id", OWN_IDS)
def test_every_gymnax_id_makes_and_steps(env_id):
    env, params = envs.make(env_id)
    _obs, state = env.reset(jax.random.key(0), params)
    action = env.action_space(params).sample(jax.random.key(1))
    out = env.step(jax.random.key(2), state, action, params)
    assert len(out) == 6 and "final_observation" in out[5]
