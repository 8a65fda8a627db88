"""A run directory's figures, PNG and PDF: learning curves; for a grid over one or two
numeric hyperparameters the sensitivity curves and the heatmap of final IQM; for a random
search final IQM against each sampled hyperparameter."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from qlearn import plots, stats
from qlearn.runs.summary import curve_stats, labels
from qlearn.spec import Spec


def save_atomic(fig: Any, path: Path) -> Path:
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp_png = Path(tmp) / path.name
        plots.save(fig, tmp_png, pdf=True)
        os.replace(tmp_png.with_suffix(".pdf"), path.with_suffix(".pdf"))
        os.replace(tmp_png, path)
    return path


def grid_axes(spec: Spec) -> list[tuple[str, np.ndarray]]:
    """(name, sorted distinct values) of each swept numeric hyperparameter, if the
    configurations form their full grid (a random search does not)."""
    if not spec.is_grid:
        return []
    axes = [
        (k, np.unique(np.asarray(spec.hparams[k], np.float64)))
        for k in spec.swept
        if k in spec.hparams and spec.algorithm.indexed_field(k) is None
    ]
    return axes if len(axes) == len(spec.swept) else []


def grid_table(spec: Spec, per_run: np.ndarray, axes: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Per-run values [config, seed] laid out on a grid's axes (from :func:`grid_axes`: one or
    two (name, sorted values)): [Y, X, seed], Y = 1 for a one-axis grid; cell (y, x) holds the
    configuration whose values are (x, y)."""
    hp = {k: np.asarray(v, np.float64) for k, v in spec.hparams.items()}
    (xname, xs), *rest = axes
    yname, ys = rest[0] if rest else ("", np.array([np.nan]))

    def cell(y: float, xv: float) -> np.ndarray:
        at = np.isclose(hp[xname], xv) & (np.isnan(y) | np.isclose(hp.get(yname, 0), y))
        return per_run[np.flatnonzero(at)[0]]

    return np.stack([np.stack([cell(y, xv) for xv in xs]) for y in ys])


def log_spaced(values: np.ndarray) -> bool:
    """Positive values with a constant ratio > 1.5 between neighbours (within 20%)."""
    if len(values) < 2 or np.any(values <= 0):
        return False
    ratios = values[1:] / values[:-1]
    return bool(np.all(ratios > 1.5) and np.ptp(np.log(ratios)) < 0.2 * np.log(ratios).mean())


def figure(path: Path, spec: Spec, metrics: dict[str, np.ndarray]) -> list[Path]:
    """(Re)draw a run directory's figures, PNG and PDF: the learning curves, and for a grid
    over one or two numeric hyperparameters the sensitivity curves (log x axis when the values
    are log-spaced) and, for two, the heatmap of final IQM."""
    cfg = spec.config
    algorithm = spec.algorithm
    x, returns, xlabel, ylabel = algorithm.learning_curve(metrics)
    name = algorithm.title(cfg)
    seeds = spec.num_seeds
    title = f"{name} on {cfg['env_id']} ({seeds} seeds)"
    written = [
        save_atomic(
            plots.learning_curves(
                x, returns, labels(spec), title=title, xlabel=xlabel, ylabel=ylabel
            ),
            path / "learning_curves.png",
        )
    ]
    if not spec.is_grid:
        written.append(save_atomic(search_figure(spec, metrics, title), path / "search.png"))
    axes = grid_axes(spec)
    if 1 <= len(axes) <= 2:
        final = curve_stats(spec, metrics)["final"]
        (xname, xs), *rest = axes  # x: the first swept name; one line per value of the second
        yname, ys = rest[0] if rest else ("", np.array([np.nan]))
        table = grid_table(spec, final, axes)
        log_x = log_spaced(xs)
        groups = [f"{yname}={y:g}" for y in ys] if rest else [""]
        written.append(
            save_atomic(
                plots.sensitivity(xs, table, name=xname, groups=groups, log_x=log_x, title=title),
                path / "sensitivity.png",
            )
        )
        if rest:
            written.append(
                save_atomic(
                    plots.heatmap(xs, ys, table, x_name=xname, y_name=yname, title=title),
                    path / "heatmap.png",
                )
            )
    return written


def search_figure(spec: Spec, metrics: dict[str, np.ndarray], title: str) -> Any:
    """A random search's final IQM (95% CI) against each sampled hyperparameter, one panel
    each (log axis for log-uniform draws); with a ``choice`` among them, one colour per value
    of the first."""
    dists = spec.search.get("dist", {})
    final = curve_stats(spec, metrics)["final"]
    described = [stats.describe(f) for f in final]
    iqm = np.array([d["iqm"] for d in described])
    ci = np.array([d["iqm_ci95"] for d in described]).T
    names = [k for k in dists if k in spec.hparams]
    choice = next((k for k in names if dists[k].startswith("choice")), None)
    colour_by = np.asarray(spec.hparams[choice], np.float64) if choice else None
    return plots.search_scatter(
        {k: np.asarray(spec.hparams[k], np.float64) for k in names},
        iqm,
        ci,
        log_x={k: dists[k].startswith("loguniform") for k in names},
        colour_by=(choice, colour_by) if choice else None,
        title=title,
    )
