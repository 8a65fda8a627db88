"""What the learning-dynamics diagnostics cost: DQN with ``diagnostics`` on, as a ratio to the
same runs without them, at 1 and 8 runs, at the evaluation schedules of the experiments that
run with diagnostics (``experiments/which_loss.py`` on CartPole-v1 and MinAtar Breakout: the
diagnostics are computed once per evaluation point, so their share is per interval), and at
the densest schedule of any experiment (``experiments/cartpole_dqn.py``: 40 evaluations in
100k env steps).

Every (schedule, runs) pair runs in a child process of its own, which compiles the runs with
and without diagnostics and times calls of the two alternately; each time is the fastest of
its calls (other work on a shared machine only ever adds time, so the minimum is the cost of
the program itself; the medians are in the results file too); a row's ratio is that of the
medians over rounds of the two. It also checks that the training metrics with diagnostics
equal those without (bitwise).

    python benchmarks/diagnostics_cost.py                   # prints a table, writes JSON
    python benchmarks/diagnostics_cost.py --rounds 3 --envs cartpole
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from common import child_json, jit_runs, write_report

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/experiments")

ENVS = {  # name -> (experiment, its config's attribute, env, intervals timed, calls)
    "cartpole": ("which_loss", "CARTPOLE", "CartPole-v1", 20, 5),  # all of it: 100k steps
    "breakout": ("which_loss", "MINATAR", "Breakout-MinAtar", 1, 3),  # one of its 10 intervals
    "cartpole-dense": ("cartpole_dqn", "TUNED_CONFIG", "CartPole-v1", 40, 5),  # all: 100k
}


def config_of(env: str, diagnostics: bool) -> Any:
    """The experiment's config with its evaluation interval kept and ``intervals`` of them
    run (``total_steps`` = warm-up + intervals × the experiment's env steps per interval)."""
    import importlib

    from qlearn.algos import dqn

    module, attribute, env_id, intervals, _ = ENVS[env]
    fields = dict(getattr(importlib.import_module(module), attribute), env_id=env_id)
    full = dqn.DQNConfig(**fields)
    per_interval = full.steps_per_eval
    fields |= {
        "total_steps": full.learning_starts + intervals * per_interval,
        "num_evals": intervals,
        "diagnostics": diagnostics,
    }
    return dqn.DQNConfig(**fields)


def measure(env: str, runs: int, calls: int) -> dict:
    """In this process: compile ``runs`` runs with and without diagnostics, then time
    ``calls`` calls of each, alternating (so a drift of the machine's speed hits both alike);
    each time is the fastest of its calls (and the median beside it)."""
    import jax
    import numpy as np

    from qlearn import sweep
    from qlearn.algos import dqn

    hp = dqn.DQNHParams()
    keys = sweep.seed_keys(0, runs)
    compiled, seconds, training = {}, {False: [], True: []}, {}
    for on in (False, True):
        config = config_of(env, on)
        compiled[on] = jit_runs(dqn.make_train(config)).lower(keys, hp).compile()
    for _ in range(calls):
        for on in (False, True):
            start = time.perf_counter()
            _, metrics = jax.block_until_ready(compiled[on](keys, hp))
            seconds[on].append(time.perf_counter() - start)
            training[on] = {k: np.asarray(metrics[k]).tobytes().hex() for k in TRAINING}
    return {
        "env": env,
        "schedule": f"{config.env_id} ({ENVS[env][0]}.py)",
        "runs": runs,
        "seconds_without": min(seconds[False]),
        "seconds_with": min(seconds[True]),
        "median_seconds_without": statistics.median(seconds[False]),
        "median_seconds_with": statistics.median(seconds[True]),
        "calls": calls,
        "env_steps": runs * config.actual_total_steps,
        "steps_per_eval": config.steps_per_eval,
        "evaluations": config.num_evals,
        "training_metrics_equal": training[False] == training[True],
    }


TRAINING = ("eval_return", "train_return", "loss", "q_mean", "td_abs", "env_steps")
"""The metrics a run has with or without diagnostics, compared bitwise."""


def readme(r: dict[str, Any]) -> list:
    """benchmarks/diagnostics_cost.py: training time with diagnostics on, relative to off."""
    import record  # experiments/record.py (benchmarks/common.py puts it on the path)

    sizes = sorted({row["runs"] for row in r["rows"]})
    header = ["env (experiment)", "env steps per evaluation"]
    header += [f"× without, {n} run{'s' if n > 1 else ''}" for n in sizes]
    by = {(row["env"], row["runs"]): row for row in r["rows"]}
    envs = list(dict.fromkeys(row["env"] for row in r["rows"]))
    rows = [
        [by[(env, sizes[0])]["schedule"], f"{by[(env, sizes[0])]['steps_per_eval']:,}"]
        + [f"{by[(env, n)]['ratio']:.3f}" for n in sizes]
        for env in envs
    ]
    note = (
        f"DQN, the experiments' configs; each time the fastest of alternating calls (CartPole: "
        "the whole experiment, 5 calls; Breakout: one of its intervals, 3 calls), the median "
        f"over {r['rounds']} rounds; training "
        f"metrics with diagnostics bitwise equal to without: {r['training_metrics_equal']}; "
        f"{record.at(r)}"
    )
    return [record.Table(header, rows, note)]


def measure_rounds(args: argparse.Namespace, envs: list[str], sizes: list[int]) -> list[dict]:
    """Every (env, runs) in a child process of its own, ``args.rounds`` rounds."""
    measured = []
    for r in range(args.rounds):
        for env in envs:
            for runs in sizes:
                calls = str(args.calls or ENVS[env][4])
                cmd = [sys.executable, __file__, "--one", env, str(runs), calls]
                measured.append(child_json(cmd) | {"round": r})
                m = measured[-1]
                print(
                    f"  round {r}: {env} {runs} run(s) without {m['seconds_without']:7.2f} s, "
                    f"with {m['seconds_with']:7.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
    return measured


def median_rows(measured: list[dict]) -> list[dict]:
    """Per (env, runs): the medians over the rounds, off and on, and their ratio."""
    rows = []
    for env, runs in dict.fromkeys((m["env"], m["runs"]) for m in measured):
        same = [m for m in measured if m["env"] == env and m["runs"] == runs]
        off = statistics.median(m["seconds_without"] for m in same)
        on = statistics.median(m["seconds_with"] for m in same)
        rows.append(
            {
                "env": env,
                "schedule": same[0]["schedule"],
                "runs": runs,
                "steps_per_eval": same[0]["steps_per_eval"],
                "evaluations": same[0]["evaluations"],
                "seconds_without": off,
                "seconds_with": on,
                "ratio": on / off,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,8")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--envs", default=",".join(ENVS))
    parser.add_argument("--out", default="benchmarks/results/diagnostics_cost.json")
    parser.add_argument("--calls", type=int, default=0, help="timed calls of each per round")
    parser.add_argument("--one", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:  # child process: one (env, runs, calls)
        env, runs, calls = args.one
        print(json.dumps(measure(env, int(runs), int(calls))))
        return
    envs, sizes = args.envs.split(","), [int(s) for s in args.sizes.split(",")]
    measured = measure_rounds(args, envs, sizes)
    equal = all(m["training_metrics_equal"] for m in measured)
    rows = median_rows(measured)
    print(f"{'env':<18} {'runs':>4} {'without s':>9} {'with s':>8} {'ratio':>6}")
    for row in rows:
        print(
            f"{row['env']:<18} {row['runs']:>4} {row['seconds_without']:>9.2f} "
            f"{row['seconds_with']:>8.2f} {row['ratio']:>6.3f}"
        )
    print(f"training metrics bitwise equal with and without: {equal}")
    import jax

    report = {
        "benchmark": "diagnostics_cost",
        "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
        "rounds": args.rounds,
        "calls": args.calls,
        "training_metrics_equal": equal,
        "rows": rows,
        "runs": measured,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
