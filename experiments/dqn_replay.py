"""DQN-Replay datasets (Agarwal et al. 2020) on gymnax envs: offline DQN, CQL and behaviour
cloning on a medium and an expert dataset, then offline-to-online fine-tuning against online DQN
from scratch at the same env-step budget.

Datasets: one DQN run (the env's DQN settings below, seed 0) keeps its final replay
(:func:`qlearn.datasets.from_dqn_replay`): ``medium`` stops early (every transition it
collected, the random warm-up included), ``expert`` trains to the end and keeps the last
``buffer_size`` transitions. On each dataset:

- **offline** (:mod:`qlearn.algos.offline`): offline DQN (α = 0) and CQL(H) at α = 0.1 and 1
  (one compiled sweep over α), and behaviour cloning, ``offline_updates`` updates each;
- **offline-to-online** (:class:`qlearn.algos.dqn.DQNConfig` with ``dataset``): the same
  offline updates (CQL's α = 0 or 1), then online DQN for ``online_steps`` env steps with plain
  TD or CQL (``online_cql_alpha`` 0 or 1), the dataset mixed into half of each replay batch or
  not (``dataset_fraction`` 0.5, RLPD's symmetric sampling, Ball et al. 2023) — eight variants
  in one compiled sweep, named "offline → online (+ data)" — against online DQN from scratch
  with the same settings and env steps. Every online run has the same ε
  schedule and warm-up; the offline-to-online runs spend ``offline_updates`` more gradient
  updates, no more env steps.

Reported per cell: the greedy return (10 episodes per evaluation) as an IQM over seeds with
its 95% bootstrap CI, at the first evaluation and the last, and its mean over the evaluations
(the area under the curve, over T).

    python experiments/dqn_replay.py                          # CartPole-v1, ≈ 6 min, 2 cores
    python experiments/dqn_replay.py --env Breakout-MinAtar --seeds 3  # the CNN: ≈ 80 min
    python experiments/dqn_replay.py --seeds 2 --scale 0.1 --results '' --figure ''  # smoke

Writes experiments/figures/dqn_replay_<env>_{offline,online}.png and
experiments/results/dqn_replay_<env>.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import record

from qlearn import datasets, plots, runs, stats, sweep
from qlearn.algos import dqn, offline

SETTINGS: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(
        dqn={},  # the library defaults (experiments/cartpole_dqn.py)
        hparams={},
        medium_steps=25_000,
        expert_steps=100_000,
        expert_buffer=50_000,
        offline_updates=20_000,
        online_steps=50_000,
    ),
    "Breakout-MinAtar": dict(
        dqn=dict(network="cnn", hidden_sizes=(128,), layer_norm=True, buffer_size=100_000),
        hparams=dict(lr=3e-4, target_tau=0.01, eps_end=0.05, eps_decay_fraction=0.2),
        medium_steps=100_000,
        expert_steps=300_000,
        expert_buffer=100_000,
        offline_updates=10_000,
        online_steps=50_000,
    ),
}
"""Per env: DQN's config fields and hyperparameters beyond the defaults (experiments/
cartpole_dqn.py, experiments/minatar_dqn.py), the datasets' points of training, and the
offline and online budgets."""
ALPHAS = (0.0, 0.1, 1.0)
OFFLINE_AGENTS = ("offline DQN", "CQL α=0.1", "CQL α=1", "BC")
ONLINE_GRID = {
    "cql_alpha": [0.0, 1.0],
    "online_cql_alpha": [0.0, 1.0],
    "dataset_fraction": [0.0, 0.5],
}
"""The offline-to-online variants, one compiled sweep: CQL's α (0: offline DQN) in the offline
updates and in the online ones, and the dataset in half of each replay batch or not."""
NUM_EVALS = 20


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1", choices=sorted(SETTINGS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every budget")
    parser.add_argument("--figure", default="experiments/figures/dqn_replay_{env}.png")
    parser.add_argument("--results", default="experiments/results/dqn_replay_{env}.json")
    args = parser.parse_args()
    if args.seeds < 1 or args.scale <= 0:
        parser.error("--seeds must be ≥ 1 and --scale > 0")
    return args


def budget(n: int, scale: float, multiple: int = NUM_EVALS) -> int:
    """``n`` × ``scale``, rounded down to a multiple of ``multiple`` (at least one)."""
    return max(multiple, int(n * scale) // multiple * multiple)


def warmup(scale: float) -> int:
    """DQN's warm-up (5,000 env steps, the default) under ``scale``."""
    return budget(5_000, scale, 100)


