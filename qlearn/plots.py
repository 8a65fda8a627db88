"""Figures: learning curves, sensitivity curves and heatmaps (IQM over seeds, 95% bootstrap CIs).

NaN values (e.g. a diverged run's masked metrics) are left out of each point's statistics.

Functions return a matplotlib ``Figure`` (shown inline in a notebook); :func:`save` writes one.
They use matplotlib's object API, so no GUI backend is involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from qlearn import stats


def _band(ax, x: np.ndarray, values: np.ndarray, label: str) -> None:
    """IQM line and 95% bootstrap band of values [T, S] (seeds last) at x [T], over the finite
    values at each point."""
    values = np.asarray(values, np.float64)
    if np.all(np.isfinite(values)):
        center = stats.iqm(values)
        low, high = stats.bootstrap_ci(values)
    else:
        center, low, high = np.full((3, len(values)), np.nan)
        for t, v in enumerate(values):
            d = stats.describe(v)
            center[t], (low[t], high[t]) = d["iqm"], d["iqm_ci95"]
    (line,) = ax.plot(x, center, label=label, marker="o" if len(x) < 12 else None)
    ax.fill_between(x, low, high, alpha=0.2, color=line.get_color(), linewidth=0)


def _finish(ax, xlabel: str, ylabel: str, title: str, labels: Sequence[str]) -> None:
    """Axis labels, title, grid, and a legend when the curves have names."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{ylabel} (IQM, 95% CI)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(labels) > 1 or labels[0]:
        ax.legend(fontsize=8)


def learning_curves(
    steps: np.ndarray,
    returns: np.ndarray,
    labels: Sequence[str],
    *,
    title: str = "",
    xlabel: str = "env steps",
    ylabel: str = "greedy return",
) -> Figure:
    """One curve per configuration: IQM over seeds and its 95% bootstrap CI.

    Args:
      steps: x coordinate of each point (env steps, episodes), [T].
      returns: [H, S, T] returns per configuration, seed and point.
      labels: H legend labels.
    """
    fig = Figure(figsize=(6.4, 4.0), dpi=120)
    ax = fig.subplots()
    for h, label in enumerate(labels):
        _band(ax, steps, np.moveaxis(returns[h], 0, -1), label)
    _finish(ax, xlabel, ylabel, title, labels)
    return fig


def panels(
    steps: np.ndarray,
    rows: Sequence[Sequence[tuple[str, str, np.ndarray]]],
    labels: Sequence[str],
    *,
    log_y: Sequence[str] = (),
    xlabel: str = "env steps",
) -> Figure:
    """A grid of learning-curve panels sharing x and the legend (in the first panel): IQM
    over seeds and its 95% bootstrap CI, the same colour for a configuration everywhere.

    Args:
      steps: the x coordinate of every point, [T].
      rows: per row, per panel (title, y label, values [H, S, T]).
      labels: H legend labels.
      log_y: the y labels whose panels get a log scale.
    """
    width = max(len(r) for r in rows)
    fig = Figure(figsize=(3.6 * width, 2.9 * len(rows)), dpi=110, layout="constrained")
    axes = np.asarray(fig.subplots(len(rows), width, squeeze=False))
    for row, row_axes in zip(rows, axes, strict=True):
        for (title, ylabel, values), ax in zip(row, row_axes, strict=False):
            for h, label in enumerate(labels):
                _band(ax, steps, np.moveaxis(np.asarray(values)[h], 0, -1), label)
            if ylabel in log_y:
                ax.set_yscale("log")
            else:
                ax.ticklabel_format(axis="y", useOffset=False)
            _finish(ax, xlabel, ylabel, title, [""])
            ax.set_ylabel(ylabel, fontsize=8)
            ax.title.set_fontsize(9)
        for ax in row_axes[len(row) :]:
            ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    return fig


