"""What each built-in replay loss costs: DQN on CartPole-v1 (MLP) or MinAtar Breakout (the CNN)
with every built-in loss (each on the head it needs), IQN with its levels shared by each batch
(``iqn_shared_levels``), and Huber and C51 with prioritised replay, training time as a ratio to
the Huber loss with uniform replay at the same settings, at 1 and 8 runs.

Every (loss, runs) pair runs in a child process of its own, compiled there and timed after
compilation; the pairs are measured in alternating rounds (all losses once, then again) so
that a drift of the machine's speed hits every loss alike, and each pair's time is its median
over the rounds. One run is ``jax.jit(train)`` itself, 8 runs ``jit(vmap(train))`` over seeds.

    python benchmarks/loss_cost.py                     # prints a table, writes JSON
    python benchmarks/loss_cost.py --rounds 3 --steps 50000
    python benchmarks/loss_cost.py --env breakout --steps 10000   # the MinAtar CNN
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from common import child_json, jit_runs, write_report

ENVS = {  # --env -> (config fields, the categorical/histogram support, results file)
    "cartpole": (
        dict(env_id="CartPole-v1", learning_starts=2_000, num_evals=4, eval_episodes=5),
        {"v_min": 0.0, "v_max": 100.0},  # CartPole's returns (γ = 0.99: at most 100)
        "benchmarks/results/loss_cost.json",
    ),
    "breakout": (
        dict(
            env_id="Breakout-MinAtar",
            network="cnn",
            learning_starts=2_000,
            num_evals=4,
            eval_episodes=2,
        ),
        {"v_min": 0.0, "v_max": 20.0},
        "benchmarks/results/loss_cost_breakout.json",
    ),
}
HEADS = {  # loss -> its head
    "huber": "scalar",
    "mse": "scalar",
    "dqn_reg": "scalar",
    "munchausen": "scalar",
    "c51": "categorical",
    "hl_gauss": "histogram",
    "two_hot": "histogram",
    "qr": "quantile",
    "iqn": "iqn",
}
VARIANTS = {name: (name, "uniform", {}) for name in HEADS} | {  # variant -> (loss, replay,
    "iqn+shared": ("iqn", "uniform", {"iqn_shared_levels": True}),  # other config fields)
    "huber+per": ("huber", "prioritized", {}),
    "c51+per": ("c51", "prioritized", {}),
}


def measure(variant: str, runs: int, steps: int, env: str) -> dict:
    """In this process: compile ``runs`` runs of DQN with ``variant``'s loss and replay and
    time one call."""
    import jax

    from qlearn import sweep
    from qlearn.algos import dqn

    fields, support, _ = ENVS[env]
    loss, replay, extra = VARIANTS[variant]
    config = dqn.DQNConfig(
        **fields, **extra, total_steps=steps, loss=loss, head=HEADS[loss], replay=replay
    )
    hp = dqn.DQNHParams(**support)
    fn = jit_runs(dqn.make_train(config))
    keys = sweep.seed_keys(0, runs)
    start = time.perf_counter()
    compiled = fn.lower(keys, hp).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    _, metrics = jax.block_until_ready(compiled(keys, hp))
    seconds = time.perf_counter() - start
    return {
        "loss": variant,
        "head": HEADS[loss],
        "replay": replay,
        "runs": runs,
        "seconds": seconds,
        "compile_seconds": compile_s,
        "env_steps": runs * config.actual_total_steps,
        "final_return": float(metrics["eval_return"][:, -1].mean()),
    }


def readme(r: dict[str, Any]) -> list:
    import record  # experiments/record.py (benchmarks/common.py puts it on the path)

    """benchmarks/loss_cost.py: each built-in loss's training time relative to Huber (with
    uniform replay), and with prioritised replay."""
    sizes = sorted({row["runs"] for row in r["rows"]})
    header = ["loss", "head", "replay"]
    header += [f"× Huber, {n} run{'s' if n > 1 else ''}" for n in sizes]
    by = {(row["loss"], row["runs"]): row for row in r["rows"]}
    names = list(dict.fromkeys(row["loss"] for row in r["rows"]))
    first = {name: by[(name, sizes[0])] for name in names}
    rows = [
        [
            f"`{name.split('+')[0]}`" + (", shared τ" if name.endswith("+shared") else ""),
            first[name]["head"],
            first[name].get("replay", "uniform"),
        ]
        + [f"{by[(name, n)]['ratio_to_huber']:.2f}" for n in sizes]
        for name in names
    ]
    note = (
        f"DQN on {r.get('env', 'CartPole-v1')} ({r.get('network', 'mlp')}), "
        f"{r['steps_per_run']:,} env steps per run, medians over {r['rounds']} alternating "
        f"rounds; {record.at(r)}"
    )
    return [record.Table(header, rows, note)]


def measure_rounds(args: argparse.Namespace, names: list[str], sizes: list[int]) -> list[dict]:
    """Every (loss, runs) measured in a child process of its own, ``args.rounds`` alternating
    rounds."""
    measured = []
    for r in range(args.rounds):
        for runs in sizes:
            for loss in names:
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    loss,
                    str(runs),
                    "--steps",
                    str(args.steps),
                    "--env",
                    args.env,
                ]
                measured.append(child_json(cmd) | {"round": r})
                m = measured[-1]
                print(
                    f"  round {r}: {loss:<10} {runs} run(s) {m['seconds']:6.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
    return measured


def median_rows(measured: list[dict], names: list[str], sizes: list[int]) -> list[dict]:
    """Per (loss, runs): the median seconds over the rounds and the ratio to Huber's."""
    rows = []
    for runs in sizes:
        median = {
            loss: statistics.median(
                m["seconds"] for m in measured if m["loss"] == loss and m["runs"] == runs
            )
            for loss in names
        }
        for loss in names:
            last = [m for m in measured if m["loss"] == loss and m["runs"] == runs][-1]
            rows.append(
                {
                    "loss": loss,
                    "head": last["head"],
                    "replay": last["replay"],
                    "runs": runs,
                    "seconds": median[loss],
                    "ratio_to_huber": median[loss] / median["huber"],
                    "env_steps_per_second": last["env_steps"] / median[loss],
                    "compile_seconds": last["compile_seconds"],
                    "final_return": last["final_return"],
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,8")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--losses", default=",".join(VARIANTS))
    parser.add_argument("--env", default="cartpole", choices=sorted(ENVS))
    parser.add_argument("--out", default=None, help="default: benchmarks/results/...")
    parser.add_argument("--one", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:  # child process: one (loss, runs)
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.steps, args.env)))
        return
    args.out = args.out or ENVS[args.env][2]

    names = args.losses.split(",")
    if "huber" not in names:
        raise SystemExit("--losses must include huber: every ratio is to it")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown loss(es) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    sizes = [int(s) for s in args.sizes.split(",")]
    measured = measure_rounds(args, names, sizes)
    rows = median_rows(measured, names, sizes)
    print(
        f"DQN on {ENVS[args.env][0]['env_id']}, {args.steps:,} env steps per run; median of "
        f"{args.rounds} "
        "alternating rounds, after compilation"
    )
    print(
        f"{'loss':<10} {'head':<12} {'replay':<12} {'runs':>4} {'seconds':>8} {'× huber':>8} "
        f"{'compile s':>9}"
    )
    for row in rows:
        print(
            f"{row['loss']:<10} {row['head']:<12} {row['replay']:<12} {row['runs']:>4} "
            f"{row['seconds']:>8.2f} "
            f"{row['ratio_to_huber']:>8.2f} {row['compile_seconds']:>9.1f}"
        )
    import jax

    report = {
        "benchmark": "loss_cost",
        "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
        "steps_per_run": args.steps,
        "rounds": args.rounds,
        "env": ENVS[args.env][0]["env_id"],
        "network": ENVS[args.env][0].get("network", "mlp"),
        "support": ENVS[args.env][1],
        "rows": rows,
        "runs": measured,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
