"""Training throughput of DQN and PQN against the ceilings of this machine, at 1, 8, 32 and 128
runs (seeds) vmapped (one run unbatched: ``common.jit_runs``), on CartPole-v1 and MinAtar
Breakout.

For each case (algorithm × env, with the settings of its experiment) and each number of runs R:

- ceilings: env steps per second of the bare gymnax env with random actions, and of the env
  plus the Q-network's forward pass with ε-greedy actions (no learning), with the same R × N
  envs as training. Training can never beat these;
- training: env steps and gradient updates per second of ``jit_runs(train)`` (two evaluation
  points of one greedy episode, so evaluation is negligible here; its cost is measured apart),
  and training as a fraction of the acting ceiling;
- compile seconds (lower + compile) and XLA's memory for the program, peak RSS of the process.

Then, at R = 1: compile seconds again in a fresh process with JAX's persistent compilation
cache filled by a first process; and the cost of evaluation inside the loop (the experiment's
own schedule of evaluation points and episodes over at most 100k env steps, against two
evaluations of one episode) at 1 and 8 runs.

Every measurement runs in its own process (so its memory is its own); times are medians of
``--repeats`` calls after compilation. The table shows ratios; absolute numbers vary with the
machine's load.

    python benchmarks/throughput.py --repeats 2        # all cases: 49 min on 2 CPU cores
    python benchmarks/throughput.py --cases dqn-cartpole,pqn-cartpole --sizes 1,8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import call_seconds, child_json, jit_runs, write_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

# name: (algo, the experiment script whose settings it takes, its config and hparams names)
CASES = {
    "dqn-cartpole": ("dqn", "cartpole_dqn", "TUNED_CONFIG", "TUNED_HPARAMS"),
    "pqn-cartpole": ("pqn", "cartpole_pqn", "CONFIG", "HPARAMS"),
    "dqn-breakout": ("dqn", "minatar_dqn", "CONFIG", "HPARAMS"),
    "pqn-breakout": ("pqn", "minatar_pqn", "CONFIG", "HPARAMS"),
}
# Env steps summed over the runs of one training measurement (≈ 2–10 s each here), and the
# smallest per run (warm-up and two whole evaluation intervals must fit).
BUDGET = {
    "dqn-cartpole": 400_000,
    "pqn-cartpole": 2_000_000,
    "dqn-breakout": 60_000,
    "pqn-breakout": 300_000,
}
MIN_STEPS = {
    "dqn-cartpole": 4_000,
    "pqn-cartpole": 2 * 512,
    "dqn-breakout": 2_000,
    "pqn-breakout": 2 * 4096,
}
ACT_SECONDS = 0.5  # the length of one ceiling measurement (its vector steps are calibrated)
EVAL_STEPS = 100_000  # env steps per run of the evaluation-cost measurement


def case_settings(name: str, total_steps: int | None = None, evaluate: bool = False):
    """(module, config, hparams) of a case; ``total_steps`` per run; without ``evaluate``, two
    evaluation points of one episode (the least the loop allows)."""
    import importlib

    from qlearn import algos

    algo, script, config_name, hparams_name = CASES[name]
    experiment = importlib.import_module(script)
    algorithm = algos.get(algo)
    fields = dict(getattr(experiment, config_name))
    if "env_id" not in fields:
        fields["env_id"] = "Breakout-MinAtar"
    if total_steps is not None:
        fields["total_steps"] = total_steps
    if algo == "dqn":
        fields["learning_starts"] = min(fields.get("learning_starts", 5_000), 1_000)
        if name == "dqn-breakout":  # 100k transitions × 128 runs would not fit in 24 GiB
            fields["buffer_size"] = 20_000
    if not evaluate:
        fields |= {"num_evals": 2, "eval_episodes": 1}
    return (
        algorithm,
        algorithm.config(**fields),
        algorithm.hparams(**getattr(experiment, hparams_name)),
    )


def timed_calls(fn, args, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of a compiled function (after one warm-up call)."""
    import numpy as np

    return float(np.median(call_seconds(fn, args, repeats)))


