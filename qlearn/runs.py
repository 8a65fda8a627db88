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
  learning_curves.{png,pdf}, and sensitivity.{png,pdf} / heatmap.{png,pdf} for swept grids.
Every file is written atomically (temporary file, then rename): a killed sweep never leaves a
half-written file behind, and re-running the same command resumes from the finished chunks.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

import qlearn
from qlearn import algos, losses, plots, stats
from qlearn import hparams as hparams_lib

AXES = ("config", "seed", "time")
FORMAT = 3
"""3: the spec records ``lanes`` (2: it did not; such directories still load)."""
DEFAULT_LANES = 8
"""Runs in each device's compiled program when a spec does not say otherwise. The same on every
backend, so that the default identity of a run does not depend on the machine; raise it on an
accelerator (``lanes=256``), where more lanes cost little more than one."""
CHUNKS = "chunks"


class RunDirError(RuntimeError):
    """The output directory cannot be used for this run."""


@dataclasses.dataclass
class Run:
    """A finished run or sweep, from memory or read back by :func:`load`.

    ``metrics[name]`` has the named ``axes`` (config, seed, time); ``hparams[name]`` and
    ``config_values[i]`` say what configuration i is.
    """

    path: Path | None
    spec: dict[str, Any]
    provenance: dict[str, Any]
    metrics: dict[str, np.ndarray]
    summary: dict[str, Any] | None
    final_state: Any = None
    """The runs' final training states (leaves [config, seed, ...]), when asked for."""

    @property
    def axes(self) -> tuple[str, ...]:
        return tuple(self.spec.get("metric_axes", AXES))

    @property
    def hparams(self) -> dict[str, np.ndarray]:
        """name -> [config] hyperparameter values."""
        return {k: np.asarray(v) for k, v in self.spec["hparams"].items()}

    @property
    def config_values(self) -> list[dict[str, Any]]:
        """Per configuration: every hyperparameter and static override."""
        return config_values(self.spec)

    def records(self) -> list[dict[str, Any]]:
        """A tidy table: one record per (configuration, seed) with its configuration's values,
        the final / best / area-under-curve return and divergence."""
        return records(self.spec, self.metrics)

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`records` as CSV (atomically)."""
        return write_csv(Path(path), self.records())


def _jsonable(value: Any) -> Any:
    """A config value as JSON: tuples as lists, functions (user losses) as 'module:name'."""
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if callable(value):
        return losses.spec_name(value)
    return value


def make_spec(
    algo: str,
    config: Any,
    hparams: Any,
    *,
    num_seeds: int,
    base_seed: int,
    swept: list[str] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    group_of: list[int] | None = None,
    search: dict[str, Any] | None = None,
    lanes: int = DEFAULT_LANES,
) -> dict[str, Any]:
    """The JSON identity of a run or sweep: what determines its metrics (given the backend).

    ``hparams`` is a batched hparams instance or name -> per-configuration lists; ``overrides``
    the static config changes of each compiled group and ``group_of`` each configuration's
    group (default: one group, the base config). ``lanes``: the runs of each device's compiled
    program, the one fact about execution that is part of the identity (XLA compiles a batch
    of 16 differently from one of 8); how many devices, processes or chunks share the work is
    not: results are the same however it runs.
    """
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"lanes = {lanes!r} must be an integer ≥ 1")
    cfg = {f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}
    lists = hparams if isinstance(hparams, dict) else hparams_lib.to_lists(hparams)
    num_configs = len(next(iter(lists.values())))
    overrides = overrides or [{}]
    group_of = list(range(1)) * num_configs if group_of is None else list(group_of)
    return {
        "format": FORMAT,
        "algo": algo,
        "config": cfg,
        "hparams": {k: list(v) for k, v in lists.items()},
        "groups": [
            {
                "overrides": {k: _jsonable(v) for k, v in o.items()},
                "configs": [i for i, gi in enumerate(group_of) if gi == g],
            }
            for g, o in enumerate(overrides)
        ],
        "swept": list(swept or []),
        "search": search or {"kind": "grid"},
        "seeds": {"base_seed": base_seed, "num_seeds": num_seeds},
        "lanes": lanes,
        "metric_axes": list(AXES),
    }


def lanes_of(spec: dict[str, Any]) -> int:
    """Runs per device per compiled call. A spec of format 2 (written before lanes were
    recorded) ran chunks sized to free memory: re-running it uses :data:`DEFAULT_LANES` unless
    the caller sets ``spec["lanes"]``, and is not promised to be bitwise."""
    return int(spec.get("lanes", DEFAULT_LANES))


def select(spec: dict[str, Any], config: int, seed: int) -> dict[str, Any]:
    """The spec of ONE run of ``spec``: configuration index ``config``, seed number ``seed``
    (its key is the same as in the sweep, and so are its lanes). Raises ValueError naming the
    valid ranges."""
    num_configs = len(next(iter(spec["hparams"].values())))
    base, count = spec["seeds"]["base_seed"], spec["seeds"]["num_seeds"]
    if not 0 <= config < num_configs:
        raise ValueError(f"--config {config}: this run has configurations 0..{num_configs - 1}")
    if not base <= seed < base + count:
        raise ValueError(f"--seed {seed}: this run has seeds {base}..{base + count - 1}")
    group = next(g for g in _groups_of(spec) if config in g["configs"])
    return spec | {
        "hparams": {k: [v[config]] for k, v in spec["hparams"].items()},
        "groups": [{"overrides": group["overrides"], "configs": [0]}],
        "seeds": {"base_seed": seed, "num_seeds": 1},
    }


def _groups_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    num_configs = len(next(iter(spec["hparams"].values())))
    return spec.get("groups") or [{"overrides": {}, "configs": list(range(num_configs))}]


def spec_groups(spec: dict[str, Any], config: Any = None) -> list[tuple[Any, Any, list[int]]]:
    """Per compiled group: (static config, its batched hparams [H_g], its configuration
    indices). ``config``: the base config object itself, when at hand (a loss given as a
    function defined in a notebook cannot be rebuilt from its name)."""
    _, config_cls, hparams_cls = algos.get(spec["algo"])
    out = []
    for group in _groups_of(spec):
        if config is not None:
            config_g = dataclasses.replace(config, **group["overrides"])
        else:
            config_g = config_cls(**(spec["config"] | group["overrides"]))
        idx = group["configs"]
        lists = {k: [v[i] for i in idx] for k, v in spec["hparams"].items()}
        out.append((config_g, hparams_lib.from_lists(hparams_cls, lists), idx))
    return out


def spec_objects(spec: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(algo module, base config, batched hparams of every configuration) of a spec."""
    module, config_cls, hparams_cls = algos.get(spec["algo"])
    config = config_cls(**spec["config"])
    return module, config, hparams_lib.from_lists(hparams_cls, spec["hparams"])


