"""Run directories: the on-disk format of runs and sweeps; write, load, reproduce.

A run directory holds
  config.json    the spec (algo, base static config, one hyperparameter entry per
                 configuration, static groups, seeds) and its provenance (versions, backend,
                 devices, git commit, command);
  chunks/        one ``.npz`` per finished chunk of runs, each with the metrics of its runs and
                 a SHA-256 of their bytes (a corrupt or partial file is detected, never used);
  manifest.json  which chunks are done, their checksums, and whether the sweep is complete;
  metrics.npz    one array per metric with axes (config, seed, time), diverged runs masked
                 (NaN after the evaluation where they diverged), and ``diverged_at`` [config,
                 seed] (evaluation index, −1 for none);
  summary.json   per configuration: hyperparameters and final / best / area-under-curve
                 returns (mean, median, IQM, 95% bootstrap CI over the runs that did not
                 diverge), diverged counts, timings;
  records.csv    the same per configuration and seed, one row each (a tidy table);
  learning_curves.{png,pdf}, and sensitivity.{png,pdf} / heatmap.{png,pdf} for swept grids,
                 search.{png,pdf} for a random search (final IQM against each sampled
                 hyperparameter).
Every file is written atomically (temporary file, then rename): a killed sweep never leaves a
half-written file behind, and re-running the same command resumes from the finished chunks.

One job per module, each using only those above it: :mod:`~qlearn.runs.files` (atomic writes,
provenance), :mod:`~qlearn.runs.directory` (the directory's lifecycle),
:mod:`~qlearn.runs.chunks` (the chunk format, checksums, manifest, assembly),
:mod:`~qlearn.runs.summary` (statistics, records, tables), :mod:`~qlearn.runs.figures`; this
module puts them together (:func:`write`, :func:`load`) and re-exports their public names, so
``from qlearn import runs; runs.load(path)`` is the one import a user needs.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from qlearn.runs.chunks import (
    Chunk,
    CorruptChunk,
    assemble,
    done_runs,
    read_chunk,
    scan_chunks,
    write_chunk,
    write_manifest,
)
from qlearn.runs.directory import CHUNKS, OUTPUTS, RunDirError, prepare, read_meta, start
from qlearn.runs.figures import figure, grid_axes, grid_table
from qlearn.runs.files import atomic_write, cpu, provenance, write_csv, write_json, write_report
from qlearn.runs.summary import (
    improvement_matrix,
    labels,
    mask_diverged,
    ranking,
    records,
    rerun_command,
    search_report,
    shown_values,
    statistic,
    summarize,
    summary_table,
)
from qlearn.spec import AXES, Spec


@dataclasses.dataclass
class Run:
    """A finished run or sweep, from memory or read back by :func:`load`.

    ``metrics[name]`` has the named ``axes`` (config, seed, time); ``hparams[name]`` and
    ``config_values[i]`` say what configuration i is.
    """

    path: Path | None
    spec: Spec
    provenance: dict[str, Any]
    metrics: dict[str, np.ndarray]
    summary: dict[str, Any] | None
    final_state: Any = None
    """The runs' final training states (leaves [config, seed, ...]), when asked for."""

    @property
    def axes(self) -> tuple[str, ...]:
        return AXES

    @property
    def hparams(self) -> dict[str, np.ndarray]:
        """name -> [config] hyperparameter values."""
        return {k: np.asarray(v) for k, v in self.spec.hparams.items()}

    @property
    def config_values(self) -> list[dict[str, Any]]:
        """Per configuration: every hyperparameter and static override."""
        return self.spec.config_values()

    def records(self) -> list[dict[str, Any]]:
        """A tidy table: one record per (configuration, seed) with its configuration's values,
        the final / best / area-under-curve return and divergence."""
        return records(self.spec, self.metrics)

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`records` as CSV (atomically)."""
        return write_csv(Path(path), self.records())


def build(
    spec: Spec, metrics: dict[str, np.ndarray], *, timing: dict[str, float] | None = None
) -> Run:
    """A finished run in memory: metrics with diverged runs masked, and its summary."""
    metrics = mask_diverged(metrics)
    summary = {
        "statistic": statistic(spec),
        "configs": summarize(spec, metrics),
        "probability_of_improvement": improvement_matrix(spec, metrics),
        "timing": timing or {},
    }
    if not spec.is_grid:  # a random search: its ranking, and the best as a command
        summary["search"] = search_report(spec, summary["configs"])
    return Run(None, spec, provenance(), metrics, summary)


def write(
    path: str | Path,
    spec: Spec,
    metrics: dict[str, np.ndarray],
    *,
    timing: dict[str, float] | None = None,
    argv: list[str] | None = None,
) -> Run:
    """Write metrics.npz (diverged runs masked), summary.json, records.csv and the figures."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    start(path, spec, argv)
    run = build(spec, metrics, timing=timing)
    buf = io.BytesIO()
    np.savez(buf, **run.metrics)
    atomic_write(path / "metrics.npz", buf.getvalue())
    figure(path, spec, run.metrics)
    write_csv(path / "records.csv", records(spec, run.metrics))
    write_json(path / "summary.json", run.summary)
    run.path = path
    run.provenance = read_meta(path).get("provenance", {})
    return run


def load(path: str | Path) -> Run:
    """Read a run directory back: metrics with axes (config, seed, time), the spec, the
    summary; ``Run.records()`` / ``Run.to_csv`` give the tidy table."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise RunDirError(f"{path} holds no qlearn run (no config.json)")
    meta = read_meta(path)
    metrics = {}
    if (path / "metrics.npz").exists():
        with np.load(path / "metrics.npz") as data:
            metrics = {k: data[k] for k in data.files}
    summary_file = path / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
    return Run(path, Spec.from_json(meta["spec"]), meta.get("provenance", {}), metrics, summary)


def compare(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray]) -> dict[str, bool]:
    """Bitwise equality of each metric array (NaNs compare equal to identical NaNs)."""
    out = {}
    for name in sorted(set(expected) | set(actual)):
        a, b = expected.get(name), actual.get(name)
        out[name] = (
            a is not None
            and b is not None
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    return out


__all__ = [
    "CHUNKS",
    "OUTPUTS",
    "Chunk",
    "CorruptChunk",
    "Run",
    "RunDirError",
    "Spec",
    "assemble",
    "atomic_write",
    "build",
    "compare",
    "cpu",
    "done_runs",
    "figure",
    "grid_axes",
    "grid_table",
    "improvement_matrix",
    "labels",
    "load",
    "mask_diverged",
    "prepare",
    "provenance",
    "ranking",
    "read_chunk",
    "read_meta",
    "records",
    "rerun_command",
    "scan_chunks",
    "search_report",
    "shown_values",
    "start",
    "statistic",
    "summarize",
    "summary_table",
    "write",
    "write_chunk",
    "write_csv",
    "write_json",
    "write_manifest",
    "write_report",
]
