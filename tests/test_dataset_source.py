"""A fixed dataset as a source (qlearn/algos/dataset_source.py) in an online run: offline-to-
online DQN pretrains on the dataset exactly as the offline learner does, mixes it into replay
in the asked fraction (RLPD), keeps CQL's outcome on Cliff Walking through fine-tuning with CQL
and loses it without, and refuses bad input by name before compiling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from qlearn import datasets, sampling, sweep
from qlearn.algos import dqn, offline, replay_source
from qlearn.algos.replay_source import Item
from qlearn.types import ConfigError, Transition

GAMMA = 0.9
COMMON = dict(env_id="CliffWalking", network="linear", num_evals=3, eval_episodes=1)
ONLINE = dict(total_steps=3_000, learning_starts=100, buffer_size=3_000)


@pytest.fixture(scope="module")
def expert(tmp_path_factory):
    path = tmp_path_factory.mktemp("start") / "expert.npz"
    datasets.save(
        path, datasets.finite_dataset("CliffWalking", "expert", 2_000, seed=0, gamma=GAMMA)
    )
    return str(path)


def online(path, **fields):
    return dqn.DQNConfig(**(COMMON | ONLINE | {"dataset": path} | fields))


@pytest.mark.parametrize("cal_ql", [False, True])
def test_pretraining_is_the_offline_learners_run_of_the_folded_key(expert, cal_ql):
    """The network an offline-to-online run starts from is, bitwise, the one `algo=offline`
    learns from the same dataset and hyperparameters with the run's key folded with 1 (CQL's
    penalty, or Cal-QL's)."""
    config = online(expert, offline_updates=600, cal_ql=cal_ql)
    hp = dqn.DQNHParams(gamma=GAMMA, lr=0.1, cql_alpha=1.0, dataset_fraction=0.5)
    key = jax.random.key(3)
    start = jax.jit(dqn.make_stages(config)[0])(key, hp).learner
    off = offline.OfflineConfig(**COMMON, dataset=expert, total_updates=600, cal_ql=cal_ql)
    off_hp = offline.OfflineHParams(gamma=GAMMA, lr=0.1, cql_alpha=1.0)
    learned = jax.jit(offline.make_train(off))(jax.random.fold_in(key, 1), off_hp)[0].learner
    assert int(start.updates) == 600
    for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(learned), strict=True):
        np.testing.assert_array_equal(a, b)


def test_dataset_batch_replaces_the_asked_fraction_with_uniform_dataset_samples():
    """Each sample comes from the dataset with probability f (binomial test), and those that
    do are uniform over the M transitions (χ² test)."""
    m, size, fraction = 7, 40_000, 0.3

    def transitions(reward):
        n = reward.shape[0]
        zeros = jnp.zeros((n, 2))
        false = jnp.zeros(n, bool)
        return Transition(zeros, jnp.zeros(n, jnp.int32), reward, zeros, false, false,
                          jnp.ones(n, jnp.int32))  # fmt: skip

    data = transitions(jnp.arange(m, dtype=jnp.float32))
    data = data.replace(return_to_go=data.reward + 100.0)  # Cal-QL's returns, kept
    items = Item(transitions(jnp.full(size, -1.0)), jnp.full(size, -1, jnp.int32))
    hp = dqn.DQNHParams(dataset_fraction=fraction)
    states = jnp.arange(m, dtype=jnp.int32) + 10
    mixed = replay_source.dataset_batch(hp, (data, states), items, jax.random.key(0))
    reward, state = np.asarray(mixed.transition.reward), np.asarray(mixed.state)
    from_data = reward >= 0
    assert stats.binomtest(int(from_data.sum()), size, fraction).pvalue > 1e-3
    np.testing.assert_array_equal(state[from_data], reward[from_data].astype(int) + 10)
    g = np.asarray(mixed.transition.return_to_go)  # replayed samples: unknown
    np.testing.assert_array_equal(g, np.where(from_data, reward + 100.0, -np.inf))
    counts = np.bincount(reward[from_data].astype(int), minlength=m)
    assert stats.chisquare(counts).pvalue > 1e-3
    assert sampling.WORDS_PER_INDEX == 2  # the words the index is drawn from, beside the coin


