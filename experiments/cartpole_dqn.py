"""How fast does DQN solve CartPole-v1? 8 seeds, 100k env steps each, one compiled program.

Question: with tuned defaults, does DQN reach a greedy-evaluation return IQM ≥ 475 over 8 seeds
within 100k env steps, and how many wall-clock seconds does that take on this machine?

The wall-clock time to the threshold is measured, not extrapolated: a host callback inside the
compiled loop timestamps every evaluation point, and the time reported is from the start of the
run (after compilation, which is reported separately) to the evaluation point where the IQM over
seeds first reaches the threshold.

    python experiments/cartpole_dqn.py           # tuned settings, writes runs/cartpole_dqn
    python experiments/cartpole_dqn.py --seed 1000 --out runs/heldout --figure ''   # other seeds
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from qlearn import cli, runs, stats, sweep
from qlearn.algos import dqn

THRESHOLD = 475.0

# Best found so far on CartPole-v1 (README, "Experiments"); also the library defaults.
TUNED_CONFIG = dict(
    env_id="CartPole-v1",
    total_steps=100_000,
    num_envs=10,
    learning_starts=5_000,
    buffer_size=50_000,
    batch_size=64,
    train_every=1,
    updates_per_train=1,
    hidden_sizes=(128,),
    layer_norm=True,
    num_evals=40,
)
TUNED_HPARAMS = dict(lr=1e-3, target_tau=0.02, target_period=1, eps_decay_fraction=0.2)


class Timestamps:
    """Host callback recording when each evaluation point of a vmapped batch completes."""

    def __init__(self, num_runs: int):
        self.num_runs = num_runs
        self.calls: list[float] = []

    def __call__(self, env_steps, eval_return) -> None:
        self.calls.append(time.perf_counter())

    def interval_ends(self) -> np.ndarray:
        """Time at which every run had finished evaluation point t, [T]."""
        return np.asarray(self.calls[self.num_runs - 1 :: self.num_runs])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hp", action="append", default=[])
    parser.add_argument("--cfg", action="append", default=[])
    parser.add_argument("--out", default="runs/cartpole_dqn")
    parser.add_argument(
        "--figure",
        default="experiments/figures/cartpole_dqn.png",
        help="where to copy the learning-curve figure (the README shows it); '' for nowhere",
    )
    args = parser.parse_args()

    config = cli.parse_config(dqn.DQNConfig, args.cfg, **TUNED_CONFIG)
    grid = cli.parse_hparams(dqn.DQNHParams, args.hp)
    num_runs = int(np.prod([len(v) for v in grid.values()])) * args.seeds
    clock = Timestamps(num_runs)
    spec = sweep.make_spec(
        config,
        grid,
        hparams=dqn.DQNHParams(**TUNED_HPARAMS),
        seeds=args.seeds,
        base_seed=args.seed,
    )
    runs.prepare(args.out, spec, overwrite=True)
    result = sweep.execute(spec, args.out, progress=clock)
    print(runs.summary_table(spec, result.summary["configs"]))
    timing = result.summary["timing"]

    steps = result.metrics["env_steps"][0, 0]
    ends = clock.interval_ends() - timing["run_started"]
    report = {
        "compile_seconds": timing["compile_seconds"],
        "run_seconds": timing["run_seconds"],
        "configs": [],
    }
    for h in range(result.metrics["eval_return"].shape[0]):
        curve = stats.iqm(result.metrics["eval_return"][h].T)  # [T]
        reached = np.flatnonzero(curve >= THRESHOLD)
        first = int(reached[0]) if reached.size else None
        entry = {
            "config": h,
            "final_iqm": float(curve[-1]),
            "steps_to_threshold": int(steps[first]) if first is not None else None,
            "seconds_to_threshold": float(ends[first]) if first is not None else None,
        }
        report["configs"].append(entry)
        where = (
            f"reached IQM ≥ {THRESHOLD:g} at {entry['steps_to_threshold']:,} env steps, "
            f"{entry['seconds_to_threshold']:.1f} s after compilation"
            if first is not None
            else f"did not reach IQM ≥ {THRESHOLD:g}"
        )
        print(f"config {h}: {where}; final IQM {curve[-1]:.1f}")
    print(
        f"compile {timing['compile_seconds']:.1f} s; run {timing['run_seconds']:.1f} s for "
        f"{num_runs} runs × {config.actual_total_steps:,} env steps"
    )
    runs.write_report(result.path / "experiment.json", report)
    if args.figure:
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.path / "learning_curves.png", args.figure)


if __name__ == "__main__":
    main()
