"""qlearn against Rejax at matched settings: Rejax's DQN and PQN CartPole-v1 configurations,
and qlearn with the same envs, batch sizes, updates per env step, network widths and buffer,
at 1 seed (unbatched in both) and 8 seeds vmapped, alternating Rejax, qlearn, Rejax, qlearn
in one run.

Each measurement is its own process: compile (reported apart), then one timed training run
with a single evaluation of 128 greedy episodes at the end (Rejax's evaluation; qlearn the
same number of episodes), so the timed part is training. Rejax runs in a separate
environment (``make bench-peers`` builds it: Rejax needs gymnax 0.0.9).

What is not matched, because the libraries differ: Rejax's DQN network is dueling (one extra
value unit), and Rejax clips each gradient element at 10 (DQN and PQN) where qlearn clips the
global norm.

    make bench-peers                         # builds .venv-peers, then runs this
    python benchmarks/peers.py --peer-python .venv-peers/bin/python --rounds 2 --seeds 1,8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import child_json, jit_runs, write_report

HERE = Path(__file__).resolve().parent

# qlearn's settings matching benchmarks/peer_rejax.py's Rejax configurations.
QLEARN = {
    "dqn": (
        dict(
            env_id="CartPole-v1",
            num_envs=10,
            buffer_size=50_000,
            learning_starts=5_000,
            batch_size=100,
            train_every=1,
            updates_per_train=5,
            total_steps=100_000,
            hidden_sizes=(64, 64),
            activation="swish",
            layer_norm=False,
            double_q=True,
            loss="mse",
            num_evals=1,
            eval_episodes=128,
        ),
        dict(
            lr=1e-3,
            max_grad_norm=10.0,
            target_tau=0.02,
            target_period=1,
            eps_end=0.05,
            eps_decay_fraction=0.5,
        ),
    ),
    "pqn": (
        dict(
            env_id="CartPole-v1",
            num_envs=16,
            rollout_steps=128,
            num_epochs=5,
            num_minibatches=16,
            total_steps=524_288,
            hidden_sizes=(64, 64),
            activation="relu",
            layer_norm=True,
            loss="mse",
            num_evals=1,
            eval_episodes=128,
        ),
        dict(lr=3e-4, lam=0.9, max_grad_norm=10.0, eps_end=0.05, eps_decay_fraction=0.5),
    ),
}


def qlearn_run(algo: str, seeds: int) -> dict:
    """In this process: qlearn's matched run of R seeds (:func:`common.jit_runs`)."""
    import jax

    from qlearn import algos, sweep

    algorithm = algos.get(algo)
    fields, hps = QLEARN[algo]
    config, hp = algorithm.config(**fields), algorithm.hparams(**hps)
    keys = sweep.seed_keys(0, seeds)
    start = time.perf_counter()
    train = jit_runs(algorithm.make_train(config))
    compiled = train.lower(keys, hp).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    _, metrics = jax.block_until_ready(compiled(keys, hp))
    seconds = time.perf_counter() - start
    return {
        "library": "qlearn",
        "algo": algo,
        "seeds": seeds,
        "env_steps": seeds * config.actual_total_steps,
        "compile_seconds": compile_s,
        "seconds": seconds,
        "final_returns": np.asarray(metrics["eval_return"])[:, -1].tolist(),
    }


def readme(r: dict[str, Any]) -> list:
    import record  # experiments/record.py (benchmarks/common.py puts it on the path)

    """benchmarks/peers.py: qlearn against Rejax at Rejax's CartPole settings."""
    header = [
        "algo", "seeds", "Rejax env steps/s", "qlearn env steps/s", "qlearn ÷ Rejax",
        "compile Rejax / qlearn", "final return Rejax / qlearn",
    ]  # fmt: skip
    rows = [
        [
            row["algo"].upper(),
            str(row["seeds"]),
            f"{row['rejax_steps_per_second']:,.0f}",
            f"{row['qlearn_steps_per_second']:,.0f}",
            f"**{row['ratio']:.2f}×**",
            f"{row['rejax_compile_seconds']:.1f} / {row['qlearn_compile_seconds']:.1f} s",
            f"{row['rejax_final_return']:.1f} / {row['qlearn_final_return']:.1f}",
        ]
        for row in r["rows"]
    ]
    rounds = 1 + max(run["round"] for run in r["runs"])
    return [record.Table(header, rows, f"medians over {rounds} alternating rounds; {record.at(r)}")]


