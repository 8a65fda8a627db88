"""How much weight should replay put where the behaviour policy does not go? μ as a knob.

Question (the seed's): Q-learning minimises a μ-weighted value error, and replay decides μ.
How much weight is it worth putting on (s, a) pairs the behaviour policy does not visit, to
avoid catastrophic forgetting? Measured two ways:

* ``--part finite``: on a Garnet (30 states, 4 actions) and cliff walking, with linear
  features (random 12-d features on the Garnet, which cannot represent q*; one-hot, so
  tabular, on cliff walking) and a small MLP on one-hot observations, DQN with the replay
  weightings — uniform, prioritised (α ∈ {0.4, 0.6, 1}) and coverage (a fraction
  c ∈ {0.1, 0.3, 1} of each batch drawn from the model at (s, a) uniform over the reachable
  pairs). Over training: the true VE under the on-policy μ (``ve_behaviour``) and under the
  uniform μ (``ve_uniform``), the greedy policy's exact value J, and the replayed μ's
  distance to the on-policy one (``replay_tv``). Forgetting: after the greedy policy first
  becomes optimal (within 1% of |J*|), the fraction of later evaluations at which it is not.
* ``--part cartpole``: DQN on CartPole-v1 with uniform and prioritised replay (α ∈ {0.4, 0.6}),
  32 seeds × 100k steps: forgetting as the drop of the greedy-return IQM after it first
  reaches 475 (DQN's greedy return oscillates between ≈ 400 and 500), and per seed the
  largest drop after its first 475 and the fraction of its later evaluations below 475.

Each weighting family is one compiled group (its numbers, α or c, are traced), and the seeds
are the same runs in every group.

    python experiments/weighting.py --part finite      # ≈ 10 min on 2 CPU cores
    python experiments/weighting.py --part cartpole    # ≈ 6 min

Writes runs/weighting/..., experiments/figures/weighting_{finite,cartpole}.png and the
results files the README quotes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import record

from qlearn import dp, envs, plots, stats, sweep
from qlearn.algos import deep_q, dqn

GARNET = {"n_states": 30, "n_actions": 4, "branching": 3, "seed": 0}
TASKS = {  # (env, features) -> config fields
    ("Garnet", "linear"): dict(
        env_id="Garnet", env_kwargs=GARNET | {"feature_dim": 12}, network="linear"
    ),
    ("Garnet", "mlp"): dict(env_id="Garnet", env_kwargs=GARNET, hidden_sizes=(32,)),
    ("CliffWalking", "linear"): dict(env_id="CliffWalking", network="linear"),
    ("CliffWalking", "mlp"): dict(env_id="CliffWalking", hidden_sizes=(32,)),
}
FINITE = dict(
    max_episode_steps=100,
    num_envs=4,
    total_steps=50_000,
    learning_starts=1_000,
    buffer_size=10_000,
    batch_size=32,
    num_evals=20,
    eval_episodes=2,
)
FINITE_HPARAMS = {"linear": dict(lr=0.02, gamma=0.9), "mlp": dict(lr=3e-3, gamma=0.9)}
WEIGHTINGS = {  # replay -> the traced numbers of its family
    "uniform": {},
    "prioritized": {"per_alpha": [0.4, 0.6, 1.0]},
    "coverage": {"coverage": [0.1, 0.3, 1.0]},
}
CARTPOLE = dict(env_id="CartPole-v1", total_steps=100_000, num_evals=20)
CARTPOLE_WEIGHTINGS = {"uniform": {}, "prioritized": {"per_alpha": [0.4, 0.6]}}
SOLVED = 475.0
NEAR_OPTIMAL = 0.01
"""a greedy policy within 1% of |J*| counts as optimal (Garnets have near-ties)."""
FINITE_METRICS = ("ve_behaviour", "ve_uniform", "greedy_value", "replay_tv", "ve_replayed")


def label(replay: str, grid: dict[str, list[float]], i: int) -> str:
    """'uniform', 'prioritized α=0.6', 'coverage c=0.3'."""
    if not grid:
        return replay
    name, values = next(iter(grid.items()))
    symbol = {"per_alpha": "α", "coverage": "c"}[name]
    return f"{replay} {symbol}={values[i]:g}"


def run_family(config: dqn.DQNConfig, grid: dict, hp: dict, args: argparse.Namespace) -> Any:
    """One compiled group: ``config`` with the traced ``grid`` (or one configuration), in its
    run directory under ``args.out`` (a finished one is read back, an unfinished one resumed;
    one of another sweep is replaced only with ``--overwrite``)."""
    parts = ("finite", config.env_id, config.network) if envs.is_finite(config.env_id) else ()
    return sweep.run(
        config,
        grid or None,
        hparams=dqn.DQNHParams(**hp),
        seeds=args.seeds,
        out=Path(args.out, *parts, config.replay)
        if parts
        else Path(args.out, "cartpole", config.replay),
        overwrite=args.overwrite,
        progress=True,
    )


def forgetting(optimal: np.ndarray) -> tuple[float, float]:
    """(fraction of runs whose greedy policy is ever optimal, mean over those runs of the
    fraction of the evaluations after the first optimal one at which it is not), from
    ``optimal`` [S, T] bools."""
    ever, lost = [], []
    for run in optimal:
        hits = np.flatnonzero(run)
        ever.append(hits.size > 0)
        if hits.size and hits[0] < run.size - 1:
            lost.append(float(np.mean(~run[hits[0] + 1 :])))
    return float(np.mean(ever)), float(np.mean(lost)) if lost else float("nan")


def finite_row(
    env: str, features: str, name: str, best: float, values: dict, steps: np.ndarray
) -> dict[str, Any]:
    """One weighting's row on one task, from its metrics [S, T] (``values``) and the optimal
    value J* = ``best``: final IQMs of the value errors, the regret J* − J(greedy) and the
    replay's TV distance, how often it ends near-optimal, and how it forgets."""
    regret = best - values["greedy_value"]
    optimal = regret <= NEAR_OPTIMAL * abs(best)
    ever, lost = forgetting(optimal)
    final = {m: stats.describe(values[m][:, -1]) for m in FINITE_METRICS}
    return {
        "env": env,
        "features": features,
        "weighting": name,
        "j_star": best,
        "final_ve_behaviour_iqm": final["ve_behaviour"]["iqm"],
        "final_ve_uniform_iqm": final["ve_uniform"]["iqm"],
        "final_regret_iqm": float(stats.iqm(regret[:, -1])),
        "final_replay_tv_iqm": final["replay_tv"]["iqm"],
        "final_optimal_fraction": float(np.mean(optimal[:, -1])),
        "ever_optimal_fraction": ever,
        "lost_after_optimal": lost,
        "regret_auc_iqm": float(stats.iqm(stats.area_under_curve(steps, regret) / steps[-1])),
    }