def num_runs(spec: dict[str, Any]) -> int:
    return len(next(iter(spec["hparams"].values()))) * spec["seeds"]["num_seeds"]


OUTPUT_DIRS = ("experiments/figures/", "experiments/results/", "benchmarks/results/")
"""Tracked folders of measured outputs: changes there do not make a checkout dirty."""


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """Versions, backend, devices and git commit: what else a bitwise re-run depends on."""
    root = Path(qlearn.__file__).resolve().parent.parent
    commit, dirty = None, None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        # the experiments' own outputs (figures, results files) are not changes to the code
        dirty = any(not line[3:].startswith(OUTPUT_DIRS) for line in changed)
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "qlearn": qlearn.__version__,
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "processes": jax.process_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit,
        "git_dirty": dirty,
        "command": list(sys.argv if argv is None else argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Write an experiment's numbers as JSON, atomically (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, report)
    return path


def _write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, (json.dumps(obj, indent=2, allow_nan=True) + "\n").encode())


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows (dicts with the same keys) as CSV, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(path, buf.getvalue().encode())
    return path


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else k)
    return f"{where}: {a!r} there, {b!r} here"


OUTPUTS = (
    "metrics.npz",
    "summary.json",
    "records.csv",
    "manifest.json",
    *(
        f"{name}.{ext}"
        for name in ("learning_curves", "sensitivity", "heatmap")
        for ext in ("png", "pdf")
    ),
)


