import json
import shutil

import numpy as np
import pytest
from conftest import TINY

from qlearn import cli, runs, sweep
from qlearn.algos.dqn import DQNConfig
from qlearn.cli import arguments, commands
from qlearn.spec import make_spec

TINY_ARGS = [
    f"--cfg={k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in TINY.items()
]


@pytest.fixture
def no_compile(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("sweep.execute was called: bad input must fail before compiling")

    monkeypatch.setattr(sweep, "execute", refuse)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "CartPol-v1"], "unknown env 'CartPol-v1'; did you mean CartPole-v1"),
        (["--hp", "gamma=1.5"], "'gamma' = 1.5 is outside its range [0, 1]"),
        (["--hp", "lr=0"], "'lr' = 0 is outside its range (0, inf]"),
        (["--hp", "lr=-3e-4"], "'lr' = -0.0003 is outside"),
        (["--cfg", "batch_size=60000"], "batch_size = 60000 must be ≤ buffer_size = 50000"),
        (["--cfg", "learning_starts=200000"], "learning_starts = 200000 must be < total_steps"),
        (["--total-steps", "1000", "--cfg", "learning_starts=900"], "does not cover one update"),
        (["--hp", "gama=0.9"], "unknown hyperparameter 'gama'; did you mean gamma?"),
        (["--hp", "lr=fast"], "'lr' = 'fast' is not a number"),
        (["--hp", "lr"], "--hp 'lr' must look like name=value"),
        (["--cfg", "num_envss=3"], "unknown config field 'num_envss'; did you mean num_envs"),
        (["--cfg", "num_envs=many"], "config.num_envs = 'many' is not a valid int"),
        (["--seeds", "0"], "--seeds = 0 must be ≥ 1"),
        (["--cfg", "env_kwargs=n_states"], "config.env_kwargs = 'n_states' is not a valid"),
        (["--loss", "l1"], "config.loss = 'l1' is not one of"),
        (["--loss", "huber,mse", "--hp", "loss_index=2"], "'loss_index' = 2 but config.loss"),
        (["--hp", "loss_index=1"], "config.loss offers 1 loss(es)"),
        (["--env", "Pendulum-v1"], "'Pendulum-v1' has a continuous action space (Box, shape (1,))"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(args, message, capsys, tmp_path, no_compile):
    code = cli.main(["train", "--quiet", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert err.startswith("qlearn: error: ") and err.count("\n") == 1
    assert message in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cfg", "per_normalise=global"], "config.per_normalise = 'global' must be one of"),
        (
            ["--loss", "munchausen", "--cfg", "munchausen_next_policy=both"],
            "config.munchausen_next_policy = 'both' must be one of target, online",
        ),
        (
            ["--cfg", "head=iqn", "--loss", "iqn", "--cfg", "iqn_target_quantiles=0"],
            "config.iqn_target_quantiles = 0 must be an integer ≥ 1 or None",
        ),
        (["--cfg", "iqn_action_quantiles=many"], "iqn_action_quantiles = 'many' is not a valid"),
        (
            ["--cfg", "head=iqn", "--loss", "iqn", "--cfg", "iqn_action_quantiles=-1"],
            "config.iqn_action_quantiles = -1 must be an integer ≥ 1 or None",
        ),
    ],
)
def test_bad_per_munchausen_iqn_fields_are_one_line_naming_the_field(
    args, message, capsys, tmp_path, no_compile
):
    code = cli.main(["train", "--quiet", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert err.startswith("qlearn: error: ") and err.count("\n") == 1
    assert message in err


@pytest.mark.parametrize("content", ['{"model": "resnet", "epochs": 3}', "not json at all"])
def test_a_directory_of_another_program_is_named_and_left_untouched(
    content, capsys, tmp_path, no_compile
):
    out = tmp_path / "other"
    out.mkdir()
    (out / "config.json").write_text(content)
    for argv in (
        ["train", "--quiet", "--out", str(out), *TINY_ARGS],
        ["train", "--quiet", "--overwrite", "--out", str(out), *TINY_ARGS],
        ["show", str(out)],
        ["reproduce", str(out)],
    ):
        assert cli.main(argv) == cli.EXIT_USAGE, argv
        last = capsys.readouterr().err.splitlines()[-1]  # (a note on total_steps may precede)
        assert last.startswith("qlearn: error: ") and "is not a qlearn run" in last, last
        assert str(out / "config.json") in last
    assert (out / "config.json").read_text() == content
    assert [p.name for p in out.iterdir()] == ["config.json"]


def test_a_spec_mismatch_shows_values_as_written(capsys, tmp_path, no_compile):
    out = tmp_path / "r"
    runs.prepare(
        out,
        make_spec(DQNConfig(**TINY), {"lr": [3e-4, 1e-3]}, seeds=2),
    )
    argv = ["train", "--quiet", "--seeds", "2", "--hp", "lr=3e-4,1e-2", "--out", str(out)]
    assert cli.main([*argv, *TINY_ARGS]) == cli.EXIT_USAGE
    assert "hparams.lr: [0.0003, 0.001] there, [0.0003, 0.01] here" in capsys.readouterr().err


def test_env_kwargs_parse_as_name_value_pairs():
    from qlearn.algos.dqn import DQNConfig

    config = arguments.parse_config(DQNConfig, ["env_kwargs=n_states:5,seed:2"], env_id="Garnet")
    assert config.env_kwargs == (("n_states", 5), ("seed", 2))


def test_a_replay_ratio_and_custom_diagnostics_parse_from_the_command_line():
    from qlearn.algos.dqn import DQNConfig, DQNHParams

    assert arguments.parse_config(DQNConfig, ["replay_ratio=0.25"]).replay_ratio == 0.25
    assert arguments.parse_config(DQNConfig, ["replay_ratio=None"]).replay_ratio is None
    paths = ["diagnostics=true", "custom_diagnostics=test_probes:action_gap"]
    config = arguments.parse_config(DQNConfig, paths, num_evals=4)
    assert config.custom_diagnostics == ("test_probes:action_gap",)
    grid = arguments.parse_grid(DQNConfig, DQNHParams, ["replay_ratio=0.25,1,4"])
    assert grid == {"replay_ratio": [0.25, 1.0, 4.0]}


def train_args(out) -> list[str]:
    """The tiny 2-config × 2-seed run the tests below share."""
    return [
        "train",
        "--quiet",
        "--seeds",
        "2",
        "--hp",
        "lr=1e-3,3e-3",
        "--hp",
        "gamma=0.95",
        "--out",
        str(out),
        *TINY_ARGS,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    code = cli.main(train_args(out))
    assert code == 0
    return out


def test_train_writes_a_run_directory(trained):
    for name in ("config.json", "metrics.npz", "summary.json", "learning_curves.png"):
        assert (trained / name).exists(), name
    run = runs.load(trained)
    assert run.axes == ("config", "seed", "time")
    assert run.metrics["eval_return"].shape == (2, 2, TINY["num_evals"])
    assert run.spec.swept == ("lr",)
    assert run.spec.hparams["gamma"] == [pytest.approx(0.95)] * 2
    assert run.provenance["jax"] and run.provenance["backend"] == "cpu"
    assert run.provenance["cpu"] == runs.cpu() and run.provenance["cpu"]["model"]
    rows = run.summary["configs"]
    assert [r["values"]["lr"] for r in rows] == [pytest.approx(1e-3), pytest.approx(3e-3)]
    final = run.metrics["eval_return"][:, :, -1]
    assert rows[1]["final"]["mean"] == pytest.approx(final[1].mean())
    lo, hi = rows[0]["final"]["iqm_ci95"]
    assert lo <= rows[0]["final"]["iqm"] <= hi


def test_same_run_again_does_nothing(trained, capsys, no_compile):
    code = cli.main(train_args(trained))
    assert code == 0
    assert "nothing to do" in capsys.readouterr().out


def test_different_run_into_same_directory_is_refused(trained, capsys, no_compile):
    code = cli.main(["train", "--quiet", "--seeds", "3", "--out", str(trained), *TINY_ARGS])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert "already holds a different run" in err and "--overwrite" in err


def tampered_copy(run, tmp_path, name, index):
    """A copy of run directory ``run`` with metric ``name`` at ``index`` moved by one ulp."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in ("config.json", "summary.json"):
        (copy / f).write_text((run / f).read_text())
    metrics = dict(np.load(run / "metrics.npz"))
    metrics[name] = metrics[name].copy()
    metrics[name][index] = np.nextafter(metrics[name][index], np.float32(np.inf))
    np.savez(copy / "metrics.npz", **metrics)
    return copy


def test_reproduce_is_bitwise_and_detects_a_one_ulp_change(trained, capsys, tmp_path):
    assert cli.main(["reproduce", "--quiet", str(trained)]) == 0
    captured = capsys.readouterr()
    assert "bitwise identical" in captured.out
    assert "note: recorded" not in captured.err  # the same versions, backend and CPU
    copy = tampered_copy(trained, tmp_path, "loss", (0, 0, -1))
    assert cli.main(["reproduce", "--quiet", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "loss" in out and "MISMATCH" in out and "NOT reproduced" in out


def test_reproduce_names_a_cpu_other_than_the_recorded_one(trained, capsys, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    meta = json.loads((copy / "config.json").read_text())
    meta["provenance"]["cpu"] = {"model": "Other CPU (family 1, model 1)", "isa": "sse4_2"}
    (copy / "config.json").write_text(json.dumps(meta))
    assert cli.main(["reproduce", "--quiet", str(copy)]) == 0  # still compared, bitwise here
    err = capsys.readouterr().err
    assert "note: recorded cpu {'model': 'Other CPU (family 1, model 1)'" in err
    assert "only promised on the same versions, backend and CPU" in err


def test_reproduce_one_run_alone_and_bad_picks(trained, capsys, tmp_path):
    assert cli.main(["reproduce", "--quiet", str(trained), "--seed", "1", "--config", "1"]) == 0
    captured = capsys.readouterr()
    assert "configuration 1, seed 1 alone" in captured.err
    assert "reproduced: all" in captured.out
    # the one run compared is the one picked: an ulp changed in that run alone is found
    copy = tampered_copy(trained, tmp_path, "q_mean", (1, 0, 0))
    assert cli.main(["reproduce", "--quiet", str(copy), "--seed", "1", "--config", "1"]) == 0
    capsys.readouterr()
    assert cli.main(["reproduce", "--quiet", str(copy), "--seed", "0", "--config", "1"]) == 1
    assert "q_mean" in capsys.readouterr().out
    for extra, message in [
        (["--seed", "2"], "--seed 2: this run has seeds 0..1"),
        (["--config", "2"], "--config 2: this run has configurations 0..1"),
    ]:
        assert cli.main(["reproduce", "--quiet", str(trained), *extra]) == cli.EXIT_USAGE
        assert message in capsys.readouterr().err


def test_search_seed_changes_the_draws_and_the_same_seed_repeats_them(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(commands, "_execute", lambda spec, *_: seen.append(spec))
    base = ["sweep", "--quiet", "--random", "3", "--dist", "lr=loguniform:1e-4:1e-2"]
    for i, seed in enumerate(["1", "2", "1"]):
        argv = [*base, "--seeds", "1", "--search-seed", seed, "--out", str(tmp_path / str(i))]
        assert cli.main([*argv, *TINY_ARGS]) == 0
    lrs = [spec.hparams["lr"] for spec in seen]
    assert len(set(lrs[0])) == 3 and all(1e-4 <= v <= 1e-2 for v in lrs[0])
    assert lrs[0] == lrs[2] and lrs[0] != lrs[1]


def test_show_and_plot(trained, capsys):
    assert cli.main(["show", str(trained)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["#", "lr", "final", "mean"]
    rows = runs.load(trained).summary["configs"]
    for r, line in zip(rows, lines[2:4], strict=True):  # one line per configuration, in order
        lo, hi = r["final"]["iqm_ci95"]
        expected = [
            str(r["config"]),
            f"{r['values']['lr']:g}",
            f"{r['final']['mean']:.1f}",
            f"{r['final']['iqm']:.1f}",
            f"[{lo:.1f},",
            f"{hi:.1f}]",
            f"{r['best']['iqm']:.1f}",
            f"{r['auc']['iqm']:.1f}",
            f"{r['diverged']}/2",
        ]
        assert line.split() == expected, line
    assert "gamma=0.95" in lines[-1]  # the fixed hyperparameters
    (trained / "learning_curves.png").unlink()
    assert cli.main(["plot", str(trained)]) == 0
    assert (trained / "learning_curves.png").exists()
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["timing"]["compile_seconds"] > 0


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_help_documents_the_chosen_algorithms_fields(command, capsys):
    for argv in ([command, "--algo", "pqn", "--help"], [command, "--algo=pqn", "--help"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
        text = capsys.readouterr().out
        assert "lam " in text and "rollout_steps" in text and "loss_index" in text
        assert "target_tau" not in text and "buffer_size" not in text
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])  # the default algorithm: DQN's
    text = capsys.readouterr().out
    assert "target_tau" in text and "buffer_size" in text and "rollout_steps" not in text


def test_dataset_writes_once_and_offline_training_learns_from_it(tmp_path, capsys):
    """``qlearn dataset`` writes a finite-MDP dataset with its coverage and refuses to write over
    it; ``qlearn train --algo offline`` trains on it and counts updates."""
    out = tmp_path / "cliff.npz"
    argv = ["dataset", "--env", "CliffWalking", "--behaviour", "expert", "--size", "500"]
    assert cli.main([*argv, "--gamma", "0.9", "--out", str(out)]) == 0
    assert "pairs seen" in capsys.readouterr().out
    before = out.read_bytes()
    assert cli.main([*argv, "--out", str(out)]) == 2
    assert "exists: nothing written" in capsys.readouterr().err
    assert out.read_bytes() == before
    run_dir = tmp_path / "run"
    code = cli.main(
        ["train", "--algo", "offline", "--env", "CliffWalking", "--cfg", f"dataset={out}",
         "--cfg", "total_updates=40", "--cfg", "num_evals=2", "--cfg", "network=linear",
         "--hp", "cql_alpha=0,1", "--seeds", "1", "--quiet", "--out", str(run_dir)]
    )  # fmt: skip
    assert code == 0
    metrics = runs.load(run_dir).metrics
    np.testing.assert_array_equal(metrics["updates"][:, 0], [[20, 40], [20, 40]])
    # offline-to-online: pretrained on the dataset, then online; an hparam without a dataset
    # is refused by name
    online = ["train", "--algo", "dqn", "--env", "CliffWalking", "--cfg", "network=linear",
              "--cfg", "total_steps=300", "--cfg", "learning_starts=50", "--cfg", "num_evals=2",
              "--seeds", "1", "--quiet"]  # fmt: skip
    code = cli.main(
        [*online, "--cfg", f"dataset={out}", "--cfg", "offline_updates=40", "--hp",
         "cql_alpha=1", "--hp", "dataset_fraction=0.5", "--out", str(tmp_path / "o2o")]
    )  # fmt: skip
    assert code == 0
    assert runs.load(tmp_path / "o2o").metrics["eval_return"].shape[-1] == 2
    capsys.readouterr()
    assert cli.main([*online, "--hp", "cql_alpha=1", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "hparams.cql_alpha = [1.0] applies to a run with config.dataset" in err
