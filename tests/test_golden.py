"""Golden files: what qlearn writes must not change when its code is reorganised.

``tests/golden/`` holds, written by this module (``python tests/test_golden.py --write``, only
when a change of the format is intended and said in its commit):

- ``spec_NAME.json``: the spec (``config.json``'s identity) of five sweeps built through the
  public entry points: a DQN grid, a grid over a static config field, a random search, a
  tabular run and a tuple of losses;
- ``run_NAME/``: a tiny sweep's ``metrics.npz`` and what qlearn derives from it,
  ``summary.json`` (timing stripped) and ``records.csv``, for a DQN grid, a tabular run and a
  tuple of losses;
- ``legacy_NAME/``: whole run directories (figures left out) of a tiny DQN and a tiny PQN sweep
  written by the ``qlearn sweep`` command before the issue-16 reorganisation (their
  ``config.json`` names the commit, 2cb18d0, and the command); the code of today must load
  them, resume them and reproduce them bitwise.

The specs and everything derived from stored metrics are machine-independent and compared
byte for byte. The metrics themselves come out of XLA, whose float arithmetic may differ
between CPU models, instruction sets and JAX versions: they are compared bitwise on the machine
named in ``machine.json`` and that comparison is skipped elsewhere, saying so. When the machine
CI runs on changes, the metrics are written again there: ``--write`` for the tiny sweeps, and
the two legacy directories by running their recorded command at 2cb18d0 (a worktree of that
commit), never by today's code.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path

import jax
import jaxlib
import numpy as np
import pytest

from qlearn import cli, runs, sweep
from qlearn.algos import dqn, tabular
from qlearn.spec import Spec, make_spec

GOLDEN = Path(__file__).parent / "golden"

TINY = dict(
    env_id="CartPole-v1",
    num_envs=2,
    total_steps=1_000,
    learning_starts=200,
    buffer_size=2_000,
    batch_size=16,
    train_every=2,
    updates_per_train=1,
    hidden_sizes=(16,),
    num_evals=2,
    eval_episodes=2,
)


def specs() -> dict[str, dict]:
    """The five specs, built as a user builds them, as JSON."""
    cartpole = dqn.DQNConfig(env_id="CartPole-v1")
    built = {
        "dqn_grid": make_spec(cartpole, {"lr": [3e-4, 1e-3], "gamma": [0.99]}, seeds=4),
        "static_grid": make_spec(
            cartpole, {"n_step": [1, 3], "lr": [1e-3, 3e-3]}, seeds=2, lanes=4
        ),
        "random_search": make_spec(
            cartpole,
            dist={"lr": "loguniform:1e-4:1e-2", "target_period": "uniform:100:1000"},
            n_samples=5,
            search_seed=7,
            seeds=3,
            base_seed=10,
        ),
        "tabular": make_spec(
            tabular.TabularConfig(env_id="CliffWalking", algorithm="sarsa", num_episodes=50),
            {"lr": [0.1, 0.5]},
            seeds=3,
            lanes=3,
        ),
        "loss_tuple": make_spec(
            dataclasses.replace(cartpole, loss=("huber", "mse")), {"loss_index": [0, 1]}, seeds=2
        ),
    }
    return {name: spec.to_json() for name, spec in built.items()}


def tiny_runs() -> dict[str, tuple]:
    """(config, grid, seeds, lanes) of the three tiny sweeps whose outputs are golden."""
    return {
        "dqn_grid": (dqn.DQNConfig(**TINY), {"lr": [3e-4, 3e-3]}, 2, 2),
        "tabular": (
            tabular.TabularConfig(env_id="CliffWalking", algorithm="q_learning", num_episodes=20),
            {"lr": [0.1, 0.5]},
            2,
            2,
        ),
        "loss_tuple": (
            dqn.DQNConfig(**TINY, loss=("huber", "mse")),
            {"loss_index": [0, 1]},
            1,
            2,
        ),
    }


def machine() -> dict:
    """What decides XLA:CPU's float arithmetic here: JAX, the backend and the CPU (model and
    instruction-set extensions, as run directories record it)."""
    return {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "backend": jax.default_backend(),
        "cpu": runs.cpu(),
    }


def golden() -> dict:
    """The machine the golden metrics were written on."""
    return json.loads((GOLDEN / "machine.json").read_text())


def same_machine() -> bool:
    return golden() == machine()


def dumps(obj) -> str:
    return json.dumps(obj, indent=2) + "\n"


def derived(spec: Spec, metrics: dict[str, np.ndarray]) -> tuple[str, str]:
    """(summary.json without timing, records.csv) that qlearn derives from ``metrics``."""
    run = runs.build(spec, metrics)
    summary = {k: v for k, v in run.summary.items() if k != "timing"}
    with tempfile.TemporaryDirectory() as tmp:
        records = runs.write_csv(Path(tmp) / "records.csv", runs.records(spec, run.metrics))
        return dumps(summary), records.read_text()


def train(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    config, grid, seeds, lanes = tiny_runs()[name]
    result = sweep.run(config, grid, seeds=seeds, lanes=lanes)
    return result.spec.to_json(), {k: np.asarray(v) for k, v in result.metrics.items()}


def load_metrics(name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / f"run_{name}" / "metrics.npz") as f:
        return {k: f[k] for k in f.files}


def write() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name, spec in specs().items():
        (GOLDEN / f"spec_{name}.json").write_text(dumps(spec))
    for name in tiny_runs():
        spec, metrics = train(name)
        d = GOLDEN / f"run_{name}"
        d.mkdir(exist_ok=True)
        (d / "spec.json").write_text(dumps(spec))
        np.savez(d / "metrics.npz", **metrics)
        summary, records = derived(Spec.from_json(spec), metrics)
        (d / "summary.json").write_text(summary)
        (d / "records.csv").write_text(records)
    (GOLDEN / "machine.json").write_text(dumps(machine()))


@pytest.mark.parametrize("name", list(specs()))
def test_specs_are_byte_equal_to_the_golden_files(name):
    assert dumps(specs()[name]) == (GOLDEN / f"spec_{name}.json").read_text()


@pytest.mark.parametrize("name", list(tiny_runs()))
def test_summary_and_records_of_golden_metrics_are_byte_equal(name):
    d = GOLDEN / f"run_{name}"
    spec = Spec.from_json(json.loads((d / "spec.json").read_text()))
    summary, records = derived(spec, load_metrics(name))
    assert summary == (d / "summary.json").read_text()
    assert records == (d / "records.csv").read_text()


def test_a_tiny_sweep_gives_the_golden_spec_and_metrics():
    spec, metrics = train("dqn_grid")
    d = GOLDEN / "run_dqn_grid"
    assert dumps(spec) == (d / "spec.json").read_text()
    if not same_machine():
        pytest.skip(f"golden metrics were written on {golden()}, this is {machine()}")
    expected = load_metrics("dqn_grid")
    assert sorted(metrics) == sorted(expected)
    for k in expected:
        np.testing.assert_array_equal(metrics[k], expected[k], err_msg=k)


def legacy_copy(name: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of ``legacy_NAME/`` and the command that wrote it, with ``--out`` the copy."""
    d = tmp_path / name
    shutil.copytree(GOLDEN / f"legacy_{name}", d)
    command = json.loads((d / "config.json").read_text())["provenance"]["command"][1:]
    return d, [*command[: command.index("--out") + 1], str(d)]


