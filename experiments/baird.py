"""Baird's counterexample (Sutton & Barto, Example 11.1 and Figure 11.2): off-policy
semi-gradient TD with linear features diverges; gradient-TD methods do not.

Question: from w₀ = (1,1,1,1,1,1,10,1) with α = 0.01, γ = 0.99, behaviour b(dashed) = 6/7 and
target π(solid) = 1, do the weights of semi-gradient off-policy TD(0) and of semi-gradient
expected DP grow without bound over 1000 steps/sweeps, while the residual gradient (expected,
i.e. gradient descent on the mean squared Bellman error) and TDC (α = 0.005, β = 0.05, as in
Figure 11.5) stay bounded and reduce the value error?

    python experiments/baird.py          # 10 seeds per method (the expected methods need 1)

Writes runs/baird/ (weights and VE per method, seed and step; experiment.json) and the figure
experiments/figures/baird.png (the eight weights of seed 0, one panel per method, and √VE).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import jax
import numpy as np
import record
from matplotlib.figure import Figure

from qlearn import plots, runs, sweep
from qlearn.algos import prediction
from qlearn.envs import catalog

# (label, loss, mode, α, β)
METHODS = (
    ("semi-gradient off-policy TD", "semi_gradient", "sample", 0.01, 0.0),
    ("semi-gradient DP", "semi_gradient", "expected", 0.01, 0.0),
    ("residual gradient (expected)", "residual_gradient", "expected", 0.01, 0.0),
    ("TDC", "tdc", "sample", 0.005, 0.05),
)


def readme(r: dict[str, Any]) -> list:
    header = ["method", "α (β)", "max abs weight at the end (mean over seeds)", "√VE first → last"]
    rows = [
        [
            name,
            f"{m['lr']:g}" + (f" ({m['beta']:g})" if m.get("beta") else ""),
            f"{m['max_abs_weight_final_mean_over_seeds']:.1f}",
            f"{m['sqrt_ve_first_step']:.1f} → {m['sqrt_ve_final']:.1f}",
        ]
        for name, m in r["methods"].items()
    ]
    return [record.Table(header, rows, f"{r['seeds']} seeds × {r['steps']} steps; {record.at(r)}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--out", default="runs/baird")
    parser.add_argument("--figure", default="experiments/figures/baird.png")
    parser.add_argument(
        "--results",
        default="experiments/results/baird.json",
        help="the committed results file the README quotes; '' for none",
    )
    args = parser.parse_args()

    keys = sweep.seed_keys(0, args.seeds)
    results, report = {}, {}
    for label, loss, mode, lr, beta in METHODS:
        config = prediction.PredictionConfig(
            env_id="Baird",
            loss=loss,
            mode=mode,
            target_policy=tuple(catalog.BAIRD_TARGET),
            behaviour_policy=tuple(catalog.BAIRD_BEHAVIOUR),
            initial_weights=tuple(catalog.BAIRD_INITIAL_WEIGHTS),
            num_steps=args.steps,
        )
        hp = prediction.PredictionHParams(lr=lr, beta=beta, gamma=0.99)
        train = jax.jit(jax.vmap(prediction.make_train(config), (0, None)))
        _, metrics = train(keys, hp)
        weights, ve = np.asarray(metrics["weights"]), np.asarray(metrics["ve"])  # [S, T, 8], [S, T]
        results[label] = (weights, ve)
        final_abs = np.abs(weights[:, -1]).max(-1)
        report[label] = {
            "loss": loss,
            "mode": mode,
            "lr": lr,
            "beta": beta,
            "max_abs_weight_final_mean_over_seeds": float(final_abs.mean()),
            "sqrt_ve_first_step": float(np.sqrt(ve[:, 0]).mean()),
            "sqrt_ve_final": float(np.sqrt(ve[:, -1]).mean()),
        }
        print(
            f"{label:30s} max |w| after {args.steps} steps {final_abs.mean():9.2f}  "
            f"√VE {np.sqrt(ve[:, 0]).mean():.2f} -> {np.sqrt(ve[:, -1]).mean():.2f}"
        )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(
        out / "metrics.npz",
        **{f"{m[1]}_{m[2]}_weights": results[m[0]][0] for m in METHODS},
        **{f"{m[1]}_{m[2]}_ve": results[m[0]][1] for m in METHODS},
    )
    runs.write_report(out / "experiment.json", report)
    record.save(args.results, {"seeds": args.seeds, "steps": args.steps, "methods": report})

    figure(args, results)
    print(f"wrote {out}/ and {args.figure}")


def figure(args: argparse.Namespace, results: dict) -> None:
    """Each method's weights (seed 0) and the √VE of every method, per step."""
    fig = Figure(figsize=(17, 3.6), dpi=110)
    axes = fig.subplots(1, len(METHODS) + 1)
    steps = np.arange(1, args.steps + 1)
    for ax, (label, *_rest) in zip(axes, METHODS, strict=False):
        weights = results[label][0][0]
        for i in range(weights.shape[-1]):
            ax.plot(steps, weights[:, i], label=f"w{i + 1}", linewidth=1)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("steps" if "DP" not in label and "expected" not in label else "sweeps")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("weight (seed 0)")
    axes[0].legend(fontsize=7, ncol=2)
    for label, *_rest in METHODS:
        axes[-1].plot(steps, np.sqrt(results[label][1].mean(0)), label=label)
    axes[-1].set_yscale("log")
    axes[-1].set_title("√VE (mean over seeds)", fontsize=10)
    axes[-1].set_xlabel("steps / sweeps")
    axes[-1].legend(fontsize=7)
    axes[-1].grid(alpha=0.3)
    fig.suptitle("Baird's counterexample, γ = 0.99 (Sutton & Barto Figure 11.2, 11.5)")
    plots.save(fig, args.figure)


if __name__ == "__main__":
    main()
