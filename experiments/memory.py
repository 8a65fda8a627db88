"""Memory: does a recurrent Q-network solve the T-maze, where no policy of the observation can?

The T-maze of corridor length N (:func:`qlearn.envs.catalog.tmaze`, after Bakker 2001) shows
which way the goal lies only at its start; the junction looks the same either way. Its rewards
are Bakker's (+1 on the cue's side, −0.025 on the other, his +4 and −0.1 scaled). Two closed
forms bound what an agent can reach (undiscounted): 1 with a memory of the cue
(:func:`~qlearn.envs.catalog.tmaze_optimal_return`) and ½ for any policy of the current
observation alone (:func:`~qlearn.envs.catalog.tmaze_memoryless_bound`). Four agents at several
lengths: PQN with a feed-forward network and PQN-RNN (a GRU core, Gallici et al. 2024), DQN
with a feed-forward network and R2D2-style DQN (the same GRU, sequence replay with stored
carries and a burn-in, Kapturowski et al. 2019). The recurrent agents should reach 1, the
feed-forward ones cannot pass ½.

Each (length, agent) is one compiled program of all the seeds; seed n is the same key in
every one. Reported per cell: the final greedy return's IQM with its 95% CI over seeds (each
run's return the mean of 32 greedy episodes), how many runs ended at the optimum, and the two
bounds; one figure of the learning curves.

    python experiments/memory.py                      # ≈ 45 min on 2 CPU cores
    python experiments/memory.py --lengths 4 --seeds 1 --scale 0.3 \\
        --results '' --figure '' --out /tmp/memory    # a smoke run

Writes runs/memory/tmaze<N>_<algo>_<core>/, experiments/figures/memory_tmaze.png and
experiments/results/memory.json (the README quotes it).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import record

from qlearn import plots, runs, stats, sweep
from qlearn.algos import dqn, pqn
from qlearn.envs import catalog

WRONG_REWARD = -0.025
"""The T-maze's reward for the wrong side, Bakker (2001)'s −0.1 against +4 at qlearn's scale."""


@dataclasses.dataclass(frozen=True)
class Task:
    """A POMDP of a length, its two bounds on the undiscounted return, and its flag."""

    title: str
    argument: str
    lengths: tuple[int, ...]
    optimum: float
    memoryless: float
    flag: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    """the env's keywords beside the length."""


TASKS = {
    # Bakker's rewards (+4 right, −0.1 wrong; scaled: 1 and −0.025): a guess at the junction
    # pays (1 + w)/2 > 0, so walking on pays before the cue is remembered; the bounds hold
    "TMaze": Task(
        "T-maze", "length", (4, 8, 16, 20), catalog.tmaze_optimal_return(1),
        catalog.tmaze_memoryless_bound(1), "tmaze", (("wrong_reward", WRONG_REWARD),),
    ),
    # one reward, ±1 for the context bit shown at the first step only: a policy of the current
    # observation guesses it, expected return 0 (num_bits = 1: the query is always bit 0)
    "MemoryChain-bsuite": Task("MemoryChain", "memory_length", (10, 30), 1.0, 0.0, "chain"),
}  # fmt: skip
AGENTS = (("pqn", "none"), ("pqn", "gru"), ("dqn", "none"), ("dqn", "gru"))
"""(algorithm, core) of each agent."""
NAMES = {
    ("pqn", "none"): "feed-forward PQN",
    ("pqn", "gru"): "PQN-RNN (GRU)",
    ("dqn", "none"): "feed-forward DQN",
    ("dqn", "gru"): "R2D2-style DQN (GRU)",
}
STEPS_PER_CELL = {"pqn": 20_000, "dqn": 8_000}
"""env steps per run per unit of length: total_steps = STEPS_PER_CELL · (N + 1). DQN's are
fewer: it takes one update per 8 env steps on 16 sequences of 20, PQN one epoch of 4
minibatches per 256."""
CONFIGS = {
    "pqn": dict(
        num_envs=16,
        rollout_steps=32,
        num_minibatches=4,
        hidden_sizes=(64,),
        memory_size=64,
        num_evals=20,
        eval_episodes=32,
    ),
    "dqn": dict(
        num_envs=8,
        learning_starts=1_000,
        buffer_size=20_000,
        batch_size=8,
        n_step=3,
        sequence_length=48,
        burn_in=4,
        sequence_overlap=24,
        hidden_sizes=(64,),
        memory_size=64,
        num_evals=20,
        eval_episodes=32,
    ),
}
"""Each algorithm's settings for every cell (the task, its length and the core vary); DQN's
``batch_size`` counts sequences with a core and transitions without. What a recurrent agent
trains its memory on covers the longest T-maze's walk (21 steps): PQN-RNN's rollouts of 32
steps (it unrolls each from the carry at the rollout's start) and R2D2's sequences of 48,
overlapping by 24 (so every 24-step stretch lies inside one sequence). With 16-step rollouts
and 20-step sequences neither could pass N = 16 (experiments/results/memory.json before
this change: 0/4 and 1/4 at N = 20)."""
ALGORITHMS = {"pqn": (pqn.PQNConfig, pqn.PQNHParams), "dqn": (dqn.DQNConfig, dqn.DQNHParams)}
HPARAMS = {"pqn": dict(gamma=0.9, lr_decay=1.0), "dqn": dict(gamma=0.9)}
"""The defaults but γ, and PQN's step size decayed to 0 over the run (purejaxql's MinAtar
setting): at γ = 0.99 PQN-RNN's greedy policy stalled in the corridor (return 0) on the
4-long maze at 60k steps, 3 seeds, lr 1e-3 and 3e-3 alike; at γ = 0.9 it reached 1. Without
the decay PQN-RNN's greedy return swung between 1, ½ and 0 from one evaluation to the next
at N = 20."""


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for task in TASKS.values():
        default = ",".join(map(str, task.lengths))
        parser.add_argument(f"--{task.flag}", default=default, help=f"{task.title} lengths")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply total_steps by this")
    parser.add_argument("--out", default="runs/memory")
    parser.add_argument("--figure", default="experiments/figures/memory_tmaze.png")
    parser.add_argument("--results", default="experiments/results/memory.json")
    args = parser.parse_args()
    args.lengths = {}
    for env_id, task in TASKS.items():
        text = getattr(args, task.flag.replace("-", "_"))
        try:
            args.lengths[env_id] = [int(n) for n in text.split(",")] if text else []
        except ValueError:
            parser.error(f"--{task.flag}: comma-separated lengths, e.g. 4,8,16")
    if args.seeds < 1 or args.scale <= 0 or min(sum(args.lengths.values(), [1])) < 1:
        parser.error("--seeds and every length must be ≥ 1, --scale > 0")
    return args