def prepare(path: str | Path, spec: dict[str, Any], *, overwrite: bool = False) -> bool:
    """Make ``path`` ready for the run ``spec``.

    Records the spec (config.json) at once. Returns True if ``path`` already holds this exact
    run, finished (nothing to do). Keeps the
    finished chunks of an unfinished run of the same spec (it resumes). Raises
    :class:`RunDirError` if it holds a different run or other files, unless ``overwrite``
    (which deletes the old run's files, chunks included).
    """
    path = Path(path)
    config_file = path / "config.json"
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} is a file, not a directory")
    if path.exists() and any(path.iterdir()):
        if not config_file.exists():
            if not overwrite:
                raise RunDirError(
                    f"{path} is not empty and holds no qlearn run; choose another "
                    "--out or pass --overwrite"
                )
        else:
            existing = read_meta(path)["spec"]
            if existing != spec:
                if not overwrite:
                    raise RunDirError(
                        f"{path} already holds a different run ("
                        f"{_first_difference(existing, spec)}); choose another --out or pass "
                        "--overwrite"
                    )
            elif (path / "summary.json").exists() and not overwrite:
                return True
            if overwrite:
                for chunk in (path / CHUNKS).glob("*"):
                    chunk.unlink()
                config_file.unlink()
        for name in OUTPUTS:
            (path / name).unlink(missing_ok=True)
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / CHUNKS).mkdir(exist_ok=True)
        start(path, spec)
    except OSError as e:
        raise RunDirError(f"cannot write to {path}: {e.strerror or e}") from None
    return False


def read_meta(path: Path) -> dict[str, Any]:
    """``path/config.json`` of a run directory: {"spec": ..., "provenance": ...}. Raises
    :class:`RunDirError` naming the file when it is not JSON or not a qlearn run's config
    (the file is left as it is)."""
    file = path / "config.json"
    try:
        meta = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(
            f"{path} holds something that is not a qlearn run: {file} is not valid JSON ({e}); "
            "choose another --out"
        ) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("spec"), dict):
        raise RunDirError(
            f"{path} holds something that is not a qlearn run: {file} has no qlearn spec; "
            "choose another --out"
        )
    return meta


def start(path: Path, spec: dict[str, Any], argv: list[str] | None = None) -> None:
    """Record the spec and provenance of a new (or resumed: kept as first written) run."""
    if not (path / "config.json").exists():
        _write_json(path / "config.json", {"spec": spec, "provenance": provenance(argv)})


# -- chunks: the unit of work that is written, checked and resumed ------------------------


