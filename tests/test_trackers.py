"""Trackers: what TensorBoard and wandb receive, read back with their own readers, is
``metrics.npz`` value for value; tracking live leaves the results bitwise unchanged; bad input
fails in one line before anything is written."""

from __future__ import annotations

import dataclasses
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from qlearn import runs, sweep, trackers
from qlearn.algos import dqn, tabular
from qlearn.cli import main
from qlearn.spec import make_spec

GRID = {"lr": [1e-3, 3e-3], "divergence_bound": [2.0, 1e6]}  # the bound of 2: runs diverge


def expected_points(run: runs.Run) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """run name -> tag -> [(step, value)] from ``metrics.npz``: every evaluation before the
    run diverged, every per-evaluation metric but ``diverged``, NaNs left out."""
    table = trackers.tracked_runs(run.spec)
    at = run.metrics["diverged_at"]
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for c, row in enumerate(table):
        for s, tracked in enumerate(row):
            stop = at[c, s] if at[c, s] >= 0 else run.metrics["env_steps"].shape[-1]
            tags = out.setdefault(tracked.name, {})
            for name, v in run.metrics.items():
                if v.ndim != 3 or name == "diverged":
                    continue
                for t in range(stop):
                    if not np.isnan(v[c, s, t]):
                        step = int(run.metrics["env_steps"][c, s, t])
                        tags.setdefault(name, []).append((step, float(v[c, s, t])))
    return out


def read_tensorboard(logdir: Path, names: list[str]) -> dict[str, dict[str, list]]:
    out = {}
    for name in names:
        acc = EventAccumulator(str(logdir / name), size_guidance={"scalars": 0})
        acc.Reload()
        out[name] = {
            tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]
        }
    return out


def as_float32(points: dict) -> dict:
    """TensorBoard keeps scalars as float32."""
    return {
        run: {tag: [(s, float(np.float32(v))) for s, v in pts] for tag, pts in tags.items()}
        for run, tags in points.items()
    }


def session_hparams(logdir: Path, name: str) -> dict:
    """The HParams plugin's session-start hyperparameters of one run directory."""
    acc = EventAccumulator(str(logdir / name))
    acc.Reload()
    content = acc.summary_metadata["_hparams_/session_start_info"].plugin_data.content
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    values = {}
    for key, v in data.session_start_info.hparams.items():
        values[key] = getattr(v, v.WhichOneof("kind"))
    return values


class ChunkCounter:
    """A tracker noting how many chunk files the run directory held at each point."""

    def __init__(self, path: Path):
        self.path, self.seen = path, []

    def log(self, run, step, values):
        self.seen.append((run.name, len(list((self.path / runs.CHUNKS).glob("*.npz")))))

    def close(self):
        pass


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_config):
    """The same sweep twice: with TensorBoard (and a chunk counter) live, and without.
    6 runs a group in chunks of 4: the second chunk is padded with copies of a run."""
    base = tmp_path_factory.mktemp("live")
    logdir, out = base / "tb", base / "run"
    counter = ChunkCounter(out)
    tracked = sweep.run(
        tiny_config,
        GRID,
        seeds=3,
        lanes=4,
        out=out,
        trackers=[trackers.TensorBoard(logdir), counter],
    )
    plain = sweep.run(tiny_config, GRID, seeds=3, lanes=4)
    return tracked, plain, logdir, counter


def test_live_tracking_leaves_results_bitwise_unchanged(live):
    tracked, plain, _, _ = live
    matches = runs.compare(plain.metrics, tracked.metrics)
    assert all(matches.values()), matches
    assert (tracked.metrics["diverged_at"] >= 0).any()  # the test covers diverged runs
    assert (tracked.metrics["diverged_at"] < 0).any()


def test_live_tensorboard_is_metrics_npz(live):
    tracked, _, logdir, _ = live
    expected = expected_points(tracked)
    assert len(expected) == 4 * 3  # one tracked run per (configuration, seed)
    shown = {name: tags for name, tags in expected.items() if tags}
    assert read_tensorboard(logdir, list(shown)) == as_float32(shown)
    for name in set(expected) - set(shown):  # diverged at the first evaluation: no points
        assert not (logdir / name).exists()


