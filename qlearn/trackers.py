"""Trackers: a run's learning curves in TensorBoard or wandb, one tracked run per
(configuration, seed), named by its values, with its hyperparameters attached.

Two ways in, one set of values:

- **live** (``qlearn train/sweep ... --tensorboard DIR`` or ``--wandb PROJECT``): the deep-Q
  loops send every evaluation point to the host through the callback the progress bar uses
  (:func:`qlearn.algos.evaluation.report`); :class:`Live` says whose point it is (the run's key
  bits and hyperparameters, matched against the lanes of the chunk running) and passes it on.
  Algorithms that send no points (tabular, prediction: short runs) are logged when each chunk
  is finished, from the chunk's metrics.
- **after the fact** (``qlearn export DIR --tensorboard OUT``): :func:`export` reads a finished
  run's ``metrics.npz``, or a partial run's finished chunks.

Either way a tracked run gets, at step = env steps (episodes for tabular methods), every
per-evaluation metric of ``metrics.npz`` except ``diverged``, and only the points that
``metrics.npz`` keeps: a diverged run stops at the evaluation where it diverged (those are NaN
there), and a NaN value (no episode finished, a loss that does not report that entry) is not
a point. So what a tracker shows is ``metrics.npz``, value for value (tested both ways).

The trackers are optional dependencies (``pip install 'qlearn[trackers]'``): tensorboard
(event files and the HParams plugin, no TensorFlow needed) and wandb (``WANDB_MODE=offline``
works with no network).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from qlearn import runs
from qlearn.spec import Spec


class TrackerError(RuntimeError):
    """A tracker that cannot be used (not installed, an unwritable directory, ...)."""


@dataclasses.dataclass(frozen=True)
class TrackedRun:
    """One (configuration, seed) of a spec, as a tracker names and describes it."""

    config: int
    seed: int
    name: str
    """``lr=0.001,loss=huber/seed=3`` (``seed=3`` alone when nothing is swept)."""
    values: dict[str, Any]
    """Every hyperparameter and static override of the configuration (an indexed one also by
    the entry it picks: ``loss=c51`` beside ``loss_index=1``), the seed, the algorithm and the
    env id."""


def tracked_runs(spec: Spec) -> list[list[TrackedRun]]:
    """The :class:`TrackedRun` of every run of ``spec``, indexed ``table[config][seed]``."""
    out = []
    where = {"algo": spec.algo, "env_id": spec.config.get("env_id", "")}
    rows = zip(runs.labels(spec), spec.config_values(), runs.shown_values(spec), strict=True)
    for c, (label, values, swept) in enumerate(rows):
        prefix = re.sub(r"\s*,\s*", ",", label).replace("/", "_")
        shown = {k: _scalar(v) for k, v in values.items()}
        shown |= {k: text for k, text in swept if k not in values}  # loss=huber, not loss_index
        row = []
        for s in range(spec.num_seeds):
            seed = spec.base_seed + s
            name = f"{prefix}/seed={seed}" if prefix else f"seed={seed}"
            row.append(TrackedRun(c, seed, name, shown | {"seed": seed} | where))
        out.append(row)
    return out


def _scalar(value: Any) -> bool | int | float | str:
    """A configuration value as a tracker's hyperparameter (tuples and lists as ``64x64``)."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return "x".join(map(str, value))
    return str(value)


class Tracker(Protocol):
    """Where tracked points go: ``log`` a run's values at a step, then ``close``."""

    def log(self, run: TrackedRun, step: int, values: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise TrackerError(
            f"this tracker needs the {module} package: pip install 'qlearn[trackers]'"
        ) from None


class TensorBoard:
    """TensorBoard event files: ``logdir/<run name>/`` per tracked run, its hyperparameters in
    the HParams plugin (the experiment's list of them in ``logdir`` itself)."""

    def __init__(self, logdir: str | Path):
        _require("tensorboard")
        from tensorboard.plugins.hparams import summary_v2

        self._summary_v2 = summary_v2
        self.logdir = Path(logdir)
        _check_writable(self.logdir)
        self._writers: dict[str, Any] = {}
        self._hparams: set[str] = set()
        self._tags: set[str] = set()

    def _writer(self, directory: Path) -> Any:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        key = str(directory)
        if key not in self._writers:
            directory.mkdir(parents=True, exist_ok=True)
            self._writers[key] = EventFileWriter(key)
        return self._writers[key]

    def _write(self, directory: Path, summary: Any, step: int) -> None:
        from tensorboard.compat.proto import event_pb2

        event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        self._writer(directory).add_event(event)

    def log(self, run: TrackedRun, step: int, values: dict[str, float]) -> None:
        from tensorboard.compat.proto import summary_pb2

        directory = self.logdir / run.name
        if str(directory) not in self._writers:  # a new run: its hyperparameters first
            self._write(directory, self._summary_v2.hparams_pb(run.values, trial_id=run.name), 0)
            self._hparams.update(run.values)
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in values.items()]
        )
        self._write(directory, summary, step)
        self._tags.update(values)

    def close(self) -> None:
        """Write the HParams experiment (every hyperparameter, every tag logged: the plugin
        infers the same from the runs if a killed job never gets here), close the files."""
        if self._tags:
            v2 = self._summary_v2
            experiment = v2.hparams_config_pb(
                [v2.HParam(n) for n in sorted(self._hparams)],
                [v2.Metric(t) for t in sorted(self._tags)],
            )
            self._write(self.logdir, experiment, 0)
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


