"""Golden files: what qlearn writes must not change when its code is reorganised.

``tests/golden/`` holds, written by this module:

- ``spec_NAME.json``: the spec (``config.json``'s identity) of five sweeps built through the
  public entry points: a DQN grid, a grid over a static config field, a random search, a
  tabular run and a tuple of losses. Machine-independent, compared byte for byte everywhere.
- ``machines/KEY/``, one set per machine fingerprint (:func:`machine`: JAX, jaxlib, backend,
  CPU model and the x86 extensions XLA:CPU compiles for; ``KEY`` is :func:`key` of it, and
  ``machine.json`` the fingerprint itself), holding what comes out of XLA's float arithmetic:
  ``run_NAME/``, a tiny sweep's ``metrics.npz`` and what qlearn derives from it
  (``summary.json`` without timing, ``records.csv``) for a DQN grid, a tabular run and a tuple
  of losses; and ``legacy_NAME/``, whole run directories (figures left out) of a tiny DQN and a
  tiny PQN sweep written by the ``qlearn sweep`` command before the issue-16 reorganisation
  (their ``config.json`` names the commit, 2cb18d0, and the command): today's code must load
  them, resume them and reproduce them.

Three levels of check, so that no machine skips them all:

1. everything derived from stored metrics, for every machine's set: byte for byte, anywhere;
2. on a machine that has a set: today's tiny sweeps and the legacy resumes and reproductions,
   bitwise;
3. on every machine, against every set: identical returns, episode counts and divergence flags,
   and the float statistics (loss, Q, targets, |δ|) within :data:`RTOL` — what two CPUs'
   last-bit differences may move in these short runs, and nothing that changes what was
   learned.

A new machine (CI's, a session's) gets its set by ``python tests/test_golden.py --write-machine``,
committed alone: the tiny sweeps by today's code (after check 3 passed there), the legacy
directories by running their recorded command at 2cb18d0 in a git worktree, never by today's
code. ``--write`` rewrites the specs and this machine's tiny sweeps, only when a change of the
format is intended and said in its commit. ``--add-fields`` is for a new config field whose
default changes no program: it rewrites the specs, and every set's tiny-sweep ``spec.json``
and ``summary.json`` and ``records.csv`` (derived again from the stored metrics, which it
never touches), and refuses, writing nothing, unless the only change is new keys and new
columns.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
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


LEGACY_COMMIT = "2cb18d0"
"""The commit whose ``qlearn sweep`` wrote the legacy run directories."""

EXACT = ("eval_return", "train_return", "train_episodes", "env_steps", "diverged", "diverged_at")
"""Metrics every machine must reproduce exactly (the rest are float statistics)."""

RTOL, ATOL = 1e-4, 1e-5
"""How far another machine's float statistics may sit from a set's (observed: within 2e-6)."""


def machine() -> dict:
    """What decides XLA:CPU's float arithmetic here: JAX, the backend and the CPU (model and
    instruction-set extensions, as run directories record it)."""
    return {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "backend": jax.default_backend(),
        "cpu": runs.cpu(),
    }


def key(fingerprint: dict) -> str:
    """The directory name of a machine's set: readable, and a digest of the whole
    fingerprint (two CPUs of one model name with other extensions get two sets)."""
    model = re.sub(r"[^a-z0-9]+", "-", fingerprint["cpu"]["model"].lower()).strip("-")
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:8]
    return f"{fingerprint['backend']}-jax{fingerprint['jax']}-{model}-{digest}"


def machine_sets() -> list[Path]:
    """Every machine's golden set, each checked to be filed under its own fingerprint."""
    sets = sorted(p for p in (GOLDEN / "machines").iterdir() if p.is_dir())
    for d in sets:
        assert d.name == key(json.loads((d / "machine.json").read_text())), d
    return sets


def this_machine() -> Path | None:
    """This machine's set, if it has one."""
    d = GOLDEN / "machines" / key(machine())
    return d if d.is_dir() else None


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


