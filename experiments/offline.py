"""Offline Q-learning where the truth is known: how wrong do the learned values get where the
data are thin, and what do CQL and behaviour cloning buy?

Datasets of 20,000 transitions on two finite MDPs (Cliff Walking, and a Garnet of 30 states
and 4 actions) from behaviours of known coverage (:mod:`qlearn.datasets`), from thin to full:
``expert`` (greedy in q*), ``mixture`` (half expert, half uniform), ``eps_greedy`` (ε = 0.3 of
q*) and ``uniform``. On each, the offline learner (:mod:`qlearn.algos.offline`) as offline DQN
(α = 0), CQL(H) at α = 0.1 and 1 (Kumar et al. 2020) — the three in one compiled sweep over
α — and behaviour cloning, with a tabular (linear on one-hot) and an MLP Q-network. Reported
per cell, over seeds, at the last evaluation: the greedy policy's exact discounted value
J(π) as a normalised score (0: the uniform policy, 1: the optimum), the mean over-estimation
q̂ − q* on the actions the data never take in the states they visit, and on the pairs they
do take, and the fraction of visited states where the greedy action leaves the data.

What the literature predicts (Fujimoto et al. 2019; Agarwal et al. 2020; Kumar et al. 2020):
offline DQN's values blow up on unvisited actions when coverage is thin and it matches the
optimum when coverage is full; CQL trades a pessimistic bias for stability; BC is as good as
the data's behaviour.

    python experiments/offline.py                  # ≈ 10 min on 2 CPU cores
    python experiments/offline.py --seeds 2 --updates 0.2 --results '' --figure ''  # smoke

Writes experiments/figures/offline.png and experiments/results/offline.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import record

from qlearn import datasets, dp, envs, plots, runs, stats, sweep
from qlearn.algos import offline

ENVS = {
    "CliffWalking": {},
    "Garnet": {"n_states": 30, "n_actions": 4, "branching": 3, "seed": 0},
}
"""Each MDP and its builder's arguments."""
BEHAVIOURS = ("expert", "mixture", "eps_greedy", "uniform")
SIZE = 20_000
GAMMA = 0.9
EPSILON = 0.3
ALPHAS = (0.0, 0.1, 1.0)
"""CQL's α, one compiled sweep: 0 is offline DQN."""
NETWORKS = {
    "linear": dict(config=dict(network="linear", total_updates=5_000), lr=0.1),
    "mlp": dict(config=dict(network="mlp", hidden_sizes=(64,), total_updates=20_000), lr=1e-3),
}
"""Each Q-network: its config fields and Adam's step size."""
AGENTS = ("offline DQN", "CQL α=0.1", "CQL α=1", "BC")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--updates", type=float, default=1.0, help="multiply total_updates")
    parser.add_argument("--figure", default="experiments/figures/offline.png")
    parser.add_argument("--results", default="experiments/results/offline.json")
    args = parser.parse_args()
    if args.seeds < 1 or args.updates <= 0:
        parser.error("--seeds must be ≥ 1 and --updates > 0")
    return args


def reference_values(env_id: str) -> tuple[float, float]:
    """(J_γ of the optimal policy, J_γ of the uniform policy) of ``env_id``: the normalised
    score's 1 and 0."""
    _, mdp = envs.make(env_id, **ENVS[env_id])
    q_star = dp.value_iteration(mdp, GAMMA)[0]
    best = dp.policy_value(mdp, dp.greedy_policy(q_star, mdp.action_mask), GAMMA)
    mask = np.asarray(mdp.action_mask, np.float32)
    uniform = dp.policy_value(mdp, mask / mask.sum(1, keepdims=True), GAMMA)
    return float(best), float(uniform)


