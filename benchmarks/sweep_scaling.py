"""How a sweep's cost grows with its number of runs: DQN on CartPole-v1, 1, 8, 64 and 256 runs
(configurations × seeds) at a fixed number of env steps each, relative to one run.

Each size runs in its own process (so its peak memory is its own) and is timed after
compilation. The 1-run baseline is ``jax.jit(train)`` of a single run, no vmap; the sweep
engine itself never runs fewer than 2 runs per device (see ``qlearn.sweep``), so a 1-run sweep
costs what 2 do.

    python benchmarks/sweep_scaling.py                   # prints a table, writes JSON
    python benchmarks/sweep_scaling.py --steps 20000 --sizes 1,8,64,256
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from common import child_json, write_report

CONFIG = dict(total_steps=20_000, learning_starts=2_000, num_evals=4, eval_episodes=5)


def measure(runs: int, steps: int, repeats: int) -> dict:
    """In this process: compile and time ``runs`` runs (median of ``repeats``)."""
    import jax
    import numpy as np

    from qlearn import devices, sweep
    from qlearn.algos import dqn

    config = dqn.DQNConfig(**(CONFIG | {"total_steps": steps}))
    hp = dqn.DQNHParams()
    if runs == 1:  # the baseline: one run, no vmap, no sweep engine
        train = jax.jit(dqn.make_train(config))
        key = sweep.seed_keys(0, 1)[0]
        start = time.perf_counter()
        compiled = train.lower(key, hp).compile()
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(compiled(key, hp))
            times.append(time.perf_counter() - start)
        analysis = compiled.memory_analysis()
        xla_bytes = analysis.temp_size_in_bytes + analysis.output_size_in_bytes
    else:
        lrs = [1e-3, 5e-4, 2e-3, 3e-4]
        configs = min(4, runs)
        devices.enable_compilation_cache(True)  # repeats load the program compiled by the first
        times, compiles = [], []
        for _ in range(repeats):
            result = sweep.run(config, {"lr": lrs[:configs]}, seeds=runs // configs, lanes=runs)
            times.append(result.summary["timing"]["run_seconds"])
            compiles.append(result.summary["timing"]["compile_seconds"])
        compile_s = compiles[0]
        timing = result.summary["timing"]
        xla_bytes = timing["group0_bytes_per_device"]
    return {
        "runs": runs,
        "seconds": float(np.median(times)),
        "compile_seconds": compile_s,
        "xla_bytes": int(xla_bytes),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "env_steps": runs * config.actual_total_steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,8,64,256")
    parser.add_argument("--steps", type=int, default=CONFIG["total_steps"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/sweep_scaling.json")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:  # child process: one size
        print(json.dumps(measure(args.one, args.steps, args.repeats)))
        return

    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        cmd = [
            sys.executable,
            __file__,
            "--one",
            str(n),
            "--steps",
            str(args.steps),
            "--repeats",
            str(args.repeats),
        ]
        rows.append(child_json(cmd))
        print(f"  measured {n} runs: {rows[-1]['seconds']:.2f} s", file=sys.stderr)
    base = rows[0]
    print(
        f"DQN on CartPole-v1, {args.steps:,} env steps per run, median of {args.repeats}, "
        "after compilation"
    )
    print(
        f"{'runs':>5} {'seconds':>8} {'× 1 run':>8} {'per-run gain':>12} {'env steps/s':>12} "
        f"{'XLA MiB':>8} {'peak RSS MiB':>12}"
    )
    for r in rows:
        ratio = r["seconds"] / base["seconds"]
        r["time_ratio"] = ratio
        r["per_run_speedup"] = r["runs"] / ratio
        print(
            f"{r['runs']:>5} {r['seconds']:>8.2f} {ratio:>8.2f} {r['per_run_speedup']:>11.1f}× "
            f"{r['env_steps'] / r['seconds']:>12,.0f} {r['xla_bytes'] / 2**20:>8.1f} "
            f"{r['peak_rss_bytes'] / 2**20:>12.0f}"
        )
    import jax

    report = {
        "benchmark": "sweep_scaling",
        "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
        "cpu_count": __import__("os").cpu_count(),
        "steps_per_run": args.steps,
        "rows": rows,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
