"""DQN against PQN across tasks, as a paper would report it (``qlearn compare``).

Question: aggregated over two tasks with defined reference scores, CartPole-v1 (500, the
maximum return) and Catch-bsuite (1, a caught ball), which of DQN and PQN at their default
configs is ahead at an equal, small budget of env steps, and how sure can 8 seeds make us?
Each run's final greedy return is normalised per task by the uniformly random policy
(measured, 1,000 episodes) and the reference; the aggregates are rliable's with stratified-
bootstrap CIs.

    python experiments/compare_tasks.py              # ≈ 2 min on 2 CPU cores

Writes runs/compare_tasks/<algo>-<env>/ (the run directories), runs/compare_tasks/report/ (the
whole comparison), experiments/figures/compare_tasks_{aggregates,profiles}.png and
experiments/results/compare_tasks.json (the file the README quotes).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import record

from qlearn import algos, compare, devices, sweep

TASKS = {"CartPole-v1": 51_200, "Catch-bsuite": 51_200}
"""env id -> env steps per run, the same for both algorithms (whole intervals of each)."""
ALGOS = ("dqn", "pqn")


def readme(r: dict[str, Any]) -> list:
    """experiments/compare_tasks.py: aggregates over tasks and each task's normalisation."""
    methods = list(r["methods"])
    header = ["method", "IQM", "median", "mean", "optimality gap"]
    rows = [
        [m.upper()]
        + [
            f"{r['methods'][m][k]['value']:.2f} " + record.ci2(r["methods"][m][k]["ci95"])
            for k in ("iqm", "median", "mean", "optimality_gap")
        ]
        for m in methods
    ]
    tasks = "; ".join(
        f"{env}: random {t['random']:.3g}, reference {t['reference']:g}, final IQM "
        + ", ".join(f"{m.upper()} {t['final_iqm'][m]:.3g}" for m in methods)
        for env, t in r["tasks"].items()
    )
    pairs = "; ".join(
        f"P({k.upper()}) = {v['value']:.2f} " + record.ci2(v["ci95"])
        for k, v in r["improvement"].items()
    )
    return [
        record.Table(
            header,
            rows,
            f"normalised final greedy return over {len(r['tasks'])} tasks × {r['seeds']} seeds "
            f"(95% stratified-bootstrap CIs); {tasks}; {pairs}; 2 CPU cores; {record.at(r)}",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every budget")
    parser.add_argument("--out", default="runs/compare_tasks")
    parser.add_argument("--figures", default="experiments/figures/compare_tasks")
    parser.add_argument("--results", default="experiments/results/compare_tasks.json")
    args = parser.parse_args()
    devices.enable_compilation_cache(True)
    out = Path(args.out)
    paths, budgets = [], {}
    for env_id, steps in TASKS.items():
        steps = int(steps * args.scale)
        for algo in ALGOS:
            config = algos.get(algo).config(env_id=env_id, total_steps=steps)
            path = out / f"{algo}-{env_id}"
            sweep.run(config, seeds=args.seeds, out=path, progress=True)
            paths.append(path)
            budgets[f"{algo} {env_id}"] = config.actual_total_steps
    result = compare.compare(paths, out / "report")
    print((out / "report" / "table.md").read_text())
    if args.figures:
        for name in ("aggregates", "profiles"):
            target = Path(f"{args.figures}_{name}.png")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(out / "report" / f"{name}.png", target)
            print(f"wrote {target}")
    summary = {k: v for k, v in result.items() if k != "scores"}
    record.save(args.results, summary | {"seeds": args.seeds, "env_steps": budgets})


if __name__ == "__main__":
    main()
