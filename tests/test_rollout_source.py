"""PQN's source: rollouts and their Q(λ) targets, against a numpy loop and rlax."""

import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from qlearn.algos import rollout_source

T, N = 7, 3


def rollout_arrays():
    """A rollout [T, N] with terminations and truncations in the middle and at the end."""
    rng = np.random.default_rng(0)
    reward = rng.normal(size=(T, N)).astype(np.float32)
    q_next = rng.normal(size=(T, N)).astype(np.float32)
    terminated = np.zeros((T, N), bool)
    truncated = np.zeros((T, N), bool)
    terminated[2, 0] = terminated[T - 1, 1] = True  # middle, last step
    truncated[4, 0] = truncated[T - 1, 2] = truncated[1, 2] = True
    return reward, terminated, truncated, q_next


def numpy_q_lambda(reward, terminated, truncated, q_next, gamma, lam):
    """Straight from the definition, one env and one step at a time."""
    g = np.zeros_like(reward, np.float64)
    for n in range(reward.shape[1]):
        for t in reversed(range(reward.shape[0])):
            if terminated[t, n]:
                g[t, n] = reward[t, n]  # no bootstrap past a termination
            elif truncated[t, n] or t == reward.shape[0] - 1:
                g[t, n] = reward[t, n] + gamma * q_next[t, n]  # bootstrap from s_{t+1}
            else:
                g[t, n] = reward[t, n] + gamma * ((1 - lam) * q_next[t, n] + lam * g[t + 1, n])
    return g


@pytest.mark.parametrize("lam", [0.0, 0.65, 1.0])
def test_q_lambda_targets_equal_a_numpy_loop_and_rlax_at_every_index(lam):
    reward, terminated, truncated, q_next = rollout_arrays()
    gamma = 0.9
    ours = np.asarray(
        rollout_source.q_lambda_targets(reward, terminated, truncated, q_next, gamma, lam)
    )
    np.testing.assert_allclose(
        ours, numpy_q_lambda(reward, terminated, truncated, q_next, gamma, lam), rtol=1e-5
    )
    for n in range(N):
        theirs = rlax.lambda_returns(
            jnp.asarray(reward[:, n]),
            jnp.asarray(gamma * (1.0 - terminated[:, n]), jnp.float32),
            jnp.asarray(q_next[:, n]),
            jnp.asarray(lam * (1.0 - truncated[:, n]), jnp.float32),
        )
        np.testing.assert_allclose(ours[:, n], theirs, rtol=1e-5, atol=1e-6)
    if lam == 0.0:  # the one-step Q-learning target
        np.testing.assert_allclose(ours, reward + gamma * (1 - terminated) * q_next, rtol=1e-6)


def test_lambda_one_without_bootstrapping_is_the_monte_carlo_return():
    reward = np.arange(1, 7, dtype=np.float32)[:, None]  # one env, episode ends at t = 2 and 5
    terminated = np.zeros((6, 1), bool)
    terminated[[2, 5], 0] = True
    q_next = np.full((6, 1), 1e3, np.float32)  # never used: every bootstrap is cut
    g = np.asarray(
        rollout_source.q_lambda_targets(
            reward, terminated, np.zeros_like(terminated), q_next, 0.5, 1.0
        )
    )[:, 0]
    expected = [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3, 4 + 0.5 * 5 + 0.25 * 6, 5 + 0.5 * 6, 6]
    np.testing.assert_allclose(g, expected, rtol=1e-6)
