"""What the benchmarks share: each measurement runs in a child process of its own (so its
compilation, caches and peak memory are its own) and prints one JSON line last."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the benchmarks' readme(report) functions build their README blocks from experiments/record.py
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))


def child_json(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd`` and return the JSON object on the last line of its output; exit with its
    error output if it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def jit_runs(fn: Callable) -> Any:
    """``jax.jit`` of R runs of ``fn(key, *shared)``: vmapped over keys [R], the other
    arguments shared, and for R = 1 ``fn`` itself with the run axis added to its outputs (how
    one would run one seed: XLA:CPU compiles a batch of one to slower kernels than no batch,
    ≈ 1.3–1.5× on PQN CartPole with jax 0.10.2)."""
    import jax

    def runs(keys: Any, *shared: Any) -> Any:
        if keys.shape[0] == 1:  # static: the shape is known when tracing
            return jax.tree.map(lambda x: x[None], fn(keys[0], *shared))
        return jax.vmap(fn, in_axes=(0,) + (None,) * len(shared))(keys, *shared)

    return jax.jit(runs)


def call_seconds(fn: Callable, args: tuple, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of a compiled ``fn(*args)``, after one warm-up call
    (each waited for with ``jax.block_until_ready``)."""
    import time

    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return times


def write_report(path: str | Path, report: dict[str, Any]) -> None:
    """Write a benchmark's results as JSON (creating the folder), with the commit and command
    they were measured at first (as the experiments' results files), and say where."""
    from qlearn import runs

    provenance = runs.provenance()
    stamped = {
        "commit": provenance["git_commit"],
        "command": " ".join(provenance["command"]),
        "provenance": provenance,
    } | report
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamped, indent=2) + "\n")
    print(f"wrote {path}")