def test_cql_throughout_keeps_the_optimum_and_plain_td_fine_tuning_unlearns_it(expert):
    """Cliff Walking, expert-only data, 3,000 offline updates, then 3,000 online steps with the
    data in half of each batch: with CQL (α = 1) offline and online the run is optimal (−13)
    at every evaluation; with CQL offline and plain TD online it has lost the path by the first
    evaluation in every seed — the unlearning at the start of fine-tuning that Cal-QL
    (Nakamoto et al. 2023) is about; and DQN from scratch has not found it by then."""
    hp = dqn.DQNHParams(gamma=GAMMA, lr=0.1, cql_alpha=1.0, dataset_fraction=0.5)
    run = sweep.run(online(expert, offline_updates=3_000), {"online_cql_alpha": [0.0, 1.0]},
                    hparams=hp, seeds=2, lanes=2)  # fmt: skip
    returns = np.asarray(run.metrics["eval_return"])  # [online α, seed, T]
    assert np.all(returns[1] == -13.0)
    assert np.all(returns[0, :, 0] < -13.0)
    plain = dqn.DQNHParams(gamma=GAMMA, lr=0.1)
    scratch = sweep.run(dqn.DQNConfig(**COMMON, **ONLINE), hparams=plain, seeds=2, lanes=2)
    assert np.all(np.asarray(scratch.metrics["eval_return"])[0, :, 0] < -13.0)


def test_cal_ql_fine_tuning_runs_with_the_data_mixed_in(expert):
    """Offline-to-online Cal-QL end to end: pretraining and online updates on batches that mix
    dataset samples (their returns) with replayed ones (−∞), the penalty reported throughout."""
    config = online(expert, offline_updates=300, total_steps=600, cal_ql=True)
    hp = dqn.DQNHParams(gamma=GAMMA, lr=0.1, cql_alpha=1.0, online_cql_alpha=1.0,
                        dataset_fraction=0.5)  # fmt: skip
    run = sweep.run(config, hparams=hp, seeds=1, lanes=1)
    assert np.all(np.isfinite(np.asarray(run.metrics["cql_penalty"])))
    assert np.all(np.asarray(run.metrics["eval_return"]) == -13.0)


def test_bad_input_is_refused_by_name_before_compiling(expert, tmp_path):
    with pytest.raises(ConfigError, match=r"offline_updates = 30 trains on a dataset: name it"):
        dqn.DQNConfig(**COMMON, **ONLINE, offline_updates=30)
    with pytest.raises(ConfigError, match=r"offline_updates = -1 must be an integer ≥ 0"):
        online(expert, offline_updates=-1)
    with pytest.raises(ConfigError, match=r"offline_updates = 31 must be a multiple of num_evals"):
        online(expert, offline_updates=31)
    with pytest.raises(ConfigError, match=r"keeps transitions, not the sequences"):
        online(expert, core="gru", network="mlp", learning_starts=1_000)
    with pytest.raises(ConfigError, match=r"expert.npz: observations of shape"):
        dqn.DQNConfig(env_id="Garnet", dataset=expert)
    with pytest.raises(ConfigError, match=r"nowhere.npz: no such dataset file"):
        online(str(tmp_path / "nowhere.npz"))
    plain = dqn.DQNConfig(**COMMON, **ONLINE)
    for name in ("cql_alpha", "online_cql_alpha", "dr3_weight", "dataset_fraction"):
        with pytest.raises(ConfigError, match=rf"hparams.{name} = 0.5 applies to a run with"):
            plain.validate_hparams(dqn.DQNHParams(**{name: 0.5}))
    with pytest.raises(ConfigError, match=r"cal_ql calibrates a dataset's CQL: name it"):
        dqn.DQNConfig(**COMMON, **ONLINE, cal_ql=True)
    with pytest.raises(ConfigError, match=r"gamma = 0.99: config.cal_ql calibrates by the"):
        online(expert, cal_ql=True).validate_hparams(dqn.DQNHParams(gamma=0.99))
    prioritized = online(expert, replay="prioritized")
    with pytest.raises(ConfigError, match=r"dataset_fraction = \[0.0, 0.5\] mixes .* uniform"):
        prioritized.validate_hparams(dqn.DQNHParams(dataset_fraction=np.array([0.0, 0.5])))
    prioritized.validate_hparams(dqn.DQNHParams())  # prioritised replay after pretraining is fine
