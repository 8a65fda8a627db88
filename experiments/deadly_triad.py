"""The deadly triad on random MDPs: off-policy + bootstrapping + linear function approximation.

Question: on 100 random Garnet MDPs (30 states, 3 actions, deterministic transitions, 8
non-negative random features), learning v_π of "always action 0" from a behaviour policy that
takes it only 10% of the time, which updates diverge, and how often, across γ and step size —
and what true value error do the survivors reach? Compared: semi-gradient TD(0), the same with
a target network (w⁻ refreshed every 100 updates), the residual gradient, and TDC (β = 0.1).
All use exact expected updates (d_b-weighted sweeps), so divergence comes from the update
itself, not from sampling noise; and the expected TD(0) matrix A = Φᵀ D_b (I − γ P_π) Φ says in
advance which MDPs are unstable (an eigenvalue with negative real part).

    python experiments/deadly_triad.py     # one compiled program per method, vmapped over MDPs

Writes runs/deadly_triad/ (metrics per method, experiment.json) and
experiments/figures/deadly_triad.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import record
from matplotlib.figure import Figure

from qlearn import dp, envs, hparams, plots, runs
from qlearn.algos import prediction

GARNET = dict(n_states=30, n_actions=3, branching=1, feature_dim=8, feature_kind="uniform")
TARGET, BEHAVIOUR = (1.0, 0.0, 0.0), (0.1, 0.45, 0.45)
GAMMAS, LRS = (0.9, 0.99), (0.001, 0.01, 0.1)
# (label, loss, target period)
METHODS = (
    ("semi-gradient TD(0)", "semi_gradient", 1),
    ("semi-gradient + target net (100)", "semi_gradient", 100),
    ("residual gradient", "residual_gradient", 1),
    ("TDC", "tdc", 1),
)
BOUND = 1e4


def best_ve(mdp: envs.FiniteMDPParams, v_pi: np.ndarray, d_b: np.ndarray) -> float:
    """min_w Σ d_b (v_π − φᵀw)²: the VE of the best linear fit (weighted least squares)."""
    phi = np.asarray(mdp.features, np.float64)
    sqrt_d = np.sqrt(np.clip(d_b, 0.0, None))[:, None]  # float32 solves leave ≈ −1e-9 at 0
    w, *_ = np.linalg.lstsq(sqrt_d * phi, sqrt_d[:, 0] * v_pi, rcond=None)
    return float(np.sum(d_b * (v_pi - phi @ w) ** 2))


def truth(mdp: envs.FiniteMDPParams, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """(v_π [S], d_b [S]) computed exactly."""
    n = mdp.num_states
    pi = jnp.tile(jnp.asarray(TARGET), (n, 1))
    v_pi = np.asarray((dp.policy_evaluation(mdp, pi, gamma) * pi).sum(-1), np.float64)
    b = jnp.tile(jnp.asarray(BEHAVIOUR), (n, 1))
    d_b = np.asarray(dp.state_action_distribution(mdp, b).sum(-1), np.float64)
    return v_pi, d_b


def unichain(mdp: envs.FiniteMDPParams) -> bool:
    """Whether b's state chain has a unique stationary distribution (rank(I − P_b) = S − 1),
    which ``dp.state_action_distribution`` assumes."""
    p_b = np.einsum("a,sat->st", np.asarray(BEHAVIOUR), np.asarray(mdp.transition_probs))
    n = p_b.shape[0]
    return int(np.linalg.matrix_rank(np.eye(n) - p_b, tol=1e-8)) == n - 1


def unstable(mdp: envs.FiniteMDPParams, gamma: float) -> bool:
    """Whether expected off-policy TD(0) is unstable: A = Φᵀ D_b (I − γ P_π) Φ has an
    eigenvalue with negative real part."""
    b = jnp.tile(jnp.asarray(BEHAVIOUR), (mdp.num_states, 1))
    d_b = np.asarray(dp.state_action_distribution(mdp, b).sum(-1), np.float64)
    phi = np.asarray(mdp.features, np.float64)
    p_pi = np.einsum("a,sat->st", np.asarray(TARGET), np.asarray(mdp.transition_probs))
    a = phi.T @ np.diag(d_b) @ (np.eye(len(d_b)) - gamma * p_pi) @ phi
    return bool(np.linalg.eigvals(a).real.min() < 0)


def readme(r: dict[str, Any]) -> list:
    methods = list(r["methods"])
    lines = [
        "| γ, α | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    first = r["methods"][methods[0]]
    for i, cell in enumerate(first):
        shares = [f"{r['methods'][m][i]['diverged_fraction']:.0%}" for m in methods]
        lines.append(f"| {cell['gamma']:g}, {cell['lr']:g} | " + " | ".join(shares) + " |")
    predicted = ", ".join(
        f"{f:.0%} at γ = {g}" for g, f in r["predicted_unstable_fraction"].items()
    )
    ratios = "; ".join(
        f"{m}: "
        + ", ".join(
            f"{c['median_ve_over_best_linear_ve_where_td_is_stable']:.2f}× (γ {c['gamma']:g}, "
            f"α {c['lr']:g})"
            for c in r["methods"][m]
            if c["gamma"] == max(x["gamma"] for x in first) and c["lr"] == 0.01
        )
        for m in methods
    )
    return [
        record.Text(
            "\n".join(lines)
            + f"\n\nDiverged share of {r['mdps']} MDPs after {r['steps']} expected-update sweeps. "
            f"The expected TD(0) matrix has an eigenvalue with negative real part in {predicted}. "
            "Median final VE over the best linear fit, on the MDPs where TD(0) is stable: "
            f"{ratios} ({record.at(r)}).\n"
        )
    ]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mdps", type=int, default=100)
    parser.add_argument("--steps", type=int, default=5000, help="expected-update sweeps")
    parser.add_argument(
        "--results",
        default="experiments/results/deadly_triad.json",
        help="the committed results file the README quotes; '' for none",
    )
    parser.add_argument("--out", default="runs/deadly_triad")
    parser.add_argument("--figure", default="experiments/figures/deadly_triad.png")
    return parser.parse_args()


def unichain_garnets(count: int) -> list:
    """The first ``count`` Garnets (by seed) whose behaviour chain has one stationary
    distribution."""
    mdps, seed = [], 0
    while len(mdps) < count:
        mdp = envs.make("Garnet", seed=seed, **GARNET)[1]
        seed += 1
        if unichain(mdp):
            mdps.append(mdp)
    print(f"{count} unichain MDPs among Garnet seeds 0..{seed - 1}")
    return mdps


def method_rows(
    method: tuple, steps: int, grid: Any, stacked: Any, floor: dict, is_unstable: dict, out: Path
) -> tuple[list[dict], np.ndarray]:
    """One method (label, loss, target period) on every MDP and grid cell: per cell its
    diverged share and median VE over the best linear VE; and the VE curves [H, M, T]."""
    label, loss, period = method
    cells = hparams.to_lists(grid)
    config = prediction.PredictionConfig(
        env_id="Garnet",
        env_kwargs=GARNET,
        loss=loss,
        mode="expected",
        target_policy=TARGET,
        behaviour_policy=BEHAVIOUR,
        num_steps=steps,
    )
    hp = grid.replace(target_period=np.full_like(grid.target_period, period))
    over_mdps = jax.vmap(prediction.make_train(config), (None, None, 0))  # [MDP]
    over_grid = jax.jit(jax.vmap(over_mdps, (None, 0, None)))  # [H, MDP]
    _, metrics = over_grid(jax.random.key(0), hparams.to_arrays(hp), stacked)
    weights, ve = np.asarray(metrics["weights"]), np.asarray(metrics["ve"])  # [H, M, T, ...]
    with np.errstate(over="ignore", invalid="ignore"):  # diverged runs overflow
        norm = np.linalg.norm(np.nan_to_num(weights, nan=np.inf), axis=-1)  # [H, M, T]
    final, half = norm[:, :, -1], norm[:, :, steps // 2]
    # diverged: past the bound, or still growing geometrically (doubling in the last half)
    diverged = ~(final < BOUND) | (final > 2 * half)
    np.savez(out / f"{loss}_period{period}.npz", ve=ve, weight_norm=norm)
    rows = []
    for i in range(len(cells["lr"])):
        gamma = min(GAMMAS, key=lambda g, i=i: abs(g - cells["gamma"][i]))
        ratio = ve[i, ~diverged[i], -1] / floor[gamma][~diverged[i]]
        stable = ~is_unstable[gamma]
        stable_ratio = ve[i, stable, -1] / floor[gamma][stable]
        rows.append(
            {
                "gamma": gamma,
                "lr": round(cells["lr"][i], 4),
                "diverged_fraction": float(diverged[i].mean()),
                "median_ve_over_best_linear_ve": (float(np.median(ratio)) if ratio.size else None),
                "median_ve_over_best_linear_ve_where_td_is_stable": float(np.median(stable_ratio)),
            }
        )
    for r in rows:
        ratio = r["median_ve_over_best_linear_ve"]
        print(
            f"{label:34s} γ={r['gamma']:<5} α={r['lr']:<6} diverged "
            f"{r['diverged_fraction']:5.0%}   median VE / best linear VE: the rest "
            + ("—" if ratio is None else f"{ratio:.2f}")
            + f", where TD(0) is stable "
            f"{r['median_ve_over_best_linear_ve_where_td_is_stable']:.2f}"
        )
    return rows, ve


def main() -> None:
    args = arguments()
    mdps = unichain_garnets(args.mdps)
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *mdps)
    is_unstable = {g: np.array([unstable(m, g) for m in mdps]) for g in GAMMAS}
    predicted = {g: float(np.mean(u)) for g, u in is_unstable.items()}
    floor = {g: np.array([best_ve(m, *truth(m, g)) for m in mdps]) for g in GAMMAS}  # [M]
    grid = hparams.grid(
        prediction.PredictionHParams, {"gamma": list(GAMMAS), "lr": list(LRS), "beta": [0.1]}
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"predicted_unstable_fraction": {str(g): float(f) for g, f in predicted.items()}}
    curves = {}
    for method in METHODS:
        rows, ve = method_rows(method, args.steps, grid, stacked, floor, is_unstable, out)
        report[method[0]], curves[method[0]] = rows, ve
    for g, f in predicted.items():
        print(f"A has an eigenvalue with negative real part (γ = {g}): {f:.0%} of the MDPs")
    runs.write_report(out / "experiment.json", report)
    record.save(
        args.results,
        {
            "mdps": args.mdps,
            "steps": args.steps,
            "methods": {k: v for k, v in report.items() if k != "predicted_unstable_fraction"},
            "predicted_unstable_fraction": report["predicted_unstable_fraction"],
        },
    )
    figure(args, hparams.to_lists(grid), curves, is_unstable, floor, report)
    print(f"wrote {out}/ and {args.figure}")


def figure(
    args: argparse.Namespace, cells: dict, curves: dict, is_unstable: dict, floor: dict, report
) -> None:
    """Left: the median VE over the best linear VE at γ = 0.99, α = 0.01 on the MDPs where
    expected TD(0) is stable; right: each method's diverged share per grid cell."""
    fig = Figure(figsize=(12, 4), dpi=110)
    axes = fig.subplots(1, 2)
    index = next(
        i
        for i in range(len(cells["lr"]))
        if abs(cells["gamma"][i] - 0.99) < 1e-6 and abs(cells["lr"][i] - 0.01) < 1e-6
    )
    steps = np.arange(1, args.steps + 1)
    for label, ve in curves.items():
        stable = ~is_unstable[0.99]
        relative = ve[index][stable] / floor[0.99][stable, None]
        axes[0].plot(steps, np.median(relative, axis=0), label=label)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("expected-update sweeps")
    axes[0].set_ylabel("VE / best linear VE (median)")
    axes[0].set_title(
        f"γ = 0.99, α = 0.01: the {int(stable.sum())} MDPs where expected TD(0) is stable",
        fontsize=10,
    )
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    width = 0.8 / len(METHODS)
    positions = np.arange(len(cells["lr"]))
    for k, (label, *_rest) in enumerate(METHODS):
        fractions = [r["diverged_fraction"] for r in report[label]]
        axes[1].bar(positions + k * width, fractions, width, label=label)
    axes[1].set_xticks(
        positions + width * (len(METHODS) - 1) / 2,
        [f"γ={cells['gamma'][i]:.2g}\nα={cells['lr'][i]:g}" for i in positions],
        fontsize=8,
    )
    axes[1].set_ylabel("fraction of MDPs diverged")
    axes[1].legend(fontsize=8)
    axes[1].set_title(
        f"‖w‖ > {BOUND:g} or doubling over the last {args.steps // 2} sweeps", fontsize=10
    )
    axes[1].grid(alpha=0.3, axis="y")
    fig.suptitle("Off-policy linear prediction on random Garnet MDPs")
    plots.save(fig, args.figure)


if __name__ == "__main__":
    main()
