"""How far each benchmark case runs from this machine's peak: the FLOPs of one gradient update
and of one acting step (all envs) from XLA's own cost analysis of the compiled program, the rate
they run at, and that rate as a fraction of two peaks this benchmark measures itself, batched
as the runs are (R lanes vmapped, like ``jit(vmap(train))``):

- **machine peak**: R lanes of a 512 × 512 × 512 float32 matmul, the best this backend does on
  large products;
- **shape peak**: R lanes of the case's own widest dense product (rows = the update's batch,
  the first hidden layer's width in and out), what the update could reach if it were nothing
  but that product.

Each case and lane count runs in a child process of its own. The update is timed as a
``lax.scan`` of updates on one fixed batch (the learner's own ``update``: the loss, its
gradient, the optimiser and the target network), the acting step as a scan of ε-greedy env
steps of all the envs (``sources.act``), so neither includes the replay or rollout around it.
XLA's cost analysis counts a loop's body once: the FLOPs here come from the update and the step
compiled alone, without loops around them (JAX's threefry loops inside them are counted once,
and are a few hundred FLOPs).

    python benchmarks/roofline.py                       # prints a table, writes JSON
    python benchmarks/roofline.py --cases dqn-huber,pqn --lanes 1,8
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

import common
import peers
from common import call_seconds, child_json, write_report

CARTPOLE = dict(env_id="CartPole-v1")
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {  # name -> (algo, config, hp)
    "dqn-huber": ("dqn", CARTPOLE, {}),
    "dqn-c51": ("dqn", CARTPOLE | dict(loss="c51", head="categorical"), dict(v_max=100.0)),
    "dqn-iqn": ("dqn", CARTPOLE | dict(loss="iqn", head="iqn"), {}),
    "dqn-iqn-shared": ("dqn", CARTPOLE | dict(loss="iqn", head="iqn", iqn_shared_levels=True), {}),
    "pqn": ("pqn", *peers.QLEARN["pqn"]),  # Rejax's PQN settings (benchmarks/peers.py)
    "dqn-cnn": ("dqn", dict(env_id="Breakout-MinAtar", network="cnn"), {}),
}
MACHINE = 512
REPEATS = 5


def best_seconds(fn: Any, *args: Any) -> float:
    """The fastest of :data:`REPEATS` calls of compiled ``fn`` (after one warm-up call)."""
    return min(call_seconds(fn, args, REPEATS))


NOT_KERNELS = ("parameter", "constant", "get-tuple-element", "tuple", "bitcast")


def cost(fn: Any, *args: Any) -> tuple[float, float, int]:
    """(FLOPs, bytes accessed, kernels) of one call of ``jax.jit(fn)``: XLA's cost analysis of
    the compiled program (its bytes: every kernel's operands and outputs, what crosses memory
    between kernels), and the instructions of its entry computation that run as kernels
    (fusions, dots, loops and the like; not parameters, constants, tuples and bitcasts): on
    XLA:CPU, what a GPU would launch one after another, roughly."""
    import jax

    compiled = jax.jit(fn).lower(*args).compile()
    text = compiled.as_text()
    entry = text[text.index("\nENTRY") :]
    entry = entry[: entry.index("\n}")]
    ops = re.findall(r"^\s+(?:ROOT )?%\S+ = \S+ ([\w-]+)\(", entry, re.MULTILINE)
    analysis = compiled.cost_analysis()
    kernels = sum(op not in NOT_KERNELS for op in ops)
    return float(analysis["flops"]), float(analysis["bytes accessed"]), kernels


def over_lanes(fn: Any, lanes: int) -> Any:
    """``jax.jit`` of ``fn`` over ``lanes`` lanes: vmapped over the leading axis of every
    argument, or for one lane ``fn`` itself (XLA:CPU compiles a batch of one to slower
    kernels than no batch, as ``common.jit_runs`` notes)."""
    import jax

    return jax.jit(fn if lanes == 1 else jax.vmap(fn))


def matmul_rate(lanes: int, rows: int, width: int, steps: int) -> float:
    """FLOP/s of ``lanes`` vmapped [rows, width] × [width, width] float32 products, as a scan
    of ``steps`` dependent products (x ← x + 10⁻⁶ x W, so none can be hoisted and the values
    stay finite)."""
    import jax

    def chain(a: jax.Array, w: jax.Array) -> jax.Array:
        return jax.lax.scan(lambda x, _: (x + 1e-6 * (x @ w), None), a, length=steps)[0]

    key_a, key_w = jax.random.split(jax.random.key(0))
    lead = () if lanes == 1 else (lanes,)
    a = jax.random.normal(key_a, (*lead, rows, width))
    w = jax.random.normal(key_w, (*lead, width, width))
    seconds = best_seconds(over_lanes(chain, lanes), a, w)
    return lanes * steps * 2 * rows * width * width / seconds


def measure(case: str, lanes: int, steps: int) -> dict[str, Any]:
    """In this process: one case at ``lanes`` runs (see the module docstring)."""
    import jax
    import jax.numpy as jnp

    from qlearn import algos
    from qlearn import hparams as hparams_lib
    from qlearn.algos import sources

    algo_name, fields, hps = CASES[case]
    algo = algos.get(algo_name)
    config = algo.config(**fields)
    hp = hparams_lib.to_arrays(algo.hparams(**hps))
    module = sys.modules[algo.make_train.__module__]
    agent = module.agent(config)
    parts = agent.build(hp)
    learner, prog = parts.learner, agent.prog
    shapes = sources.example_batch(parts.source, learner)
    keys = jax.random.split(jax.random.key(0), 3)
    batch = jax.tree.map(  # a fixed batch: normal floats, index 0 for the integer leaves
        lambda s: (
            jax.random.normal(keys[0], s.shape, s.dtype)
            if jnp.issubdtype(s.dtype, jnp.floating)
            else jnp.zeros(s.shape, s.dtype)
        ),
        shapes,
    )
    stream_keys = {name: keys[1] for name in learner.streams}
    state = learner.init(keys[2])
    update_flops, update_bytes, update_kernels = cost(learner.update, state, batch, stream_keys)
    loop = sources.start_envs(prog, keys[1])

    def act(p: Any, lp: Any, k: jax.Array) -> Any:
        return sources.act(prog, hp, p, lp, k)

    act_flops, act_bytes, act_kernels = cost(act, state.params, loop, keys[0])

    def updates(s: Any) -> Any:
        step = lambda c, _: (learner.update(c, batch, stream_keys)[0], None)
        return jax.lax.scan(step, s, length=steps)[0]

    def acting(p: Any, lp: Any, k: jax.Array) -> Any:
        def body(carry: tuple, _: Any) -> tuple[tuple, None]:
            k, lp = carry
            k, lp, _ = sources.act(prog, hp, p, lp, k)
            return (k, lp), None

        return jax.lax.scan(body, (k, lp), length=steps)[0]

    def lanes_of(tree: Any) -> Any:
        return tree if lanes == 1 else jax.tree.map(lambda x: jnp.stack([x] * lanes), tree)

    update_s = best_seconds(over_lanes(updates, lanes), lanes_of(state)) / steps
    act_args = lanes_of((state.params, loop, keys[0]))
    act_s = best_seconds(over_lanes(acting, lanes), *act_args) / steps
    rows = shapes.action.size  # the update's batch (DQN's batch, PQN's minibatch)
    width = config.hidden_sizes[0] if config.hidden_sizes else 128
    machine = matmul_rate(lanes, MACHINE, MACHINE, 20)
    shape = matmul_rate(lanes, rows, width, 2000)
    updates = getattr(config, "updates_per_run", None) or config.total_updates
    train = common.jit_runs(algo.make_train(config))
    program = train.lower(jax.random.split(keys[0], lanes), algo.hparams(**hps)).compile()
    memory = program.memory_analysis()
    program_bytes = sum(
        getattr(memory, f"{kind}_size_in_bytes") for kind in ("argument", "output", "temp")
    )
    return {
        "case": case,
        "lanes": lanes,
        "num_envs": config.num_envs,
        "updates_per_env_step": updates / config.actual_total_steps,
        "bytes_per_lane": program_bytes / lanes,
        "update_kernels": update_kernels,
        "act_kernels": act_kernels,
        "update_flops": update_flops,
        "act_flops": act_flops,
        "update_bytes": update_bytes,
        "act_bytes": act_bytes,
        "update_seconds": update_s,
        "act_seconds": act_s,
        "update_flops_per_second": lanes * update_flops / update_s,
        "act_flops_per_second": lanes * act_flops / act_s,
        "machine_peak": machine,
        "shape": [rows, width, width],
        "shape_peak": shape,
    }


DEVICES = {  # name -> what the model assumes of one device (see docs/scale.md)
    "H100": dict(memory=80e9, rate=0.3 * 67e12, bandwidth=0.5 * 3.35e12, kernel=4e-6),
    "TPU v5e": dict(memory=16e9, rate=0.3 * 197e12, bandwidth=0.5 * 819e9, kernel=1.5e-6),
}
"""Per device: its memory in bytes; the rate its small batched float32 products are assumed to
run at (30% of the dense peak: 67 TFLOP/s of FP32 FMA on an H100 SXM, 197 TFLOP/s on a v5e chip,
whose float32 matmuls run as bfloat16 passes at JAX's default precision); the memory bandwidth
its kernels are assumed to reach (half of 3.35 TB/s, of 819 GB/s); and the time of one kernel
of a loop body (launch and the dependency wait: its lower bound whatever the lanes)."""
MEMORY_SHARE = 0.9  # of a device's memory one program may use (qlearn.devices.MEMORY_FRACTION)
RUN_STEPS = 1_000_000


def model(row: dict[str, Any], device: str) -> dict[str, Any]:
    """A sweep's cost on ``device`` by the model of docs/scale.md: as many lanes as its memory
    holds (the program's bytes per lane, measured), each vector step of the envs taking
    max(kernels × kernel time, lanes × FLOPs / rate, lanes × bytes / bandwidth) for the acting
    step and for each of its updates. Returns which term bounds the update, lanes, env steps
    per second per device, and runs of :data:`RUN_STEPS` env steps per device-hour."""
    d = DEVICES[device]
    lanes = int(MEMORY_SHARE * d["memory"] // row["bytes_per_lane"])
    updates = row["updates_per_env_step"] * row["num_envs"]  # per vector step

    def terms(part: str) -> dict[str, float]:
        return {
            "kernels": row[f"{part}_kernels"] * d["kernel"],
            "FLOPs": lanes * row[f"{part}_flops"] / d["rate"],
            "bytes": lanes * row[f"{part}_bytes"] / d["bandwidth"],
        }

    update = terms("update")
    step = max(terms("act").values()) + updates * max(update.values())
    env_steps = lanes * row["num_envs"] / step
    return {
        "bound": max(update, key=update.get),
        "lanes": lanes,
        "env_steps_per_second": env_steps,
        "runs_per_hour": env_steps * 3600 / RUN_STEPS,
    }


def readme(r: dict[str, Any]) -> list:
    import record  # experiments/record.py (benchmarks/common.py puts it on the path)

    """benchmarks/roofline.py: each case's FLOPs, rate and fraction of the measured peaks."""
    header = [
        "case", "lanes", "update MFLOP", "µs / update", "update GFLOP/s", "% machine peak",
        "% shape peak", "peaks GFLOP/s", "act kFLOP", "act GFLOP/s",
    ]  # fmt: skip
    rows = [
        [
            f"`{row['case']}`",
            str(row["lanes"]),
            f"{row['update_flops'] / 1e6:.2f}",
            f"{row['update_seconds'] * 1e6:,.0f}",
            f"{row['update_flops_per_second'] / 1e9:.1f}",
            f"{100 * row['update_flops_per_second'] / row['machine_peak']:.0f}%",
            f"{100 * row['update_flops_per_second'] / row['shape_peak']:.0f}%",
            f"{row['machine_peak'] / 1e9:.0f} / {row['shape_peak'] / 1e9:.0f}",
            f"{row['act_flops'] / 1e3:.1f}",
            f"{row['act_flops_per_second'] / 1e9:.2f}",
        ]
        for row in r["rows"]
    ]
    note = (
        "FLOPs per lane from XLA's cost analysis; rates over all lanes; peaks: the machine's "
        f"({MACHINE}³ matmuls) / the shape's, measured in the same process; {record.at(r)}"
    )
    by_case = {row["case"]: row for row in r["rows"] if row["lanes"] == max(
        x["lanes"] for x in r["rows"] if x["case"] == row["case"])}  # fmt: skip
    model_header = ["case", "FLOP / env step", "bytes / env step", "MiB / lane", "kernels"]
    for device in DEVICES:
        model_header += [f"{device}: lanes", "update bound by", "runs / hour"]
    model_rows = []
    for case, row in by_case.items():
        per_step = {
            kind: row[f"act_{kind}"] / row["num_envs"]
            + row[f"update_{kind}"] * row["updates_per_env_step"]
            for kind in ("flops", "bytes")
        }
        cells = [
            f"`{case}`",
            f"{per_step['flops'] / 1e3:,.0f}k",
            f"{per_step['bytes'] / 1e3:,.0f}k",
            f"{row['bytes_per_lane'] / 2**20:.1f}",
            f"{row['update_kernels']} / {row['act_kernels']}",
        ]
        for device in DEVICES:
            m = model(row, device)
            cells += [f"{m['lanes']:,}", m["bound"], f"{m['runs_per_hour']:,.0f}"]
        model_rows.append(cells)
    model_note = (
        f"the model of docs/scale.md, not a measurement: runs of {RUN_STEPS:,} env steps per "
        "device-hour; FLOPs and bytes moved per env step (XLA's cost analysis), bytes held per "
        "lane (its memory analysis of the vmapped training program), kernels of an update / "
        "of an acting step, from the table above's file; per device the assumptions of "
        "benchmarks/roofline.py's DEVICES"
    )
    tables = [record.Table(header, rows, note), record.Table(model_header, model_rows, model_note)]
    return [tables[0], record.Text("\n"), tables[1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--lanes", default="1,8")
    parser.add_argument("--steps", type=int, default=200, help="updates (acting steps) timed")
    parser.add_argument("--out", default="benchmarks/results/roofline.json")
    parser.add_argument("--one", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:  # child process: one (case, lanes)
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.steps)))
        return
    cases = args.cases.split(",")
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise SystemExit(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    rows = []
    for case in cases:
        for lanes in (int(n) for n in args.lanes.split(",")):
            cmd = [sys.executable, __file__, "--one", case, str(lanes), "--steps", str(args.steps)]
            rows.append(child_json(cmd))
            row = rows[-1]
            print(
                f"  {case:<15} {lanes} lane(s): {row['update_flops'] / 1e6:7.2f} MFLOP/update, "
                f"{row['update_seconds'] * 1e6:8.0f} µs, "
                f"{row['update_flops_per_second'] / 1e9:6.1f} GFLOP/s "
                f"({100 * row['update_flops_per_second'] / row['machine_peak']:.0f}% of "
                f"{row['machine_peak'] / 1e9:.0f}, "
                f"{100 * row['update_flops_per_second'] / row['shape_peak']:.0f}% of shape "
                f"{row['shape']} {row['shape_peak'] / 1e9:.0f})",
                file=sys.stderr,
                flush=True,
            )
    write_report(args.out, {"benchmark": "roofline", "steps": args.steps, "rows": rows})


if __name__ == "__main__":
    main()
