"""Batched execution: every hyperparameter configuration × seed of one static config as ONE
compiled, vmapped program.

Seed i of a sweep uses ``jax.random.fold_in(jax.random.key(base_seed), i)``, so a run's key
does not depend on how many seeds run beside it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qlearn import hparams as hparams_lib


def seed_keys(base_seed: int, num_seeds: int) -> jax.Array:
    """Keys of seeds 0..num_seeds-1: ``fold_in(key(base_seed), i)``, shape [num_seeds]."""
    base = jax.random.key(base_seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(num_seeds))


def vmap_grid(train: Callable) -> Callable:
    """``train(key, hp)`` -> ``f(keys[S], hp[H]) -> (states, metrics)`` with axes [H, S, ...]."""
    return jax.vmap(jax.vmap(train, (0, None)), (None, 0))


@dataclasses.dataclass
class BatchResult:
    """Metrics of a batched run, with the time it took to compile and to run."""

    metrics: dict[str, np.ndarray]
    """name -> array [H (config), S (seed), T (time)]."""
    compile_seconds: float
    run_seconds: float
    run_started: float
    """``time.perf_counter()`` when the compiled program started (to time host callbacks)."""
    final_state: Any = None
    """The runs' final states (leaves [H, S, ...]) when asked for with ``keep_state``."""


def run(
    make_train: Callable,
    config: Any,
    hparams: Any,
    *,
    num_seeds: int,
    base_seed: int = 0,
    progress: Callable | None = None,
    keep_state: bool = False,
) -> BatchResult:
    """Run every configuration in ``hparams`` (leaves [H]) with ``num_seeds`` seeds.

    Compiles once (timed separately), then runs; only the metrics leave the device, and the
    final states too with ``keep_state`` (e.g. to inspect learned Q-tables or networks).
    """
    hparams_lib.validate(hparams)
    if hasattr(config, "validate_hparams"):
        config.validate_hparams(hparams)
    train = make_train(config, progress=progress)
    batched = jax.jit(
        lambda keys, hp: (
            vmap_grid(train)(keys, hp) if keep_state else (None, vmap_grid(train)(keys, hp)[1])
        )
    )
    keys = seed_keys(base_seed, num_seeds)
    hp = hparams_lib.to_arrays(hparams)
    start = time.perf_counter()
    compiled = batched.lower(keys, hp).compile()
    compiled_at = time.perf_counter()
    final_state, metrics = jax.block_until_ready(compiled(keys, hp))
    done = time.perf_counter()
    return BatchResult(
        metrics={k: np.asarray(v) for k, v in metrics.items()},
        compile_seconds=compiled_at - start,
        run_seconds=done - compiled_at,
        run_started=compiled_at,
        final_state=final_state,
    )