def _digest(runs: np.ndarray, metrics: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name, arr in [("runs", runs), *sorted(metrics.items())]:
        arr = np.ascontiguousarray(arr)
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def write_chunk(
    path: Path, group: int, runs: np.ndarray, metrics: dict[str, np.ndarray], process: int = 0
) -> Path:
    """Atomically write the metrics ([n, T] per name) of runs ``runs`` [n] of ``group``.

    Runs are numbered within the group as ``config_position * num_seeds + seed``.
    """
    runs = np.asarray(runs, np.int64)
    digest = _digest(runs, metrics)
    name = f"g{group:03d}-r{runs[0]:07d}-{runs[-1]:07d}-p{process:03d}-{digest[:8]}.npz"
    buf = io.BytesIO()
    np.savez(buf, runs=runs, sha256=np.array(digest), **{f"m_{k}": v for k, v in metrics.items()})
    _atomic_write(path / CHUNKS / name, buf.getvalue())
    return path / CHUNKS / name


@dataclasses.dataclass
class Chunk:
    file: str
    group: int
    runs: np.ndarray
    metrics: dict[str, np.ndarray]
    sha256: str


class CorruptChunk(ValueError):
    """A chunk file that cannot be read or whose checksum does not match its contents."""


def read_chunk(file: Path) -> Chunk:
    """Read and verify one chunk file; raises :class:`CorruptChunk`."""
    try:
        group = int(file.name.split("-")[0][1:])
        with np.load(file, allow_pickle=False) as data:
            runs = data["runs"]
            digest = str(data["sha256"])
            metrics = {k[2:]: data[k] for k in data.files if k.startswith("m_")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, IndexError) as e:
        raise CorruptChunk(f"{file.name} cannot be read ({type(e).__name__}: {e})") from None
    if _digest(runs, metrics) != digest:
        raise CorruptChunk(f"{file.name}: its contents do not match its SHA-256")
    return Chunk(file.name, group, runs, metrics, digest)


def scan_chunks(path: Path, *, quarantine: bool) -> tuple[list[Chunk], list[str]]:
    """Every valid chunk of a run directory, and a message per corrupt one.

    With ``quarantine`` a corrupt file is renamed ``*.corrupt`` (kept for inspection, never
    read again); its runs count as not done and are recomputed.
    """
    good, bad = [], []
    for file in sorted((path / CHUNKS).glob("*.npz")):
        try:
            good.append(read_chunk(file))
        except CorruptChunk as e:
            bad.append(str(e))
            if quarantine:
                os.replace(file, file.with_suffix(".corrupt"))
    return good, bad


def write_manifest(path: Path, spec: dict[str, Any], chunks: list[Chunk], complete: bool) -> None:
    """manifest.json: the finished chunks (file, group, runs, SHA-256) and progress."""
    done = sum(len(np.unique(c.runs)) for c in chunks)
    _write_json(
        path / "manifest.json",
        {
            "complete": complete,
            "runs_total": num_runs(spec),
            "runs_done": min(done, num_runs(spec)),
            "chunks": [
                {"file": c.file, "group": c.group, "runs": len(c.runs), "sha256": c.sha256}
                for c in chunks
            ],
        },
    )


def done_runs(spec: dict[str, Any], chunks: list[Chunk]) -> list[np.ndarray]:
    """Per group, a bool [runs] mask of the runs some valid chunk holds."""
    seeds = spec["seeds"]["num_seeds"]
    masks = [np.zeros(len(g["configs"]) * seeds, bool) for g in _groups_of(spec)]
    for c in chunks:
        if c.group < len(masks) and np.all(c.runs < len(masks[c.group])):
            masks[c.group][c.runs] = True
    return masks


def assemble(spec: dict[str, Any], chunks: list[Chunk]) -> dict[str, np.ndarray]:
    """The metrics [config, seed, time] of a complete set of chunks."""
    seeds = spec["seeds"]["num_seeds"]
    num_configs = len(next(iter(spec["hparams"].values())))
    out: dict[str, np.ndarray] = {}
    for g, group in enumerate(_groups_of(spec)):
        mine = [c for c in chunks if c.group == g]
        for name in mine[0].metrics:
            rows = np.concatenate([c.metrics[name] for c in mine])
            runs = np.concatenate([c.runs for c in mine])
            flat = np.empty((len(group["configs"]) * seeds, *rows.shape[1:]), rows.dtype)
            flat[runs] = rows
            if name not in out:
                out[name] = np.empty((num_configs, seeds, *rows.shape[1:]), rows.dtype)
            out[name][group["configs"]] = flat.reshape(len(group["configs"]), seeds, -1)
    return out


# -- divergence, summaries, figures --------------------------------------------------------


def mask_diverged(metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """NaN every floating metric of a run from the evaluation where it first diverged on, and
    add ``diverged_at`` [config, seed] (that evaluation's index, −1 if it never diverged)."""
    if "diverged" not in metrics:
        return metrics
    diverged = metrics["diverged"].astype(bool)
    first = np.where(diverged.any(-1), diverged.argmax(-1), -1)
    later = (
        np.arange(diverged.shape[-1]) >= np.where(first < 0, diverged.shape[-1], first)[..., None]
    )
    out = {
        k: np.where(later, np.nan, v).astype(v.dtype) if np.issubdtype(v.dtype, np.floating) else v
        for k, v in metrics.items()
    }
    return out | {"diverged_at": first.astype(np.int32)}


def config_values(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Per configuration: its hyperparameters and its group's static overrides."""
    hp = spec["hparams"]
    values = [{k: v[i] for k, v in hp.items()} for i in range(len(next(iter(hp.values()))))]
    for group in _groups_of(spec):
        for i in group["configs"]:
            values[i] |= group["overrides"]
    return values


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "x".join(map(str, value))
    return str(value)


def labels(spec: dict[str, Any]) -> list[str]:
    """A label per configuration naming the swept hyperparameters' and fields' values."""
    loss = spec["config"].get("loss")

    def value(k: str, v: Any) -> str:
        if k == "loss_index" and isinstance(loss, list):
            return f"loss={loss[int(v)]}"  # name the loss, not its position
        return f"{k}={_format(v)}"

    return [", ".join(value(k, vals[k]) for k in spec["swept"]) for vals in config_values(spec)]


def _curve_stats(spec: dict[str, Any], metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per run [config, seed]: the algorithm's final return, and best and AUC of its curve."""
    module = algos.get(spec["algo"])[0]
    x, curves, _, _ = module.learning_curve(metrics)
    return {
        "final": module.final_returns(metrics),
        "best": stats.best(curves),
        "auc": stats.area_under_curve(x, curves) if len(x) > 1 else curves[..., 0],
    }


def summarize(spec: dict[str, Any], metrics: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per configuration: its values, final / best / AUC statistics (mean, median, IQM, 95% CI
    of the IQM) over the runs that did not diverge, and how many runs diverged and when."""
    curve = _curve_stats(spec, metrics)
    diverged_at = metrics.get("diverged_at")
    rows = []
    for h, values in enumerate(config_values(spec)):
        row: dict[str, Any] = {"config": h, "values": values}
        for kind, per_run in curve.items():
            row[kind] = stats.describe(per_run[h], seed=h)
        seeds = per_run.shape[1]
        row["seeds"] = seeds
        if diverged_at is not None:
            at = diverged_at[h]
            row["diverged"] = int(np.sum(at >= 0))
            steps = metrics["env_steps"][h] if "env_steps" in metrics else None
            row["diverged_at_steps"] = [
                int(steps[s, at[s]]) if steps is not None else int(at[s])
                for s in range(seeds)
                if at[s] >= 0
            ]
        else:
            row["diverged"] = 0
        rows.append(row)
    return rows


def records(spec: dict[str, Any], metrics: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One record per (configuration, seed): its values, final / best / AUC, divergence."""
    curve = _curve_stats(spec, metrics)
    diverged_at = metrics.get("diverged_at")
    out = []
    for h, values in enumerate(config_values(spec)):
        for s in range(curve["final"].shape[1]):
            row = {"config": h, "seed": spec["seeds"]["base_seed"] + s}
            row |= {k: _format(v) if isinstance(v, list) else v for k, v in values.items()}
            row |= {k: float(v[h, s]) for k, v in curve.items()}
            row["diverged_at"] = int(diverged_at[h, s]) if diverged_at is not None else -1
            out.append(row)
    return out


def statistic(spec: dict[str, Any]) -> str:
    module = algos.get(spec["algo"])[0]
    return (
        f"{module.FINAL_STATISTIC}; over the runs that did not diverge (a diverged run's "
        "metrics are NaN from the evaluation where it diverged on)"
    )


def build(
    spec: dict[str, Any], metrics: dict[str, np.ndarray], *, timing: dict[str, float] | None = None
) -> Run:
    """A finished run in memory: metrics with diverged runs masked, and its summary."""
    metrics = mask_diverged(metrics)
    summary = {
        "statistic": statistic(spec),
        "configs": summarize(spec, metrics),
        "probability_of_improvement": improvement_matrix(spec, metrics),
        "timing": timing or {},
    }
    return Run(None, spec, provenance(), metrics, summary)


def improvement_matrix(spec: dict[str, Any], metrics: dict[str, np.ndarray]) -> list[list[float]]:
    """[i][j] = P(final return of a run of configuration i > one of j) + ½ P(equal), over the
    runs that did not diverge (NaN where one side has none)."""
    final = _curve_stats(spec, metrics)["final"]
    runs_of = [f[np.isfinite(f)] for f in final]
    return [
        [
            stats.probability_of_improvement(a, b) if a.size and b.size else float("nan")
            for b in runs_of
        ]
        for a in runs_of
    ]


def write(
    path: str | Path,
    spec: dict[str, Any],
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
    _atomic_write(path / "metrics.npz", buf.getvalue())
    figure(path, spec, run.metrics)
    write_csv(path / "records.csv", records(spec, run.metrics))
    _write_json(path / "summary.json", run.summary)
    run.path = path
    run.provenance = read_meta(path).get("provenance", {})
    return run


def _save_atomic(fig: Any, path: Path) -> Path:
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp_png = Path(tmp) / path.name
        plots.save(fig, tmp_png, pdf=True)
        os.replace(tmp_png.with_suffix(".pdf"), path.with_suffix(".pdf"))
        os.replace(tmp_png, path)
    return path


def _grid_axes(spec: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """(name, sorted distinct values) of each swept numeric hyperparameter, if the
    configurations form their full grid (a random search does not)."""
    if spec.get("search", {}).get("kind", "grid") != "grid":
        return []
    axes = [
        (k, np.unique(np.asarray(spec["hparams"][k], np.float64)))
        for k in spec["swept"]
        if k in spec["hparams"] and k != "loss_index"
    ]
    return axes if len(axes) == len(spec["swept"]) else []


def grid_table(
    spec: dict[str, Any], per_run: np.ndarray, axes: list[tuple[str, np.ndarray]]
) -> np.ndarray:
    """Per-run values [config, seed] laid out on a grid's axes (from :func:`_grid_axes`: one or
    two (name, sorted values)): [Y, X, seed], Y = 1 for a one-axis grid; cell (y, x) holds the
    configuration whose values are (x, y)."""
    hp = {k: np.asarray(v, np.float64) for k, v in spec["hparams"].items()}
    (xname, xs), *rest = axes
    yname, ys = rest[0] if rest else ("", np.array([np.nan]))

    def cell(y: float, xv: float) -> np.ndarray:
        at = np.isclose(hp[xname], xv) & (np.isnan(y) | np.isclose(hp.get(yname, 0), y))
        return per_run[np.flatnonzero(at)[0]]

    return np.stack([np.stack([cell(y, xv) for xv in xs]) for y in ys])


def _log_spaced(values: np.ndarray) -> bool:
    """Positive values with a constant ratio > 1.5 between neighbours (within 20%)."""
    if len(values) < 2 or np.any(values <= 0):
        return False
    ratios = values[1:] / values[:-1]
    return bool(np.all(ratios > 1.5) and np.ptp(np.log(ratios)) < 0.2 * np.log(ratios).mean())


def figure(path: Path, spec: dict[str, Any], metrics: dict[str, np.ndarray]) -> list[Path]:
    """(Re)draw a run directory's figures, PNG and PDF: the learning curves, and for a grid
    over one or two numeric hyperparameters the sensitivity curves (log x axis when the values
    are log-spaced) and, for two, the heatmap of final IQM."""
    cfg = spec["config"]
    module = algos.get(spec["algo"])[0]
    x, returns, xlabel, ylabel = module.learning_curve(metrics)
    name = cfg.get("algorithm", spec["algo"]).replace("_", " ")
    seeds = spec["seeds"]["num_seeds"]
    title = f"{name} on {cfg['env_id']} ({seeds} seeds)"
    written = [
        _save_atomic(
            plots.learning_curves(
                x, returns, labels(spec), title=title, xlabel=xlabel, ylabel=ylabel
            ),
            path / "learning_curves.png",
        )
    ]
    axes = _grid_axes(spec)
    if 1 <= len(axes) <= 2:
        final = _curve_stats(spec, metrics)["final"]
        (xname, xs), *rest = axes  # x: the first swept name; one line per value of the second
        yname, ys = rest[0] if rest else ("", np.array([np.nan]))
        table = grid_table(spec, final, axes)
        log_x = _log_spaced(xs)
        groups = [f"{yname}={y:g}" for y in ys] if rest else [""]
        written.append(
            _save_atomic(
                plots.sensitivity(xs, table, name=xname, groups=groups, log_x=log_x, title=title),
                path / "sensitivity.png",
            )
        )
        if rest:
            written.append(
                _save_atomic(
                    plots.heatmap(xs, ys, table, x_name=xname, y_name=yname, title=title),
                    path / "heatmap.png",
                )
            )
    return written


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
    return Run(path, meta["spec"], meta.get("provenance", {}), metrics, summary)


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


def summary_table(spec: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """A plain-text table, one row per configuration (final return over non-diverged runs)."""
    swept = spec["swept"]
    names = labels(spec)
    header = ["#", *swept, "final mean", "IQM", "95% CI", "best IQM", "AUC IQM", "diverged"]
    body = []
    for r, label in zip(rows, names, strict=True):
        lo, hi = r["final"]["iqm_ci95"]
        shown = dict(part.split("=", 1) for part in label.split(", ")) if label else {}
        body.append(
            [
                str(r["config"]),
                *(shown.get(k, "") if k != "loss_index" else shown.get("loss", "") for k in swept),
                f"{r['final']['mean']:.1f}",
                f"{r['final']['iqm']:.1f}",
                f"[{lo:.1f}, {hi:.1f}]",
                f"{r['best']['iqm']:.1f}",
                f"{r['auc']['iqm']:.1f}",
                f"{r['diverged']}/{r['seeds']}",
            ]
        )
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = [
        "  ".join(x.rjust(w) for x, w in zip(row, widths, strict=True)) for row in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    fixed = {k: v[0] for k, v in spec["hparams"].items() if k not in swept}
    fixed_text = ", ".join(f"{k}={v:g}" for k, v in fixed.items())
    return "\n".join(lines) + f"\n(fixed: {fixed_text})"