def steps_and_seconds(
    rows: Sequence[tuple[str, Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]]]],
    *,
    ylabel: str = "greedy return",
) -> Figure:
    """Learning curves against env steps (left column) and wall-clock seconds (right), one row
    per task: IQM over seeds and its 95% bootstrap CI, the same colour for a method in both.

    Args:
      rows: (title, curves) per row; each curve is (label, env steps [T], seconds [T],
        returns [S, T]) — the x coordinates may differ between curves.
    """
    fig = Figure(figsize=(10.0, 3.6 * len(rows)), dpi=120)
    axes = np.asarray(fig.subplots(len(rows), 2, squeeze=False))
    for (title, curves), (by_steps, by_time) in zip(rows, axes, strict=True):
        labels = [label for label, *_ in curves]
        for label, steps, seconds, returns in curves:
            _band(by_steps, np.asarray(steps), np.asarray(returns).T, label)
            _band(by_time, np.asarray(seconds), np.asarray(returns).T, label)
        _finish(by_steps, "env steps", ylabel, f"{title}: against env steps", labels)
        _finish(by_time, "wall-clock seconds", ylabel, f"{title}: against time", labels)
    return fig


def sensitivity(
    values: np.ndarray,
    finals: np.ndarray,
    *,
    name: str,
    groups: Sequence[str] = ("",),
    log_x: bool = True,
    title: str = "",
    ylabel: str = "final return",
) -> Figure:
    """Final performance against one hyperparameter: IQM over seeds and its 95% CI.

    Args:
      values: the hyperparameter's values, [V].
      finals: [G, V, S] final returns per group (e.g. another hyperparameter's value), value
        and seed; a [V, S] array is one group.
      name: the hyperparameter (x label).
      groups: G legend labels.
    """
    finals = np.asarray(finals)
    if finals.ndim == 2:
        finals = finals[None]
    fig = Figure(figsize=(5.6, 3.8), dpi=120)
    ax = fig.subplots()
    for g, label in enumerate(groups):
        _band(ax, np.asarray(values), finals[g], label)
    if log_x:
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(np.asarray(values), [f"{v:g}" for v in np.asarray(values)])
    _finish(ax, name, ylabel, title, groups)
    return fig


def heatmap(
    x_values: np.ndarray,
    y_values: np.ndarray,
    finals: np.ndarray,
    *,
    x_name: str,
    y_name: str,
    title: str = "",
    label: str = "final return",
    y_labels: Sequence[str] | None = None,
) -> Figure:
    """IQM over seeds of a 2-D grid, one annotated cell per (y, x) configuration.

    Args:
      x_values: [X] values of the column hyperparameter; y_values: [Y] of the row one.
      finals: [Y, X, S] per-seed values (NaNs, e.g. diverged runs, left out of a cell).
      y_labels: tick labels of the rows (default: the values).
    """
    finals = np.asarray(finals, np.float64)
    cells = np.full(finals.shape[:2], np.nan)
    for idx in np.ndindex(cells.shape):
        cells[idx] = stats.describe(finals[idx])["iqm"]
    fig = Figure(figsize=(1.1 * len(x_values) + 2.6, 0.7 * len(y_values) + 1.8), dpi=120)
    ax = fig.subplots()
    image = ax.imshow(cells, cmap="viridis", aspect="auto", origin="lower")
    fig.colorbar(image, ax=ax, label=f"{label} (IQM)")
    ax.set_xticks(range(len(x_values)), [f"{v:g}" for v in x_values])
    ax.set_yticks(range(len(y_values)), y_labels or [f"{v:g}" for v in y_values])
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    middle = np.nanmean(cells) if np.any(np.isfinite(cells)) else 0.0
    for (i, j), v in np.ndenumerate(cells):
        color = "black" if v > middle else "white"
        ax.text(
            j,
            i,
            "diverged" if np.isnan(v) else f"{v:.3g}",
            ha="center",
            va="center",
            color=color,
            fontsize=8,
        )
    if title:
        ax.set_title(title)
    return fig