def acting_ceiling(config, runs: int, network: bool, repeats: int) -> float:
    """Env steps/s of R runs × N envs acting: random actions, or ε-greedy (ε = 0.1) on the
    Q-network's values; auto-reset, no learning. The number of vector steps is a traced
    argument, calibrated so that one call lasts about ``ACT_SECONDS`` (a call of a few
    milliseconds measures this machine's jitter, not the loop)."""
    import jax
    import jax.numpy as jnp

    from qlearn import envs, policies, sweep
    from qlearn.algos import deep_q, rollout

    env, env_params = envs.make_for(config)
    num_actions = env.action_space(env_params).n
    obs_shape = env.observation_space(env_params).shape
    q_net = deep_q.make_network(config, num_actions, obs_shape)
    n = config.num_envs

    def act(key, steps):
        k_init, k_reset, k_loop = jax.random.split(key, 3)
        params = q_net.init(k_init, jnp.zeros((1, *obs_shape)))
        obs, state = rollout.reset_envs(env, env_params, k_reset, n)

        def body(_, carry):
            key, obs, state, total = carry
            key, k_act, k_step = jax.random.split(key, 3)
            if network:
                words = jax.random.bits(k_act, (n, policies.WORDS_PER_DECISION), jnp.uint32)
                action = policies.epsilon_greedy(words, q_net.apply(params, obs), 0.1)
            else:
                action = jax.random.randint(k_act, (n,), 0, num_actions)
            keys = jax.random.split(k_step, n)
            obs, state, tr = rollout.step_envs(env, env_params, keys, state, obs, action)
            return key, obs, state, total + jnp.sum(tr.reward)

        return jax.lax.fori_loop(0, steps, body, (k_loop, obs, state, jnp.float32(0.0)))[-1]

    keys = sweep.seed_keys(0, runs)
    fn = jit_runs(act).lower(keys, jnp.int32(0)).compile()
    probe = 200
    seconds = timed_calls(fn, (keys, jnp.int32(probe)), 1)
    steps = int(min(max(probe * ACT_SECONDS / seconds, probe), 2**30))
    seconds = timed_calls(fn, (keys, jnp.int32(steps)), repeats)
    return runs * n * steps / seconds


