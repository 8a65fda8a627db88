"""Figures: learning curves (IQM over seeds with 95% bootstrap CIs)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from qlearn import stats


def learning_curves(
    steps: np.ndarray,
    returns: np.ndarray,
    labels: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
    xlabel: str = "env steps",
    ylabel: str = "greedy return",
) -> Path:
    """Plot one curve per configuration: IQM over seeds and its 95% bootstrap CI.

    Args:
      steps: x coordinate of each point (env steps, episodes), [T].
      returns: [H, S, T] returns per configuration, seed and evaluation point.
      labels: H legend labels.
      path: where to write the figure (png).
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for h, label in enumerate(labels):
        per_time = np.moveaxis(returns[h], 0, -1)  # [T, S]
        center = stats.iqm(per_time)
        low, high = stats.bootstrap_ci(per_time)
        (line,) = ax.plot(steps, center, label=label)
        ax.fill_between(steps, low, high, alpha=0.2, color=line.get_color(), linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{ylabel} (IQM, 95% CI)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(labels) > 1 or labels[0]:
        ax.legend(fontsize=8)
    return save(fig, path)


def save(fig: plt.Figure, path: str | Path) -> Path:
    """Lay out, write (creating the folder) and close a figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
