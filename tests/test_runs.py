import json

import numpy as np
import pytest

from qlearn import hparams, runs
from qlearn.algos.dqn import DQNConfig, DQNHParams


def spec(**cfg):
    hp = hparams.grid(DQNHParams, {"lr": [1e-3]})
    return runs.make_spec("dqn", DQNConfig(**cfg), hp, num_seeds=2, base_seed=0)


def test_spec_rebuilds_the_same_objects():
    s = spec(hidden_sizes=(32, 16), num_envs=4)
    s = json.loads(json.dumps(s))  # through JSON, as stored
    _, config, hp = runs.spec_objects(s)
    assert config == DQNConfig(hidden_sizes=(32, 16), num_envs=4)
    assert np.asarray(hp.lr).tobytes() == np.asarray([1e-3], np.float32).tobytes()


def test_prepare_refuses_foreign_and_different_directories(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(runs.RunDirError, match="holds no qlearn run"):
        runs.prepare(tmp_path, spec())
    target = tmp_path / "r"
    assert runs.prepare(target, spec()) is False
    assert json.loads((target / "config.json").read_text())["spec"] == spec()  # recorded
    with pytest.raises(runs.RunDirError, match=r"config.num_envs: 10 there, 4 here"):
        runs.prepare(target, spec(num_envs=4))
    (target / runs.CHUNKS / "old.npz").write_bytes(b"x")
    assert runs.prepare(target, spec(num_envs=4), overwrite=True) is False
    assert not (target / runs.CHUNKS / "old.npz").exists()  # the old run's chunks are gone
    assert runs.prepare(target, spec(num_envs=4)) is False  # same spec, unfinished: resume
    (target / "summary.json").write_text("{}")
    assert runs.prepare(target, spec(num_envs=4)) is True  # same spec, finished
    (tmp_path / "file").write_text("")
    with pytest.raises(runs.RunDirError, match="cannot write"):
        runs.prepare(tmp_path / "file" / "run", spec())


def test_compare_is_bitwise():
    a = {"x": np.array([1.0, np.nan], np.float32)}
    assert runs.compare(a, {"x": a["x"].copy()}) == {"x": True}
    b = {"x": np.array([np.nextafter(np.float32(1), np.float32(2)), np.nan], np.float32)}
    assert runs.compare(a, b) == {"x": False}
    assert runs.compare(a, {}) == {"x": False}


def test_load_of_a_non_run_is_an_error(tmp_path):
    with pytest.raises(runs.RunDirError, match=r"no config\.json"):
        runs.load(tmp_path)


def test_several_losses_round_trip_and_are_labelled_by_name():
    hp = hparams.grid(DQNHParams, {"loss_index": [0, 1]})
    config = DQNConfig(loss=("huber", "residual"))
    s = runs.make_spec("dqn", config, hp, num_seeds=1, base_seed=0, swept=["loss_index"])
    s = json.loads(json.dumps(s))
    assert runs.spec_objects(s)[1] == config
    assert runs.labels(s) == ["loss=huber", "loss=residual"]
