"""Run directories: write, load, reproduce.

A run directory holds
  config.json   the run's spec (algo, static config, one hparams entry per configuration,
                seeds) and its provenance (versions, backend, git commit, command);
  metrics.npz   one array per metric with axes (config, seed, time);
  summary.json  per configuration: hyperparameters, final greedy return mean, IQM and 95%
                bootstrap CI over seeds, diverged count; and compile/run timings;
  learning_curves.png.
Every file is written atomically (temporary file, then rename): a killed run never leaves a
half-written file behind.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import qlearn
from qlearn import algos, losses, plots, stats, sweep
from qlearn import hparams as hparams_lib

AXES = ("config", "seed", "time")
FORMAT = 1


class RunDirError(RuntimeError):
    """The output directory cannot be used for this run."""


@dataclasses.dataclass
class Run:
    """A run directory read back by :func:`load`."""

    path: Path
    spec: dict[str, Any]
    provenance: dict[str, Any]
    metrics: dict[str, np.ndarray]
    summary: dict[str, Any] | None

    @property
    def axes(self) -> tuple[str, ...]:
        return tuple(self.spec.get("metric_axes", AXES))


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
) -> dict[str, Any]:
    """The JSON identity of a run: what determines its metrics (given the backend)."""
    cfg = {f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}
    return {
        "format": FORMAT,
        "algo": algo,
        "config": cfg,
        "hparams": hparams_lib.to_lists(hparams),
        "swept": list(swept or []),
        "seeds": {"base_seed": base_seed, "num_seeds": num_seeds},
        "metric_axes": list(AXES),
    }


def spec_objects(spec: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(algo module, config, batched hparams) rebuilt from a spec."""
    module, config_cls, hparams_cls = algos.get(spec["algo"])
    config = config_cls(**spec["config"])
    return module, config, hparams_lib.from_lists(hparams_cls, spec["hparams"])


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """Versions, backend and git commit: what else a bitwise re-run depends on."""
    root = Path(qlearn.__file__).resolve().parent.parent
    commit, dirty = None, None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "qlearn": qlearn.__version__,
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
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


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else k)
    return f"{where}: {a!r} there, {b!r} here"


def prepare(path: str | Path, spec: dict[str, Any], *, overwrite: bool = False) -> bool:
    """Make ``path`` ready for the run ``spec``.

    Returns True if it already holds this exact run, finished (nothing to do). Raises
    :class:`RunDirError` if it holds a different run or other files, unless ``overwrite``.
    """
    path = Path(path)
    config_file = path / "config.json"
    if path.exists() and any(path.iterdir()):
        if not config_file.exists():
            if not overwrite:
                raise RunDirError(
                    f"{path} is not empty and holds no qlearn run; choose another "
                    "--out or pass --overwrite"
                )
        else:
            existing = json.loads(config_file.read_text())["spec"]
            if existing != spec:
                if not overwrite:
                    raise RunDirError(
                        f"{path} already holds a different run ("
                        f"{_first_difference(existing, spec)}); choose another --out or pass "
                        "--overwrite"
                    )
            elif (path / "summary.json").exists() and not overwrite:
                return True
        for name in ("metrics.npz", "summary.json", "learning_curves.png"):
            (path / name).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    return False


def labels(spec: dict[str, Any]) -> list[str]:
    """A label per configuration naming the swept hyperparameters' values."""
    hp = spec["hparams"]
    n = len(next(iter(hp.values())))
    loss = spec["config"].get("loss")

    def value(k: str, i: int) -> str:
        if k == "loss_index" and isinstance(loss, list):
            return f"loss={loss[int(hp[k][i])]}"  # name the loss, not its position
        return f"{k}={hp[k][i]:g}"

    return [", ".join(value(k, i) for k in spec["swept"]) for i in range(n)]


