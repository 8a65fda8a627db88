"""Memory: does a recurrent Q-network solve the T-maze, where no policy of the observation can?

The T-maze of corridor length N (:func:`qlearn.envs.catalog.tmaze`, after Bakker 2001) shows
which way the goal lies only at its start; the junction looks the same either way. Two closed
forms bound what an agent can reach (undiscounted): 1 with a memory of the cue
(:func:`~qlearn.envs.catalog.tmaze_optimal_return`) and ½ for any policy of the current
observation alone (:func:`~qlearn.envs.catalog.tmaze_memoryless_bound`). PQN with a
feed-forward network against PQN-RNN (a GRU core, Gallici et al. 2024) at several lengths:
the recurrent agent should reach 1, the feed-forward one cannot pass ½.

Each (length, core) is one compiled program of all the seeds; seed n is the same key in
every one. Reported per cell: the final greedy return's IQM with its 95% CI over seeds (each
run's return the mean of 32 greedy episodes), how many runs ended at the optimum, and the two
bounds; one figure of the learning curves.

    python experiments/memory.py                      # ≈ 5 min on 2 CPU cores
    python experiments/memory.py --lengths 4 --seeds 1 --scale 0.3 \\
        --results '' --figure '' --out /tmp/memory    # a smoke run

Writes runs/memory/tmaze<N>_<core>/, experiments/figures/memory_tmaze.png and
experiments/results/memory.json (the README quotes it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import record

from qlearn import plots, runs, stats, sweep
from qlearn.algos import pqn
from qlearn.envs import catalog

LENGTHS = (4, 8, 16, 20)
CORES = ("none", "gru")
STEPS_PER_CELL = 20_000
"""env steps per run per corridor cell: total_steps = STEPS_PER_CELL · (N + 1)."""
CONFIG = dict(
    env_id="TMaze",
    num_envs=16,
    rollout_steps=16,
    num_minibatches=4,
    hidden_sizes=(64,),
    memory_size=64,
    num_evals=20,
    eval_episodes=32,
)
"""PQN's settings for every cell (the core and the maze's length vary)."""
HPARAMS = dict(gamma=0.9)
"""PQN's defaults but γ: at γ = 0.99 PQN-RNN's greedy policy stalled in the corridor (return 0)
on the 4-long maze at 60k steps, 3 seeds, lr 1e-3 and 3e-3 alike; at γ = 0.9 it reached 1."""


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply total_steps by this")
    parser.add_argument("--out", default="runs/memory")
    parser.add_argument("--figure", default="experiments/figures/memory_tmaze.png")
    parser.add_argument("--results", default="experiments/results/memory.json")
    args = parser.parse_args()
    try:
        args.lengths = [int(n) for n in args.lengths.split(",")]
    except ValueError:
        parser.error("--lengths: comma-separated corridor lengths, e.g. 4,8,16")
    if args.seeds < 1 or args.scale <= 0 or min(args.lengths) < 1:
        parser.error("--seeds and every length must be ≥ 1, --scale > 0")
    return args


def cell(length: int, core: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train PQN with ``core`` on the T-maze of ``length`` over the seeds: its row and curve."""
    steps = int(STEPS_PER_CELL * (length + 1) * args.scale)
    config = pqn.PQNConfig(**CONFIG, env_kwargs={"length": length}, core=core, total_steps=steps)
    start = time.perf_counter()
    run = sweep.run(
        config,
        hparams=pqn.PQNHParams(**HPARAMS),
        seeds=args.seeds,
        lanes=args.seeds,
        out=Path(args.out) / f"tmaze{length}_{core}",
        overwrite=True,
        progress=True,
    )
    seconds = time.perf_counter() - start
    returns = np.asarray(run.metrics["eval_return"][0])  # [S, T]
    final = returns[:, -1]
    d = stats.describe(final)
    row = {
        "length": length,
        "core": core,
        "env_steps": int(np.asarray(run.metrics["env_steps"])[0, 0, -1]),
        "seconds": seconds,
        "final_iqm": d["iqm"],
        "final_iqm_ci95": d["iqm_ci95"],
        "final_returns": [float(x) for x in final],
        "at_optimum": int(np.sum(final >= catalog.tmaze_optimal_return(length) - 1e-6)),
        "optimum": catalog.tmaze_optimal_return(length),
        "memoryless_bound": catalog.tmaze_memoryless_bound(length),
    }
    print(
        f"T-maze {length} {core}: return IQM {d['iqm']:.2f}, {row['at_optimum']}/{args.seeds} "
        f"at the optimum in {seconds:.0f} s"
    )
    steps_axis = np.asarray(run.metrics["env_steps"])[0, 0]
    return {"row": row, "curve": returns, "steps": steps_axis}


def figure(cells: dict[tuple[int, str], dict], lengths: list[int]) -> Any:
    """One panel per length: the greedy return of each core over training, against env steps
    per corridor cell (the budgets grow with the length)."""
    rows = [
        [
            (
                f"T-maze, length {n} (optimum 1, memoryless ½)",
                "greedy return",
                np.stack([cells[n, core]["curve"] for core in CORES]),
            )
            for n in lengths
        ]
    ]
    n = lengths[0]  # every length's budget is STEPS_PER_CELL per cell: one x axis for all
    steps = cells[n, CORES[0]]["steps"] / (n + 1)
    labels = ["feed-forward PQN", "PQN-RNN (GRU)"]
    return plots.panels(steps, rows, labels, xlabel="env steps / (N + 1)")


def readme(r: dict[str, Any]) -> list:
    """experiments/memory.py: per T-maze length and core, the final return against the two
    closed-form bounds."""
    header = [
        "T-maze length",
        "network",
        "final return IQM [95% CI]",
        "runs at the optimum",
        "optimum",
        "memoryless bound",
        "env steps",
    ]
    names = {"none": "feed-forward", "gru": "GRU (PQN-RNN)"}
    rows = [
        [
            str(row["length"]),
            names.get(row["core"], row["core"]),
            f"{row['final_iqm']:.2f} " + record.ci2(row["final_iqm_ci95"]),
            f"{row['at_optimum']}/{r['seeds']}",
            f"{row['optimum']:g}",
            f"{row['memoryless_bound']:g}",
            f"{row['env_steps']:,}",
        ]
        for row in r["rows"]
    ]
    note = (
        f"PQN, {r['seeds']} seeds, each run's return the mean of 32 greedy episodes at the "
        f"last evaluation; {record.at(r)}"
    )
    return [record.Table(header, rows, note)]


def main() -> None:
    args = arguments()
    started = runs.provenance()  # the commit this experiment runs
    cells = {(n, core): cell(n, core, args) for n in args.lengths for core in CORES}
    if args.figure:
        plots.save(figure(cells, args.lengths), args.figure)
    record.save(
        args.results or None,
        {
            "experiment": "memory",
            "seeds": args.seeds,
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in CONFIG.items()},
            "hparams": HPARAMS,
            "steps_per_cell": STEPS_PER_CELL,
            "rows": [c["row"] for c in cells.values()],
        },
        started,
    )


if __name__ == "__main__":
    main()
