"""Maximization bias (Sutton & Barto, Example 6.7 and Figure 6.5): Q-learning vs Double
Q-learning on the A–B MDP, where every episode through B has expected return −0.1 < 0.

Question: with ε = 0.1, α = 0.1, γ = 1, does Q-learning go left from A far more often than the
optimal ε/2 = 5% early on, while Double Q-learning stays close to it?

    python experiments/maximization_bias.py          # 1000 runs × 300 episodes per algorithm

Writes one run directory per algorithm under runs/maximization_bias/ and the book-style figure
(% of left actions from A per episode, with the 5% optimum) to
experiments/figures/maximization_bias.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import record
from matplotlib.figure import Figure

from qlearn import plots, runs, sweep
from qlearn.algos import tabular
from qlearn.envs import catalog

ALGORITHMS = ("q_learning", "double_q_learning")
EPSILON = 0.1


def readme(r: dict[str, Any]) -> list:
    header = ["algorithm", "% left, episodes 1–10", "peak (episode)", "last 50 episodes"]
    rows = [
        [
            name.replace("_", " "),
            f"{a['left_percent_episodes_1_to_10']:.1f}",
            f"{a['left_percent_peak']:.1f} ({a['left_percent_peak_episode']})",
            f"{a['left_percent_last_50']:.1f}",
        ]
        for name, a in r["algorithms"].items()
    ]
    return [
        record.Table(header, rows, f"{r['runs']} runs × {r['episodes']} episodes; {record.at(r)}")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/maximization_bias")
    parser.add_argument("--figure", default="experiments/figures/maximization_bias.png")
    parser.add_argument(
        "--results",
        default="experiments/results/maximization_bias.json",
        help="the committed results file the README quotes; '' for none",
    )
    args = parser.parse_args()

    hp = tabular.TabularHParams(lr=0.1, epsilon=EPSILON, gamma=1.0)
    left: dict[str, np.ndarray] = {}
    report: dict[str, dict] = {}
    for algorithm in ALGORITHMS:
        config = tabular.TabularConfig(
            env_id="MaximizationBias", algorithm=algorithm, num_episodes=args.episodes
        )
        # one call (lanes = runs): a tabular run is cheap, the call's loop is the cost
        result = sweep.run(
            config, hparams=hp, seeds=args.runs, base_seed=args.seed, lanes=args.runs
        )
        runs.write(
            Path(args.out) / algorithm, result.spec, result.metrics, timing=result.summary["timing"]
        )
        timing = result.summary["timing"]
        first = result.metrics["first_action"][0]  # [runs, episodes]: the action taken in A
        left[algorithm] = 100.0 * np.mean(first == catalog.MAXBIAS_LEFT, axis=0)
        curve = left[algorithm]
        report[algorithm] = {
            "left_percent_episodes_1_to_10": float(curve[:10].mean()),
            "left_percent_peak": float(curve.max()),
            "left_percent_peak_episode": int(curve.argmax()) + 1,
            "left_percent_last_50": float(curve[-50:].mean()),
            "compile_seconds": timing["compile_seconds"],
            "run_seconds": timing["run_seconds"],
        }
        print(
            f"{algorithm:18s} % left from A: episodes 1–10 {curve[:10].mean():5.1f}, "
            f"peak {curve.max():5.1f} (episode {curve.argmax() + 1}), "
            f"last 50 {curve[-50:].mean():5.1f}; compile {timing['compile_seconds']:.1f} s, "
            f"run {timing['run_seconds']:.1f} s"
        )

    fig = Figure(figsize=(6.4, 4.0), dpi=120)
    ax = fig.subplots()
    episodes = np.arange(1, args.episodes + 1)
    for algorithm, curve in left.items():
        ax.plot(episodes, curve, label=algorithm.replace("_", " "))
    ax.axhline(100 * EPSILON / 2, color="k", linestyle="--", linewidth=1, label="optimal (5%)")
    ax.set_ylim(0, 100)
    ax.set_xlabel("episode")
    ax.set_ylabel(f"% left actions from A ({args.runs} runs)")
    ax.set_title("Maximization bias, ε = 0.1, α = 0.1 (Sutton & Barto Figure 6.5)")
    ax.grid(alpha=0.3)
    ax.legend()
    plots.save(fig, args.figure)
    runs.write_report(Path(args.out) / "experiment.json", report)
    record.save(args.results, {"runs": args.runs, "episodes": args.episodes, "algorithms": report})
    print(f"wrote {args.out}/ and {args.figure}")


if __name__ == "__main__":
    main()