def collect(env_id: str, folder: Path, scale: float) -> dict[str, dict[str, Any]]:
    """The medium and expert datasets of ``env_id``: {level: {path, size, dqn_return, ...}}."""
    s = SETTINGS[env_id]
    hp = dqn.DQNHParams(**s["hparams"])
    out = {}
    for level in ("medium", "expert"):
        steps = budget(s[f"{level}_steps"], scale, 1_000)
        buffer = steps if level == "medium" else budget(s["expert_buffer"], scale, 1_000)
        fields = dict(s["dqn"]) | dict(
            buffer_size=buffer, total_steps=steps, learning_starts=warmup(scale), num_evals=10
        )
        config = dqn.DQNConfig(env_id=env_id, **fields)
        start = time.perf_counter()
        data = datasets.from_dqn_replay(config, hp, seed=0)
        path = datasets.save(folder / f"{level}.npz", data, overwrite=True)
        rewards = np.asarray(data.transitions.reward)
        ends = np.asarray(data.transitions.terminated | data.transitions.truncated)
        out[level] = {
            "path": str(path),
            "size": len(data),
            "dqn_steps": config.actual_total_steps,
            "dqn_final_return": data.meta["dqn_final_return"],
            "episodes_ended": int(ends.sum()),
            "mean_reward": float(rewards.mean()),
            "seconds": time.perf_counter() - start,
        }
        print(
            f"{env_id} {level}: {len(data):,} transitions from DQN at {steps:,} steps (its "
            f"greedy return {data.meta['dqn_final_return']:.1f}), {out[level]['seconds']:.0f} s"
        )
    return out


def summary(curves: np.ndarray) -> dict[str, Any]:
    """IQM [95% CI] over seeds of the first, mean and last evaluation of ``curves`` [S, T]."""
    out = {}
    for name, values in (
        ("first", curves[:, 0]),
        ("auc", curves.mean(axis=1)),
        ("final", curves[:, -1]),
    ):
        d = stats.describe(values)
        out[name] = {"iqm": d["iqm"], "ci95": d["iqm_ci95"], "values": [float(v) for v in values]}
    return out


def offline_cell(env_id: str, path: str, args: argparse.Namespace) -> tuple[np.ndarray, float]:
    """Every offline agent on the dataset ``path``: greedy returns [agent, S, T] and seconds."""
    s = SETTINGS[env_id]
    fields = {k: v for k, v in s["dqn"].items() if k != "buffer_size"}
    updates = budget(s["offline_updates"], args.scale)
    hp = offline.OfflineHParams(
        **{k: v for k, v in s["hparams"].items() if not k.startswith("eps")}
    )
    start = time.perf_counter()
    curves = []
    for loss, grid in (("huber", {"cql_alpha": list(ALPHAS)}), ("bc", None)):
        config = offline.OfflineConfig(
            env_id=env_id, dataset=path, loss=loss, total_updates=updates, num_evals=NUM_EVALS,
            **fields,
        )  # fmt: skip
        run = sweep.run(config, grid, hparams=hp, seeds=args.seeds, lanes=args.seeds)
        curves.append(np.asarray(run.metrics["eval_return"]))
    return np.concatenate(curves), time.perf_counter() - start


def online_fields(env_id: str, scale: float) -> dict[str, Any]:
    """The online runs' DQN config fields of ``env_id`` under ``scale``."""
    s = SETTINGS[env_id]
    steps = budget(s["online_steps"], scale, 1_000)
    return dict(s["dqn"]) | dict(
        total_steps=steps, learning_starts=warmup(scale), num_evals=NUM_EVALS
    )


def scratch_cell(env_id: str, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, float]:
    """Online DQN from scratch: greedy returns [S, T], the env steps [T] and seconds."""
    hp = dqn.DQNHParams(**SETTINGS[env_id]["hparams"])
    config = dqn.DQNConfig(env_id=env_id, **online_fields(env_id, args.scale))
    start = time.perf_counter()
    run = sweep.run(config, hparams=hp, seeds=args.seeds, lanes=args.seeds)
    env_steps = np.asarray(run.metrics["env_steps"])[0, 0]
    return np.asarray(run.metrics["eval_return"])[0], env_steps, time.perf_counter() - start


def label(values: dict[str, Any]) -> str:
    """An offline-to-online variant's name: offline learner → online learner (+ data mixed)."""
    before = "CQL" if values["cql_alpha"] else "DQN"
    after = "CQL" if values["online_cql_alpha"] else "TD"
    return f"{before} → {after}" + (" + data" if values["dataset_fraction"] else "")