def compiled_training(name: str, runs: int, steps: int | None, evaluate: bool):
    """(config, hparams, keys, compiled ``jit_runs(train)``, compile seconds) of R runs."""
    from qlearn import sweep

    if steps is None:
        steps = max(BUDGET[name] // runs, MIN_STEPS[name])
    algorithm, config, hp = case_settings(name, steps, evaluate)
    fn = jit_runs(algorithm.make_train(config))
    keys = sweep.seed_keys(0, runs)
    start = time.perf_counter()
    compiled = fn.lower(keys, hp).compile()
    return config, hp, keys, compiled, time.perf_counter() - start


def training(name: str, runs: int, repeats: int, steps: int | None, evaluate: bool) -> dict:
    """Compile and time R runs (:func:`common.jit_runs`)."""
    config, hp, keys, compiled, compile_s = compiled_training(name, runs, steps, evaluate)
    seconds = timed_calls(compiled, (keys, hp), repeats)
    memory = compiled.memory_analysis()
    updates = config.total_updates if hasattr(config, "total_updates") else config.updates_per_run
    return {
        "config": config,
        "seconds": seconds,
        "compile_seconds": compile_s,
        "env_steps_per_second": runs * config.actual_total_steps / seconds,
        "updates_per_second": runs * updates / seconds,
        "xla_bytes": int(
            memory.temp_size_in_bytes + memory.output_size_in_bytes + memory.argument_size_in_bytes
        ),
    }


def evaluation_cost(name: str, runs: int, repeats: int) -> dict:
    """Run time of R runs with the experiment's evaluation schedule and with two one-episode
    evaluations, over the same env steps; the two programs are called alternately (A B A B)
    so that drifts in the machine's load hit both."""
    import jax
    import numpy as np

    _, config, _ = case_settings(name, evaluate=True)
    steps = min(config.total_steps, EVAL_STEPS)
    programs = {
        with_eval: compiled_training(name, runs, steps, evaluate=with_eval)
        for with_eval in (True, False)
    }
    times = {True: [], False: []}
    for _ in range(repeats + 1):  # the first round warms up
        for with_eval, (_, hp, keys, compiled, _) in programs.items():
            start = time.perf_counter()
            jax.block_until_ready(compiled(keys, hp))
            times[with_eval].append(time.perf_counter() - start)
    on = programs[True][0]
    return {
        "case": name,
        "runs": runs,
        "steps": steps,
        "num_evals": on.num_evals,
        "eval_episodes": on.eval_episodes,
        "seconds_with_eval": float(np.median(times[True][1:])),
        "seconds_without": float(np.median(times[False][1:])),
    }


def measure(name: str, runs: int, repeats: int, what: str) -> dict:
    """One child-process measurement."""
    if what == "train":
        train = training(name, runs, repeats, None, evaluate=False)
        config = train.pop("config")
        row = {
            "case": name,
            "runs": runs,
            "env_only": acting_ceiling(config, runs, False, repeats),
            "acting": acting_ceiling(config, runs, True, repeats),
            **train,
        }
    elif what == "compile":  # the persistent cache is enabled by the parent's flag
        row = {"case": name, "runs": runs}
        row["compile_seconds"] = compiled_training(name, runs, None, False)[-1]
    elif what == "eval":
        row = evaluation_cost(name, runs, repeats)
    row["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return row


def child(name: str, runs: int, repeats: int, what: str, cache: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--one", f"{name}:{runs}:{what}", "--repeats", str(repeats)]
    if cache:
        cmd += ["--cache", cache]
    return child_json(cmd)


CASE_NAMES = {
    "dqn-cartpole": "DQN CartPole",
    "pqn-cartpole": "PQN CartPole",
    "dqn-breakout": "DQN Breakout",
    "pqn-breakout": "PQN Breakout",
}


def readme(r: dict[str, Any]) -> list:
    import record  # experiments/record.py (benchmarks/common.py puts it on the path)

    """benchmarks/throughput.py: the table, the compile times and the cost of evaluation."""
    header = [
        "case", "runs", "env only", "acting", "training", "÷ acting", "updates/s",
        "per-run gain", "XLA MiB",
    ]  # fmt: skip
    rows, last = [], None
    for row in r["rows"]:
        case = CASE_NAMES[row["case"]] if row["case"] != last else ""
        last = row["case"]
        rows.append(
            [
                case,
                str(row["runs"]),
                record.si(row["env_only"]),
                record.si(row["acting"]),
                record.si(row["env_steps_per_second"]),
                f"{row['fraction_of_acting']:.2f}",
                record.si(row["updates_per_second"]),
                f"{row['per_run_gain']:.1f}×",
                f"{row['xla_bytes'] / 2**20:.0f}",
            ]
        )
    compiles = "; ".join(
        f"{CASE_NAMES[c['case']]} {c['cold']:.1f} s cold, {c['cached']:.1f} s cached"
        for c in r["compile"]
    )
    evals = "; ".join(
        f"{CASE_NAMES[e['case']]} × {e['runs']}: {e['overhead']:+.0%}" for e in r["evaluation"]
    )
    note = f"medians of {r['repeats']} after compilation; {r['device']}, {r['cpu_count']} cores"
    return [
        record.Table(header, rows, f"{note}; {record.at(r)}"),
        record.Text(
            f"\nCompile seconds of one run (cold, and in a new process with the persistent cache): "
            f"{compiles}. Cost of the experiments' evaluation schedule against two one-episode "
            f"evaluations (A B A B): {evals}.\n"
        ),
    ]


def show(
    args: argparse.Namespace, rows: list[dict], compiles: list[dict], evals: list[dict], sizes
) -> None:
    """Print the table (adding each row's fraction of the acting ceiling and its per-run gain
    over the smallest batch), the compile seconds and the evaluation overheads (added)."""
    print(
        "\nThroughput (env steps/s) and training as a fraction of the ceilings; medians of "
        f"{args.repeats} after compilation"
    )
    head = (
        f"{'case':13} {'runs':>4} {'env only':>10} {'acting':>10} {'training':>10} "
        f"{'/acting':>7} {'updates/s':>10} {'per-run×':>8} {'compile s':>9} {'XLA MiB':>8} "
        f"{'RSS MiB':>8}"
    )
    print(head)
    for row in rows:
        base = next(r for r in rows if r["case"] == row["case"] and r["runs"] == sizes[0])
        row["fraction_of_acting"] = row["env_steps_per_second"] / row["acting"]
        row["per_run_gain"] = row["env_steps_per_second"] / base["env_steps_per_second"]
        print(
            f"{row['case']:13} {row['runs']:>4} {row['env_only']:>10,.0f} {row['acting']:>10,.0f} "
            f"{row['env_steps_per_second']:>10,.0f} {row['fraction_of_acting']:>7.2f} "
            f"{row['updates_per_second']:>10,.0f} {row['per_run_gain']:>8.1f} "
            f"{row['compile_seconds']:>9.1f} {row['xla_bytes'] / 2**20:>8.0f} "
            f"{row['peak_rss_bytes'] / 2**20:>8.0f}"
        )
    print("\nCompile seconds of one run: cold, and in a new process with the persistent cache")
    for c in compiles:
        print(f"{c['case']:13} cold {c['cold']:5.1f}  cached {c['cached']:5.1f}")
    if evals:
        print(
            "\nEvaluation inside the loop: run time with the experiment's evaluation schedule "
            "over run time without"
        )
    for e in evals:
        e["overhead"] = e["seconds_with_eval"] / e["seconds_without"] - 1
        print(
            f"{e['case']:13} {e['runs']:>3} runs, {e['steps']:,} steps, {e['num_evals']} × "
            f"{e['eval_episodes']} episodes: {100 * e['overhead']:+.0f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--sizes", default="1,8,32,128")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/throughput.json")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:  # child process: one measurement
        if args.cache:
            from qlearn import devices

            os.environ["QLEARN_CACHE_DIR"] = args.cache
            devices.enable_compilation_cache(True)
        name, runs, what = args.one.split(":")
        print(json.dumps(measure(name, int(runs), args.repeats, what)))
        return

    cases = args.cases.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    rows, compiles, evals = [], [], []
    for name in cases:
        for runs in sizes:
            rows.append(child(name, runs, args.repeats, "train"))
            print(
                f"  {name} × {runs}: {rows[-1]['env_steps_per_second']:,.0f} env steps/s",
                file=sys.stderr,
            )
        with tempfile.TemporaryDirectory() as cache:
            first = child(name, 1, 1, "compile", cache)
            second = child(name, 1, 1, "compile", cache)
        compiles.append(
            {"case": name, "cold": first["compile_seconds"], "cached": second["compile_seconds"]}
        )
        if name.endswith("cartpole"):
            evals.extend(child(name, r, args.repeats, "eval") for r in (1, 8))

    show(args, rows, compiles, evals, sizes)
    import jax

    report = {
        "benchmark": "throughput",
        "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "repeats": args.repeats,
        "rows": rows,
        "compile": compiles,
        "evaluation": evals,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
