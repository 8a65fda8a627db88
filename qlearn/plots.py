"""Figures: learning curves and sensitivity curves (IQM over seeds with 95% bootstrap CIs).

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
    """IQM line and 95% bootstrap band of values [T, S] (seeds last) at x [T]."""
    center = stats.iqm(values)
    low, high = stats.bootstrap_ci(values)
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


def save(fig: Figure, path: str | Path) -> Path:
    """Lay out and write a figure (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    return path
