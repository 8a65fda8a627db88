"""Does DQN lose plasticity at a high replay ratio, and do ReDo and resets bring it back?

Question (Sokar et al. 2023, "The dormant neuron phenomenon in deep RL"): the fraction of
τ-dormant units grows with the replay ratio (gradient updates per env step), and ReDo —
recycling the dormant units every 1000 updates — keeps it low and restores the return. Does
that direction reproduce at a budget two CPU cores can afford? DQN (diagnostics on) at replay
ratios {0.25, 1, 4} × {no intervention, ReDo, resets} on MinAtar Breakout and CartPole-v1:

* ReDo (``intervention=redo``): every 1000 updates, the units with score ≤ τ = 0.1 get fresh
  incoming weights and zero outgoing ones (Sokar et al.'s period and τ for DQN).
* Resets (``intervention=reset``, Nikishin et al. 2022): the last layer re-initialised four
  times per run, evenly (every fifth of its updates), whatever the replay ratio.

Each (ratio, intervention) is one compiled program of all the seeds, and seed n is the same
key in every one. Reported per cell: the final greedy return's IQM with its 95% CI, and at the
last evaluation the dormant fraction (τ = 0.1), srank and the churn of one update, each the
mean over seeds; one figure per env of all of them over training.

    python experiments/plasticity.py                  # both envs, ≈ 56 min on 2 CPU cores
    python experiments/plasticity.py --envs CartPole-v1 --no-layer-norm \\
        --results experiments/results/plasticity_no_layernorm.json   # Sokar et al.'s nets
    python experiments/plasticity.py --envs CartPole-v1 --seeds 1 --scale 0.34 \\
        --results '' --figures '' --out /tmp/plasticity   # a smoke run

Writes runs/plasticity/<env>/rr<r>_<intervention>/, experiments/figures/plasticity_<env>.png
and experiments/results/plasticity.json (the README quotes it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import record

from qlearn import plots, runs, stats, sweep
from qlearn.algos import dqn

RATIOS = (0.25, 1.0, 4.0)
INTERVENTIONS = ("none", "redo", "reset")
REDO_PERIOD = 1000
"""updates between ReDo's recyclings (Sokar et al. 2023 for DQN)."""
RESETS = 4
"""resets per run, every ``updates // (RESETS + 1) + 1`` updates: the last at 4/5 of it."""
ENVS: dict[str, tuple[dict[str, Any], dict[str, float]]] = {
    "Breakout-MinAtar": (
        dict(
            network="cnn",
            hidden_sizes=(128,),
            total_steps=25_000,
            learning_starts=2_000,
            buffer_size=100_000,
            batch_size=32,
            num_evals=10,
        ),
        dict(lr=3e-4, target_tau=0.01, eps_decay_fraction=0.2),
    ),
    "CartPole-v1": (dict(total_steps=30_000, num_evals=10), {}),
}
"""env -> (config fields, hyperparameters): DQN's settings of experiments/which_loss.py, on
Breakout with Sokar et al.'s batch of 32 and a shorter warm-up, at budgets that fit the
hour: replay ratio 4 makes 92k (Breakout) and 100k (CartPole) updates per run."""
SHOWN = ("dormant", "srank", "churn_update")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--envs", default=",".join(ENVS), help="comma-separated, of " + str(list(ENVS))
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every env's total_steps by this"
    )
    parser.add_argument(
        "--layer-norm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="LayerNorm after each hidden layer (qlearn's default; Sokar et al. had none)",
    )
    parser.add_argument("--out", default="runs/plasticity")
    parser.add_argument("--figures", default="experiments/figures", help="'' for none")
    parser.add_argument("--results", default="experiments/results/plasticity.json")
    args = parser.parse_args()
    unknown = sorted(set(args.envs.split(",")) - set(ENVS))
    if unknown:
        parser.error(f"--envs: unknown {unknown}; choose from {list(ENVS)}")
    if args.seeds < 1 or args.scale <= 0:
        parser.error("--seeds must be ≥ 1 and --scale > 0")
    return args


def intervention_period(config: dqn.DQNConfig, intervention: str) -> int:
    """ReDo's fixed period, or the resets' (:data:`RESETS` per run); 1 for none (unused)."""
    if intervention == "redo":
        return REDO_PERIOD
    if intervention == "reset":
        return config.updates_per_run // (RESETS + 1) + 1
    return 1


def cell(env: str, ratio: float, intervention: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one (ratio, intervention) of ``env`` over the seeds: its row and its curves."""
    fields, hp = ENVS[env]
    fields = dict(fields, env_id=env, diagnostics=True, layer_norm=args.layer_norm)
    fields["total_steps"] = int(fields["total_steps"] * args.scale)
    config = dqn.DQNConfig(**fields, replay_ratio=ratio, intervention=intervention)
    period = intervention_period(config, intervention)
    start = time.perf_counter()
    run = sweep.run(
        config,
        hparams=dqn.DQNHParams(**hp, intervention_period=period),
        seeds=args.seeds,
        lanes=args.seeds,
        out=Path(args.out)
        / env
        / f"rr{ratio:g}_{intervention}{'' if args.layer_norm else '_no_ln'}",
        overwrite=True,
        progress=True,
    )
    seconds = time.perf_counter() - start
    m = {k: np.asarray(v[0]) for k, v in run.metrics.items()}  # [S, T]
    d = stats.describe(m["eval_return"][:, -1])
    row = {
        "env": env,
        "replay_ratio": ratio,
        "intervention": intervention,
        "intervention_period": period,
        "updates": config.updates_per_run,
        "env_steps": int(m["env_steps"][0, -1]),
        "seconds": seconds,
        "final_iqm": d["iqm"],
        "final_iqm_ci95": d["iqm_ci95"],
        "final_returns": [float(x) for x in m["eval_return"][:, -1]],
        "diverged": int(np.sum(m["diverged"][:, -1])),
        "auc_iqm": float(stats.iqm(stats.area_under_curve(m["env_steps"][0], m["eval_return"]))),
    }
    row |= {f"final_{k}": float(np.mean(m[k][:, -1])) for k in (*SHOWN, "dormant_zero")}
    print(
        f"{env} rr={ratio:g} {intervention}: return IQM {d['iqm']:.1f}, dormant "
        f"{row['final_dormant']:.3f}, srank {row['final_srank']:.1f} in {seconds:.0f} s"
    )
    return {
        "row": row,
        "curves": {k: m[k] for k in ("eval_return", *SHOWN)},
        "steps": m["env_steps"][0],
    }


def figure(env: str, cells: dict[tuple[float, str], dict]) -> Any:
    """Rows: the interventions; columns: return and the :data:`SHOWN` diagnostics over
    training; one colour per replay ratio."""
    steps = next(iter(cells.values()))["steps"]
    rows = [
        [
            (
                f"{intervention}: {name}",
                name,
                np.stack([cells[r, intervention]["curves"][name] for r in RATIOS]),
            )
            for name in ("eval_return", *SHOWN)
        ]
        for intervention in INTERVENTIONS
    ]
    return plots.panels(steps, rows, [f"replay ratio {r:g}" for r in RATIOS])


def final_return(row: dict[str, Any], seeds: int) -> str:
    """'IQM [CI]' of the runs that did not diverge, and how many did (a diverged run's
    metrics are NaN: :mod:`qlearn.algos.deep_q`)."""
    diverged = row.get("diverged", 0)
    if diverged == seeds:
        return f"diverged ({seeds}/{seeds})"
    text = f"{row['final_iqm']:.1f} " + record.ci1(row["final_iqm_ci95"])
    return text + (f", {diverged}/{seeds} diverged" if diverged else "")


def readme(r: dict[str, Any]) -> list:
    """experiments/plasticity.py: per env, replay ratio and intervention, the final return and
    diagnostics."""
    header = [
        "env",
        "replay ratio",
        "intervention",
        "final return IQM [95% CI]",
        "dormant (τ = 0.1)",
        "srank",
        "churn / update",
    ]
    rows = [
        [
            row["env"],
            f"{row['replay_ratio']:g}",
            row["intervention"],
            final_return(row, r["seeds"]),
            *(
                "—" if np.isnan(row[f"final_{name}"]) else f"{row[f'final_{name}']:.{digits}f}"
                for name, digits in (("dormant", 3), ("srank", 1), ("churn_update", 3))
            ),
        ]
        for row in r["rows"]
    ]
    budgets = ", ".join(f"{env} {steps:,}" for env, steps in r["env_steps"].items())
    norm = "with" if r.get("layer_norm", True) else "without"
    note = (
        f"DQN {norm} LayerNorm, {r['seeds']} seeds; env steps per run: {budgets}; "
        f"diagnostics at the last evaluation, means over seeds; {record.at(r)}"
    )
    return [record.Table(header, rows, note)]


def main() -> None:
    args = arguments()
    started = runs.provenance()  # the commit this experiment runs
    rows, env_steps = [], {}
    for env in args.envs.split(","):
        cells = {
            (ratio, intervention): cell(env, ratio, intervention, args)
            for ratio in RATIOS
            for intervention in INTERVENTIONS
        }
        rows += [c["row"] for c in cells.values()]
        env_steps[env] = rows[-1]["env_steps"]
        if args.figures:
            slug = env.split("-")[0].lower()
            suffix = "" if args.layer_norm else "_no_layernorm"
            plots.save(figure(env, cells), Path(args.figures) / f"plasticity_{slug}{suffix}.png")
    record.save(
        args.results or None,
        {
            "experiment": "plasticity",
            "seeds": args.seeds,
            "layer_norm": args.layer_norm,
            "env_steps": env_steps,
            "redo_period": REDO_PERIOD,
            "resets_per_run": RESETS,
            "rows": rows,
        },
        started,
    )


if __name__ == "__main__":
    main()