def search_scatter(
    values: dict[str, np.ndarray],
    iqm: np.ndarray,
    ci: np.ndarray,
    *,
    log_x: dict[str, bool],
    colour_by: tuple[str, np.ndarray] | None = None,
    title: str = "",
) -> Figure:
    """A random search: final IQM [H] with its 95% CI [2, H] against each sampled
    hyperparameter ``values[name]`` [H], a panel each; ``colour_by`` (name, values [H]) gives
    one colour per distinct value."""
    names = list(values)
    fig = Figure(figsize=(3.2 * max(len(names), 1), 3.0))
    axes = np.atleast_1d(fig.subplots(1, max(len(names), 1), sharey=True))
    if colour_by is not None:
        distinct = np.unique(colour_by[1])
        colour = {v: f"C{i}" for i, v in enumerate(distinct)}
    for ax, name in zip(axes, names, strict=False):
        x = values[name]
        groups = distinct if colour_by is not None else [None]
        for g in groups:
            sel = np.ones(len(x), bool) if g is None else colour_by[1] == g
            err = np.abs(ci[:, sel] - iqm[sel])
            label = None if g is None else f"{colour_by[0]}={g:g}"
            ax.errorbar(
                x[sel],
                iqm[sel],
                yerr=err,
                fmt="o",
                markersize=4,
                capsize=2,
                color="C0" if g is None else colour[g],
                label=label,
                alpha=0.8,
            )
        if log_x.get(name):
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("final return (IQM, 95% CI)")
    if colour_by is not None:
        axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# -- across tasks (qlearn.compare): paper-sized, one column 3.25 in, two columns 6.75 in ------

AGGREGATE_TITLES = {
    "iqm": "IQM",
    "median": "Median",
    "mean": "Mean",
    "optimality_gap": "Optimality gap",
}


def aggregate_intervals(result: dict, methods: Sequence[str]) -> Figure:
    """rliable's interval plot: per aggregate a panel, per method its point estimate and 95%
    stratified-bootstrap CI (``result`` as :func:`qlearn.compare.aggregate` returns it)."""
    # constrained layout places the shared x label under the panels (tight_layout leaves a gap)
    fig = Figure(figsize=(6.75, 0.9 + 0.32 * len(methods)), layout="constrained")
    axes = fig.subplots(1, len(AGGREGATE_TITLES), sharey=True)
    colors = [f"C{i}" for i in range(len(methods))]
    for ax, (name, title) in zip(axes, AGGREGATE_TITLES.items(), strict=True):
        for y, (m, color) in enumerate(zip(methods, colors, strict=True)):
            entry = result["methods"][m][name]
            low, high = entry["ci95"]
            ax.barh(y, high - low, left=low, height=0.6, color=color, alpha=0.75)
            ax.plot([entry["value"]] * 2, [y - 0.3, y + 0.3], color="black", linewidth=1.2)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].set_yticks(range(len(methods)), methods, fontsize=8)
    axes[0].invert_yaxis()
    fig.supxlabel("normalised score (95% CI)", fontsize=8)
    return fig


def performance_profiles(result: dict, methods: Sequence[str]) -> Figure:
    """The fraction of runs above each normalised score τ, per method, with 95% CIs."""
    fig = Figure(figsize=(3.25, 2.5))
    ax = fig.subplots()
    taus = np.asarray(result["taus"])
    for m in methods:
        profile = result["methods"][m]["profile"]
        (line,) = ax.plot(taus, profile["value"], label=m, linewidth=1.2)
        low, high = profile["ci95"]
        ax.fill_between(taus, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("normalised score τ", fontsize=8)
    ax.set_ylabel("fraction of runs > τ", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    return fig


def improvement_intervals(result: dict, methods: Sequence[str]) -> Figure:
    """P(X > Y) of each ordered pair of methods, averaged over tasks, with 95% CIs."""
    pairs = list(result["improvement"])
    fig = Figure(figsize=(3.25, 0.9 + 0.28 * max(len(pairs), 1)))
    ax = fig.subplots()
    for y, pair in enumerate(pairs):
        entry = result["improvement"][pair]
        low, high = entry["ci95"]
        ax.barh(y, high - low, left=low, height=0.6, color="C0", alpha=0.6)
        ax.plot([entry["value"]] * 2, [y - 0.3, y + 0.3], color="black", linewidth=1.2)
    ax.axvline(0.5, color="gray", linestyle="--", linewidth=0.8)
    ax.set_yticks(range(len(pairs)), pairs, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("P(X > Y), averaged over tasks (95% CI)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    return fig


def save(fig: Figure, path: str | Path, *, pdf: bool = False) -> Path:
    """Lay out (tightly, unless the figure chose its own layout) and write a figure, creating
    the folder; with ``pdf`` also a PDF beside it (vector, for papers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path)
    if pdf:
        fig.savefig(path.with_suffix(".pdf"))
    return path