def show_finite(task: str, best: float, worst_start: float, rows: list[dict]) -> None:
    """The task's table of final errors, regret and forgetting, one line per weighting."""
    print(f"\n{task}: J* = {best:.3f} (worst start {worst_start:.2f})")
    print(
        f"{'weighting':<18} {'VE μ_b':>8} {'VE unif':>8} {'J*−J':>7} {'TV':>5} "
        f"{'opt@end':>7} {'lost':>5}"
    )
    for r in rows:
        print(
            f"{r['weighting']:<18} {r['final_ve_behaviour_iqm']:8.3f} "
            f"{r['final_ve_uniform_iqm']:8.3f} {r['final_regret_iqm']:7.3f} "
            f"{r['final_replay_tv_iqm']:5.2f} {r['final_optimal_fraction']:7.2f} "
            f"{r['lost_after_optimal']:5.2f}"
        )


def finite(args: argparse.Namespace) -> None:
    rows, figure_rows, labels = [], [], None
    steps = None
    seconds: dict[str, float] = {}
    for (env, features), fields in TASKS.items():
        hp = FINITE_HPARAMS[features]
        task = f"{env} / {features}"
        curves: dict[str, list[np.ndarray]] = {m: [] for m in FINITE_METRICS}
        names: list[str] = []
        for replay, grid in WEIGHTINGS.items():
            config = dqn.DQNConfig(**FINITE, **fields, replay=replay)
            start = time.perf_counter()
            run = run_family(config, grid, hp, args)
            seconds[f"{task} / {replay}"] = time.perf_counter() - start
            steps = run.metrics["env_steps"][0, 0]
            for m in FINITE_METRICS:
                curves[m].append(run.metrics[m])
            names += [label(replay, grid, i) for i in range(run.metrics["loss"].shape[0])]
        _, mdp = deep_q.make_env(config)
        q_star = dp.value_iteration(mdp, hp["gamma"])[0]
        best = float(dp.policy_value(mdp, dp.greedy_policy(q_star, mdp.action_mask), hp["gamma"]))
        worst_start = float(np.min(curves["greedy_value"][0][:, :, 0]))
        values = {m: np.concatenate(curves[m]) for m in FINITE_METRICS}  # [H, S, T]
        regret = best - values["greedy_value"]
        task_rows = [
            finite_row(env, features, name, best, {m: v[h] for m, v in values.items()}, steps)
            for h, name in enumerate(names)
        ]
        rows += task_rows
        show_finite(task, best, worst_start, task_rows)
        figure_rows.append(
            [
                (f"{task}: VE under on-policy μ", "VE (μ_b)", values["ve_behaviour"]),
                (f"{task}: VE under uniform μ", "VE (uniform)", values["ve_uniform"]),
                (f"{task}: greedy regret", "J* − J(greedy)", regret),
                (f"{task}: replayed vs on-policy μ", "TV(μ_replay, μ_b)", values["replay_tv"]),
            ]
        )
        labels = names
    fig = plots.panels(steps, figure_rows, labels, log_y=("VE (μ_b)", "VE (uniform)"))
    plots.save(fig, args.figure or "experiments/figures/weighting_finite.png")
    record.save(
        args.results or "experiments/results/weighting_finite.json",
        {
            "experiment": "weighting_finite",
            "seeds": args.seeds,
            "env_steps": int(steps[-1]),
            "config": FINITE,
            "hparams": FINITE_HPARAMS,
            "near_optimal": NEAR_OPTIMAL,
            "seconds": seconds,
            "rows": rows,
        },
    )


