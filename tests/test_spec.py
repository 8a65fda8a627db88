"""The run identity: built once, through JSON and back unchanged, for every format written."""

import json

import numpy as np
import pytest

from qlearn import losses
from qlearn.algos import dqn, tabular
from qlearn.spec import DEFAULT_LANES, Group, Spec, SpecError, make_spec


def through_json(spec: Spec) -> Spec:
    return Spec.from_json(json.loads(json.dumps(spec.to_json())))


def test_a_spec_rebuilds_the_same_objects_through_json():
    config = dqn.DQNConfig(hidden_sizes=(32, 16), num_envs=4)
    spec = make_spec(config, {"lr": [1e-3, 3e-3], "n_step": [1, 3]}, seeds=2)
    back = through_json(spec)
    assert back == spec and back.live_config is None
    assert back.base_config() == config
    assert (
        np.asarray(back.batched_hparams().lr).tobytes()
        == np.asarray([1e-3, 3e-3, 1e-3, 3e-3], np.float32).tobytes()
    )
    groups = back.compiled_groups()
    assert [g[0].n_step for g in groups] == [1, 3] and [g[2] for g in groups] == [[0, 1], [2, 3]]
    assert back.num_configs == 4 and back.num_runs == 8 and back.swept == ("lr", "n_step")


def test_a_loss_defined_in_this_process_travels_with_the_spec_not_beside_it():
    def my_loss(q, target):  # not importable by its name
        return losses.mse(q, target)

    config = dqn.DQNConfig(loss=("huber", my_loss))
    spec = make_spec(config, {"loss_index": [0, 1]}, seeds=1)
    assert spec.compiled_groups()[0][0].loss[1] is my_loss
    assert spec.to_json()["config"]["loss"][1].endswith("my_loss")


def test_old_formats_load_and_write_back_unchanged():
    v3 = make_spec(dqn.DQNConfig(), {"lr": [1e-3]}, seeds=2).to_json()
    v2 = {k: v for k, v in v3.items() if k != "lanes"} | {"format": 2}
    v1 = {k: v for k, v in v2.items() if k not in ("groups", "search")} | {"format": 1}
    for data in (v1, v2, v3):
        spec = Spec.from_json(data)
        assert spec.to_json() == data and list(spec.to_json()) == list(data)  # keys, in order
    old = Spec.from_json(v2)
    assert old.lanes is None and old.run_lanes == DEFAULT_LANES
    assert Spec.from_json(v1).groups == (Group({}, (0,)),)


def test_select_is_one_run_of_the_sweep_and_bad_picks_name_the_ranges():
    config = tabular.TabularConfig(env_id="CliffWalking", num_episodes=5)
    spec = make_spec(config, {"lr": [0.1, 0.5]}, seeds=3, base_seed=10, lanes=2)
    one = spec.select(1, 12)
    assert one.num_runs == 1 and one.base_seed == 12 and one.lanes == 2
    assert one.hparams["lr"] == [0.5] and one.config == spec.config
    with pytest.raises(SpecError, match=r"configurations 0\.\.1"):
        spec.select(2, 10)
    with pytest.raises(SpecError, match=r"seeds 10\.\.12"):
        spec.select(0, 13)


@pytest.mark.parametrize(("kwargs", "message"), [({"seeds": 0}, "seeds"), ({"lanes": 0}, "lanes")])
def test_bad_counts_are_refused(kwargs, message):
    with pytest.raises(SpecError, match=message):
        make_spec(dqn.DQNConfig(), **kwargs)