def median_row(results: list[dict], algo: str, seeds: int) -> dict:
    """One setting's row: per library the median env steps/s and compile seconds over the
    rounds and the mean final return, and qlearn's speed over Rejax's."""
    row: dict = {"algo": algo, "seeds": seeds}
    for lib in ("rejax", "qlearn"):
        mine = [x for x in results if (x["library"], x["algo"], x["seeds"]) == (lib, algo, seeds)]
        row[f"{lib}_steps_per_second"] = float(
            np.median([x["env_steps"] / x["seconds"] for x in mine])
        )
        row[f"{lib}_compile_seconds"] = float(np.median([x["compile_seconds"] for x in mine]))
        row[f"{lib}_final_return"] = float(np.mean([np.mean(x["final_returns"]) for x in mine]))
    row["ratio"] = row["qlearn_steps_per_second"] / row["rejax_steps_per_second"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", default=".venv-peers/bin/python")
    parser.add_argument("--algos", default="dqn,pqn")
    parser.add_argument("--seeds", default="1,8")
    parser.add_argument("--rounds", type=int, default=2, help="A B pairs per setting")
    parser.add_argument("--out", default="benchmarks/results/peers.json")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:  # child process: qlearn's run
        algo, seeds = args.one.split(":")
        print(json.dumps(qlearn_run(algo, int(seeds))))
        return
    if not Path(args.peer_python).exists():
        raise SystemExit(f"{args.peer_python} is missing: run `make bench-peers` to build it")

    results = []
    for algo in args.algos.split(","):
        for seeds in (int(s) for s in args.seeds.split(",")):
            for r in range(args.rounds):  # A B A B: drifts in machine load hit both
                for cmd in (
                    [args.peer_python, str(HERE / "peer_rejax.py"), algo, str(seeds)],
                    [sys.executable, __file__, "--one", f"{algo}:{seeds}"],
                ):
                    row = child_json(cmd) | {"round": r}
                    results.append(row)
                    print(
                        f"  {row['library']:6} {algo} × {seeds}: "
                        f"{row['env_steps'] / row['seconds']:,.0f} env steps/s",
                        file=sys.stderr,
                    )

    print(
        f"\nCartPole-v1, Rejax's configurations, matched; medians over {args.rounds} rounds "
        "(A B A B)"
    )
    print(
        f"{'algo':4} {'seeds':>5} {'rejax steps/s':>13} {'qlearn steps/s':>14} {'ratio':>6} "
        f"{'rejax compile':>13} {'qlearn compile':>14} {'rejax return':>12} {'qlearn return':>13}"
    )
    table = []
    for algo in args.algos.split(","):
        for seeds in (int(s) for s in args.seeds.split(",")):
            row = median_row(results, algo, seeds)
            table.append(row)
            print(
                f"{algo:4} {seeds:>5} {row['rejax_steps_per_second']:>13,.0f} "
                f"{row['qlearn_steps_per_second']:>14,.0f} {row['ratio']:>5.2f}× "
                f"{row['rejax_compile_seconds']:>12.1f}s {row['qlearn_compile_seconds']:>13.1f}s "
                f"{row['rejax_final_return']:>12.1f} {row['qlearn_final_return']:>13.1f}"
            )
    print("(return: mean over seeds and rounds of the final 128-episode greedy evaluation)")
    report = {"benchmark": "peers", "cpu_count": os.cpu_count(), "rows": table, "runs": results}
    write_report(args.out, report)


if __name__ == "__main__":
    main()
