"""Cliff walking (Sutton & Barto, Example 6.6): Sarsa learns the safe path, Q-learning the
optimal one along the cliff edge — and so falls off more often while it explores.

Question: with ε = 0.1 and α = 0.5, is Sarsa's online return per episode near −25 and
Q-learning's near −50, and is Q-learning's greedy path the cliff edge (return −13)? Expected
Sarsa (Figure 6.3's comparison) is run beside them.

    python experiments/cliff_walking.py              # 50 runs × 500 episodes per algorithm

Writes one run directory per algorithm under runs/cliff_walking/, and the book-style figure
(sum of rewards per episode, mean over runs, 10-episode moving average) to
experiments/figures/cliff_walking.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import record
from matplotlib.figure import Figure

from qlearn import plots, runs, stats, sweep
from qlearn.algos import tabular
from qlearn.envs import catalog

ALGORITHMS = ("sarsa", "q_learning", "expected_sarsa")
BOOK = {"sarsa": "≈ −25", "q_learning": "≈ −50", "expected_sarsa": "above Sarsa (Fig. 6.3)"}


def greedy_path_return(q: np.ndarray, mdp, max_steps: int = 200) -> float | None:
    """Return of following argmax Q from the start of the (deterministic) gridworld; None if
    the greedy path does not reach the goal within ``max_steps``."""
    p, r = np.asarray(mdp.transition_probs), np.asarray(mdp.rewards)
    s, total = catalog.CLIFF_START, 0.0
    for _ in range(max_steps):
        a = int(np.argmax(q[s]))
        total += r[s, a]
        s = int(np.argmax(p[s, a]))
        if s == catalog.CLIFF_GOAL:
            return total
    return None


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    return np.convolve(x, np.ones(window) / window, mode="valid")


def readme(r: dict[str, Any]) -> list:
    header = [
        "algorithm",
        "online return, last 100 episodes [95% CI]",
        "book",
        "greedy path optimal",
    ]
    rows = [
        [
            name.replace("_", " "),
            f"{a['online_return_last_100_mean']:.1f} "
            + record.ci1(a["online_return_last_100_mean_ci95"]),
            a["book"],
            f"{a['greedy_path_optimal_fraction']:.0%} of runs",
        ]
        for name, a in r["algorithms"].items()
    ]
    return [
        record.Table(header, rows, f"{r['runs']} runs × {r['episodes']} episodes; {record.at(r)}")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/cliff_walking")
    parser.add_argument("--figure", default="experiments/figures/cliff_walking.png")
    parser.add_argument(
        "--results",
        default="experiments/results/cliff_walking.json",
        help="the committed results file the README quotes; '' for none",
    )
    args = parser.parse_args()

    hp = tabular.TabularHParams(lr=0.5, epsilon=0.1, gamma=1.0)
    report: dict[str, dict] = {}
    curves: dict[str, np.ndarray] = {}
    for algorithm in ALGORITHMS:
        config = tabular.TabularConfig(
            env_id="CliffWalking", algorithm=algorithm, num_episodes=args.episodes
        )
        result = sweep.run(
            config,
            hparams=hp,
            seeds=args.runs,
            base_seed=args.seed,
            lanes=args.runs,  # one call: a tabular run is cheap, the call's loop is the cost
            keep_state=True,
        )
        runs.write(
            Path(args.out) / algorithm, result.spec, result.metrics, timing=result.summary["timing"]
        )
        returns = result.metrics["return"][0]  # [runs, episodes]
        curves[algorithm] = returns.mean(0)
        _, mdp = tabular.make_env(config)
        tables = np.asarray(result.final_state.q[0].sum(1))  # [runs, S, A] (both tables summed)
        paths = [greedy_path_return(q, mdp) for q in tables]
        paths = [None if p is None else float(p) for p in paths]
        last = returns[:, -100:].mean(1)
        low, high = stats.bootstrap_ci(last[None], np.mean)
        report[algorithm] = {
            "online_return_last_100_mean": float(last.mean()),
            "online_return_last_100_mean_ci95": [float(low[0]), float(high[0])],
            "greedy_path_returns": sorted({float(p) for p in paths if p is not None}),
            "greedy_path_optimal_fraction": float(np.mean([p == -13.0 for p in paths])),
            "greedy_path_missing_goal": int(sum(p is None for p in paths)),
            "book": BOOK[algorithm],
            "compile_seconds": result.summary["timing"]["compile_seconds"],
            "run_seconds": result.summary["timing"]["run_seconds"],
        }
        r = report[algorithm]
        print(
            f"{algorithm:15s} online return, last 100 episodes: {last.mean():6.1f} "
            f"[{low[0]:.1f}, {high[0]:.1f}] (book {BOOK[algorithm]}); greedy path returns "
            f"{r['greedy_path_returns']}, optimal (−13) in {r['greedy_path_optimal_fraction']:.0%} "
            f"of runs; compile {r['compile_seconds']:.1f} s, run {r['run_seconds']:.1f} s"
        )

    figure(args, curves)
    runs.write_report(Path(args.out) / "experiment.json", report)
    record.save(args.results, {"runs": args.runs, "episodes": args.episodes, "algorithms": report})
    print(f"wrote {args.out}/ and {args.figure}")


def figure(args: argparse.Namespace, curves: dict) -> None:
    """The online return per episode of each algorithm (mean over runs, 10-episode average)."""
    fig = Figure(figsize=(6.4, 4.0), dpi=120)
    ax = fig.subplots()
    window = 10
    for algorithm, curve in curves.items():
        x = np.arange(window, len(curve) + 1)
        ax.plot(x, moving_average(curve, window), label=algorithm.replace("_", " "))
    ax.set_ylim(-100, 0)
    ax.set_xlabel("episode")
    ax.set_ylabel(f"sum of rewards per episode\n(mean of {args.runs} runs, {window}-ep. average)")
    ax.set_title("Cliff walking, ε = 0.1, α = 0.5 (Sutton & Barto Example 6.6)")
    ax.grid(alpha=0.3)
    ax.legend()
    plots.save(fig, args.figure)


if __name__ == "__main__":
    main()