def cell(env_id: str, length: int, algo: str, core: str, args: argparse.Namespace) -> dict:
    """Train ``algo`` with ``core`` on ``env_id`` of ``length`` over the seeds: its row and
    curve."""
    task = TASKS[env_id]
    steps = int(STEPS_PER_CELL[algo] * (length + 1) * args.scale)
    config_cls, hparams_cls = ALGORITHMS[algo]
    config = config_cls(
        **CONFIGS[algo],
        env_id=env_id,
        env_kwargs={task.argument: length, **dict(task.kwargs)},
        core=core,
        total_steps=steps,
    )
    start = time.perf_counter()
    run = sweep.run(
        config,
        hparams=hparams_cls(**HPARAMS[algo]),
        seeds=args.seeds,
        lanes=args.seeds,
        out=Path(args.out) / f"{task.flag}{length}_{algo}_{core}",
        overwrite=True,
        progress=True,
    )
    seconds = time.perf_counter() - start
    returns = np.asarray(run.metrics["eval_return"][0])  # [S, T]
    final = returns[:, -1]
    d = stats.describe(final)
    row = {
        "env_id": env_id,
        "length": length,
        "algorithm": algo,
        "core": core,
        "env_kwargs": dict(task.kwargs),
        "env_steps": int(np.asarray(run.metrics["env_steps"])[0, 0, -1]),
        "seconds": seconds,
        "final_iqm": d["iqm"],
        "final_iqm_ci95": d["iqm_ci95"],
        "final_returns": [float(x) for x in final],
        "at_optimum": int(np.sum(final >= task.optimum - 1e-6)),
        "optimum": task.optimum,
        "memoryless_bound": task.memoryless,
    }
    print(
        f"{task.title} {length}, {NAMES[algo, core]}: return IQM {d['iqm']:.2f}, "
        f"{row['at_optimum']}/{args.seeds} at the optimum in {seconds:.0f} s"
    )
    return {"row": row, "curve": returns}


def figure(cells: dict[tuple, dict], lengths: dict[str, list[int]]) -> Any:
    """A row of panels per task, one per length: the greedy return of each agent over
    training, against the fraction of its budget (PQN's and DQN's budgets differ; every run
    evaluates at the same fractions)."""
    rows = [
        [
            (
                f"{TASKS[env_id].title} N = {n} (memoryless {TASKS[env_id].memoryless:g})",
                "greedy return",
                np.stack([cells[(env_id, n, *agent)]["curve"] for agent in AGENTS]),
            )
            for n in ns
        ]
        for env_id, ns in lengths.items()
        if ns
    ]
    evals = next(iter(cells.values()))["curve"].shape[-1]
    fraction = np.arange(1, evals + 1) / evals
    labels = [NAMES[agent] for agent in AGENTS]
    return plots.panels(fraction, rows, labels, xlabel="fraction of the run's env steps")


def readme(r: dict[str, Any]) -> list:
    """experiments/memory.py: per task, length and agent, the final return against the two
    bounds."""
    header = [
        "task",
        "length",
        "agent",
        "final return IQM [95% CI]",
        "runs at the optimum",
        "optimum",
        "memoryless bound",
        "env steps",
    ]
    rows = [
        [
            TASKS[row.get("env_id", "TMaze")].title,
            str(row["length"]),
            NAMES[row.get("algorithm", "pqn"), row["core"]],
            f"{row['final_iqm']:.2f} " + record.ci2(row["final_iqm_ci95"]),
            f"{row['at_optimum']}/{r['seeds']}",
            f"{row['optimum']:g}",
            f"{row['memoryless_bound']:g}",
            f"{row['env_steps']:,}",
        ]
        for row in r["rows"]
    ]
    note = (
        f"{r['seeds']} seeds, each run's return the mean of 32 greedy episodes at the last "
        f"evaluation; {record.at(r)}"
    )
    return [record.Table(header, rows, note)]


def main() -> None:
    args = arguments()
    started = runs.provenance()  # the commit this experiment runs
    cells = {
        (env_id, n, *agent): cell(env_id, n, *agent, args)
        for env_id, ns in args.lengths.items()
        for n in ns
        for agent in AGENTS
    }
    if args.figure:
        plots.save(figure(cells, args.lengths), args.figure)
    record.save(
        args.results or None,
        {
            "experiment": "memory",
            "seeds": args.seeds,
            "configs": {
                algo: {k: list(v) if isinstance(v, tuple) else v for k, v in c.items()}
                for algo, c in CONFIGS.items()
            },
            "hparams": HPARAMS,
            "steps_per_cell": STEPS_PER_CELL,
            "rows": [c["row"] for c in cells.values()],
        },
        started,
    )


if __name__ == "__main__":
    main()
