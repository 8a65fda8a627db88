"""Offline Q-learning on finite MDPs, where the truth is known: the textbook outcomes of offline
DQN, CQL and behaviour cloning on expert-only and full-coverage data (Cliff Walking, tabular
q̂), reproducibility by seed, and bad input refused by name before compiling."""

import dataclasses

import jax
import numpy as np
import pytest

from qlearn import datasets, dp, envs, hparams, sweep
from qlearn.algos import offline
from qlearn.types import ConfigError

GAMMA = 0.9


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("offline")
    for behaviour, size in (("expert", 2_000), ("uniform", 20_000)):
        data = datasets.finite_dataset("CliffWalking", behaviour, size, seed=0, gamma=GAMMA)
        datasets.save(d / f"{behaviour}.npz", data)
    return d


def tabular(path, **fields):
    fields = dict(total_updates=3_000, num_evals=3, network="linear", eval_episodes=1) | fields
    return offline.OfflineConfig(env_id="CliffWalking", dataset=str(path), **fields)


def final(run, name):
    return np.asarray(run.metrics[name])[:, :, -1]  # [α, seed]


@pytest.fixture(scope="module")
def optimum():
    _, mdp = envs.make("CliffWalking")
    q_star = dp.value_iteration(mdp, GAMMA)[0]
    return float(dp.policy_value(mdp, dp.greedy_policy(q_star, mdp.action_mask), 1.0))


@pytest.fixture(scope="module")
def expert_runs(data_dir):
    hp = offline.OfflineHParams(gamma=GAMMA, lr=0.1)
    return sweep.run(tabular(data_dir / "expert.npz"), {"cql_alpha": [0.0, 1.0]}, hparams=hp,
                     seeds=2, lanes=2)  # fmt: skip


def test_offline_dqn_on_expert_data_bootstraps_from_unseen_actions_and_cql_does_not(
    expert_runs, optimum
):
    """Expert-only data (the 13 pairs of the optimal path): offline DQN's greedy policy leaves
    the data in every visited state and never reaches the goal (extrapolation error); with
    CQL's penalty (α = 1) it stays on the data and earns the optimal return, and the values
    of the unseen actions fall."""
    assert optimum == -13.0
    ood, ret = final(expert_runs, "greedy_ood"), final(expert_runs, "greedy_return")
    assert np.all(ood[0] == 1.0) and np.all(ret[0] < optimum)
    assert np.all(ood[1] == 0.0) and np.all(ret[1] == optimum)
    overest = final(expert_runs, "overest_ood")
    assert np.all(overest[1] < overest[0])
    # TD alone inflates even the values of the data's own pairs by bootstrapping from unseen ones
    assert np.all(final(expert_runs, "overest_star_visited")[0] > 1.0)
    assert not np.any(np.isnan(final(expert_runs, "gap_star_n0")))  # unseen pairs exist
    assert np.all(final(expert_runs, "updates") == 3_000)
    assert "epsilon" not in expert_runs.metrics and np.all(final(expert_runs, "env_steps") == 0)


def test_behaviour_cloning_imitates_the_expert(data_dir, optimum):
    hp = offline.OfflineHParams(gamma=GAMMA, lr=0.1)
    run = sweep.run(tabular(data_dir / "expert.npz", loss="bc"), hparams=hp, seeds=1, lanes=1)
    assert final(run, "greedy_return")[0, 0] == optimum
    assert final(run, "bc_accuracy")[0, 0] == 1.0


def test_offline_dqn_with_full_coverage_finds_the_optimal_policy(data_dir, optimum):
    hp = offline.OfflineHParams(gamma=GAMMA, lr=0.1)
    run = sweep.run(tabular(data_dir / "uniform.npz"), hparams=hp, seeds=1, lanes=1)
    assert final(run, "greedy_return")[0, 0] == optimum
    assert np.isnan(final(run, "overest_ood")[0, 0])  # no out-of-data action: every pair seen


def test_a_seed_alone_reproduces_its_run_in_the_sweep(data_dir, expert_runs):
    hp = offline.OfflineHParams(gamma=GAMMA, lr=0.1, cql_alpha=1.0)
    again = sweep.run(tabular(data_dir / "expert.npz"), hparams=hp, seeds=1, base_seed=1, lanes=2)
    for name in ("eval_return", "loss", "cql_penalty", "ve_data"):
        np.testing.assert_array_equal(again.metrics[name][0, 0], expert_runs.metrics[name][1, 1])


