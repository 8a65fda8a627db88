"""Which value loss should DQN use? Every built-in replay loss on one env, in one sweep per head.

Question: with DQN's defaults otherwise unchanged, how do the scalar losses (Huber, MSE,
DQNReg, Munchausen, the residual gradient), C51, QR-DQN and the classification losses (HL-Gauss,
two-hot) compare — final greedy return IQM with 95% bootstrap CIs, and the probability that a
run of each beats a run of Huber? References to print beside (not re-run here): CleanRL's C51
on CartPole reaches 491.07 ± 9.70 in 500k steps and its DQN 498.38 ± 2.29; Farebrother et al.
(2024) order HL-Gauss ≥ two-hot ≥ MSE.

Each head is one compiled program (its losses a tuple picked by the traced ``loss_index``), so
the seeds are the same runs in every group.

    python experiments/which_loss.py                    # CartPole-v1, 8 seeds × 100k steps
    python experiments/which_loss.py --env Breakout-MinAtar --losses huber,c51,qr,hl_gauss \\
        --total-steps 300000 --seeds 4 --results experiments/results/which_loss_breakout.json

Writes runs/which_loss/<env>/<head>/ (one run directory per head), a figure, and the results
file the README quotes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import record

from qlearn import losses, plots, runs, stats, sweep
from qlearn.algos import dqn

CARTPOLE = dict(env_id="CartPole-v1", total_steps=100_000, num_evals=20)
MINATAR = dict(
    network="cnn",
    hidden_sizes=(128,),
    learning_starts=5_000,
    buffer_size=100_000,
    num_evals=10,
)
SUPPORT = {  # v_min, v_max of the categorical and histogram heads (returns-to-go, γ = 0.99)
    "CartPole-v1": (0.0, 100.0),
    "Breakout-MinAtar": (0.0, 20.0),
}
MINATAR_HPARAMS = dict(lr=3e-4, target_tau=0.01, eps_decay_fraction=0.2)
DIAGNOSTICS = ("dormant", "srank", "churn_update", "churn_target", "overestimation")
"""The diagnostics (docs/diagnostics.md) a row reports: each run's value at the last evaluation
and its mean over the run's evaluations, averaged over the seeds."""
REFERENCES = {
    "CartPole-v1": "CleanRL (500k steps): C51 491.07 ± 9.70, DQN 498.38 ± 2.29",
}


def groups(names: list[str]) -> dict[str, list[str]]:
    """head -> the losses of ``names`` that need it, in the order given."""
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(losses.HEAD_OF[name], []).append(name)
    return out


def readme(r: dict[str, Any]) -> list:
    """experiments/which_loss.py: each built-in loss's final greedy return, best first."""
    header = ["loss", "head", "final return IQM [95% CI]", "mean", "P(run beats a Huber run)"]
    rows = [
        [
            f"`{row['loss']}`",
            row["head"],
            f"{row['final_iqm']:.1f} " + record.ci1(row["final_iqm_ci95"]),
            f"{row['final_mean']:.1f}",
            f"{row['p_improvement_over_huber']:.2f}",
        ]
        for row in sorted(r["rows"], key=lambda row: -row["final_iqm"])
    ]
    note = f"DQN on {r['env']}, {r['seeds']} seeds × {r['env_steps']:,} env steps; {record.at(r)}"
    return [record.Table(header, rows, note), *diagnostics_readme(r)]


def diagnostics_readme(r: dict[str, Any]) -> list:
    """The diagnostics of each loss (when the run measured them), in the order of the returns:
    each a mean over seeds of the run's mean over its evaluations."""
    measured = [row for row in r["rows"] if row.get("diagnostics")]
    if not measured:
        return []
    header = [
        "loss",
        "dormant (τ = 0.1)",
        "srank",
        "churn / update",
        "churn vs target",
        "over-estimation",
    ]
    digits = {"srank": 1, "overestimation": 1}
    rows = [
        [f"`{row['loss']}`"]
        + [f"{row['diagnostics'][n]['run_mean']:.{digits.get(n, 3)}f}" for n in DIAGNOSTICS]
        for row in sorted(measured, key=lambda row: -row["final_iqm"])
    ]
    note = (
        f"the diagnostics of the same runs, each the mean over {r['seeds']} seeds of a run's "
        f"mean over its {r['evaluations']} evaluations; over-estimation: the mean of "
        "q̂(s_t, a_t) − G_t over the greedy evaluation episodes' steps, G_t the discounted "
        "return they obtained from s_t"
    )
    return [record.Text("\n"), record.Table(header, rows, note)]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1", choices=sorted(SUPPORT))
    parser.add_argument("--losses", default=",".join(losses.BUILTIN))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--total-steps", type=int, default=None)
    parser.add_argument(
        "--diagnostics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the learning dynamics (docs/diagnostics.md; training is unchanged)",
    )
    parser.add_argument("--out", default="runs/which_loss")
    parser.add_argument("--figure", default=None, help="default: experiments/figures/...")
    parser.add_argument("--results", default=None, help="default: experiments/results/...")
    return parser.parse_args()


def loss_rows(
    names: list[str], finals: dict, curves: dict, steps: np.ndarray, diagnosed: dict
) -> list[dict]:
    """Per loss: the final greedy return's IQM (95% CI), mean, the IQM of the areas under the
    curves, P(a run of it beats a Huber run), and its :data:`DIAGNOSTICS` (``diagnosed``:
    loss -> name -> [seeds, T]) at the last evaluation and over the run, means over seeds."""
    rows = []
    for name in names:
        d = stats.describe(finals[name])
        rows.append(
            {
                "loss": name,
                "head": losses.HEAD_OF[name],
                "final_iqm": d["iqm"],
                "final_iqm_ci95": d["iqm_ci95"],
                "final_mean": d["mean"],
                "auc_iqm": float(stats.iqm(stats.area_under_curve(steps, curves[name]))),
                "p_improvement_over_huber": stats.probability_of_improvement(
                    finals[name], finals["huber"]
                ),
                "final_returns": [float(x) for x in finals[name]],
                "diagnostics": {
                    k: {"final": float(np.mean(v[:, -1])), "run_mean": float(np.mean(v))}
                    for k, v in diagnosed.get(name, {}).items()
                },
            }
        )
    return rows


