"""Cal-QL against CQL where the truth is known: are the learned values calibrated, and does
calibration stop the unlearning at the start of fine-tuning?

Cal-QL (Nakamoto et al. 2023) floors the values CQL's penalty pushes down at the data's own
Monte-Carlo return-to-go G(s) (:func:`qlearn.losses.calibrated_penalty`), so the learned
values should stay calibrated, V̂(s) = max_b q̂(s, b) ≥ G(s), and fine-tuning should not first
unlearn a pessimistic start. Cliff Walking (γ = 0.9, tabular q̂, Adam 0.1) with three datasets
(:mod:`qlearn.datasets`): ``expert`` (2,000 transitions, the optimal path only), ``mixture``
(20,000, half expert, half uniform) and ``eps_greedy`` (20,000, ε = 0.3 of q*). On each:

- **offline**: CQL and Cal-QL at α = 1 and 5, 3,000 updates. Reported: the final greedy
  return, and over the transitions whose return is known, the share where V̂(s) < G(s) and the
  mean and minimum of V̂(s) − G(s);
- **offline-to-online** (:class:`qlearn.algos.dqn.DQNConfig` with ``dataset``): the same
  3,000 offline updates, then 3,000 env steps of DQN with the data in half of each replay
  batch, fine-tuned with plain TD (``online_cql_alpha`` = 0) or with the penalty kept at α = 1.
  Reported: the share of evaluations at the optimum (−13) and the greedy return at the first
  and last evaluation, against DQN from scratch at the same env steps.

    python experiments/cal_ql.py                    # ≈ 5 min on 2 CPU cores
    python experiments/cal_ql.py --seeds 2 --results '' --figure ''   # smoke

Writes experiments/figures/cal_ql.png and experiments/results/cal_ql.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import record

from qlearn import datasets, envs, plots, runs, stats, sweep
from qlearn.algos import dqn, offline

ENV_ID = "CliffWalking"
GAMMA = 0.9
EPSILON = 0.3
OPTIMUM = -13.0
"""The optimal path's undiscounted return (the greedy return of q*)."""
DATASETS = {"expert": 2_000, "mixture": 20_000, "eps_greedy": 20_000}
"""Each behaviour and its dataset's size."""
ALPHAS = (1.0, 5.0)
UPDATES = 3_000
COMMON = dict(env_id=ENV_ID, network="linear", eval_episodes=1)
ONLINE = dict(total_steps=3_000, learning_starts=100, buffer_size=3_000, num_evals=6)
ONLINE_GRID = {"cql_alpha": list(ALPHAS), "online_cql_alpha": [0.0, 1.0]}
"""The offline-to-online variants of each of CQL and Cal-QL: α offline, and online plain TD
(0) or the penalty at α = 1."""
LR = 0.1


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--figure", default="experiments/figures/cal_ql.png")
    parser.add_argument("--results", default="experiments/results/cal_ql.json")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be ≥ 1")
    return args


def name(cal_ql: bool) -> str:
    return "Cal-QL" if cal_ql else "CQL"