def drop_after_solved(curve: np.ndarray) -> tuple[int | None, float | None, float | None]:
    """(first index where ``curve`` [T] reaches :data:`SOLVED`, its largest fall below that
    point's value afterwards, the fraction of the later points below :data:`SOLVED`), or
    (None, None, None) if it never does (the fraction is None when it first does at the end)."""
    hits = np.flatnonzero(curve >= SOLVED)
    if not hits.size:
        return None, None, None
    first = int(hits[0])
    later = curve[first + 1 :]
    below = float(np.mean(later < SOLVED)) if later.size else None
    return first, float(curve[first] - np.min(curve[first:])), below


def show_cartpole(rows: list[dict]) -> None:
    """Each weighting's final IQM, when its IQM first solved CartPole and what it lost after."""
    print(
        f"{'weighting':<18} {'final IQM':>9} {'solved at':>9} {'IQM drop':>8} {'seed drop':>9} "
        f"{'below after':>11}"
    )
    for r in rows:
        at = "never" if r["iqm_first_solved_step"] is None else f"{r['iqm_first_solved_step']:,}"
        drop = "—" if r["iqm_drop_after_solved"] is None else f"{r['iqm_drop_after_solved']:.1f}"
        seed = "—" if r["seed_drop_median"] is None else f"{r['seed_drop_median']:.1f}"
        below = "—" if r["seed_below_after_mean"] is None else f"{r['seed_below_after_mean']:.2f}"
        print(f"{r['weighting']:<18} {r['final_iqm']:9.1f} {at:>9} {drop:>8} {seed:>9} {below:>11}")


def cartpole(args: argparse.Namespace) -> None:
    rows, curves, names, steps = [], [], [], None
    seconds: dict[str, float] = {}
    for replay, grid in CARTPOLE_WEIGHTINGS.items():
        config = dqn.DQNConfig(**CARTPOLE, replay=replay)
        start = time.perf_counter()
        run = run_family(config, grid, {}, args)
        seconds[replay] = time.perf_counter() - start
        steps = run.metrics["env_steps"][0, 0]
        for i in range(run.metrics["eval_return"].shape[0]):
            names.append(label(replay, grid, i))
            curves.append(run.metrics["eval_return"][i])
    for name, returns in zip(names, curves, strict=True):  # returns [S, T]
        iqm_curve = stats.iqm(returns.T)
        first, drop, _ = drop_after_solved(iqm_curve)
        per_seed = [drop_after_solved(r) for r in returns]
        solved = [d for _, d, _ in per_seed if d is not None]
        below = [b for _, _, b in per_seed if b is not None]
        final = stats.describe(returns[:, -1])
        rows.append(
            {
                "weighting": name,
                "final_iqm": final["iqm"],
                "final_iqm_ci95": final["iqm_ci95"],
                "iqm_first_solved_step": None if first is None else int(steps[first]),
                "iqm_drop_after_solved": drop,
                "seeds_solved": len(solved),
                "seed_drop_median": float(np.median(solved)) if solved else None,
                "seed_below_after_mean": float(np.mean(below)) if below else None,
                "iqm_curve": [float(x) for x in iqm_curve],
            }
        )
    print(f"\nCartPole-v1, {args.seeds} seeds × {int(steps[-1]):,} env steps")
    show_cartpole(rows)
    fig = plots.learning_curves(
        steps,
        np.stack(curves),
        names,
        title=f"DQN on CartPole-v1: uniform vs prioritised replay, {args.seeds} seeds",
    )
    fig.axes[0].axhline(SOLVED, color="grey", linestyle=":", linewidth=1)
    plots.save(fig, args.figure or "experiments/figures/weighting_cartpole.png")
    record.save(
        args.results or "experiments/results/weighting_cartpole.json",
        {
            "experiment": "weighting_cartpole",
            "seeds": args.seeds,
            "env_steps": int(steps[-1]),
            "solved": SOLVED,
            "seconds": seconds,
            "rows": rows,
        },
    )