def test_live_points_arrive_before_their_chunk_is_written(live):
    """Live means from the compiled loop: each run's points arrive while its chunk runs, not
    from the chunk file afterwards. Group 0 has chunks of runs 0-3 and 4-5 per group."""
    tracked, _, _, counter = live
    table, expected = trackers.tracked_runs(tracked.spec), expected_points(tracked)
    groups = tracked.spec.compiled_groups()
    for g, (_, _, configs) in enumerate(groups):
        for position, c in enumerate(configs):
            for s in range(3):
                chunk = (position * 3 + s) // 4
                written = 2 * g + chunk  # chunk files before this one (2 per group)
                seen = {n for name, n in counter.seen if name == table[c][s].name}
                assert seen == ({written} if expected[table[c][s].name] else set()), (g, c, s)


def test_tensorboard_hparams_name_each_run(live):
    tracked, _, logdir, _ = live
    for c, row in enumerate(trackers.tracked_runs(tracked.spec)):
        for s, run in enumerate(row):
            if not (logdir / run.name).exists():
                continue  # diverged at once: nothing tracked
            values = session_hparams(logdir, run.name)
            assert values["seed"] == s
            assert values["lr"] == pytest.approx(tracked.spec.config_values()[c]["lr"])
            assert values["divergence_bound"] == tracked.spec.config_values()[c]["divergence_bound"]
            assert run.name.startswith(f"lr={tracked.spec.config_values()[c]['lr']:g}")


def test_export_equals_live_and_reads_partial_runs(live, tmp_path):
    tracked, _, logdir, _ = live
    names = [name for name, tags in expected_points(tracked).items() if tags]
    out = tmp_path / "exported"
    count = trackers.export(tracked.path, [trackers.TensorBoard(out)])
    assert read_tensorboard(out, names) == read_tensorboard(logdir, names)
    assert count == sum(
        len(tags.get("env_steps", [])) for tags in expected_points(tracked).values()
    )

    # a partial run: no metrics.npz, one chunk of the first group left
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("config.json", runs.CHUNKS):
        src = tracked.path / name
        if src.is_dir():
            (partial / name).mkdir()
            first = sorted(src.glob("g000-*.npz"))[0]
            (partial / name / first.name).write_bytes(first.read_bytes())
        else:
            (partial / name).write_bytes(src.read_bytes())
    chunk = runs.read_chunk(sorted((partial / runs.CHUNKS).glob("*.npz"))[0])
    out2 = tmp_path / "exported-partial"
    trackers.export(partial, [trackers.TensorBoard(out2)])
    table = trackers.tracked_runs(tracked.spec)
    configs = tracked.spec.compiled_groups()[0][2]
    kept = [table[c][s].name for c, s in trackers.chunk_ids(tracked.spec, configs, chunk.runs)]
    kept = [name for name in kept if name in names]
    written = sorted(str(p.parent.relative_to(out2)) for p in out2.rglob("events.out.*"))
    assert sorted(kept) == [w for w in written if w != "."]
    assert read_tensorboard(out2, kept) == read_tensorboard(logdir, kept)


def test_tabular_runs_are_tracked_when_each_chunk_ends(tmp_path):
    """Tabular runs send no evaluation points: their chunks are logged as they finish."""
    config = dataclasses.replace(tabular.TabularConfig(env_id="CliffWalking"), num_episodes=20)
    logdir = tmp_path / "tb"
    run = sweep.run(config, {"lr": [0.1, 0.5]}, seeds=2, trackers=[trackers.TensorBoard(logdir)])
    spec = run.spec
    x, _, _, _ = run.spec.algorithm.learning_curve(run.metrics)
    got = read_tensorboard(logdir, [r.name for row in trackers.tracked_runs(spec) for r in row])
    for c, row in enumerate(trackers.tracked_runs(spec)):
        for s, tracked in enumerate(row):
            curve = run.metrics["return"][c, s]
            assert got[tracked.name]["return"] == [
                (int(x[t]), float(np.float32(curve[t]))) for t in range(len(x))
            ]


# -- wandb ---------------------------------------------------------------------------------