def show(args: argparse.Namespace, rows: list[dict], steps: np.ndarray) -> None:
    """The table of the losses' final returns, best first, and the env's reference."""
    print(f"\n{args.env}, {args.seeds} seeds × {int(steps[-1]):,} env steps (final greedy return)")
    print(f"{'loss':<11} {'IQM':>6}  {'95% CI':<16} {'P(> huber)':>10}")
    for r in sorted(rows, key=lambda r: -r["final_iqm"]):
        low, high = r["final_iqm_ci95"]
        print(
            f"{r['loss']:<11} {r['final_iqm']:6.1f}  [{low:6.1f}, {high:6.1f}]  "
            f"{r['p_improvement_over_huber']:10.2f}"
        )
    if args.env in REFERENCES:
        print(f"reference: {REFERENCES[args.env]}")


def diagnosed_path(figure: str) -> str:
    """The diagnostics figure's path beside the returns figure ``figure``."""
    path = Path(figure)
    return str(path.with_name(f"{path.stem}_diagnostics{path.suffix}"))


def diagnostics_figure(
    args: argparse.Namespace, names: list[str], curves: dict, diagnosed: dict, steps: np.ndarray
) -> Any:
    """Returns and the :data:`DIAGNOSTICS` over training, one panel each, every loss a colour."""
    panels = [("greedy return", "return", np.stack([curves[n] for n in names]))]
    panels += [
        (name, name, np.stack([diagnosed[n][name] for n in names]))
        for name in DIAGNOSTICS
        if all(name in diagnosed[n] for n in names)
    ]
    rows = [panels[:3], panels[3:]]
    return plots.panels(steps, rows, names)


def run_heads(
    args: argparse.Namespace, names: list[str], base: dict, hp: dict, slug: str
) -> tuple[dict, dict, np.ndarray, dict, dict]:
    """One sweep per head over its losses (a traced ``loss_index``): per loss its final
    returns [seeds] and curves [seeds, T] and its :data:`DIAGNOSTICS` (name -> [seeds, T]);
    the evaluation points' env steps [T] and the seconds of each head."""
    finals, curves, steps, seconds, diagnosed = {}, {}, None, {}, {}
    for head, group in groups(names).items():
        config = dqn.DQNConfig(**base, head=head, loss=tuple(group))
        start = time.perf_counter()
        run = sweep.run(
            config,
            {"loss_index": list(range(len(group)))},
            hparams=dqn.DQNHParams(**hp),
            seeds=args.seeds,
            out=Path(args.out) / slug / head,
            overwrite=True,
            progress=True,
        )
        seconds[head] = time.perf_counter() - start
        returns = run.metrics["eval_return"]  # [losses, seeds, T]
        steps = run.metrics["env_steps"][0, 0]
        for i, name in enumerate(group):
            finals[name], curves[name] = returns[i, :, -1], returns[i]
            diagnosed[name] = {k: run.metrics[k][i] for k in DIAGNOSTICS if k in run.metrics}
        print(f"{head}: {', '.join(group)} in {seconds[head]:.0f} s")
    return finals, curves, steps, seconds, diagnosed


def main() -> None:
    args = arguments()
    started = runs.provenance()  # the commit this experiment runs
    names = args.losses.split(",")
    unknown = sorted(set(names) - set(losses.BUILTIN))
    if unknown or "huber" not in names:
        raise SystemExit(f"--losses: built-in names including huber, from {losses.BUILTIN}")
    slug = "cartpole" if args.env == "CartPole-v1" else args.env.split("-")[0].lower()
    figure = args.figure or f"experiments/figures/which_loss_{slug}.png"
    results = args.results
    if results is None:
        results = f"experiments/results/which_loss_{slug}.json"
    base = dict(CARTPOLE) if args.env == "CartPole-v1" else dict(MINATAR, env_id=args.env)
    base["diagnostics"] = args.diagnostics
    if args.total_steps:
        base["total_steps"] = args.total_steps
    v_min, v_max = SUPPORT[args.env]
    hp = dict(v_min=v_min, v_max=v_max) | (MINATAR_HPARAMS if args.env != "CartPole-v1" else {})

    finals, curves, steps, seconds, diagnosed = run_heads(args, names, base, hp, slug)
    rows = loss_rows(names, finals, curves, steps, diagnosed)
    show(args, rows, steps)
    fig = plots.learning_curves(
        steps,
        np.stack([curves[n] for n in names]),
        names,
        title=f"DQN on {args.env}: the built-in losses, {args.seeds} seeds",
    )
    if figure:
        plots.save(fig, figure)
        if any(diagnosed.values()):
            plots.save(
                diagnostics_figure(args, names, curves, diagnosed, steps), diagnosed_path(figure)
            )
    record.save(
        results,
        {
            "experiment": "which_loss",
            "env": args.env,
            "seeds": args.seeds,
            "env_steps": int(steps[-1]),
            "evaluations": len(steps),
            "support": [v_min, v_max],
            "seconds_per_head": seconds,
            "reference": REFERENCES.get(args.env),
            "rows": rows,
        },
        started,
    )


if __name__ == "__main__":
    main()