def load_metrics(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def assert_close_across_machines(got: dict, expected: dict, where: str) -> None:
    """Check 3: the same keys, :data:`EXACT` metrics equal, float statistics within RTOL."""
    assert sorted(got) == sorted(expected), where
    for k in expected:
        if k in EXACT:
            np.testing.assert_array_equal(got[k], expected[k], err_msg=f"{where}: {k}")
        else:
            np.testing.assert_allclose(
                got[k], expected[k], rtol=RTOL, atol=ATOL, err_msg=f"{where}: {k}"
            )


def write_run(d: Path, spec: dict, metrics: dict[str, np.ndarray]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "spec.json").write_text(dumps(spec))
    np.savez(d / "metrics.npz", **metrics)
    summary, records = derived(Spec.from_json(spec), metrics)
    (d / "summary.json").write_text(summary)
    (d / "records.csv").write_text(records)


def write_legacy(name: str, source: Path, into: Path) -> None:
    """Re-run the legacy directory ``source``'s recorded command at :data:`LEGACY_COMMIT` in a
    git worktree (its own ``--out``), and copy what it wrote, figures left out, to ``into``."""
    command = json.loads((source / "config.json").read_text())["provenance"]["command"][1:]
    out = Path(command[command.index("--out") + 1])
    root = GOLDEN.parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "old"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), LEGACY_COMMIT], cwd=root, check=True
        )
        try:
            shutil.rmtree(out, ignore_errors=True)
            env = dict(os.environ, PYTHONPATH=str(tree))
            subprocess.run(
                [sys.executable, str(tree / "qlearn" / "__main__.py"), *command],
                cwd=tree,
                env=env,
                check=True,
            )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root)
    shutil.rmtree(into, ignore_errors=True)
    shutil.copytree(out, into, ignore=shutil.ignore_patterns("*.png", "*.pdf", "figures"))
    shutil.rmtree(out)


def write(machine_set: bool) -> None:
    """``--write``: the specs and this machine's tiny sweeps; ``--write-machine``: a whole new
    set for this machine (tiny sweeps and legacy directories)."""
    d = GOLDEN / "machines" / key(machine())
    if machine_set:
        if d.exists():
            sys.exit(f"{d} exists: this machine has its set")
        source = machine_sets()[0]
        d.mkdir(parents=True)
        for name in ("dqn", "pqn"):
            write_legacy(name, source / f"legacy_{name}", d / f"legacy_{name}")
    else:
        for name, spec in specs().items():
            (GOLDEN / f"spec_{name}.json").write_text(dumps(spec))
    for name in tiny_runs():
        write_run(d / f"run_{name}", *train(name))
    (d / "machine.json").write_text(dumps(machine()))


