"""DQN against PQN on CartPole-v1 and MinAtar Breakout: return against env steps AND against
wall-clock seconds, in one figure.

Reads the run directories the training experiments wrote (their ``experiment.json`` holds the
measured wall-clock time of every evaluation point), so run those first:

    python experiments/cartpole_dqn.py && python experiments/cartpole_pqn.py
    python experiments/minatar_dqn.py && python experiments/minatar_pqn.py
    python experiments/dqn_vs_pqn.py      # writes experiments/figures/dqn_vs_pqn.{png,pdf}
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from qlearn import plots, runs

TASKS = {
    "CartPole-v1": {"DQN": "runs/cartpole_dqn", "PQN": "runs/cartpole_pqn"},
    "MinAtar Breakout": {
        "DQN": "runs/minatar_dqn/Breakout-MinAtar",
        "PQN": "runs/minatar_pqn/Breakout-MinAtar",
    },
}


def curve(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(env steps [T], seconds [T], returns [S, T] of the first configuration, report)."""
    path = Path(path)
    report_file = path / "experiment.json"
    if not report_file.exists():
        raise SystemExit(f"{report_file} is missing: run the experiment that writes {path} first")
    report = json.loads(report_file.read_text())
    returns = runs.load(path).metrics["eval_return"][0]
    return np.asarray(report["env_steps"]), np.asarray(report["seconds"]), returns, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", default="experiments/figures/dqn_vs_pqn.png")
    args = parser.parse_args()
    rows = []
    for task, methods in TASKS.items():
        curves = []
        for label, path in methods.items():
            steps, seconds, returns, report = curve(path)
            curves.append((f"{label} ({returns.shape[0]} seeds)", steps, seconds, returns))
            final = report["configs"][0]
            print(
                f"{task:18s} {label}: final IQM {final['final_iqm']:7.1f} after "
                f"{report['env_steps_per_run']:>9,} env steps in {report['run_seconds']:6.1f} s "
                f"({report['env_steps_per_second']:,.0f} env steps/s over "
                f"{report['seeds']} seeds; compile {report['compile_seconds']:.1f} s)"
            )
        rows.append((task, curves))
    path = plots.save(plots.steps_and_seconds(rows), args.figure, pdf=True)
    print(f"wrote {path} and {path.with_suffix('.pdf')}")


if __name__ == "__main__":
    main()