def wandb_records(path: Path):
    """The records of a wandb offline run file: wandb's LevelDB-style log (a 7-byte header,
    then 32 KiB blocks of records, each crc32 · length · type, split across blocks)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # the zero padding at a block's end
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buf)
            yield record
            buf = b""


def read_wandb(directory: Path) -> dict[str, dict]:
    """run name -> {"group", "config", "points": tag -> [(step, value)]}."""
    import json

    out = {}
    for file in directory.rglob("run-*.wandb"):
        run: dict = {"points": {}}
        for record in wandb_records(file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run["name"], run["group"] = record.run.display_name, record.run.run_group
                run["config"] = {u.key: json.loads(u.value_json) for u in record.run.config.update}
            elif kind == "history":
                items = {
                    "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item
                }
                step = record.history.step.num
                for tag, v in items.items():
                    if not tag.startswith("_"):
                        run["points"].setdefault(tag, []).append((step, v))
        out[run["name"]] = run
    return out


def test_wandb_offline_live_from_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    argv = ["train", "--env", "CartPole-v1", "--seeds", "1", "--hp", "lr=1e-3,3e-3", "--quiet"]
    argv += [
        f"--cfg={k}={'x'.join(map(str, v)) if isinstance(v, tuple) else v}"
        for k, v in TINY.items()
        if k != "env_id"
    ]
    argv += ["--out", str(out), "--wandb", "qlearn-test", "--lanes", "4"]
    assert main(argv) == 0
    run = runs.load(out)
    got = read_wandb(tmp_path / "wandb")
    expected = expected_points(run)
    assert set(got) == set(expected)
    for name, tags in expected.items():
        assert got[name]["group"] == "run"
        assert got[name]["points"] == tags  # float32 values, exact in JSON's float64
        assert got[name]["config"]["seed"] == 0 and got[name]["config"]["algo"] == "dqn"


# -- bad input -----------------------------------------------------------------------------


def test_unwritable_logdir_fails_before_anything_runs(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--total-steps",
            "2000",
            "--cfg",
            "learning_starts=100",
            "--out",
            str(out),
            "--tensorboard",
            str(blocker / "tb"),
        ]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note")]
    assert code == 2 and len(err) == 1 and "cannot write to" in err[0]
    assert not out.exists()  # nothing half-written


def test_export_refuses_what_is_not_a_run(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--tensorboard", str(tmp_path / "tb")]) == 2
    assert "holds no qlearn run" in capsys.readouterr().err
    assert main(["export", str(tmp_path)]) == 2
    assert "--tensorboard DIR and/or --wandb PROJECT" in capsys.readouterr().err
    assert not (tmp_path / "tb").exists()


def test_missing_tracker_package_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import fails as if not installed
    with pytest.raises(trackers.TrackerError, match=r"pip install 'qlearn\[trackers\]'"):
        trackers.TensorBoard("unused")


def test_tracked_run_names_and_values_show_losses_by_name():
    config = dqn.DQNConfig(**TINY, loss=("huber", "mse"))
    spec = make_spec(config, {"loss_index": [0, 1]}, seeds=2)
    table = trackers.tracked_runs(spec)
    assert [r.name for r in table[1]] == ["loss=mse/seed=0", "loss=mse/seed=1"]
    assert table[1][0].values["loss"] == "mse" and table[1][0].values["loss_index"] == 1
    assert table[0][1].values | {"algo": "dqn", "env_id": "CartPole-v1"} == table[0][1].values
    single = trackers.tracked_runs(make_spec(dqn.DQNConfig(**TINY), seeds=1))
    assert single[0][0].name == "seed=0"


@pytest.mark.parametrize(("algo", "total_steps"), [("dqn", 20_000), ("pqn", 20_480)])
def test_tracking_is_bitwise_neutral_at_the_default_configs(algo, total_steps, tmp_path):
    """The promise at the sizes users run: the default CartPole configs (only total_steps
    cut), 8 seeds in the default 8 lanes, tracked live or not."""
    from qlearn import algos

    config = algos.get(algo).config(env_id="CartPole-v1", total_steps=total_steps)
    plain = sweep.run(config, {"lr": [1e-3]}, seeds=8)
    tracked = sweep.run(config, {"lr": [1e-3]}, seeds=8, trackers=[trackers.TensorBoard(tmp_path)])
    matches = runs.compare(plain.metrics, tracked.metrics)
    assert all(matches.values()), matches
    expected = {name: tags for name, tags in expected_points(tracked).items() if tags}
    assert len(expected) == 8
    assert read_tensorboard(tmp_path, list(expected)) == as_float32(expected)
