"""The algorithm contract: every registered algorithm is a complete record, found by name and
by config, and the generic modules need nothing else from it."""

import dataclasses

import numpy as np
import pytest

from qlearn import algos, datasets
from qlearn.algos import dqn, offline, pqn, tabular


@pytest.fixture(scope="module")
def default_configs(tmp_path_factory):
    """Each algorithm's default config; the offline one needs a dataset to learn from."""
    path = tmp_path_factory.mktemp("data") / "cliff.npz"
    datasets.save(path, datasets.finite_dataset("CliffWalking", "uniform", 100))
    made = {"offline": offline.OfflineConfig(env_id="CliffWalking", dataset=str(path))}
    return {name: made.get(name) or a.config() for name, a in algos.ALGOS.items()}


@pytest.mark.parametrize("name", sorted(algos.ALGOS))
def test_each_algorithm_is_found_by_name_and_by_config(name, default_configs):
    algorithm, config = algos.get(name), default_configs[name]
    assert algorithm.name == name
    assert algos.of(config) is algorithm
    assert dataclasses.is_dataclass(algorithm.config) and dataclasses.is_dataclass(
        algorithm.hparams
    )
    total, unit = algorithm.progress_total(config)
    assert total > 0 and unit in ("step", "episode", "update")
    algorithm.validate_hparams(config, algorithm.hparams())  # defaults are valid
    for hparam, field in algorithm.indexed_hparams:
        assert hparam in {f.name for f in dataclasses.fields(algorithm.hparams)}
        assert field in {f.name for f in dataclasses.fields(algorithm.config)}


def test_unknown_names_and_configs_are_errors_that_list_the_known():
    with pytest.raises(
        ValueError, match="unknown algorithm 'sac' \\(known: dqn, pqn, tabular, offline\\)"
    ):
        algos.get("sac")
    with pytest.raises(TypeError, match="dict is not the config of a known algorithm"):
        algos.of({})


def test_optional_capabilities_are_fields_not_probes():
    assert algos.get("dqn").make_stages is dqn.make_stages
    assert algos.get("pqn").make_stages is pqn.make_stages  # every deep-Q run checkpoints
    assert algos.get("tabular").make_stages is None
    assert algos.get("tabular").title({"algorithm": "expected_sarsa"}) == "expected sarsa"
    assert algos.get("dqn").title({"env_id": "CartPole-v1"}) == "dqn"
    assert algos.get("pqn").indexed_field("loss_index") == "loss"
    assert algos.get("tabular").indexed_field("loss_index") is None


def test_reports_read_the_curve_and_final_number_each_algorithm_defines():
    metrics = {
        "env_steps": np.tile(np.arange(1, 4), (2, 2, 1)),
        "eval_return": np.arange(12.0).reshape(2, 2, 3),
        "return": np.arange(40.0).reshape(2, 2, 10),
    }
    for algorithm in (dqn.ALGORITHM, pqn.ALGORITHM):
        np.testing.assert_array_equal(algorithm.final_returns(metrics), [[2, 5], [8, 11]])
    np.testing.assert_array_equal(tabular.ALGORITHM.final_returns(metrics), [[9, 19], [29, 39]])
    x, _, xlabel, _ = tabular.ALGORITHM.learning_curve(metrics)
    assert xlabel == "episode" and x.tolist() == list(range(1, 11))