def _finite_readme(r: dict[str, Any]) -> list:
    """experiments/weighting.py --part finite: each replay weighting's final errors, regret
    and forgetting, per task."""
    header = [
        "task",
        "weighting",
        "VE under μ_b",
        "VE under uniform μ",
        "J* − J(greedy)",
        "TV(μ_replay, μ_b)",
        "optimal at end",
        "lost after optimal",
    ]

    def lost(x: float) -> str:
        return "—" if x != x else f"{x:.2f}"  # NaN: never optimal before the end

    rows = [
        [
            f"{row['env']} / {row['features']}",
            row["weighting"],
            f"{row['final_ve_behaviour_iqm']:.3g}",
            f"{row['final_ve_uniform_iqm']:.3g}",
            f"{row['final_regret_iqm']:.3f}",
            f"{row['final_replay_tv_iqm']:.2f}",
            f"{row['final_optimal_fraction']:.2f}",
            lost(row["lost_after_optimal"]),
        ]
        for row in r["rows"]
    ]
    note = (
        f"DQN, {r['seeds']} seeds × {r['env_steps']:,} env steps; final-point IQMs; "
        "'optimal at end': fraction of seeds within 1% of |J*|; 'lost after optimal': mean "
        "fraction of the evaluations after a run's first near-optimal one at which it is not; "
        f"{record.at(r)}"
    )
    return [record.Table(header, rows, note)]


def _cartpole_readme(r: dict[str, Any]) -> list:
    """experiments/weighting.py --part cartpole: final return and the fall after solving."""
    header = [
        "replay",
        "final return IQM [95% CI]",
        f"IQM first ≥ {r['solved']:.0f} at",
        "IQM drop after",
        "seeds ≥ 475",
        "median seed drop after",
        "seed evaluations < 475 after",
    ]

    def num(x: float | None, fmt: str) -> str:
        return "never" if x is None else format(x, fmt)

    rows = [
        [
            row["weighting"],
            f"{row['final_iqm']:.1f} " + record.ci1(row["final_iqm_ci95"]),
            num(row["iqm_first_solved_step"], ","),
            num(row["iqm_drop_after_solved"], ".1f"),
            f"{row['seeds_solved']}/{r['seeds']}",
            num(row["seed_drop_median"], ".1f"),
            num(row["seed_below_after_mean"], ".2f"),
        ]
        for row in r["rows"]
    ]
    note = f"DQN on CartPole-v1, {r['seeds']} seeds × {r['env_steps']:,} env steps; {record.at(r)}"
    return [record.Table(header, rows, note)]


def readme(r: dict[str, Any]) -> list:
    """The README block of either part's results file."""
    return _cartpole_readme(r) if "solved" in r else _finite_readme(r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("finite", "cartpole"), required=True)
    parser.add_argument("--seeds", type=int, default=None, help="default: 8 finite, 32 CartPole")
    parser.add_argument("--out", default="runs/weighting")
    parser.add_argument("--overwrite", action="store_true", help="replace other sweeps' runs")
    parser.add_argument("--figure", default=None, help="default: experiments/figures/...")
    parser.add_argument("--results", default=None, help="default: experiments/results/...")
    args = parser.parse_args()
    if args.seeds is None:
        args.seeds = 8 if args.part == "finite" else 32
    if args.part == "finite":
        finite(args)
    else:
        cartpole(args)


if __name__ == "__main__":
    main()
