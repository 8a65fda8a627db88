import dataclasses

import jax
import numpy as np
import pytest
from conftest import TINY

from qlearn import checkpoint, sweep
from qlearn.algos import dqn, pqn, tabular


@pytest.fixture(scope="module")
def config():
    return dqn.DQNConfig(**TINY)


def test_a_resumed_run_is_bitwise_the_uninterrupted_run(config, tmp_path):
    hp = dqn.DQNHParams(lr=3e-3)
    key = sweep.seed_keys(7, 1)[0]
    ref_state, ref_metrics = jax.jit(dqn.make_train(config))(key, hp)

    seen = []
    # the first job stops after 2 of the 4 intervals, as if killed after its checkpoint
    _, partial = checkpoint.train(
        config, hp, seed=7, directory=tmp_path, every=1, stop_after=2, on_checkpoint=seen.append
    )
    assert seen == [1, 2] and partial["eval_return"].shape == (2,)
    # a second job (fresh compiled functions, state read back from disk) finishes the run
    state, metrics = checkpoint.train(config, hp, seed=7, directory=tmp_path, every=1)
    assert sorted(metrics) == sorted(ref_metrics)
    for name, ref in ref_metrics.items():
        assert np.asarray(ref).tobytes() == metrics[name].tobytes(), name
    for a, b in zip(
        jax.tree.leaves(ref_state.learner.params),
        jax.tree.leaves(state.learner.params),
        strict=True,
    ):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    np.testing.assert_array_equal(
        jax.random.key_data(ref_state.key), jax.random.key_data(state.key)
    )
    np.testing.assert_array_equal(
        ref_state.source.buffer.storage.transition.obs, state.source.buffer.storage.transition.obs
    )


def test_a_pqn_run_checkpoints_and_resumes_bitwise(tmp_path):
    """PQN runs through the same driver as DQN, so it has the same resumable stages: a run
    stopped after 1 of 2 intervals and finished by a second job is bitwise the run without a
    stop (metrics and parameters)."""
    shape = dict(num_envs=4, rollout_steps=16, num_epochs=2, num_minibatches=2)
    config = pqn.PQNConfig(**shape, total_steps=1_024, hidden_sizes=(16,), num_evals=2)
    hp = pqn.PQNHParams(lr_decay=0.5)
    ref_state, ref_metrics = jax.jit(pqn.make_train(config))(sweep.seed_keys(3, 1)[0], hp)
    checkpoint.train(config, hp, seed=3, directory=tmp_path, every=1, stop_after=1)
    state, metrics = checkpoint.train(config, hp, seed=3, directory=tmp_path, every=1)
    for name, ref in ref_metrics.items():
        assert np.asarray(ref).tobytes() == metrics[name].tobytes(), name
    for a, b in zip(
        jax.tree.leaves(ref_state.learner.params),
        jax.tree.leaves(state.learner.params),
        strict=True,
    ):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_checkpoints_refuse_another_run_and_bad_intervals(config, tmp_path):
    hp = dqn.DQNHParams()
    checkpoint.train(config, hp, seed=0, directory=tmp_path, every=2, stop_after=2)
    with pytest.raises(checkpoint.CheckpointError, match="another run"):
        checkpoint.train(config, dqn.DQNHParams(lr=1e-4), seed=0, directory=tmp_path, every=2)
    with pytest.raises(checkpoint.CheckpointError, match=r"divide config\.num_evals = 4"):
        checkpoint.train(config, hp, seed=0, directory=tmp_path / "b", every=3)
    with pytest.raises(checkpoint.CheckpointError, match="cannot be checkpointed"):
        checkpoint.train(
            dataclasses.replace(tabular.TabularConfig(), num_episodes=10),
            tabular.TabularHParams(),
            seed=0,
            directory=tmp_path / "c",
            every=1,
        )


def test_checkpoints_refuse_a_directory_of_someone_elses_files(config, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(checkpoint.CheckpointError, match=r"holds other files \(notes\.txt\)"):
        checkpoint.train(config, dqn.DQNHParams(), seed=0, directory=tmp_path, every=2)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # nothing written beside it