def offline_rows(behaviour: str, path: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """CQL and Cal-QL at each α on the dataset ``path``: the final greedy return and how V̂
    compares with the known returns-to-go."""
    data = datasets.load(path)
    known = np.isfinite(data.transitions.return_to_go)
    g, states = data.transitions.return_to_go[known], data.state[known]
    _, mdp = envs.make(ENV_ID)
    hp = offline.OfflineHParams(gamma=GAMMA, lr=LR)
    rows = []
    for cal_ql in (False, True):
        config = offline.OfflineConfig(
            **COMMON, dataset=path, total_updates=UPDATES, num_evals=1, cal_ql=cal_ql
        )
        run = sweep.run(config, {"cql_alpha": list(ALPHAS)}, hparams=hp, seeds=args.seeds,
                        lanes=args.seeds, keep_state=True)  # fmt: skip
        q_fn = offline.agent(config).prog.q_function(hp)
        params = run.final_state.learner.params  # leaves [α, S, ...]
        q_all = jax.vmap(jax.vmap(q_fn, (0, None)), (0, None))(params, mdp.features)
        gap = np.asarray(q_all).max(axis=-1)[:, :, states] - g  # [α, S, known transitions]
        returns = np.asarray(run.metrics["eval_return"])[:, :, -1]
        for i, alpha in enumerate(ALPHAS):
            rows.append(
                {
                    "dataset": behaviour,
                    "agent": name(cal_ql),
                    "alpha": alpha,
                    "known_returns": float(known.mean()),
                    "final_return_iqm": float(stats.iqm(returns[i])),
                    "below_share": float(np.mean(gap[i] < 0)),
                    "gap_mean": float(np.mean(gap[i])),
                    "gap_min": float(np.min(gap[i])),
                }
            )
    return rows


def online_runs(path: str, args: argparse.Namespace) -> tuple[list[str], np.ndarray]:
    """CQL's and Cal-QL's offline-to-online variants (:data:`ONLINE_GRID`) from ``path``:
    labels and greedy returns [variant, S, T]."""
    labels, curves = [], []
    for cal_ql in (False, True):
        config = dqn.DQNConfig(**COMMON, **ONLINE, dataset=path, offline_updates=UPDATES,
                               cal_ql=cal_ql)  # fmt: skip
        hp = dqn.DQNHParams(gamma=GAMMA, lr=LR, dataset_fraction=0.5)
        run = sweep.run(config, ONLINE_GRID, hparams=hp, seeds=args.seeds, lanes=args.seeds)
        for v in run.spec.config_values():
            after = "TD" if v["online_cql_alpha"] == 0 else f"{name(cal_ql)} α=1"
            labels.append(f"{name(cal_ql)} α={v['cql_alpha']:g} → {after}")
        curves.append(np.asarray(run.metrics["eval_return"]))
    return labels, np.concatenate(curves)


def online_row(behaviour: str, agent: str, curves: np.ndarray) -> dict[str, Any]:
    """One variant's greedy returns [S, T], summarised."""
    return {
        "dataset": behaviour,
        "agent": agent,
        "at_optimum": float(np.mean(curves == OPTIMUM)),
        "first_iqm": float(stats.iqm(curves[:, 0])),
        "final_iqm": float(stats.iqm(curves[:, -1])),
        "runs_ever_off": int(np.sum(np.any(curves != OPTIMUM, axis=1))),
    }


def readme(r: dict[str, Any]) -> list:
    """experiments/cal_ql.py: the offline calibration table, then the fine-tuning table."""
    off_header = ["data", "agent", "α", "final return", "V̂ < G", "mean V̂ − G", "min V̂ − G"]
    off_rows = [
        [row["dataset"], row["agent"], f"{row['alpha']:g}", f"{row['final_return_iqm']:.0f}",
         f"{row['below_share']:.2%}", f"{row['gap_mean']:+.2f}", f"{row['gap_min']:+.2f}"]
        for row in r["offline"]
    ]  # fmt: skip
    known = ", ".join(f"{k} {v:.0%}" for k, v in r["known_returns"].items())
    off_note = (
        f"Cliff Walking, {r['seeds']} seeds, {UPDATES:,} updates, tabular; V̂(s) = max_b q̂(s, b) "
        f"against G(s) over the transitions with a known return ({known} of them); the final "
        f"greedy return is the IQM over seeds (optimum −13); {record.at(r)}"
    )
    on_header = ["data", "variant", "evals at −13", "runs ever off it", "first", "final"]
    on_rows = [
        [row["dataset"], row["agent"], f"{row['at_optimum']:.0%}",
         f"{row['runs_ever_off']}/{r['seeds']}", f"{row['first_iqm']:.0f}",
         f"{row['final_iqm']:.0f}"]
        for row in r["online"]
    ]  # fmt: skip
    on_note = (
        f"{UPDATES:,} offline updates, then {ONLINE['total_steps']:,} env steps with the data in "
        f"half of each batch; {ONLINE['num_evals']} evaluations; first and final: greedy return "
        f"IQM over {r['seeds']} seeds; {record.at(r)}"
    )
    return [record.Table(off_header, off_rows, off_note), record.Table(on_header, on_rows, on_note)]


def main() -> None:
    args = arguments()
    started = runs.provenance()
    start = time.perf_counter()
    offline_table, online_table, known, panels = [], [], {}, []
    plain = dqn.DQNConfig(**COMMON, **ONLINE)
    scratch_hp = dqn.DQNHParams(gamma=GAMMA, lr=LR)
    scratch_run = sweep.run(plain, hparams=scratch_hp, seeds=args.seeds, lanes=args.seeds)
    scratch = np.asarray(scratch_run.metrics["eval_return"])[0]
    env_steps = np.asarray(scratch_run.metrics["env_steps"])[0, 0]
    with tempfile.TemporaryDirectory() as folder:
        for behaviour, size in DATASETS.items():
            data = datasets.finite_dataset(ENV_ID, behaviour, size, seed=0, gamma=GAMMA,
                                           epsilon=EPSILON)  # fmt: skip
            path = str(datasets.save(Path(folder) / f"{behaviour}.npz", data))
            known[behaviour] = float(np.isfinite(data.transitions.return_to_go).mean())
            rows = offline_rows(behaviour, path, args)
            offline_table += rows
            labels, curves = online_runs(path, args)
            online_table.append(online_row(behaviour, "DQN from scratch", scratch))
            pairs = zip(labels, curves, strict=True)
            online_table += [online_row(behaviour, a, c) for a, c in pairs]
            td = [i for i, label in enumerate(labels) if label.endswith("TD")]
            panels.append((f"{behaviour} data, TD fine-tuning", "greedy return", curves[td]))
            below = [f"{r['agent']} α={r['alpha']:g} V̂<G {r['below_share']:.1%}" for r in rows]
            optimal = [f"{r['agent']} {r['at_optimum']:.0%}" for r in online_table[-9:]]
            print(f"{behaviour}: " + ", ".join(below) + " | " + ", ".join(optimal))
    seconds = time.perf_counter() - start
    if args.figure:
        td_labels = [label for label in labels if label.endswith("TD")]
        plots.save(plots.panels(env_steps, [panels], td_labels), args.figure)
    record.save(
        args.results or None,
        {
            "experiment": "cal_ql",
            "env_id": ENV_ID,
            "seeds": args.seeds,
            "gamma": GAMMA,
            "epsilon": EPSILON,
            "datasets": DATASETS,
            "alphas": list(ALPHAS),
            "known_returns": known,
            "seconds": seconds,
            "offline": offline_table,
            "online": online_table,
        },
        started,
    )


if __name__ == "__main__":
    main()
