"""Sweeps: every configuration × seed of a search space, compiled once per static group, run in
fixed-shape batches spread over every device (and host), written chunk by chunk so that
nothing is lost when it is killed.

Layout of the work. The runs of a compiled group are flattened to one axis,
``run = config_position * num_seeds + seed``. Each device runs ONE compiled program,
``jit(vmap(train))`` over a fixed number of **lanes** (``spec.lanes``, default
:data:`DEFAULT_LANES`); a chunk is ``lanes × num_devices`` runs, the devices of a 1-D mesh (all
of ``jax.devices()``, across processes) each taking a contiguous slice of ``lanes`` runs, the
last chunk padded with copies of its last run.

Why the lanes are fixed and recorded. XLA compiles a batched program differently for different
batch sizes (a LayerNorm reduction over [64, 64, 128] is blocked differently from one over
[8, 64, 128]; measured on XLA:CPU, jax 0.10: ulp differences from a batch of 16 up that grow
into different actions). Within one compiled program every lane computes the same arithmetic,
whatever its position and its neighbours (tested). So a run's metrics are a function of
(config, hyperparameters, seed, lanes, backend) only: seed 5 alone (padded to the lanes) is
bitwise seed 5 of a 32-seed sweep, on any number of devices or processes, interrupted and
resumed or not. ``lanes`` is part of the run's identity, like the backend.

Why not one SPMD program over a ``NamedSharding``: on XLA:CPU (jax 0.10) a partitioned program
— ``jit`` with sharded inputs, ``shard_map`` or ``pmap`` — rounds differently (≈ 1e-7 in the
loss) from the unpartitioned one, so a sweep's results would depend on its device count. The
per-device program needs no communication between devices or hosts.

Seed n uses the key ``jax.random.fold_in(jax.random.key(0), n)``, and a sweep's seeds are
``base_seed, base_seed + 1, ...``: a run's key depends on its seed number only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qlearn import devices, runs
from qlearn.search import SearchError
from qlearn.spec import DEFAULT_LANES, Spec, SpecError, make_spec


class SweepError(ValueError):
    """A sweep that cannot be run as asked (lanes that do not fit, processes that disagree, ...)."""


def seed_keys(base_seed: int, num_seeds: int) -> jax.Array:
    """Keys of seeds base_seed .. base_seed + num_seeds - 1: ``fold_in(key(0), n)``, [num_seeds]."""
    root = jax.random.key(0)
    return jax.vmap(lambda n: jax.random.fold_in(root, n))(base_seed + jnp.arange(num_seeds))


def vmap_grid(train: Callable) -> Callable:
    """``train(key, hp)`` -> ``f(keys[S], hp[H]) -> (states, metrics)`` with axes [H, S, ...].

    The building block for notebooks; :func:`run` gives the same numbers, chunked, sharded and
    resumable."""
    return jax.vmap(jax.vmap(train, (0, None)), (None, 0))


def prepare(out: str | Path, spec: Spec, *, overwrite: bool = False) -> bool:
    """:func:`runs.prepare` for every process of a sweep: the processes first check that they
    run the same spec, then process 0 prepares the shared directory and tells the others how
    it went (True: finished already, nothing to do)."""
    devices.check_processes_agree("sweep spec", spec.to_json())
    if jax.process_count() == 1:
        return runs.prepare(out, spec, overwrite=overwrite)
    from jax.experimental import multihost_utils

    status, error = 0, None
    if jax.process_index() == 0:
        try:
            status = 1 if runs.prepare(out, spec, overwrite=overwrite) else 0
        except runs.RunDirError as e:
            status, error = 2, e
    status = int(np.asarray(multihost_utils.process_allgather(np.int32(status)))[0])
    if error is not None:
        raise error
    if status == 2:
        raise runs.RunDirError(f"process 0 cannot use {out} (see its error)")
    return status == 1


def _log(enabled: bool, msg: str) -> None:
    if enabled and jax.process_index() == 0:
        print(msg, flush=True)


@dataclasses.dataclass
class _Work:
    """What every step of one execution shares: the spec, where it runs, what is done."""

    spec: Spec
    path: Path | None
    keys: jax.Array
    mesh: list[jax.Device]
    local: list[jax.Device]
    chunks: list[runs.Chunk]

    @property
    def lanes(self) -> int:
        return self.spec.run_lanes

    @property
    def chunk_size(self) -> int:
        """Runs per chunk: one call of the compiled program on every device."""
        return self.lanes * len(self.mesh)


def execute(
    spec: Spec,
    out: str | Path | None = None,
    *,
    progress: bool | Callable = False,
    keep_state: bool = False,
    verbose: bool = False,
    argv: list[str] | None = None,
    trackers: Sequence[Any] = (),
    stop: Callable[[], bool] | None = None,
) -> runs.Run | None:
    """Run a spec (see :func:`qlearn.spec.make_spec`): every configuration × seed, group by
    group, chunk by chunk, on every device of every process.

    Each device runs ``spec.lanes`` runs per call of one compiled program; a chunk is one
    call on every device (``lanes × devices`` runs, the last padded). The steps: resume
    (:func:`_resume`), then per group compile (:func:`qlearn.devices.compile_lanes`) and per
    chunk run
    (:func:`_run_chunk`) and record (:func:`_record_chunk`), then finish (:func:`_finish`).

    Args:
      spec: what to run; its identity guards ``out`` (a different spec there is refused).
      out: the run directory: each finished chunk is written there at once, and a re-run of
        the same spec resumes from them (None: keep everything in memory).
      progress: a progress bar (True), or a callable ``make_train`` reports to.
      keep_state: also return the final training states (in memory only; one group).
      verbose: say what is compiled, resumed, recomputed and written.
      trackers: :mod:`qlearn.trackers` (TensorBoard, wandb) that get every evaluation point
        of every run as it happens (runs resumed from finished chunks first); closed at the
        end, also when the sweep fails. They read values only: the results are bitwise the
        same with or without them.
      stop: asked after each chunk is written; True ends the sweep there with
        KeyboardInterrupt (the CLI's SIGTERM flag), and a re-run resumes.

    Returns:
      The finished :class:`runs.Run` (on process 0; other processes return None).

    Raises:
      PlacementError: if one chunk's program does not fit in a device's memory
        (:func:`qlearn.devices.compile_lanes`), or the processes disagree on the work.
    """
    if keep_state and (out is not None or len(spec.groups) > 1):
        raise SweepError("keep_state needs an in-memory sweep (out=None) of one static group")
    work = _resume(spec, out, argv)
    groups = spec.compiled_groups()
    done = runs.done_runs(spec, work.chunks)
    live = _live(spec, work, trackers)
    try:
        return _execute(spec, work, groups, done, progress, keep_state, verbose, argv, live, stop)
    finally:
        if live is not None:
            live.close()


def _live(spec: Spec, work: _Work, trackers: Sequence[Any]) -> Any:
    """The live trackers' host end (process 0 only), told of the chunks already done."""
    if not trackers or jax.process_index() != 0:
        return None
    from qlearn.trackers import Live

    live = Live(spec, trackers)
    for chunk in work.chunks:
        live.chunk_done(chunk.group, chunk.runs, chunk.metrics)
    return live


def _execute(
    spec: Spec,
    work: _Work,
    groups: list,
    done: list[np.ndarray],
    progress: bool | Callable,
    keep_state: bool,
    verbose: bool,
    argv: list[str] | None,
    live: Any,
    stop: Callable[[], bool] | None,
) -> runs.Run | None:
    bar, report = _progress(spec, groups, done, progress, live)
    timing = {"compile_seconds": 0.0, "run_seconds": 0.0, "chunks": 0, "lanes": work.lanes}
    states: list[Any] = []
    run_started = None
    for g, (config, hp, _) in enumerate(groups):
        todo = np.flatnonzero(~done[g])
        if todo.size == 0:
            continue
        devices.check_processes_agree(f"runs left to do in group {g}", todo.tolist())
        _log(
            verbose,
            f"group {g}: compiling {work.lanes} lanes per device × {len(work.mesh)} device(s)",
        )
        t0 = time.perf_counter()
        compiled, measured = devices.compile_lanes(
            spec.algorithm, config, hp, work.keys, work.lanes, work.local, report, keep_state
        )
        timing["compile_seconds"] += time.perf_counter() - t0
        timing[f"group{g}_bytes_per_device"] = measured
        t_run = time.perf_counter()
        run_started = run_started or t_run
        if bar is not None:
            bar.start()
        for start in range(0, todo.size, work.chunk_size):
            idx = todo[start : start + work.chunk_size]
            rows, metrics, chunk_states = _run_chunk(work, g, compiled, hp, idx, report, keep_state)
            _record_chunk(work, g, rows, metrics, f"qlearn-g{g}-c{start}")
            if live is not None and rows is not None:
                live.chunk_done(g, rows, metrics)
            states.extend(chunk_states)
            timing["chunks"] += 1
            if stop is not None and stop():
                raise KeyboardInterrupt("stop requested")
        timing["run_seconds"] += time.perf_counter() - t_run
        if bar is not None:
            bar.stop()  # the next group's compile is no running time
    if bar is not None:
        bar.close()
    timing["run_started"] = run_started or time.perf_counter()
    final_states = states if keep_state else None
    result = _finish(work, timing, argv, final_states, len(groups[0][2]))
    if live is not None and result is not None:
        live.run_done(result)
    return result


def _resume(spec: Spec, out: str | Path | None, argv: list[str] | None) -> _Work:
    """Where the work runs, and the valid chunks ``out`` already holds (a corrupt one is
    quarantined and its runs recomputed)."""
    mesh = devices.mesh_devices()
    local = [d for d in mesh if d.process_index == jax.process_index()]
    devices.check_processes_agree("sweep spec", spec.to_json())
    path = Path(out) if out is not None else None
    chunks: list[runs.Chunk] = []
    if path is not None:
        if jax.process_index() == 0:
            runs.start(path, spec, argv)
        devices.barrier("qlearn-started")
        chunks, corrupt = runs.scan_chunks(path, quarantine=jax.process_index() == 0)
        for message in corrupt:
            _log(True, f"warning: {message}; its runs will be recomputed")
    work = _Work(spec, path, seed_keys(spec.base_seed, spec.num_seeds), mesh, local, chunks)
    if chunks:
        todo = int(sum((~d).sum() for d in runs.done_runs(spec, chunks)))
        _log(True, f"resuming: {spec.num_runs - todo} of {spec.num_runs} runs are already done")
    devices.barrier("qlearn-scanned")
    return work


def _progress(
    spec: Spec, groups: list, done: list[np.ndarray], progress: bool | Callable, live: Any
) -> tuple[Any, Callable | None]:
    """(the progress bar, if ``progress`` is True; what the compiled loops report to, None
    when nothing listens: then no callback is compiled at all)."""
    from qlearn.progress import ProgressBar, Reports

    bar = None
    if progress is True:
        todo = int(sum((~d).sum() for d in done))
        per_run, unit = spec.algorithm.progress_total(groups[0][0])
        bar = ProgressBar(
            todo * per_run, num_runs=todo, unit=unit, enabled=jax.process_index() == 0
        )
    report = bar if bar is not None else (progress if callable(progress) else None)
    if report is None and live is None:
        return bar, None
    return bar, Reports(report, live)


def _run_chunk(
    work: _Work,
    group: int,
    compiled: dict[jax.Device, Any],
    hp: Any,
    idx: np.ndarray,
    report: Callable | None,
    keep_state: bool,
) -> tuple[np.ndarray | None, dict[str, np.ndarray], list[Any]]:
    """Runs ``idx`` of group ``group`` (padded to a whole chunk with copies of its last run),
    one program call per local device: (this process's real runs, their metrics, their final
    states if kept). ``None`` rows when this process holds none of them."""
    lanes = work.lanes
    padded = np.concatenate([idx, np.full(work.chunk_size - idx.size, idx[-1])])
    if report is not None:
        report.share = idx.size / work.chunk_size
    parts = {d: padded[(j := work.mesh.index(d)) * lanes : (j + 1) * lanes] for d in work.local}
    inputs = {d: devices.inputs(hp, work.keys, part, d) for d, part in parts.items()}
    if report is not None and report.live is not None:  # which lane holds which run
        report.live.expect(group, [(parts[d], *inputs[d]) for d in work.local])
    pending = []
    for device in work.local:
        j = work.mesh.index(device)
        part = parts[device]
        valid = np.arange(j * lanes, (j + 1) * lanes) < idx.size
        pending.append((part, valid, compiled[device](*inputs[device])))
    rows, metrics_parts, state_parts = [], [], []
    for part, valid, (state, metrics) in pending:
        if valid.any():
            rows.append(part[valid])
            metrics_parts.append({k: np.asarray(v)[valid] for k, v in metrics.items()})
            if keep_state:  # on the device: PRNG key leaves have no numpy form
                rows_of = jnp.asarray(np.flatnonzero(valid))
                state_parts.append(jax.tree.map(lambda x, i=rows_of: x[i], state))
    if not rows:
        return None, {}, []
    merged = {k: np.concatenate([p[k] for p in metrics_parts]) for k in metrics_parts[0]}
    return np.concatenate(rows), merged, state_parts


def _record_chunk(
    work: _Work, group: int, rows: np.ndarray | None, metrics: dict[str, np.ndarray], name: str
) -> None:
    """Keep a finished chunk: written (and read back, checked) to the run directory, or in
    memory; then, once every process has finished it, the manifest."""
    if rows is not None:
        if work.path is not None:
            file = runs.write_chunk(work.path, group, rows, metrics, jax.process_index())
            work.chunks.append(runs.read_chunk(file))
        else:
            work.chunks.append(runs.Chunk("", group, rows, metrics, ""))
    devices.barrier(name)
    if work.path is not None and jax.process_index() == 0:
        if jax.process_count() > 1:  # the other processes' files of this chunk
            work.chunks[:], _ = runs.scan_chunks(work.path, quarantine=False)
        runs.write_manifest(work.path, work.spec, work.chunks, complete=False)


def _finish(
    work: _Work,
    timing: dict[str, Any],
    argv: list[str] | None,
    states: list[Any] | None,
    num_configs: int,
) -> runs.Run | None:
    """Assemble every chunk into the run's metrics; write them (process 0) or keep them in
    memory; stack the kept final states [config, seed, ...]."""
    devices.barrier("qlearn-finished")
    if jax.process_index() != 0:
        return None
    spec, path, chunks = work.spec, work.path, work.chunks
    if path is not None and jax.process_count() > 1:
        chunks, _ = runs.scan_chunks(path, quarantine=False)
    metrics = runs.assemble(spec, chunks)
    if path is None:
        result = runs.build(spec, metrics, timing=timing)
    else:
        result = runs.write(path, spec, metrics, timing=timing, argv=argv)
        runs.write_manifest(path, spec, chunks, complete=True)
    if states is not None:
        order = np.argsort(np.concatenate([c.runs for c in chunks]))
        stacked = jax.tree.map(lambda *xs: jnp.concatenate(xs)[order], *states)
        result.final_state = jax.tree.map(
            lambda x: x.reshape(num_configs, spec.num_seeds, *x.shape[1:]), stacked
        )
    return result


def run(
    config: Any,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    dist: Mapping[str, Any] | None = None,
    n_samples: int | None = None,
    search_seed: int = 0,
    hparams: Any = None,
    seeds: int = 8,
    base_seed: int = 0,
    lanes: int = DEFAULT_LANES,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool | Callable = False,
    keep_state: bool = False,
    verbose: bool = False,
    trackers: Sequence[Any] = (),
) -> runs.Run | None:
    """A sweep in one call: ``run(DQNConfig(), grid={"lr": [1e-4, 1e-3]}, seeds=32)``.

    Args:
      config: the algorithm's static config (its type says which algorithm).
      grid: name -> values; hyperparameters share one compile, static config fields make
        separate compiled groups.
      dist: a random search instead: name -> :class:`~qlearn.search.Dist` or text such as
        ``"loguniform:1e-5:1e-2"``.
      n_samples: how many configurations the random search draws from ``dist``.
      search_seed: the seed of the random search's draws.
      hparams: values of the hyperparameters neither swept nor sampled (default: defaults).
      seeds: seeds per configuration.
      base_seed: the seed numbering's origin.
      lanes: runs per device per compiled call (part of the runs' identity: seed n with the
        same lanes is the same run in any sweep).
      out: run directory (written chunk by chunk, resumable); None keeps it in memory.
      overwrite: replace a different run that ``out`` holds.
      progress: see :func:`execute`.
      keep_state: see :func:`execute`.
      verbose: see :func:`execute`.
      trackers: see :func:`execute`.

    Returns:
      A :class:`runs.Run`: ``metrics[name]`` with axes (config, seed, time), the summary, and
      the per-configuration values (``run.config_values``).
    """
    spec = make_spec(
        config,
        grid,
        dist=dist,
        n_samples=n_samples,
        search_seed=search_seed,
        hparams=hparams,
        seeds=seeds,
        base_seed=base_seed,
        lanes=lanes,
    )
    if out is not None and prepare(out, spec, overwrite=overwrite):
        _log(True, f"{out} already holds this sweep, finished: nothing to do")
        return runs.load(out)
    return execute(
        spec,
        out,
        progress=progress,
        keep_state=keep_state,
        verbose=verbose,
        trackers=trackers,
    )


__all__ = [
    "DEFAULT_LANES",
    "SearchError",
    "SpecError",
    "SweepError",
    "execute",
    "run",
    "seed_keys",
    "vmap_grid",
]