class Wandb:
    """One wandb run per tracked run, named as in TensorBoard, grouped by ``group`` (the sweep),
    with the configuration's values as its config. ``WANDB_MODE=offline`` keeps the runs on
    disk (``WANDB_DIR``, default ``./wandb``) for ``wandb sync``."""

    def __init__(self, project: str, *, group: str):
        self._wandb = _require("wandb")
        if not project or "/" in project:
            raise TrackerError(f"--wandb {project!r}: give a project name (no '/')")
        if os.environ.get("WANDB_DIR"):
            _check_writable(Path(os.environ["WANDB_DIR"]))
        self.project, self.group = project, group
        self._runs: dict[str, Any] = {}

    def log(self, run: TrackedRun, step: int, values: dict[str, float]) -> None:
        if run.name not in self._runs:
            self._runs[run.name] = self._wandb.init(
                project=self.project,
                group=self.group,
                name=run.name,
                job_type=str(run.values["algo"]),
                config=run.values,
                reinit="create_new",
                settings=self._wandb.Settings(console="off", silent=True),
            )
        self._runs[run.name].log(values, step=int(step))

    def close(self) -> None:
        for tracked in self._runs.values():
            tracked.finish()
        self._runs.clear()


def _check_writable(directory: Path) -> None:
    """Raise TrackerError unless ``directory`` can be made and written to (checked before any
    work starts, so that nothing is half-done when it cannot)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".qlearn-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise TrackerError(f"cannot write to {directory}: {e.strerror or e}") from None


# -- which values are tracked ---------------------------------------------------------------

SKIPPED = ("diverged",)
"""Per-evaluation metrics not tracked: a tracked run stops where it diverged instead."""


def points(
    spec: Spec, run_ids: Sequence[tuple[int, int]], metrics: dict[str, np.ndarray]
) -> Iterator[tuple[int, int, int, int, dict[str, float]]]:
    """The tracked points of some runs: ``(config, seed number, t, step, values)`` for every
    evaluation point t of each run that ``metrics.npz`` keeps (before the run diverged), with
    its non-NaN per-evaluation values.

    Args:
      spec: the runs' spec.
      run_ids: [R] (config index, seed number) of the rows of ``metrics``.
      metrics: name -> [R, T] raw metrics (a chunk's, or ``metrics.npz``'s rows).
    """
    masked = runs.mask_diverged(dict(metrics))
    first = masked.get("diverged_at")
    x, _, _, _ = spec.algorithm.learning_curve({k: v[None] for k, v in masked.items()})
    num_evals = len(x)
    names = [k for k, v in masked.items() if v.ndim == 2 and v.shape[1] == num_evals]
    names = [k for k in names if k not in SKIPPED and k != "diverged_at"]
    for r, (config, seed) in enumerate(run_ids):
        stop = num_evals if first is None or first[r] < 0 else int(first[r])
        for t in range(stop):
            values = {k: float(masked[k][r, t]) for k in names}
            yield config, seed, t, int(x[t]), {k: v for k, v in values.items() if v == v}


def run_points(
    run: runs.Run,
) -> Iterator[tuple[int, int, int, int, dict[str, float]]]:
    """:func:`points` of a run directory: its ``metrics.npz`` when it finished, else its
    finished chunks (a partial or interrupted sweep)."""
    spec = run.spec
    if run.metrics:
        num_configs, num_seeds = spec.num_configs, spec.num_seeds
        ids = [(c, spec.base_seed + s) for c in range(num_configs) for s in range(num_seeds)]
        flat = {
            k: v.reshape(num_configs * num_seeds, -1)
            for k, v in run.metrics.items()
            if k != "diverged_at"
        }
        yield from points(spec, ids, flat)
        return
    chunks, _ = runs.scan_chunks(run.path, quarantine=False) if run.path else ([], [])
    groups = spec.compiled_groups()
    for chunk in sorted(chunks, key=lambda c: (c.group, int(c.runs.min()))):
        yield from points(spec, chunk_ids(spec, groups[chunk.group][2], chunk.runs), chunk.metrics)


def chunk_ids(spec: Spec, configs: Sequence[int], rows: np.ndarray) -> list[tuple[int, int]]:
    """(config index, seed number) of a group's flat run indices ``rows``
    (``run = config_position * num_seeds + seed``, see :mod:`qlearn.sweep`)."""
    seeds = spec.num_seeds
    return [(configs[int(r) // seeds], spec.base_seed + int(r) % seeds) for r in rows]


def export(path: str | Path, trackers: Sequence[Tracker]) -> int:
    """Log a finished or partial run directory to ``trackers``; returns the points logged.

    Raises RunDirError if ``path`` holds no qlearn run, or nothing finished yet."""
    run = runs.load(path)
    table = tracked_runs(run.spec)
    count = 0
    try:
        for config, seed, _, step, values in run_points(run):
            tracked = table[config][seed - run.spec.base_seed]
            for tracker in trackers:
                tracker.log(tracked, step, values)
            count += 1
    finally:
        for tracker in trackers:
            tracker.close()
    return count


# -- live ------------------------------------------------------------------------------------


def _lane_id(key_bits: Any, hp_leaves: Sequence[Any]) -> bytes:
    return b"".join(np.ascontiguousarray(np.asarray(x)).tobytes() for x in (key_bits, *hp_leaves))


class Live:
    """The host end of the compiled loops' evaluation points, for ``trackers``.

    :func:`qlearn.sweep.execute` tells it the lanes of each chunk before the chunk runs
    (:meth:`expect`: each lane's key bits and hyperparameters, and the run it holds), passes
    it every point the loop sends (:meth:`__call__`), and hands it each finished chunk
    (:meth:`chunk_done`), which logs whatever no point brought (the whole chunk, for an
    algorithm that sends none; a chunk already done when a sweep resumes). Padding lanes
    repeat a real run: each (run, evaluation) is logged once.
    """

    def __init__(self, spec: Spec, trackers: Sequence[Tracker]):
        self.spec = spec
        self.trackers = list(trackers)
        self._table = tracked_runs(spec)
        self._configs = [configs for _, _, configs in spec.compiled_groups()]
        self._lanes: dict[bytes, list[tuple[int, int]]] = {}
        self._logged: dict[tuple[int, int], int] = {}  # run -> evaluations logged
        self._stopped: set[tuple[int, int]] = set()  # runs that diverged
        self.live_points = 0
        """how many points came live from the compiled loop (the rest came from chunks)."""

    def expect(self, group: int, lanes: Sequence[tuple[np.ndarray, Any, Any]]) -> None:
        """The lanes of the next chunk of ``group``, per device ``(rows, keys, hp)``: lane i
        holds flat run ``rows[i]`` with key ``keys[i]`` and hyperparameters ``hp[i]`` (the
        program's inputs)."""
        import jax

        configs = self._configs[group]
        self._lanes = {}
        for rows, keys, hp in lanes:
            bits = np.asarray(jax.random.key_data(keys))
            leaves = [np.asarray(x) for x in jax.tree.leaves(hp)]
            for i, run in enumerate(chunk_ids(self.spec, configs, rows)):
                ids = self._lanes.setdefault(_lane_id(bits[i], [x[i] for x in leaves]), [])
                if run not in ids:
                    ids.append(run)

    def __call__(self, point: dict[str, Any]) -> None:
        import jax

        lane = _lane_id(point["key"], jax.tree.leaves(point["hp"]))
        metrics = {k: np.asarray(v) for k, v in point["metrics"].items()}
        t = int(point["index"])
        for run in self._lanes.get(lane, ()):
            if run in self._stopped or self._logged.get(run, 0) != t:
                continue  # a padding lane's copy, or a run that diverged
            if bool(metrics.get("diverged", False)):
                self._stopped.add(run)
                continue
            values = {k: float(v) for k, v in metrics.items() if v.ndim == 0 and k not in SKIPPED}
            self._log(
                run, t, int(metrics["env_steps"]), {k: v for k, v in values.items() if v == v}
            )
            self.live_points += 1

    def _log(self, run: tuple[int, int], t: int, step: int, values: dict[str, float]) -> None:
        tracked = self._table[run[0]][run[1] - self.spec.base_seed]
        for tracker in self.trackers:
            tracker.log(tracked, step, values)
        self._logged[run] = t + 1

    def chunk_done(self, group: int, rows: np.ndarray, metrics: dict[str, np.ndarray]) -> None:
        """A finished chunk (its real runs ``rows`` and their metrics [R, T]): log the points
        of its runs that no live point brought."""
        ids = chunk_ids(self.spec, self._configs[group], rows)
        evals = len(self.spec.algorithm.learning_curve({k: v[None] for k, v in metrics.items()})[0])
        if all(self._logged.get(run, 0) == evals for run in ids):
            return  # every point came live
        for config, seed, t, step, values in points(self.spec, ids, metrics):
            if self._logged.get((config, seed), 0) <= t:
                self._log((config, seed), t, step, values)

    def run_done(self, run: runs.Run) -> None:
        """The finished sweep: log what neither points nor this process's chunks brought
        (the runs other processes of a multi-host sweep ran)."""
        evals = len(self.spec.algorithm.learning_curve(run.metrics)[0])
        everyone = [(r.config, r.seed) for row in self._table for r in row]
        if all(self._logged.get(r, 0) == evals for r in everyone):
            return  # every point came live or with its chunk
        for config, seed, t, step, values in run_points(run):
            if self._logged.get((config, seed), 0) <= t:
                self._log((config, seed), t, step, values)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
