"""Bare env steps per second of every suite qlearn adapts (:mod:`qlearn.envs.suites`) beside gymnax
CartPole-v1 and MinAtar Breakout, at 1, 8 and 32 vmapped runs of one env each, and the replay
memory one DQN run needs for each env's observations.

Steps/s: random actions through the adapter's auto-resetting ``step`` (gymnax's), the same
measurement as the acting ceiling of ``benchmarks/throughput.py`` (its ``acting_ceiling``: the
number of vector steps calibrated so a call lasts about 0.5 s, the median of ``--repeats``).
Each env is measured in a process of its own. Replay memory: the bytes of DQN's buffer of
``--buffer-size`` transitions (obs and next obs stored apart, so truncation stays exact), from
the shapes alone, and how many runs of it fit in this machine's memory budget (what
``qlearn.devices`` lets one compiled chunk use).

    python benchmarks/suite_throughput.py                 # ≈ 10 min on 2 CPU cores
    python benchmarks/suite_throughput.py --envs CartPole-v1,jumanji:Snake-v1 --sizes 1,8
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import child_json, write_report

ENVS = (
    "CartPole-v1",
    "Breakout-MinAtar",
    "navix:Navix-Empty-8x8-v0",
    "navix:Navix-DoorKey-5x5-v0",
    "xminigrid:MiniGrid-Empty-8x8",
    "xminigrid:MiniGrid-DoorKey-5x5",
    "craftax:Craftax-Classic-Symbolic-v1",
    "jumanji:Snake-v1",
)
SIZES = (1, 8, 32)


def replay_bytes(env_id: str, buffer_size: int) -> int:
    """Bytes of the replay buffer of one DQN run on ``env_id`` with ``buffer_size`` transitions
    (the storage of DQN's own initial state, from shapes alone)."""
    import jax

    from qlearn.algos import dqn

    config = dqn.DQNConfig(env_id=env_id, buffer_size=buffer_size, network="mlp")
    init, _ = dqn.make_stages(config)
    state = jax.eval_shape(init, jax.random.key(0), dqn.DQNHParams())
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state.source.buffer.storage)))


def measure(env_id: str, sizes: list[int], repeats: int, buffer_size: int) -> dict:
    import jax
    from throughput import acting_ceiling

    from qlearn import devices
    from qlearn.algos import dqn

    config = dqn.DQNConfig(env_id=env_id, num_envs=1, network="mlp")
    steps = {str(r): acting_ceiling(config, r, network=False, repeats=repeats) for r in sizes}
    per_run = replay_bytes(env_id, buffer_size)
    budget = devices.memory_budget(jax.devices()[0])
    return {
        "env": env_id,
        "steps_per_second": steps,
        "replay_bytes_per_run": per_run,
        "runs_that_fit": int(budget // per_run),
        "memory_budget_bytes": int(budget),
    }


def readme(r: dict[str, Any]) -> list:
    import record  # experiments/record.py (benchmarks/common.py puts it on the path)

    """benchmarks/suite_throughput.py: bare env steps/s of each suite beside gymnax's."""
    sizes = [str(n) for n in r["sizes"]]
    header = ["env"] + [f"steps/s, {n} run{'s' if n != '1' else ''}" for n in sizes]
    header += [f"× CartPole, {sizes[-1]} runs", f"replay per run ({r['buffer_size']:,})"]
    header += ["runs that fit"]
    rows = [
        [f"`{row['env']}`"]
        + [record.si(row["steps_per_second"][n]) for n in sizes]
        + [
            f"{row['vs_cartpole'][sizes[-1]]:.3g}" if "vs_cartpole" in row else "—",
            f"{row['replay_bytes_per_run'] / 2**20:,.0f} MiB",
            f"{row['runs_that_fit']:,}",
        ]
        for row in r["rows"]
    ]
    note = (
        "random actions through the auto-resetting step, one env per run; runs that fit: "
        f"replay buffers in {r['rows'][0]['memory_budget_bytes'] / 2**30:.1f} GiB, the "
        f"memory one compiled chunk may use here; {record.at(r)}"
    )
    return [record.Table(header, rows, note)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default=",".join(ENVS))
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--buffer-size", type=int, default=100_000)
    parser.add_argument("--out", default="benchmarks/results/suite_throughput.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        print(json.dumps(measure(args.child, sizes, args.repeats, args.buffer_size)))
        return
    rows = []
    for env_id in args.envs.split(","):
        cmd = [sys.executable, __file__, "--child", env_id, "--sizes", args.sizes]
        cmd += ["--repeats", str(args.repeats), "--buffer-size", str(args.buffer_size)]
        row = child_json(cmd)
        rows.append(row)
        rates = ", ".join(f"{r}: {v:,.0f}" for r, v in row["steps_per_second"].items())
        print(
            f"{env_id}: steps/s at {rates}; replay {row['replay_bytes_per_run'] / 2**20:,.0f} MiB"
        )
    base = next((r for r in rows if r["env"] == "CartPole-v1"), None)
    if base is not None:
        for row in rows:
            row["vs_cartpole"] = {
                k: v / base["steps_per_second"][k] for k, v in row["steps_per_second"].items()
            }
    write_report(
        Path(args.out),
        {"sizes": sizes, "buffer_size": args.buffer_size, "repeats": args.repeats, "rows": rows},
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    main()