def summarize(spec: dict[str, Any], metrics: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per configuration: hyperparameters, final return (the algorithm's ``final_returns``:
    mean, IQM, 95% CI over seeds, diverged runs included) and the number of diverged runs."""
    module = algos.get(spec["algo"])[0]
    final = module.final_returns(metrics)  # [H, S]
    diverged = metrics["diverged"].any(axis=-1) if "diverged" in metrics else final * 0 > 0
    low, high = stats.bootstrap_ci(final)
    rows = []
    for h in range(final.shape[0]):
        rows.append(
            {
                "config": h,
                "hparams": {k: v[h] for k, v in spec["hparams"].items()},
                "final_return_mean": float(np.mean(final[h])),
                "final_return_iqm": float(stats.iqm(final[h])),
                "final_return_ci95": [float(low[h]), float(high[h])],
                "diverged": int(diverged[h].sum()),
                "seeds": int(final.shape[1]),
            }
        )
    return rows


def write(
    path: str | Path,
    spec: dict[str, Any],
    result: sweep.BatchResult,
    *,
    argv: list[str] | None = None,
) -> Run:
    """Write config.json, metrics.npz, summary.json and the learning-curve figure."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    prov = provenance(argv)
    _write_json(path / "config.json", {"spec": spec, "provenance": prov})
    buf = io.BytesIO()
    np.savez(buf, **result.metrics)
    _atomic_write(path / "metrics.npz", buf.getvalue())
    figure(path, spec, result.metrics)
    summary = {
        "statistic": algos.get(spec["algo"])[0].FINAL_STATISTIC,
        "configs": summarize(spec, result.metrics),
        "timing": {"compile_seconds": result.compile_seconds, "run_seconds": result.run_seconds},
    }
    _write_json(path / "summary.json", summary)
    return Run(path, spec, prov, result.metrics, summary)


def figure(path: Path, spec: dict[str, Any], metrics: dict[str, np.ndarray]) -> Path:
    """(Re)draw the learning-curve figure of a run directory."""
    cfg = spec["config"]
    x, returns, xlabel, ylabel = algos.get(spec["algo"])[0].learning_curve(metrics)
    name = cfg.get("algorithm", spec["algo"]).replace("_", " ")
    with tempfile.TemporaryDirectory(dir=path) as tmp:
        tmp_png = Path(tmp) / "learning_curves.png"
        fig = plots.learning_curves(
            x,
            returns,
            labels(spec),
            title=f"{name} on {cfg['env_id']} ({spec['seeds']['num_seeds']} seeds)",
            xlabel=xlabel,
            ylabel=ylabel,
        )
        plots.save(fig, tmp_png)
        os.replace(tmp_png, path / "learning_curves.png")
    return path / "learning_curves.png"


def load(path: str | Path) -> Run:
    """Read a run directory back."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise RunDirError(f"{path} holds no qlearn run (no config.json)")
    meta = json.loads((path / "config.json").read_text())
    metrics = {}
    if (path / "metrics.npz").exists():
        with np.load(path / "metrics.npz") as data:
            metrics = {k: data[k] for k in data.files}
    summary_file = path / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
    return Run(path, meta["spec"], meta["provenance"], metrics, summary)


def execute(
    spec: dict[str, Any], *, progress: Any = None, keep_state: bool = False
) -> sweep.BatchResult:
    """Run a spec: every configuration × seed in one compiled program (see ``sweep.run``)."""
    module, config, hp = spec_objects(spec)
    return sweep.run(
        module.make_train,
        config,
        hp,
        num_seeds=spec["seeds"]["num_seeds"],
        base_seed=spec["seeds"]["base_seed"],
        progress=progress,
        keep_state=keep_state,
    )


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
    """A plain-text table, one row per configuration."""
    swept = spec["swept"]
    header = ["#", *swept, "final return", "IQM", "95% CI", "diverged"]
    body = []
    for r in rows:
        lo, hi = r["final_return_ci95"]
        body.append(
            [
                str(r["config"]),
                *(f"{r['hparams'][k]:g}" for k in swept),
                f"{r['final_return_mean']:.1f}",
                f"{r['final_return_iqm']:.1f}",
                f"[{lo:.1f}, {hi:.1f}]",
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
