"""DQN and PQN on envs beyond gymnax: Navix Empty-8x8 and DoorKey-5x5, Craftax-Classic-Symbolic.

Question: with the adapters of ``qlearn.envs.suites`` (time limits as truncation), how far do
DQN and PQN get on a CPU budget of a few minutes per env on 2 cores (4 seeds each), in env
steps and in wall-clock seconds? Published baselines use far larger budgets; the README sets
ours beside them at the steps we reached. Craftax's budget is tiny: on a CPU its world
generation, which gymnax's auto-reset computes at every vmapped step, caps it near 800 env
steps/s.

Settings: both algorithms with an MLP (Navix's symbolic [H, W, 3] grid flattened; Craftax's
1,345 features) and LayerNorm. Navix's registered envs end at 100 steps and pay 1 on reaching
the goal. Craftax-Classic's return is its achievements (1 each, 22 in all) plus 0.1 × the
change in health; its time limit (10,000 steps) is far beyond these budgets' episodes.

    python experiments/suites.py                        # ≈ 37 min on 2 CPU cores
    python experiments/suites.py --envs navix:Navix-Empty-8x8-v0 --algos pqn --seeds 2
    python experiments/suites.py --envs craftax:Craftax-Classic-Symbolic-v1 \\
        --algos pqn,pqn-rnn --results experiments/results/craftax_memory.json \\
        --figure experiments/figures/craftax_memory.png    # PQN-RNN beside PQN, ≈ 17 min

Writes runs/suites/<env>/<algo>/, experiments/figures/suites.png and
experiments/results/suites.json (the file the README quotes).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import record
import timed

from qlearn import plots

ENVS = {  # env id -> ({algo: env steps per run}, config fields of this env)
    "navix:Navix-Empty-8x8-v0": ({"dqn": 500_000, "pqn": 2_000_000}, {}),
    "navix:Navix-DoorKey-5x5-v0": ({"dqn": 500_000, "pqn": 2_000_000}, {}),
    # ≈ 800 vmapped env steps/s here (benchmarks/suite_throughput.py): a greedy agent that
    # never dies would play 10,000 steps per evaluation episode, so episodes end at 1,000
    "craftax:Craftax-Classic-Symbolic-v1": (
        {"dqn": 25_000, "pqn": 50_000, "pqn-rnn": 50_000},
        {"max_episode_steps": 1_000, "eval_episodes": 4, "num_evals": 5},
    ),
}
CONFIG = {
    "dqn": dict(hidden_sizes=(128, 128), num_envs=8, learning_starts=2_000, num_evals=10),
    "pqn": dict(hidden_sizes=(256, 256), num_envs=32, rollout_steps=32, num_evals=10),
}
CONFIG["pqn-rnn"] = CONFIG["pqn"] | dict(core="gru", memory_size=256)
"""PQN-RNN (Gallici et al. 2024): PQN's settings with a GRU of 256 before the head."""
ALGORITHM = {"dqn": "dqn", "pqn": "pqn", "pqn-rnn": "pqn"}
"""Each agent's algorithm."""
HPARAMS = {
    "dqn": dict(lr=3e-4, eps_decay_fraction=0.3),
    "pqn": dict(lr=3e-4, lr_decay=1.0, eps_decay_fraction=0.3, lam=0.65),
}
HPARAMS["pqn-rnn"] = HPARAMS["pqn"]
REFERENCES = {}
"""env id -> a published baseline to print beside ours (README, "Beyond gymnax")."""


def readme(r: dict[str, Any]) -> list:
    """experiments/suites.py: DQN and PQN on the adapted suites, final IQM and budget."""
    header = ["env", "algorithm", "seeds × env steps", "final return IQM [95% CI]", "mean"]
    header += ["run s (compile)", "env steps/s"]
    rows = [
        [
            f"`{x['env_id']}`",
            x.get("agent", x["algo"]).upper(),
            f"{x['seeds']} × {x['env_steps_per_run']:,}",
            f"{x['configs'][0]['final_iqm']:.2f} " + record.ci2(x["configs"][0]["final_iqm_ci95"]),
            f"{x['configs'][0]['final_mean']:.2f}",
            f"{x['run_seconds']:.0f} ({x['compile_seconds']:.0f})",
            f"{x['env_steps_per_second']:,.0f}",
        ]
        for x in r["runs"]
    ]
    return [record.Table(header, rows, f"greedy evaluation, 2 CPU cores; {record.at(r)}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default=",".join(ENVS))
    parser.add_argument(
        "--algos", default="dqn,pqn", help=f"of {', '.join(CONFIG)} (an env runs those it budgets)"
    )
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every budget")
    parser.add_argument("--out", default="runs/suites")
    parser.add_argument("--figure", default="experiments/figures/suites.png")
    parser.add_argument("--results", default="experiments/results/suites.json")
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()
    reports, rows = [], []
    for env_id in args.envs.split(","):
        if env_id not in ENVS:
            raise SystemExit(f"--envs: {env_id} is not one of {', '.join(ENVS)}")
        curves = []
        for algo in args.algos.split(","):
            if algo not in CONFIG:
                raise SystemExit(f"--algos: {algo} is not one of {', '.join(CONFIG)}")
            if algo not in ENVS[env_id][0]:
                continue
            run_args = argparse.Namespace(
                seeds=args.seeds, seed=0, total_steps=None, hp=[], cfg=[], no_cache=args.no_cache
            )
            budgets, fields = ENVS[env_id]
            steps = int(budgets[algo] * args.scale)
            defaults = CONFIG[algo] | fields | {"env_id": env_id, "total_steps": steps}
            slug = env_id.replace(":", "_")
            _, report = timed.run(
                ALGORITHM[algo], defaults, HPARAMS[algo], run_args,
                out=Path(args.out) / slug / algo, save_results=False,
            )  # fmt: skip
            reports.append(report | {"agent": algo, "reference": REFERENCES.get(env_id)})
            curves.append(
                (
                    f"{algo.upper()} ({args.seeds} seeds)",
                    report["env_steps"],
                    report["seconds"],
                    _returns(Path(args.out) / slug / algo),
                )
            )
        rows.append((env_id, curves))
    if args.figure:
        path = plots.save(plots.steps_and_seconds(rows), args.figure)
        print(f"wrote {path}")
    for r in reports:
        c = r["configs"][0]
        print(
            f"{r['env_id']} {r.get('agent', r['algo'])}: final IQM {c['final_iqm']:.2f} after "
            f"{r['env_steps_per_run']:,} env steps, {r['run_seconds']:.0f} s"
        )
    if args.results:
        record.save(args.results, {"runs": reports})


def _returns(path: Path):
    from qlearn import runs

    return runs.load(path).metrics["eval_return"][0]


if __name__ == "__main__":
    main()
