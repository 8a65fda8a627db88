"""POPGym Arcade's twins: does memory buy more in the POMDP than in the MDP?

POPGym Arcade (Wang et al. 2025) draws each game twice from the same dynamics: fully observable
(MDP) and partially observable (POMDP, ``partial_obs=True``). Breakout's POMDP twin hides the
ball while it falls and its trail, so a memoryless agent cannot tell where the ball is going.
The counterfactual the benchmark was built for: train the same agents on both twins and compare.

Agents: PQN and PQN-RNN (a GRU before the head; Gallici et al. 2024), each with MinAtar's CNN
(``network="cnn"``, 128 units, LayerNorm) on 32 × 32 × 3 frames (``pool=4`` of the 128 × 128
render), purejaxql's MinAtar settings but 32 envs (``num_envs`` 32 × 32 steps, 2 epochs of 8
minibatches of whole env trajectories, lr 5e-4 decaying to 0, ε → 0.05 over the first 10%,
λ = 0.65). Each (agent, twin) is one compiled sweep over its seeds. The env renders every
frame at 128 × 128 on the CPU, which caps the budget: env steps per run below.

Breakout's return is in [−1, 1]: +1 in all for breaking every brick (1/60 each), and on losing
the ball minus the fraction of bricks left; one life.

    python experiments/popgym.py                        # ≈ 25 min on 2 CPU cores
    python experiments/popgym.py --seeds 1 --steps 20000 --results '' --figure ''  # smoke

Writes experiments/figures/popgym.png and experiments/results/popgym.json.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import record

from qlearn import plots, runs, stats, sweep
from qlearn.algos import pqn

GAME = "popgym:BreakoutEasy"
TWINS = {"MDP": False, "POMDP": True}
CONFIG = dict(
    network="cnn",
    hidden_sizes=(128,),
    layer_norm=True,
    num_envs=32,
    rollout_steps=32,
    num_epochs=2,
    num_minibatches=8,
    loss="mse",
    num_evals=10,
    eval_episodes=10,
)
AGENTS = {"PQN": {}, "PQN-RNN": dict(core="gru", memory_size=128)}
HPARAMS = dict(lr=5e-4, lr_decay=1.0, eps_end=0.05, eps_decay_fraction=0.1, lam=0.65)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200_000, help="env steps per run")
    parser.add_argument("--figure", default="experiments/figures/popgym.png")
    parser.add_argument("--results", default="experiments/results/popgym.json")
    args = parser.parse_args()
    if args.seeds < 1 or args.steps < CONFIG["num_envs"] * CONFIG["rollout_steps"] * 10:
        parser.error("--seeds must be ≥ 1 and --steps cover 10 rollouts per evaluation")
    return args


def cell(agent: str, twin: str, args: argparse.Namespace) -> dict[str, Any]:
    """One agent on one twin: its greedy returns [S, T], env steps [T] and seconds."""
    env_kwargs = {"pool": 4, "partial_obs": TWINS[twin]}
    config = pqn.PQNConfig(
        env_id=GAME, env_kwargs=env_kwargs, total_steps=args.steps, **CONFIG, **AGENTS[agent]
    )
    start = time.perf_counter()
    run = sweep.run(config, hparams=pqn.PQNHParams(**HPARAMS), seeds=args.seeds, lanes=args.seeds)
    seconds = time.perf_counter() - start
    returns = np.asarray(run.metrics["eval_return"])[0]
    final = stats.describe(returns[:, -1])
    print(f"{agent} on the {twin}: final IQM {final['iqm']:.3f} ({seconds:.0f} s)")
    return {
        "agent": agent,
        "twin": twin,
        "returns": returns.tolist(),
        "env_steps": np.asarray(run.metrics["env_steps"])[0, 0].tolist(),
        "final_iqm": final["iqm"],
        "final_ci95": final["iqm_ci95"],
        "final_mean": final["mean"],
        "mean_over_run": float(returns.mean()),
        "seconds": seconds,
        "env_steps_per_run": config.actual_total_steps,
    }


def readme(r: dict[str, Any]) -> list:
    """experiments/popgym.py: per agent and twin, the final greedy return and its mean."""
    header = ["agent", "twin", "final IQM [95% CI]", "final mean", "mean over the run", "s"]
    rows = [
        [c["agent"], c["twin"], f"{c['final_iqm']:.3f} " + record.ci2(c["final_ci95"]),
         f"{c['final_mean']:.3f}", f"{c['mean_over_run']:.3f}", f"{c['seconds']:.0f}"]
        for c in r["cells"]
    ]  # fmt: skip
    note = (
        f"{r['game']}, {r['seeds']} seeds × {r['env_steps_per_run']:,} env steps per run, "
        f"greedy return over 10 episodes at each of {CONFIG['num_evals']} evaluations; "
        f"{record.at(r)}"
    )
    return [record.Table(header, rows, note)]


def main() -> None:
    args = arguments()
    started = runs.provenance()
    cells = [cell(agent, twin, args) for twin in TWINS for agent in AGENTS]
    if args.figure:
        steps = np.asarray(cells[0]["env_steps"])
        panels = [
            (f"{twin} twin", "greedy return",
             np.stack([np.asarray(c["returns"]) for c in cells if c["twin"] == twin]))
            for twin in TWINS
        ]  # fmt: skip
        plots.save(plots.panels(steps, [panels], list(AGENTS)), args.figure)
    record.save(
        args.results or None,
        {
            "experiment": "popgym",
            "game": GAME,
            "seeds": args.seeds,
            "env_steps_per_run": cells[0]["env_steps_per_run"],
            "config": CONFIG,
            "agents": AGENTS,
            "hparams": HPARAMS,
            "cells": cells,
        },
        started,
    )


if __name__ == "__main__":
    main()