@pytest.mark.parametrize("name", ["dqn", "pqn"])
def test_a_run_directory_written_before_the_reorganisation_loads_and_resumes(
    name, tmp_path, capsys
):
    d, command = legacy_copy(name, tmp_path)
    before = runs.load(d)
    assert before.spec.format == 3 and before.summary is not None
    if name == "pqn":  # loss_index came later: from_json fills its default
        assert before.spec.to_json()["hparams"]["loss_index"] == [0, 0]
    expected = {k: np.asarray(v) for k, v in before.metrics.items()}
    last = sorted((d / "chunks").glob("*.npz"))[-1]
    done = before.spec.num_runs - len(runs.read_chunk(last).runs)
    last.unlink()  # as if killed before its last chunk
    (d / "summary.json").unlink()
    assert cli.main(command) == 0
    assert f"resuming: {done} of {before.spec.num_runs} runs are already done" in (
        capsys.readouterr().out
    )
    after = runs.load(d)
    assert after.spec == before.spec
    if not same_machine():
        pytest.skip("legacy metrics were written on another machine: compared on load only")
    for k in expected:
        np.testing.assert_array_equal(after.metrics[k], expected[k], err_msg=k)


@pytest.mark.parametrize("name", ["dqn", "pqn"])
def test_a_run_directory_written_before_the_reorganisation_reproduces_bitwise(name, tmp_path):
    if not same_machine():
        pytest.skip("legacy metrics were written on another machine")
    d, _ = legacy_copy(name, tmp_path)
    assert cli.main(["reproduce", "--quiet", "--no-cache", str(d)]) == 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_golden.py --write   (rewrites tests/golden/)")
    write()