def online_cell(
    env_id: str, path: str, args: argparse.Namespace
) -> tuple[list[str], np.ndarray, float]:
    """The offline-to-online variants from the dataset ``path`` (:data:`ONLINE_GRID`, one
    compiled sweep): their labels, greedy returns [variant, S, T] and seconds."""
    s = SETTINGS[env_id]
    updates = budget(s["offline_updates"], args.scale)
    fields = online_fields(env_id, args.scale)
    config = dqn.DQNConfig(env_id=env_id, dataset=path, offline_updates=updates, **fields)
    hp = dqn.DQNHParams(**s["hparams"])
    start = time.perf_counter()
    run = sweep.run(config, ONLINE_GRID, hparams=hp, seeds=args.seeds, lanes=args.seeds)
    labels = [label(v) for v in run.spec.config_values()]
    return labels, np.asarray(run.metrics["eval_return"]), time.perf_counter() - start


def readme(r: dict[str, Any]) -> list:
    """experiments/dqn_replay.py: the datasets, then per dataset, phase and agent, the greedy
    return's IQM at the first and last evaluation and over the run."""
    lines = [
        f"- {level}: {d['size']:,} transitions, the replay of DQN after {d['dqn_steps']:,} env "
        f"steps (its greedy return then: {d['dqn_final_return']:.1f})"
        for level, d in r["datasets"].items()
    ]
    header = ["data", "phase", "agent", "first", "mean over the run", "final"]

    def cell(x: dict[str, Any]) -> str:
        return f"{x['iqm']:.1f} " + record.ci1(x["ci95"])

    rows = [
        [row["dataset"], row["phase"], row["agent"], cell(row["first"]), cell(row["auc"]),
         cell(row["final"])]
        for row in r["rows"]
    ]  # fmt: skip
    note = (
        f"{r['env_id']}, {r['seeds']} seeds; greedy return IQM [95% CI] over seeds (10 episodes "
        f"per evaluation, {NUM_EVALS} evaluations); offline: {r['offline_updates']:,} updates; "
        f"online: {r['online_steps']:,} env steps after {r['offline_updates']:,} offline "
        f"updates (from scratch: none); {record.at(r)}"
    )
    return [record.Text("\n".join(lines) + "\n\n"), record.Table(header, rows, note)]


def main() -> None:
    args = arguments()
    started = runs.provenance()
    tag = args.env.split("-")[0].lower()
    rows, offline_panels, online_panels = [], [], []
    scratch, env_steps, scratch_seconds = scratch_cell(args.env, args)
    print(f"from scratch: {stats.iqm(scratch[:, -1]):.1f} ({scratch_seconds:.0f} s)")
    with tempfile.TemporaryDirectory() as folder:
        data = collect(args.env, Path(folder), args.scale)
        for level, d in data.items():
            curves, d["offline_seconds"] = offline_cell(args.env, d["path"], args)
            for agent, c in zip(OFFLINE_AGENTS, curves, strict=True):
                rows.append({"dataset": level, "phase": "offline", "agent": agent} | summary(c))
            print(
                f"{level} offline: "
                + ", ".join(f"{r['agent']} {r['final']['iqm']:.1f}" for r in rows[-4:])
                + f" ({d['offline_seconds']:.0f} s)"
            )
            offline_panels.append((f"{level} data", "greedy return", curves))
            labels, online, d["online_seconds"] = online_cell(args.env, d["path"], args)
            for agent, c in zip(["from scratch", *labels], [scratch, *online], strict=True):
                rows.append({"dataset": level, "phase": "online", "agent": agent} | summary(c))
            print(
                f"{level} online: "
                + ", ".join(f"{r['agent']} {r['final']['iqm']:.1f}" for r in rows[-9:])
                + f" ({d['online_seconds']:.0f} s)"
            )
            both = np.concatenate([scratch[None], online])
            online_panels.append((f"{level} data, fine-tuned", "greedy return", both))
    if args.figure:
        path = Path(args.figure.format(env=tag))
        fraction = np.arange(1, NUM_EVALS + 1) / NUM_EVALS
        offline_fig = plots.panels(fraction, [offline_panels], OFFLINE_AGENTS,
                                   xlabel="fraction of the offline updates")  # fmt: skip
        plots.save(offline_fig, path.with_stem(f"{path.stem}_offline"))
        online_fig = plots.panels(env_steps, [online_panels], ["from scratch", *labels])
        plots.save(online_fig, path.with_stem(f"{path.stem}_online"))
    record.save(
        args.results.format(env=tag) or None,
        {
            "experiment": "dqn_replay",
            "env_id": args.env,
            "seeds": args.seeds,
            "scale": args.scale,
            "settings": SETTINGS[args.env],
            "datasets": {k: {n: v for n, v in d.items() if n != "path"} for k, d in data.items()},
            "offline_updates": budget(SETTINGS[args.env]["offline_updates"], args.scale),
            "online_steps": budget(SETTINGS[args.env]["online_steps"], args.scale, 1_000),
            "scratch_seconds": scratch_seconds,
            "rows": rows,
        },
        started,
    )


if __name__ == "__main__":
    main()