def test_bad_input_is_refused_by_name_before_compiling(data_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"config.dataset: name the dataset file"):
        offline.OfflineConfig(env_id="CliffWalking")
    with pytest.raises(ConfigError, match=r"nowhere.npz: no such dataset file"):
        tabular(tmp_path / "nowhere.npz")
    with pytest.raises(ConfigError, match=r"config.dataset = .*expert.npz: observations of shape"):
        offline.OfflineConfig(env_id="Garnet", dataset=str(data_dir / "expert.npz"))
    with pytest.raises(ConfigError, match=r"total_updates = 2 must be ≥ num_evals = 3"):
        tabular(data_dir / "expert.npz", total_updates=2)
    with pytest.raises(hparams.HParamError, match=r"cql_alpha"):
        hparams.validate(offline.OfflineHParams(cql_alpha=-1.0))
    stateless = datasets.load(data_dir / "expert.npz")
    stateless = datasets.Dataset(stateless.transitions, stateless.meta)
    datasets.save(tmp_path / "stateless.npz", stateless)
    with pytest.raises(ConfigError, match=r"keeps no finite-MDP states"):
        tabular(tmp_path / "stateless.npz")
    returnless = datasets.load(data_dir / "expert.npz")
    returnless = dataclasses.replace(
        returnless, transitions=returnless.transitions.replace(return_to_go=None)
    )
    datasets.save(tmp_path / "returnless.npz", returnless)
    tabular(tmp_path / "returnless.npz")  # CQL needs no returns
    with pytest.raises(ConfigError, match=r"cal_ql calibrates by returns-to-go; .* keeps none"):
        tabular(tmp_path / "returnless.npz", cal_ql=True)
    calibrated = tabular(data_dir / "expert.npz", cal_ql=True)
    calibrated.validate_hparams(offline.OfflineHParams(gamma=GAMMA))
    with pytest.raises(ConfigError, match=r"gamma = 0.99: .*discounted at γ = 0.9"):
        calibrated.validate_hparams(offline.OfflineHParams(gamma=0.99))


def test_cal_ql_is_calibrated_where_cql_is_not(data_dir):
    """Cal-QL's defining property (Nakamoto et al. 2023, def. 4.1): its values are no lower than
    the behaviour's. On Cliff Walking's mixture data (half expert, half uniform episodes;
    tabular q̂, α = 5, two seeds), the greedy value V̂(s) = max_b q̂(s, b) of every transition
    with a known return is at least that return G(s) under Cal-QL, while CQL's falls below it on
    some; both keep the optimal path (−13)."""
    path = data_dir / "mixture.npz"
    datasets.save(path, datasets.finite_dataset("CliffWalking", "mixture", 20_000, gamma=GAMMA))
    data = datasets.load(path)
    known = np.isfinite(data.transitions.return_to_go)
    g, states = data.transitions.return_to_go[known], data.state[known]
    _, mdp = envs.make("CliffWalking")
    hp = offline.OfflineHParams(gamma=GAMMA, lr=0.1, cql_alpha=5.0)
    keys = jax.random.split(jax.random.key(0), 2)
    below = {}
    for cal_ql in (False, True):
        config = tabular(path, cal_ql=cal_ql, num_evals=1)
        q_fn = offline.agent(config).prog.q_function(hp)
        state, metrics = jax.jit(jax.vmap(offline.make_train(config), (0, None)))(keys, hp)
        assert np.all(np.asarray(metrics["eval_return"]) == -13.0)
        v_hat = np.asarray(jax.vmap(q_fn, (0, None))(state.learner.params, mdp.features)).max(2)
        below[cal_ql] = v_hat[:, states] - g  # [seed, known transitions]
    assert np.all(below[True] >= 0.0)
    assert np.all(np.mean(below[False] < 0.0, axis=1) > 0.05)


def test_prioritized_sampling_of_a_dataset_follows_the_priorities_fed_back(data_dir):
    """A run's own priorities over the fixed data: all 1 at the start; after the learner reports
    a priority of 99 for one transition (α = 1), it is drawn with probability 99 / (M − 1 + 99)
    (5,120 draws, within 5 standard deviations) and carries the smallest importance weight."""
    import jax
    import jax.numpy as jnp

    from qlearn import hparams as hparams_lib
    from qlearn.algos.learners import Update
    from qlearn.algos.sources import Drawn

    config = tabular(data_dir / "expert.npz", replay="prioritized", batch_size=256)
    hp = hparams_lib.to_arrays(offline.OfflineHParams(gamma=GAMMA, per_alpha=1.0, per_eps=1e-6))
    source = offline.agent(config).build(hp).source
    state, key, _ = source.init(None, jax.random.key(0), jax.random.key(1))
    hot, size = 5, 2_000
    drawn = Drawn(index=jnp.array([hot]))
    state = source.feedback(state, drawn, Update({}, priority=jnp.array([99.0 - 1e-6])))
    counts, weights = 0, []
    for _ in range(20):
        state, key, plan, _ = source.next(state, None, key)
        batch, drawn = source.batch(state, {"plan": plan[0]})
        counts += int(jnp.sum(drawn.index == hot))
        weights.append(np.asarray(batch.weight)[np.asarray(drawn.index) == hot])
    p = 99 / (size - 1 + 99)
    assert abs(counts - 5_120 * p) < 5 * np.sqrt(5_120 * p * (1 - p))
    assert np.all(np.concatenate(weights) < 1.0)  # the batch's largest weight is 1
    with pytest.raises(ConfigError, match=r"config.replay = 'coverage'"):
        tabular(data_dir / "expert.npz", replay="coverage")


def test_prioritized_sampling_in_a_sweep_keeps_the_textbook_outcome(data_dir, optimum):
    """The compiled loop with the learner's priorities fed back: on expert data offline DQN
    still leaves the data and CQL (α = 1) still stays on it and is optimal."""
    hp = offline.OfflineHParams(gamma=GAMMA, lr=0.1)
    config = tabular(data_dir / "expert.npz", replay="prioritized")
    run = sweep.run(config, {"cql_alpha": [0.0, 1.0]}, hparams=hp, seeds=1, lanes=1)
    np.testing.assert_array_equal(final(run, "greedy_ood")[:, 0], [1.0, 0.0])
    assert final(run, "greedy_return")[1, 0] == optimum
