"""Craftax's speed-up from optimistic resets (:meth:`qlearn.envs.suites.SuiteEnv.step_batch`):
env steps/s of one run of N envs acting at random, with gymnax's auto-reset (a fresh world
generated for every env at every step, kept where the episode ended) and with M fresh worlds
per step shared by the envs that ended, side by side in one invocation, each measurement in a
process of its own (the acting ceiling of ``benchmarks/throughput.py``).

    python benchmarks/optimistic_resets.py                     # ≈ 5 min on 2 CPU cores
    python benchmarks/optimistic_resets.py --envs 16 --resets 0,1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import child_json, write_report

ENV = "craftax:Craftax-Classic-Symbolic-v1"


def measure(env_id: str, num_envs: int, resets: int, repeats: int) -> dict:
    from throughput import acting_ceiling

    from qlearn.algos import dqn

    kwargs = {"optimistic_resets": resets} if resets else {}
    config = dqn.DQNConfig(env_id=env_id, num_envs=num_envs, network="mlp", env_kwargs=kwargs)
    rate = acting_ceiling(config, 1, network=False, repeats=repeats)
    return {"num_envs": num_envs, "resets": resets, "steps_per_second": rate}


def readme(r: dict[str, Any]) -> list:
    import record  # experiments/record.py (benchmarks/common.py puts it on the path)

    """benchmarks/optimistic_resets.py: Craftax steps/s with M fresh worlds per step."""
    header = ["envs N", "fresh worlds per step M", "steps/s", "× auto-reset"]
    rows = [
        [
            f"{row['num_envs']}",
            "every env (gymnax's auto-reset)" if row["resets"] == 0 else f"{row['resets']}",
            record.si(row["steps_per_second"]),
            "1" if row["resets"] == 0 else f"{row['vs_auto_reset']:.2f}",
        ]
        for row in r["rows"]
    ]
    note = f"`{r['env']}`, one run of N envs, random actions, median of {r['repeats']} calls; "
    note += record.at(r)
    return [record.Table(header, rows, note)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=ENV)
    parser.add_argument("--envs", default="16,64", help="N, envs in the run")
    parser.add_argument("--resets", default="0,1,4", help="M per step (0: gymnax's auto-reset)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/optimistic_resets.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n, m = (int(x) for x in args.child.split(","))
        print(json.dumps(measure(args.env, n, m, args.repeats)))
        return
    rows = []
    for n in (int(x) for x in args.envs.split(",")):
        base = None
        for m in (int(x) for x in args.resets.split(",")):
            cmd = [sys.executable, __file__, "--env", args.env, "--child", f"{n},{m}"]
            row = child_json([*cmd, "--repeats", str(args.repeats)])
            base = row["steps_per_second"] if m == 0 else base
            row["vs_auto_reset"] = row["steps_per_second"] / base if base else None
            rows.append(row)
            print(
                f"N={n}, M={m or 'every env'}: {row['steps_per_second']:,.0f} steps/s"
                + (f" ({row['vs_auto_reset']:.2f}× auto-reset)" if m else "")
            )
    write_report(Path(args.out), {"env": args.env, "repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    main()
