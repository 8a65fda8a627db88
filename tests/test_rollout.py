import jax
import jax.numpy as jnp
import numpy as np

from qlearn import envs
from qlearn.algos import rollout


def balance(params, obs):
    """A hand-made Q-function on CartPole: push towards the side the pole falls to."""
    push_right = obs[:, 2] + params * obs[:, 3] > 0
    return jnp.stack([~push_right, push_right], axis=-1).astype(jnp.float32)


def always_left(params, obs):
    return jnp.tile(jnp.array([1.0, 0.0]), (obs.shape[0], 1))


def episode_lengths(env, env_params, key, num_episodes, policy):
    """CartPole pays 1 per step, so a greedy return is the episode's length: step each fresh
    env (the same resets as ``evaluate``) one at a time until it terminates or truncates."""
    k_reset, _ = jax.random.split(key)
    obs, state = rollout.reset_envs(env, env_params, k_reset, num_episodes)
    lengths = []
    for n in range(num_episodes):
        s = jax.tree.map(lambda x, n=n: x[n], state)
        o, length = obs[n], 0
        while True:
            action = int(jnp.argmax(policy(0.5, o[None])[0]))
            o, s, reward, terminated, _ = env.step_env(jax.random.key(0), s, action, env_params)
            length += int(reward)
            if bool(terminated) or bool(env.is_truncated(s, env_params)):
                break
        lengths.append(length)
    return np.array(lengths, np.float64)


def test_evaluate_returns_the_mean_episode_length_on_cartpole():
    """Termination: a constant push falls over within a few steps; each episode's return is
    counted up to its own end, not to the end of the slowest one."""
    env, env_params = envs.make("CartPole-v1")
    key = jax.random.key(3)
    got = rollout.evaluate(always_left, 0.5, env, env_params, key, 4)
    want = episode_lengths(env, env_params, key, 4, always_left)
    assert want.min() < want.max()  # the episodes end at different steps
    np.testing.assert_allclose(got, want.mean(), rtol=1e-6)


def test_evaluate_stops_every_episode_at_the_time_limit():
    """Truncation: a balancing policy outlives a 30-step limit, so every return is 30."""
    env, env_params = envs.make("CartPole-v1", max_steps_in_episode=30)
    got = jax.jit(rollout.evaluate, static_argnums=(0, 2, 5))(
        balance, 0.5, env, env_params, jax.random.key(0), 8
    )
    assert float(got) == 30.0


def test_what_an_env_reports_at_an_episodes_end_is_read_from_the_state_it_ended_in():
    """An env that reports its step counter at an episode's end: each episode's report is its
    length (its CartPole return), though the loop keeps stepping every env until the slowest
    ends (the counter runs on after an episode's end) — frozen at the end, not read after."""
    from gymnax.environments.classic_control.cartpole import CartPole

    class Timed(CartPole):
        def episode_metrics(self, state):
            return {"length": state.time.astype(jnp.float32)}

    env, env_params = Timed(), CartPole().default_params
    key = jax.random.key(3)

    def greedy(_, obs, mask):
        return jnp.argmax(balance(2.0, obs), axis=-1)  # falls after 180-500 steps

    returns, ends = jax.jit(rollout.episode_outcomes, static_argnums=(0, 1, 4))(
        greedy, env, env_params, key, 8
    )
    assert np.unique(np.asarray(returns)).size > 1  # episodes of different lengths
    np.testing.assert_array_equal(ends["length"], returns)
    mean, means = rollout.evaluate_episodes(balance, 2.0, env, env_params, key, 8)
    np.testing.assert_allclose(means["length"], mean)
    plain, none = rollout.evaluate_episodes(balance, 2.0, CartPole(), env_params, key, 8)
    assert none == {} and plain == mean


def numpy_overestimation(values, rewards, gamma, cut_value=None):
    """mean_t (v_t − G_t) of one episode by a backward pass in float64: G_t = r_t + γ G_{t+1},
    from γ·v_T at a time limit (``cut_value`` v_T), 0 at a termination."""
    g = 0.0 if cut_value is None else cut_value
    gaps = []
    for v, r in zip(values[::-1], rewards[::-1], strict=True):
        g = r + gamma * g
        gaps.append(v - g)
    return np.mean(gaps)


def test_overestimation_is_q_minus_the_discounted_return_on_a_chain():
    """Chain(6), deterministic, q̂(s, ·) = W[s] on one-hot states: going right, the episode
    terminates after 5 steps with reward 1 (G_t = γ^(4−t)); going left it is cut by the time
    limit at T = 12, every G_t = γ^(T−t) q̂(0, left), the bootstrap of a truncation. The
    greedy episodes' overestimation equals the backward numpy computation, and their returns
    are those of the plain evaluation."""
    env, env_params = envs.make("Chain", n_states=6, max_steps_in_episode=12)
    rng = np.random.default_rng(0)
    gamma = 0.9
    for go_right in (True, False):
        w = rng.uniform(0.0, 1.0, (6, 2)).astype(np.float32)
        w[:, 1 if go_right else 0] += 2.0  # the greedy action everywhere
        q_fn = lambda params, obs: obs @ params
        key = jax.random.key(4)
        mean, ends = rollout.evaluate_episodes(q_fn, jnp.asarray(w), env, env_params, key, 3, gamma)
        plain, _ = rollout.evaluate_episodes(q_fn, jnp.asarray(w), env, env_params, key, 3)
        assert float(mean) == float(plain)
        if go_right:
            values, rewards = w[np.arange(5), 1], [0, 0, 0, 0, 1.0]
            expected = numpy_overestimation(values, rewards, gamma)
        else:
            values = np.full(12, w[0, 0])
            expected = numpy_overestimation(values, np.zeros(12), gamma, cut_value=w[0, 0])
        np.testing.assert_allclose(ends["overestimation"], expected, rtol=1e-5)
        assert "value_gap" not in ends and "steps" not in ends
