"""DQN's source: replay sampling rules (here coverage replay's model samples)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import dp
from qlearn.algos import deep_q, dqn, replay_source
from qlearn.types import ConfigError, Transition


def test_coverage_batches_draw_reachable_pairs_uniformly_from_the_model():
    """Coverage replay on cliff walking: with c = 1 every sample is a model transition at an
    (s, a) uniform over the 148 reachable pairs (χ² test), with s' ~ p(·|s, a), its reward,
    termination and next mask; with c = 0.3 about 30% of the samples are replaced."""
    from scipy import stats

    config = dqn.DQNConfig(env_id="CliffWalking", replay="coverage", hidden_sizes=(8,))
    prog = deep_q.program(config, None, None)
    mdp = prog.env_params
    size = 40_000
    transition = Transition(
        obs=jnp.zeros((size, 48)),
        action=jnp.full(size, -1, jnp.int32),
        reward=jnp.zeros(size),
        next_obs=jnp.zeros((size, 48)),
        terminated=jnp.zeros(size, bool),
        truncated=jnp.ones(size, bool),
        steps=jnp.full(size, 3, jnp.int32),
        next_action_mask=jnp.zeros((size, 4), bool),
    )
    replayed = replay_source.Item(transition, jnp.full(size, -1, jnp.int32))
    reachable = dp.reachable_pairs(mdp)
    draw = jax.jit(functools.partial(replay_source.coverage_batch, prog))
    hp = dqn.DQNHParams(coverage=1.0)
    item = jax.tree.map(np.asarray, draw(hp, reachable, replayed, jax.random.key(0)))
    b, s = item.transition, item.state
    a = b.action
    assert np.all(np.asarray(reachable)[s, a])
    counts = np.bincount(s * 4 + a, minlength=48 * 4)[np.asarray(reachable).reshape(-1)]
    assert stats.chisquare(counts).pvalue > 1e-3
    np.testing.assert_array_equal(b.obs, np.asarray(mdp.features)[s])
    s_next = np.argmax(b.next_obs, axis=1)
    p = np.asarray(mdp.transition_probs)
    assert np.all(p[s, a, s_next] > 0)
    np.testing.assert_allclose(b.reward, np.asarray(mdp.transition_rewards)[s, a, s_next])
    np.testing.assert_array_equal(b.terminated, np.asarray(mdp.terminal)[s_next])
    np.testing.assert_array_equal(b.next_action_mask, np.asarray(mdp.action_mask)[s_next])
    assert not b.truncated.any() and np.all(b.steps == 1)
    part = draw(dqn.DQNHParams(coverage=0.3), reachable, replayed, jax.random.key(1))
    model = np.asarray(part.transition.action) >= 0
    np.testing.assert_array_equal(np.asarray(part.state) >= 0, model)  # states go with items
    assert abs(model.mean() - 0.3) < 0.01
    assert np.all(np.asarray(part.transition.steps)[~model] == 3)  # the rest is the replayed batch
    with pytest.raises(ConfigError, match="replay = 'coverage' draws transitions from the model"):
        dqn.DQNConfig(replay="coverage")
