"""The run identity: built once, through JSON and back unchanged, for every format written."""

import dataclasses
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
    def my_loss(q_fn, online_params, target_params, batch, hparams, key):  # not importable
        return losses.semi_gradient_td_loss(q_fn, online_params, target_params, batch, hparams)

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


def test_a_munchausen_spec_written_before_munchausen_next_policy_names_the_same_program():
    """Before the field, loss=munchausen took π′ from the online network when double_q was
    on: such a stored spec loads with munchausen_next_policy='online' (and 'target' with
    double_q off), per compiled group where a static grid overrides double_q; specs that
    record the field, and other losses, load as written."""

    def stored(config, grid):
        data = make_spec(config, grid, seeds=1).to_json()
        data["config"].pop("munchausen_next_policy")
        return data

    base = dqn.DQNConfig(loss=("huber", "munchausen"))
    old = Spec.from_json(stored(base, {"loss_index": [0, 1]}))
    assert old.base_config().munchausen_next_policy == "online"
    off = dataclasses.replace(base, double_q=False)
    assert Spec.from_json(stored(off, {})).base_config().munchausen_next_policy == "target"
    assert Spec.from_json(stored(dqn.DQNConfig(), {})).base_config() == dqn.DQNConfig()
    grid = Spec.from_json(stored(base, {"double_q": [True, False]}))
    policies = [g[0].munchausen_next_policy for g in grid.compiled_groups()]
    assert [g[0].double_q for g in grid.compiled_groups()] == [True, False]
    assert policies == ["online", "target"]
    today = make_spec(base, {"double_q": [True, False]}, seeds=1)
    assert through_json(today) == today  # written with the field: unchanged
    assert [g[0].munchausen_next_policy for g in today.compiled_groups()] == ["target"] * 2
