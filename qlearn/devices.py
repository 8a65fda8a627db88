"""Where a sweep's programs run: the 1-D mesh of every device of every process, a device's
memory budget, the per-device compile of ``jit(vmap(train))`` over a fixed number of lanes
(refused before it runs if it does not fit), the inputs of a slice of runs on one device, and
the agreement and barriers between the processes of a multi-host sweep, and JAX's persistent
compilation cache.

One compiled program per device, no SPMD partitioning: see :mod:`qlearn.sweep` for why.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from qlearn import hparams as hparams_lib
from qlearn.algos.algorithm import Algorithm


class PlacementError(ValueError):
    """Work that cannot be placed as asked: lanes that do not fit in a device's memory, or
    processes of one sweep that disagree on what to run."""


MEMORY_FRACTION = 0.9
"""Share of a device's free memory the compiled program of one chunk may use."""


def mesh_devices() -> list[jax.Device]:
    """Every device of every process, in mesh order: by process, then id. A process's own
    devices are therefore a contiguous slice of the run axis."""
    return sorted(jax.devices(), key=lambda d: (d.process_index, d.id))


def memory_budget(device: jax.Device, fraction: float = MEMORY_FRACTION) -> int:
    """Bytes a chunk may use on ``device``: ``fraction`` of what it has free (GPU/TPU: its
    allocator's limit minus what is in use; CPU: the host's available memory shared among
    its local devices)."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(fraction * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(fraction * available / max(1, jax.local_device_count()))


def inputs(hp: Any, keys: jax.Array, runs_idx: np.ndarray, device: jax.Device) -> tuple:
    """The keys and hyperparameters of runs ``runs_idx`` (config position × seeds + seed) of a
    group whose batched hparams are ``hp``, on ``device``."""
    seeds = keys.shape[0]
    hp = jax.tree.map(lambda x: np.asarray(x)[runs_idx // seeds], hp)
    return (
        jax.device_put(keys[runs_idx % seeds], device),
        jax.device_put(hparams_lib.to_arrays(hp), device),
    )


def compile_lanes(
    algorithm: Algorithm,
    config: Any,
    hp: Any,
    keys: jax.Array,
    lanes: int,
    devices: Sequence[jax.Device],
    progress: Callable | None,
    keep_state: bool,
) -> tuple[dict[jax.Device, Any], int | None]:
    """jit(vmap(train)) over ``lanes`` runs, compiled for each local device (in parallel);
    returns the executables and the bytes one program needs (XLA's memory analysis).

    Raises:
      PlacementError: if the program needs more than :data:`MEMORY_FRACTION` of a device's
        free memory (checked after compiling, before anything runs).
    """
    train = algorithm.make_train(config, progress=progress)

    def batch(k: jax.Array, h: Any) -> Any:
        state, metrics = jax.vmap(train)(k, h)
        return (state, metrics) if keep_state else (None, metrics)

    fn = jax.jit(batch)
    idx = np.zeros(lanes, np.int64)

    def one(device: jax.Device) -> Any:
        k = jax.ShapeDtypeStruct(
            (lanes,), keys.dtype, sharding=jax.sharding.SingleDeviceSharding(device)
        )
        h = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(
                (lanes,), x.dtype, sharding=jax.sharding.SingleDeviceSharding(device)
            ),
            hparams_lib.to_arrays(jax.tree.map(lambda x: np.asarray(x)[idx], hp)),
        )
        return fn.lower(k, h).compile()

    with concurrent.futures.ThreadPoolExecutor(max(1, len(devices))) as pool:
        compiled = dict(zip(devices, pool.map(one, devices), strict=True))
    analysis = next(iter(compiled.values())).memory_analysis()
    if analysis is None:
        return compiled, None
    measured = int(
        analysis.temp_size_in_bytes
        + analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
    )
    budget = min(memory_budget(d) for d in devices)
    if measured > budget:
        raise PlacementError(
            f"{lanes} lanes need {measured / 2**20:,.0f} MiB per device, more than "
            f"{MEMORY_FRACTION:.0%} of its free memory ({budget / 2**20:,.0f} MiB): run "
            f"fewer lanes (at most {max(1, budget * lanes // measured)}; lanes are part of "
            "the run's identity, so compare runs made with the same lanes)"
        )
    return compiled, measured


def _digest(obj: Any) -> np.ndarray:
    text = json.dumps(obj, sort_keys=True).encode()
    return np.frombuffer(hashlib.sha256(text).digest(), np.uint8)


def check_processes_agree(what: str, obj: Any) -> None:
    """In a multi-process sweep, raise :class:`PlacementError` unless every process holds the same
    ``obj`` (compared by SHA-256, through a collective)."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    digests = np.asarray(multihost_utils.process_allgather(_digest(obj)))
    differ = [p for p in range(len(digests)) if not np.array_equal(digests[p], digests[0])]
    if differ:
        raise PlacementError(
            f"the processes disagree on the {what}: process(es) {differ} differ from process 0 "
            "(run the same command, with the same arguments and code, on every host)"
        )


def barrier(name: str) -> None:
    """Wait until every process of the sweep gets here (no-op in one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def enable_compilation_cache(enabled: bool) -> None:
    """JAX's persistent compilation cache: a re-run of the same program skips compilation."""
    if not enabled:
        return
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qlearn" / "jax"
    jax.config.update("jax_compilation_cache_dir", os.environ.get("QLEARN_CACHE_DIR", str(default)))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