def cell(env_id: str, behaviour: str, network: str, folder: Path, args: argparse.Namespace):
    """Every agent on one dataset with one network: rows and the J curves [agent, S, T]."""
    data = datasets.finite_dataset(
        env_id, behaviour, SIZE, seed=0, gamma=GAMMA, epsilon=EPSILON, env_kwargs=ENVS[env_id]
    )
    path = datasets.save(folder / f"{env_id}_{behaviour}.npz", data, overwrite=True)
    _, mdp = envs.make(env_id, **ENVS[env_id])
    cover = datasets.coverage(data, mdp)
    spec = NETWORKS[network]
    fields = dict(spec["config"])
    fields["total_updates"] = int(fields["total_updates"] * args.updates)
    hp = offline.OfflineHParams(gamma=GAMMA, lr=spec["lr"])
    start = time.perf_counter()
    metrics = []
    for loss, grid in (("huber", {"cql_alpha": list(ALPHAS)}), ("bc", None)):
        config = offline.OfflineConfig(
            env_id=env_id,
            env_kwargs=ENVS[env_id],
            dataset=str(path),
            loss=loss,
            num_evals=10,
            eval_episodes=1,
            **fields,
        )
        run = sweep.run(config, grid, hparams=hp, seeds=args.seeds, lanes=args.seeds)
        metrics.append(run.metrics)
    seconds = time.perf_counter() - start
    best, uniform = reference_values(env_id)

    def stack(name: str) -> np.ndarray:  # [agent, S, T]
        return np.concatenate([np.asarray(m[name]) for m in metrics])

    def final_mean(name: str, i: int) -> float:  # NaN where the data leave no such pair
        values = stack(name)[i, :, -1]
        return float(np.mean(values)) if np.all(np.isfinite(values)) else float("nan")

    score = (stack("greedy_value") - uniform) / (best - uniform)
    rows = []
    for i, agent in enumerate(AGENTS):
        final = score[i, :, -1]
        d = stats.describe(final)
        rows.append(
            {
                "env_id": env_id,
                "behaviour": behaviour,
                "network": network,
                "agent": agent,
                "pairs_seen": cover["pairs_seen"],
                "score_iqm": d["iqm"],
                "score_iqm_ci95": d["iqm_ci95"],
                "scores": [float(x) for x in final],
                "overest_ood": final_mean("overest_ood", i),
                "overest_visited": final_mean("overest_star_visited", i),
                "greedy_ood": final_mean("greedy_ood", i),
                "updates": int(stack("updates")[i, 0, -1]),
            }
        )
    print(
        f"{env_id} {behaviour} ({cover['pairs_seen']:.0%} of pairs), {network}: "
        + ", ".join(f"{r['agent']} {r['score_iqm']:.2f}" for r in rows)
        + f" ({seconds:.0f} s)"
    )
    return rows, score, seconds


def figure(curves: dict[tuple, np.ndarray], network: str) -> Any:
    """One row per MDP, one panel per dataset: each agent's normalised score over updates."""
    rows = [
        [
            (f"{env_id}: {behaviour}", "normalised J(π)", curves[env_id, behaviour, network])
            for behaviour in BEHAVIOURS
        ]
        for env_id in ENVS
    ]
    evals = next(iter(curves.values())).shape[-1]
    fraction = np.arange(1, evals + 1) / evals
    return plots.panels(fraction, rows, AGENTS, xlabel=f"fraction of the updates ({network})")


def readme(r: dict[str, Any]) -> list:
    """experiments/offline.py: per MDP, dataset, network and agent, the final normalised score
    and where the values went wrong."""
    header = [
        "MDP",
        "data",
        "pairs seen",
        "network",
        "agent",
        "score IQM [95% CI]",
        "q̂ − q*, unseen actions",
        "q̂ − q*, data's pairs",
        "greedy leaves the data",
    ]
    rows = [
        [
            row["env_id"],
            row["behaviour"],
            f"{row['pairs_seen']:.0%}",
            row["network"],
            row["agent"],
            f"{row['score_iqm']:.2f} " + record.ci2(row["score_iqm_ci95"]),
            "–" if np.isnan(row["overest_ood"]) else f"{row['overest_ood']:+.2f}",
            f"{row['overest_visited']:+.2f}",
            f"{row['greedy_ood']:.0%}",
        ]
        for row in r["rows"]
    ]
    note = (
        f"{r['seeds']} seeds, {r['size']:,} transitions per dataset, γ = {r['gamma']}; score = "
        "(J(π) − J(uniform)) / (J* − J(uniform)), exact; the errors are means over seeds at the "
        f"last evaluation; {record.at(r)}"
    )
    return [record.Table(header, rows, note)]


def main() -> None:
    args = arguments()
    started = runs.provenance()
    rows, curves, seconds = [], {}, 0.0
    with tempfile.TemporaryDirectory() as folder:
        for env_id in ENVS:
            for behaviour in BEHAVIOURS:
                for network in NETWORKS:
                    r, score, s = cell(env_id, behaviour, network, Path(folder), args)
                    rows += r
                    curves[env_id, behaviour, network] = score
                    seconds += s
    if args.figure:
        for network in NETWORKS:
            path = Path(args.figure)
            plots.save(figure(curves, network), path.with_stem(f"{path.stem}_{network}"))
    record.save(
        args.results or None,
        {
            "experiment": "offline",
            "seeds": args.seeds,
            "size": SIZE,
            "gamma": GAMMA,
            "epsilon": EPSILON,
            "alphas": list(ALPHAS),
            "envs": ENVS,
            "networks": NETWORKS,
            "updates_scale": args.updates,
            "seconds": seconds,
            "rows": rows,
        },
        started,
    )


if __name__ == "__main__":
    main()
