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


@pytest.mark.parametrize(
    ("ratio", "num_envs", "expected"),
    [(0.25, 10, (2, 5)), (0.25, 1, (4, 1)), (4, 1, (1, 4)), (4, 10, (1, 40)), (1 / 3, 2, (3, 2))],
)
def test_a_replay_ratio_is_a_block_of_whole_steps_then_whole_updates(ratio, num_envs, expected):
    """r updates per env step over N envs: q vectorised steps (q·N env steps), then p updates,
    with p / (q·N) = r exactly."""
    config = dqn.DQNConfig(replay_ratio=ratio, num_envs=num_envs)
    steps, updates = replay_source.schedule(config)
    assert (steps, updates) == expected
    assert updates / (steps * num_envs) == pytest.approx(ratio, rel=1e-12)
    after_warmup = config.actual_total_steps - replay_source.warmup_steps(config) * num_envs
    assert config.updates_per_run == pytest.approx(ratio * after_warmup, rel=1e-12)


def test_a_replay_ratio_trains_the_program_its_steps_and_updates_name():
    """replay_ratio = 0.25 over 2 envs is train_every = 2, updates_per_train = 1: the same
    metrics, bitwise; and replay_ratio = 2 (4 updates per vectorised step) learns otherwise."""
    from conftest import TINY

    fields = {k: v for k, v in TINY.items() if k not in ("train_every", "updates_per_train")}
    key, hp = jax.random.key(3), dqn.DQNHParams()

    def metrics(**change):
        return jax.jit(dqn.make_train(dqn.DQNConfig(**fields, **change)))(key, hp)[1]

    by_ratio, by_block = metrics(replay_ratio=0.25), metrics(train_every=2)
    for name in ("eval_return", "loss", "q_mean", "env_steps"):
        np.testing.assert_array_equal(by_ratio[name], by_block[name], err_msg=name)
    higher = metrics(replay_ratio=2.0)
    np.testing.assert_array_equal(higher["env_steps"], metrics(train_every=1)["env_steps"])
    assert not np.array_equal(higher["loss"], by_ratio["loss"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"replay_ratio": 0}, r"config\.replay_ratio = 0 must be a number > 0"),
        ({"replay_ratio": -1.0}, r"config\.replay_ratio = -1\.0 must be a number > 0"),
        ({"replay_ratio": float("nan")}, r"config\.replay_ratio = nan must be a number > 0"),
        ({"replay_ratio": "4"}, r"config\.replay_ratio = '4' must be a number > 0"),
        ({"replay_ratio": 1.0, "train_every": 2}, "leave them at 1 .they are 2 and 1."),
        ({"replay_ratio": 1.0, "updates_per_train": 4}, "leave them at 1 .they are 1 and 4."),
        ({"replay_ratio": 1e-6}, r"must be a ratio p/q of whole updates p to q ≤ 1000"),
        ({"replay_ratio": 0.1234567}, r"must be a ratio p/q of whole updates p to q ≤ 1000"),
    ],
)
def test_a_bad_replay_ratio_is_refused_naming_the_field(change, message):
    from conftest import TINY

    fields = {k: v for k, v in TINY.items() if k not in ("train_every", "updates_per_train")}
    with pytest.raises(ConfigError, match=message):
        dqn.DQNConfig(**{**fields, **change})
