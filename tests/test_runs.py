import csv
import json

import numpy as np
import pytest
from conftest import TINY

from qlearn import runs
from qlearn.algos import dqn
from qlearn.algos.dqn import DQNConfig
from qlearn.spec import make_spec


def spec(**cfg):
    return make_spec(DQNConfig(**cfg), {"lr": [1e-3]}, seeds=2)


def test_prepare_refuses_foreign_and_different_directories(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(runs.RunDirError, match="holds no qlearn run"):
        runs.prepare(tmp_path, spec())
    target = tmp_path / "r"
    assert runs.prepare(target, spec()) is False
    assert json.loads((target / "config.json").read_text())["spec"] == spec().to_json()  # recorded
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


def test_several_losses_are_labelled_by_name_in_labels_and_the_table():
    config = DQNConfig(loss=("huber", "residual"))
    s = make_spec(config, {"loss_index": [0, 1]}, seeds=1)
    assert runs.labels(s) == ["loss=huber", "loss=residual"]
    steps = np.broadcast_to(np.arange(1, 4, dtype=np.int32), (2, 1, 3))
    run = runs.build(s, {"eval_return": np.zeros((2, 1, 3), np.float32), "env_steps": steps})
    table = runs.summary_table(s, run.summary["configs"]).splitlines()
    assert table[0].split()[:2] == ["#", "loss_index"]
    assert [row.split()[:2] for row in table[2:4]] == [["0", "huber"], ["1", "residual"]]
    assert runs.grid_axes(s) == []  # a loss is not a numeric axis


def synthetic_metrics():
    """2 configs × 3 seeds × 4 evaluations; run (1, 2) diverges at evaluation 2."""
    ret = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    diverged = np.zeros((2, 3, 4), bool)
    diverged[1, 2, 2] = True
    steps = np.broadcast_to(np.array([10, 20, 30, 40], np.int32), (2, 3, 4)).copy()
    loss = np.ones((2, 3, 4), np.float32)
    return {"eval_return": ret, "diverged": diverged, "env_steps": steps, "loss": loss}


def test_diverged_runs_are_masked_from_where_they_diverged_and_counted():
    s = make_spec(DQNConfig(), {"lr": [1e-3, 3e-3]}, seeds=3)
    run = runs.build(s, synthetic_metrics())
    m = run.metrics
    np.testing.assert_array_equal(m["diverged_at"], [[-1, -1, -1], [-1, -1, 2]])
    np.testing.assert_array_equal(m["eval_return"][1, 2], [20, 21, np.nan, np.nan])
    np.testing.assert_array_equal(m["loss"][1, 2], [1, 1, np.nan, np.nan])
    np.testing.assert_array_equal(m["env_steps"][1, 2], [10, 20, 30, 40])  # not a float
    rows = run.summary["configs"]
    assert rows[1]["diverged"] == 1 and rows[1]["diverged_at_steps"] == [30]
    assert rows[1]["final"]["n"] == 2  # over the 2 runs that did not diverge
    assert rows[1]["final"]["mean"] == np.mean([15.0, 19.0])
    assert rows[1]["best"]["n"] == 3  # a diverged run's best before diverging still counts
    assert run.summary["probability_of_improvement"][1][0] == 1.0
    assert "did not diverge" in run.summary["statistic"]
    assert "included" not in run.summary["statistic"]  # one true label: they are excluded
    records = run.records()
    assert len(records) == 6 and records[5]["diverged_at"] == 2 and records[5]["seed"] == 2
    assert records[3]["lr"] == pytest.approx(3e-3)


def test_chunks_round_trip_and_damage_is_detected(tmp_path):
    (tmp_path / runs.CHUNKS).mkdir()
    metrics = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    file = runs.write_chunk(tmp_path, 0, np.array([4, 5]), metrics)
    chunk = runs.read_chunk(file)
    assert chunk.group == 0 and chunk.runs.tolist() == [4, 5]
    np.testing.assert_array_equal(chunk.metrics["x"], metrics["x"])
    other = runs.write_chunk(tmp_path, 0, np.array([0, 1]), metrics)
    other.write_bytes(other.read_bytes()[:-10])
    good, bad = runs.scan_chunks(tmp_path, quarantine=True)
    assert [c.file for c in good] == [file.name] and len(bad) == 1
    assert other.with_suffix(".corrupt").exists() and not other.exists()
    assert not list((tmp_path / runs.CHUNKS).glob(".*tmp"))  # no temporary files left


def test_grid_table_puts_each_configuration_in_its_own_cell():
    """A 3 × 2 grid (lr fastest-varying last, as hparams.grid orders it) whose per-run values
    name their configuration: cell (gamma, lr) must hold exactly that configuration."""
    config = dqn.DQNConfig(**TINY)
    grid = {"gamma": [0.9, 0.99], "lr": [1e-4, 1e-3, 1e-2]}
    spec = make_spec(config, grid, seeds=2)
    per_run = np.arange(6, dtype=np.float64)[:, None] * np.ones((1, 2))  # config i -> i
    axes = runs.grid_axes(spec)
    assert [name for name, _ in axes] == ["gamma", "lr"]
    table = runs.grid_table(spec, per_run, axes[::-1])  # x = lr, y = gamma
    np.testing.assert_array_equal(table[:, :, 0], [[0, 1, 2], [3, 4, 5]])
    one = runs.grid_table(spec, per_run, axes[:1])  # x = gamma: the first config of each
    np.testing.assert_array_equal(one[0, :, 0], [0, 3])


def test_records_csv_reads_back_as_the_records(tmp_path):
    spec = make_spec(dqn.DQNConfig(**TINY), {"lr": [1e-3, 3e-3]}, seeds=2, base_seed=5)
    t = TINY["num_evals"]
    metrics = {
        "env_steps": np.tile(np.arange(1, t + 1) * 100, (2, 2, 1)).astype(np.int32),
        "eval_return": np.arange(2 * 2 * t, dtype=np.float32).reshape(2, 2, t),
        "diverged": np.zeros((2, 2, t), bool),
    }
    run = runs.write(tmp_path, spec, metrics)
    with open(tmp_path / "records.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and [r["seed"] for r in rows] == ["5", "6", "5", "6"]
    for row, record in zip(rows, run.records(), strict=True):
        assert float(row["lr"]) == pytest.approx(record["lr"])
        for k in ("final", "best", "auc"):
            assert float(row[k]) == pytest.approx(record[k])
    assert float(rows[3]["final"]) == metrics["eval_return"][1, 1, -1]


def test_a_chunk_whose_values_no_longer_match_its_checksum_is_refused(tmp_path):
    """A well-formed file (the zip reader is happy) with one value changed by one ulp: only the
    SHA-256 comparison catches it."""
    (tmp_path / runs.CHUNKS).mkdir()
    metrics = {"loss": np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)}
    file = runs.write_chunk(tmp_path, 0, np.array([0, 1]), metrics)
    with np.load(file) as z:
        arrays = dict(z)
    arrays["m_loss"][1, 2] = np.nextafter(arrays["m_loss"][1, 2], np.float32(2))
    np.savez(file, **arrays)
    with pytest.raises(runs.CorruptChunk, match="do not match its SHA-256"):
        runs.read_chunk(file)


# -- a random search's report -------------------------------------------------------------


def test_a_random_search_is_ranked_and_names_its_best_as_a_command(tmp_path):
    """Fabricated finals (seeds × 6 draws): the table and summary.json rank by final IQM,
    count the configurations inside the best one's CI, draw the search figure, and the
    re-run line parses back to exactly the best configuration."""
    from qlearn.cli import arguments, parser

    config = dqn.DQNConfig(**TINY)
    dist = {
        "lr": "loguniform:1e-4:1e-2",
        "target_tau": "uniform:0.005:0.1",
        "gamma": "choice:0.9,0.97",
    }
    spec = make_spec(
        config, {"hidden_sizes": [(16,), (8, 8)]}, dist=dist, n_samples=3, seeds=5, search_seed=2
    )
    rng = np.random.default_rng(0)
    finals = np.array([10.0, 200.0, 50.0, 190.0, 120.0, 20.0])[:, None] + rng.normal(0, 30, (6, 5))
    t = config.num_evals
    metrics = {
        "env_steps": np.broadcast_to(np.arange(1, t + 1, dtype=np.int32) * 500, (6, 5, t)).copy(),
        "eval_return": np.repeat(finals[..., None], t, axis=-1).astype(np.float32),
        "diverged": np.zeros((6, 5, t), bool),
    }
    run = runs.write(tmp_path / "r", spec, metrics)
    rows = run.summary["configs"]
    report = run.summary["search"]
    iqms = [r["final"]["iqm"] for r in rows]
    assert [e["config"] for e in report["ranking"]] == list(np.argsort(iqms)[::-1])
    assert [e["rank"] for e in report["ranking"]] == [1, 2, 3, 4, 5, 6]
    best = report["best"]
    lo, hi = rows[best]["final"]["iqm_ci95"]
    assert report["within_best_ci"] == [
        e["config"] for e in report["ranking"][1:] if lo <= e["iqm"] <= hi
    ]
    table = runs.summary_table(spec, rows).splitlines()
    assert table[0].split()[:2] == ["rank", "#"] and table[2].split()[:2] == ["1", str(best)]
    assert f"{len(report['within_best_ci'])} of the 5 others" in table[-2]
    assert (run.path / "search.png").exists() and (run.path / "search.pdf").exists()

    command = report["rerun"]
    assert table[-1].endswith(command) and command.startswith("qlearn train --algo dqn")
    args = parser.build_parser().parse_args(command.split()[1:])
    rebuilt = arguments.parse_config(
        dqn.DQNConfig, args.cfg, env_id=args.env, total_steps=args.total_steps
    )
    group = next(g for g, (_, _, configs) in enumerate(spec.compiled_groups()) if best in configs)
    assert rebuilt == spec.compiled_groups()[group][0]  # its static fields, the search's base
    hp = arguments.parse_hparams(dqn.DQNHParams, args.hp)
    for name, value in spec.config_values()[best].items():
        if name in hp:
            assert np.float32(hp[name][0]) == np.float32(value), name
    assert args.seeds == 32