def only_additions(old: object, new: object, where: str) -> None:
    """Exit unless ``new`` is ``old`` with keys added (at any depth of nested dicts, and of
    lists of the same length)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k, v in old.items():
            if k not in new:
                sys.exit(f"{where}: {k} was removed")
            only_additions(v, new[k], f"{where}.{k}")
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (o, n) in enumerate(zip(old, new, strict=True)):
            only_additions(o, n, f"{where}[{i}]")
    elif old != new and not (old != old and new != new):  # NaN stays NaN
        sys.exit(f"{where}: {old!r} became {new!r}")


def only_added_columns(old: str, new: str, where: str) -> None:
    """Exit unless the CSV ``new`` is ``old`` with columns added (a new hyperparameter's)."""
    old_rows, new_rows = (list(csv.DictReader(io.StringIO(t))) for t in (old, new))
    columns = next(csv.reader(io.StringIO(old)))
    if len(old_rows) != len(new_rows) or any(
        {c: n.get(c) for c in columns} != o for o, n in zip(old_rows, new_rows, strict=True)
    ):
        sys.exit(f"{where}: records.csv would change beyond added columns")


def add_fields() -> None:
    """``--add-fields``: the specs, and every set's tiny-sweep spec and summary (derived from
    its stored metrics), rebuilt by today's code; every file is checked (only added keys;
    records.csv only gains columns, a new hyperparameter's) before any is written."""
    writes = {}
    for name, spec in specs().items():
        path = GOLDEN / f"spec_{name}.json"
        only_additions(json.loads(path.read_text()), spec, path.name)
        writes[path] = dumps(spec)
    for machine_set in machine_sets():
        for name, (config, grid, seeds, lanes) in tiny_runs().items():
            d = machine_set / f"run_{name}"
            spec = make_spec(config, grid, seeds=seeds, lanes=lanes).to_json()
            only_additions(json.loads((d / "spec.json").read_text()), spec, str(d))
            summary, records = derived(Spec.from_json(spec), load_metrics(d / "metrics.npz"))
            only_additions(
                json.loads((d / "summary.json").read_text()), json.loads(summary), str(d)
            )
            only_added_columns((d / "records.csv").read_text(), records, str(d))
            writes[d / "spec.json"], writes[d / "summary.json"] = dumps(spec), summary
            writes[d / "records.csv"] = records
    for path, text in writes.items():
        path.write_text(text)


@pytest.fixture(scope="module")
def tiny_dqn_grid() -> tuple[dict, dict[str, np.ndarray]]:
    """This machine's tiny DQN grid, trained once for the checks that compare it."""
    return train("dqn_grid")


@pytest.mark.parametrize("name", list(specs()))
def test_specs_are_byte_equal_to_the_golden_files(name):
    assert dumps(specs()[name]) == (GOLDEN / f"spec_{name}.json").read_text()


@pytest.mark.parametrize("name", list(tiny_runs()))
def test_summary_and_records_of_golden_metrics_are_byte_equal(name):
    for machine_set in machine_sets():
        d = machine_set / f"run_{name}"
        spec = json.loads((d / "spec.json").read_text())
        assert dumps(spec) == (machine_sets()[0] / f"run_{name}" / "spec.json").read_text()
        summary, records = derived(Spec.from_json(spec), load_metrics(d / "metrics.npz"))
        assert summary == (d / "summary.json").read_text(), d
        assert records == (d / "records.csv").read_text(), d


def test_a_tiny_sweep_gives_the_golden_spec_and_metrics(tiny_dqn_grid):
    spec, metrics = tiny_dqn_grid
    for machine_set in machine_sets():
        assert dumps(spec) == (machine_set / "run_dqn_grid" / "spec.json").read_text()
    d = this_machine()
    if d is None:
        pytest.skip(
            f"no golden set for {machine()} (write it: python tests/test_golden.py "
            "--write-machine); the tolerance check below still runs"
        )
    expected = load_metrics(d / "run_dqn_grid" / "metrics.npz")
    assert sorted(metrics) == sorted(expected)
    for k in expected:
        np.testing.assert_array_equal(metrics[k], expected[k], err_msg=k)


def test_a_tiny_sweep_is_within_tolerance_of_every_machines_golden_metrics(tiny_dqn_grid):
    _, metrics = tiny_dqn_grid
    sets = machine_sets()
    assert sets, "no golden set at all"
    for machine_set in sets:
        expected = load_metrics(machine_set / "run_dqn_grid" / "metrics.npz")
        assert_close_across_machines(metrics, expected, machine_set.name)


def legacy_copy(source: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of a legacy directory and the command that wrote it, with ``--out`` the copy."""
    d = tmp_path / source.name
    shutil.copytree(source, d)
    command = json.loads((d / "config.json").read_text())["provenance"]["command"][1:]
    return d, [*command[: command.index("--out") + 1], str(d)]


@pytest.mark.parametrize("name", ["dqn", "pqn"])
def test_a_run_directory_written_before_the_reorganisation_loads_and_resumes(
    name, tmp_path, capsys
):
    """Resumed by today's code, a legacy directory's metrics are bitwise its own on its
    machine, and within tolerance of every machine's set elsewhere."""
    d, command = legacy_copy((this_machine() or machine_sets()[0]) / f"legacy_{name}", tmp_path)
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
    got = {k: np.asarray(v) for k, v in after.metrics.items()}
    if this_machine() is not None:
        for k in expected:
            np.testing.assert_array_equal(got[k], expected[k], err_msg=k)
    for machine_set in machine_sets():  # the resumed runs against every machine's
        theirs = runs.load(machine_set / f"legacy_{name}").metrics
        assert_close_across_machines(got, {k: np.asarray(v) for k, v in theirs.items()}, name)


@pytest.mark.parametrize("name", ["dqn", "pqn"])
def test_a_run_directory_written_before_the_reorganisation_reproduces_bitwise(name, tmp_path):
    if this_machine() is None:
        pytest.skip(f"no golden set for {machine()}: the resume test compares within tolerance")
    d, _ = legacy_copy(this_machine() / f"legacy_{name}", tmp_path)
    assert cli.main(["reproduce", "--quiet", "--no-cache", str(d)]) == 0


if __name__ == "__main__":
    flags = {"--write": False, "--write-machine": True}
    if len(sys.argv) == 2 and sys.argv[1] == "--add-fields":
        add_fields()
    elif len(sys.argv) != 2 or sys.argv[1] not in flags:
        sys.exit(
            "usage: python tests/test_golden.py --write          (specs and this machine's tiny"
            " sweeps)\n       python tests/test_golden.py --write-machine  (a new machine's set)"
            "\n       python tests/test_golden.py --add-fields     (a new config field's key)"
        )
    else:
        write(flags[sys.argv[1]])
