"""Tabular control: each update by hand, and the textbook outcomes on small budgets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlearn import dp, sweep
from qlearn.algos import tabular
from qlearn.envs import catalog
from qlearn.types import ConfigError

HP = tabular.TabularHParams(lr=0.5, gamma=0.9, epsilon=0.2)
MASK = jnp.array([[True, True, True], [True, True, False]])
# two tables over 2 states × 3 actions; state 1's third action is unavailable
Q = jnp.array(
    [
        [[1.0, 2.0, 3.0], [4.0, 6.0, 100.0]],
        [[0.5, 1.5, 2.5], [7.0, 5.0, 100.0]],
    ]
)


def update(algorithm, a_next=0, key=0):
    return tabular.td_update(
        algorithm, jax.random.key(key), Q, MASK, 0, 2, jnp.float32(1.0), jnp.float32(0.9), 1,
        jnp.int32(a_next), HP,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("algorithm", "a_next", "y"),
    [
        ("q_learning", 0, 1.0 + 0.9 * 6.0),  # the max ignores the unavailable 100
        ("sarsa", 0, 1.0 + 0.9 * 4.0),
        # ε = 0.2 spread over the 2 available actions, greedy (action 1) gets the rest
        ("expected_sarsa", 0, 1.0 + 0.9 * (0.1 * 4.0 + 0.9 * 6.0)),
    ],
)
def test_single_table_updates_by_hand(algorithm, a_next, y):
    q = update(algorithm, a_next)
    expected = np.array(Q)
    expected[0, 0, 2] += 0.5 * (y - 3.0)
    np.testing.assert_allclose(q, expected, rtol=1e-6)


def test_double_q_update_uses_the_other_tables_value():
    seen = set()
    for key in range(8):
        q = np.asarray(update("double_q_learning", key=key))
        changed = np.argwhere(q != np.asarray(Q))
        assert len(changed) == 1 and tuple(changed[0][1:]) == (0, 2)
        i = int(changed[0][0])
        seen.add(i)
        # table i picks its argmax at s' (available actions only), the other table values it
        chooser, evaluator = np.asarray(Q[i, 1, :2]), np.asarray(Q[1 - i, 1])
        y = 1.0 + 0.9 * evaluator[np.argmax(chooser)]
        assert q[i, 0, 2] == pytest.approx(Q[i, 0, 2] + 0.5 * (y - Q[i, 0, 2]))
    assert seen == {0, 1}  # both tables get updated


def run(algorithm, env_id, num_episodes, seeds, **hp):
    config = tabular.TabularConfig(env_id=env_id, algorithm=algorithm, num_episodes=num_episodes)
    return sweep.run(config, hparams=tabular.TabularHParams(**hp), seeds=seeds).metrics


def test_cliff_walking_sarsa_is_safer_online_and_q_learning_finds_the_edge():
    """Example 6.6: online returns, Sarsa ≈ −25 > Q-learning ≈ −50; Q-learning's greedy path
    is the optimal one along the cliff (−13)."""
    q_learning = run("q_learning", "CliffWalking", 200, 8)
    sarsa = run("sarsa", "CliffWalking", 200, 8)
    late_q, late_sarsa = q_learning["return"][0, :, 100:].mean(), sarsa["return"][0, :, 100:].mean()
    assert late_sarsa > late_q + 10
    # the error against q* of Q-learning's table shrinks over training
    ve = q_learning["ve_behaviour"][0].mean(0)
    assert ve[-1] < 0.1 * ve[0]


def test_cliff_walking_q_learning_greedy_policy_is_optimal():
    config = tabular.TabularConfig(env_id="CliffWalking", algorithm="q_learning", num_episodes=300)
    state, _ = jax.jit(tabular.make_train(config))(jax.random.key(0), tabular.TabularHParams())
    _, mdp = tabular.make_env(config)
    greedy = dp.greedy_policy(state.q[0], mdp.action_mask)
    assert float(dp.policy_value(mdp, greedy, 1.0)) == pytest.approx(-13.0, abs=1e-3)


def test_maximization_bias_double_q_learning_removes_it():
    """Figure 6.5: early on Q-learning goes left from A far more than the optimal 5%."""
    left = {}
    for algorithm in ("q_learning", "double_q_learning"):
        m = run(algorithm, "MaximizationBias", 40, 300, lr=0.1)
        left[algorithm] = (m["first_action"][0] == catalog.MAXBIAS_LEFT).mean(0)
    assert left["q_learning"][5:40].mean() > 0.6
    assert left["double_q_learning"][5:40].mean() < left["q_learning"][5:40].mean() - 0.25


def python_q_learning_left_fraction(runs, episodes, seed=0):
    """Maximization-bias Q-learning written out in plain Python: % left from A per episode."""
    rng = np.random.default_rng(seed)
    left = np.zeros(episodes)

    def pick(q):
        if rng.random() < 0.1:
            return int(rng.integers(len(q)))
        return int(rng.choice(np.flatnonzero(q == q.max())))

    for _ in range(runs):
        q_a, q_b = np.zeros(2), np.zeros(10)
        for e in range(episodes):
            a = pick(q_a)
            left[e] += a == catalog.MAXBIAS_LEFT
            if a == catalog.MAXBIAS_RIGHT:
                q_a[a] += 0.1 * (0.0 - q_a[a])
                continue
            q_a[a] += 0.1 * (q_b.max() - q_a[a])
            b = pick(q_b)
            q_b[b] += 0.1 * (rng.normal(-0.1, 1.0) - q_b[b])
    return left / runs


def test_q_learning_matches_an_independent_python_implementation():
    ours = run("q_learning", "MaximizationBias", 20, 400, lr=0.1)["first_action"][0]
    ours = (ours == catalog.MAXBIAS_LEFT).mean(0)
    theirs = python_q_learning_left_fraction(400, 20)
    # the same process: curves agree within sampling error (±2.5% per point for 400 runs)
    assert abs(ours[10:].mean() - theirs[10:].mean()) < 0.05
    np.testing.assert_allclose(ours, theirs, atol=0.12)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"env_id": "CartPole-v1"}, "is not a finite MDP"),
        ({"algorithm": "q_lambda"}, "config.algorithm = 'q_lambda' must be one of"),
        ({"num_episodes": 0}, "num_episodes = 0"),
        ({"env_id": "Chain", "env_kwargs": {"n_state": 3}}, "Chain has no parameter n_state"),
    ],
)
def test_config_errors(change, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        tabular.TabularConfig(**change)
