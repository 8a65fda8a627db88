"""The committed results of the experiments and of ``make demo`` (``experiments/results/*.json``)
and of the throughput and peer benchmarks (``benchmarks/results/{throughput,peers}.json``), and
the README blocks that quote them.

Every number the README quotes for an experiment or the demo sits in a block

    <!-- results NAME -->
    ...text rendered from experiments/results/NAME.json...
    <!-- /results -->

rendered by this module from the results file that the experiment wrote (its numbers, the
command, the commit and the backend they were measured at). ``tests/test_readme.py`` checks that
each block says exactly what its file says, so a re-run that moves a number cannot leave the
README behind:

    python experiments/cartpole_dqn.py          # writes experiments/results/cartpole_dqn.json
    python experiments/record.py demo runs/demo # the demo's run directory -> results/demo.json
    python experiments/record.py readme         # re-render every block of README.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
BLOCK = re.compile(r"(<!-- results (\w+) -->\n)(.*?)(<!-- /results -->)", re.S)


def save(path: str | Path | None, report: dict[str, Any]) -> Path | None:
    """Write ``report`` with its provenance (command, commit, versions, backend) as a results
    file, atomically; ``path`` '' or None writes nothing (a run that is not the documented one)."""
    if not path:
        return None
    from qlearn import runs

    return runs.write_report(Path(path), _stamped(runs.provenance(), report))


def _stamped(provenance: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """A results file: the commit and command it was measured with first, then the numbers."""
    command = " ".join(provenance.get("command") or [])
    return {
        "commit": provenance.get("git_commit"),
        "command": command,
        "provenance": provenance,
    } | (report)


def load(name: str) -> dict[str, Any]:
    folder = BENCHMARKS if name in FROM_BENCHMARKS else RESULTS
    return json.loads((folder / f"{name}.json").read_text())


def _at(report: dict[str, Any]) -> str:
    prov = report["provenance"]
    commit = (prov.get("git_commit") or "unknown")[:7]
    dirty = " + uncommitted changes" if prov.get("git_dirty") else ""
    return f"measured at commit {commit}{dirty}, jax {prov['jax']}, {prov['backend']}"


def _ci(values: list[float]) -> str:
    return f"[{values[0]:.0f}, {values[1]:.0f}]"


def render_demo(r: dict[str, Any]) -> str:
    rows = "; ".join(
        f"{c['label']}: IQM {c['final_iqm']:.0f} {_ci(c['final_iqm_ci95'])}, mean "
        f"{c['final_mean']:.0f}, diverged {c['diverged']}/{c['seeds']}"
        for c in r["configs"]
    )
    return (
        f"Greedy return at the end ({r['runs']} runs × {r['env_steps_per_run']:,} env steps, "
        f"{r['lanes']} lanes; compile {r['compile_seconds']:.0f} s, run "
        f"{r['run_seconds']:.0f} s): {rows} ({_at(r)}).\n"
    )


def render_timed(r: dict[str, Any]) -> str:
    """One training experiment of experiments/timed.py (one configuration)."""
    c = r["configs"][0]
    reached = (
        f"IQM ≥ {c['threshold']:g} first at {c['steps_to_threshold']:,} env steps, "
        f"{c['seconds_to_threshold']:.1f} s after compiling"
        if c.get("steps_to_threshold") is not None
        else f"IQM never reached {c['threshold']:g}"
        if "threshold" in c
        else ""
    )
    return (
        f"{r['seeds']} seeds × {r['env_steps_per_run']:,} env steps on {r['env_id']}: "
        + (f"{reached}; " if reached else "")
        + f"final IQM {c['final_iqm']:.1f} {_ci(c['final_iqm_ci95'])}, mean "
        f"{c['final_mean']:.1f}; compile {r['compile_seconds']:.1f} s, run "
        f"{r['run_seconds']:.1f} s ({r['env_steps_per_second']:,.0f} env steps/s) ({_at(r)}).\n"
    )


def _iqm_at(report: dict[str, Any], axis: str, limit: float) -> str:
    """The IQM curve's value at the last evaluation point with ``axis`` ≤ ``limit``."""
    points = [i for i, x in enumerate(report[axis]) if x <= limit]
    return f"{report['configs'][0]['iqm_curve'][points[-1]]:.1f}" if points else "—"


def render_games(r: dict[str, Any]) -> str:
    """A MinAtar experiment: per game, the final IQM, and the IQM at equal env steps (500k) and
    at equal wall clock (500 s after compiling), for comparing DQN with PQN."""
    lines = [
        "| game | seeds × env steps | final IQM [95% CI] | final mean | IQM at 500k steps "
        "| IQM at 500 s | run s (compile) | env steps/s | reference at 5M frames |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g in r["games"]:
        c = g["configs"][0]
        ref = g.get("reference")
        lo, hi = c["final_iqm_ci95"]
        lines.append(
            f"| {g['env_id']} | {g['seeds']} × {g['env_steps_per_run']:,} | "
            f"{c['final_iqm']:.1f} [{lo:.1f}, {hi:.1f}] | {c['final_mean']:.1f} | "
            f"{_iqm_at(g, 'env_steps', 500_000)} | {_iqm_at(g, 'seconds', 500.0)} | "
            f"{g['run_seconds']:.0f} ({g['compile_seconds']:.0f}) | "
            f"{g['env_steps_per_second']:,.0f} | {'≈ ' + format(ref, 'g') if ref else '—'} |"
        )
    return "\n".join(lines) + f"\n\n({r['algo'].upper()}, {_at(r)}.)\n"


def _ci1(values: list[float]) -> str:
    return f"[{values[0]:.1f}, {values[1]:.1f}]"


def _table(header: list[str], rows: list[list[str]], note: str) -> str:
    """A Markdown table (first column left-aligned, the others right-aligned) and a note."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + f"\n\n({note}.)\n"


def render_cliff_walking(r: dict[str, Any]) -> str:
    header = [
        "algorithm",
        "online return, last 100 episodes [95% CI]",
        "book",
        "greedy path optimal",
    ]
    rows = [
        [
            name.replace("_", " "),
            f"{a['online_return_last_100_mean']:.1f} "
            + _ci1(a["online_return_last_100_mean_ci95"]),
            a["book"],
            f"{a['greedy_path_optimal_fraction']:.0%} of runs",
        ]
        for name, a in r["algorithms"].items()
    ]
    return _table(header, rows, f"{r['runs']} runs × {r['episodes']} episodes; {_at(r)}")


def render_maximization_bias(r: dict[str, Any]) -> str:
    header = ["algorithm", "% left, episodes 1–10", "peak (episode)", "last 50 episodes"]
    rows = [
        [
            name.replace("_", " "),
            f"{a['left_percent_episodes_1_to_10']:.1f}",
            f"{a['left_percent_peak']:.1f} ({a['left_percent_peak_episode']})",
            f"{a['left_percent_last_50']:.1f}",
        ]
        for name, a in r["algorithms"].items()
    ]
    return _table(header, rows, f"{r['runs']} runs × {r['episodes']} episodes; {_at(r)}")


def render_baird(r: dict[str, Any]) -> str:
    header = ["method", "α (β)", "max abs weight at the end (mean over seeds)", "√VE first → last"]
    rows = [
        [
            name,
            f"{m['lr']:g}" + (f" ({m['beta']:g})" if m.get("beta") else ""),
            f"{m['max_abs_weight_final_mean_over_seeds']:.1f}",
            f"{m['sqrt_ve_first_step']:.1f} → {m['sqrt_ve_final']:.1f}",
        ]
        for name, m in r["methods"].items()
    ]
    return _table(header, rows, f"{r['seeds']} seeds × {r['steps']} steps; {_at(r)}")


def render_deadly_triad(r: dict[str, Any]) -> str:
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
    return (
        "\n".join(lines)
        + f"\n\nDiverged share of {r['mdps']} MDPs after {r['steps']} expected-update sweeps. "
        f"The expected TD(0) matrix has an eigenvalue with negative real part in {predicted}. "
        f"Median final VE over the best linear fit, on the MDPs where TD(0) is stable: {ratios} "
        f"({_at(r)}).\n"
    )


CASE_NAMES = {
    "dqn-cartpole": "DQN CartPole",
    "pqn-cartpole": "PQN CartPole",
    "dqn-breakout": "DQN Breakout",
    "pqn-breakout": "PQN Breakout",
}


def _si(x: float) -> str:
    """3 significant figures with k / M: 61.2k, 750k, 1.53M, 389."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if x >= scale:
            v = x / scale
            return (
                f"{v:.2f}{suffix}"
                if v < 10
                else f"{v:.1f}{suffix}"
                if v < 100
                else f"{v:.0f}{suffix}"
            )
    return f"{x:.0f}"


def render_throughput(r: dict[str, Any]) -> str:
    """benchmarks/throughput.py: the table, the compile times and the cost of evaluation."""
    header = [
        "case", "runs", "env only", "acting", "training", "÷ acting", "updates/s",
        "per-run gain", "XLA MiB",
    ]  # fmt: skip
    rows, last = [], None
    for row in r["rows"]:
        case = CASE_NAMES[row["case"]] if row["case"] != last else ""
        last = row["case"]
        rows.append(
            [
                case,
                str(row["runs"]),
                _si(row["env_only"]),
                _si(row["acting"]),
                _si(row["env_steps_per_second"]),
                f"{row['fraction_of_acting']:.2f}",
                _si(row["updates_per_second"]),
                f"{row['per_run_gain']:.1f}×",
                f"{row['xla_bytes'] / 2**20:.0f}",
            ]
        )
    compiles = "; ".join(
        f"{CASE_NAMES[c['case']]} {c['cold']:.1f} s cold, {c['cached']:.1f} s cached"
        for c in r["compile"]
    )
    evals = "; ".join(
        f"{CASE_NAMES[e['case']]} × {e['runs']}: {e['overhead']:+.0%}" for e in r["evaluation"]
    )
    note = f"medians of {r['repeats']} after compilation; {r['device']}, {r['cpu_count']} cores"
    return (
        _table(header, rows, f"{note}; {_at(r)}")
        + f"\nCompile seconds of one run (cold, and in a new process with the persistent cache): "
        f"{compiles}. Cost of the experiments' evaluation schedule against two one-episode "
        f"evaluations (A B A B): {evals}.\n"
    )


def render_peers(r: dict[str, Any]) -> str:
    """benchmarks/peers.py: qlearn against Rejax at Rejax's CartPole settings."""
    header = [
        "algo", "seeds", "Rejax env steps/s", "qlearn env steps/s", "qlearn ÷ Rejax",
        "compile Rejax / qlearn", "final return Rejax / qlearn",
    ]  # fmt: skip
    rows = [
        [
            row["algo"].upper(),
            str(row["seeds"]),
            f"{row['rejax_steps_per_second']:,.0f}",
            f"{row['qlearn_steps_per_second']:,.0f}",
            f"**{row['ratio']:.2f}×**",
            f"{row['rejax_compile_seconds']:.1f} / {row['qlearn_compile_seconds']:.1f} s",
            f"{row['rejax_final_return']:.1f} / {row['qlearn_final_return']:.1f}",
        ]
        for row in r["rows"]
    ]
    rounds = 1 + max(run["round"] for run in r["runs"])
    return _table(header, rows, f"medians over {rounds} alternating rounds; {_at(r)}")


def render_loss_cost(r: dict[str, Any]) -> str:
    """benchmarks/loss_cost.py: each built-in loss's training time relative to Huber (with
    uniform replay), and with prioritised replay."""
    sizes = sorted({row["runs"] for row in r["rows"]})
    header = ["loss", "head", "replay"]
    header += [f"× Huber, {n} run{'s' if n > 1 else ''}" for n in sizes]
    by = {(row["loss"], row["runs"]): row for row in r["rows"]}
    names = list(dict.fromkeys(row["loss"] for row in r["rows"]))
    first = {name: by[(name, sizes[0])] for name in names}
    rows = [
        [
            f"`{name.split('+')[0]}`",
            first[name]["head"],
            first[name].get("replay", "uniform"),
        ]
        + [f"{by[(name, n)]['ratio_to_huber']:.2f}" for n in sizes]
        for name in names
    ]
    note = (
        f"DQN on {r.get('env', 'CartPole-v1')} ({r.get('network', 'mlp')}), "
        f"{r['steps_per_run']:,} env steps per run, medians over {r['rounds']} alternating "
        f"rounds; {_at(r)}"
    )
    return _table(header, rows, note)


def render_which_loss(r: dict[str, Any]) -> str:
    """experiments/which_loss.py: each built-in loss's final greedy return, best first."""
    header = ["loss", "head", "final return IQM [95% CI]", "mean", "P(run beats a Huber run)"]
    rows = [
        [
            f"`{row['loss']}`",
            row["head"],
            f"{row['final_iqm']:.1f} " + _ci1(row["final_iqm_ci95"]),
            f"{row['final_mean']:.1f}",
            f"{row['p_improvement_over_huber']:.2f}",
        ]
        for row in sorted(r["rows"], key=lambda row: -row["final_iqm"])
    ]
    note = f"DQN on {r['env']}, {r['seeds']} seeds × {r['env_steps']:,} env steps; {_at(r)}"
    return _table(header, rows, note)


def render_weighting_finite(r: dict[str, Any]) -> str:
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
        f"{_at(r)}"
    )
    return _table(header, rows, note)


def render_weighting_cartpole(r: dict[str, Any]) -> str:
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
            f"{row['final_iqm']:.1f} " + _ci1(row["final_iqm_ci95"]),
            num(row["iqm_first_solved_step"], ","),
            num(row["iqm_drop_after_solved"], ".1f"),
            f"{row['seeds_solved']}/{r['seeds']}",
            num(row["seed_drop_median"], ".1f"),
            num(row["seed_below_after_mean"], ".2f"),
        ]
        for row in r["rows"]
    ]
    note = f"DQN on CartPole-v1, {r['seeds']} seeds × {r['env_steps']:,} env steps; {_at(r)}"
    return _table(header, rows, note)


def render_suites(r: dict[str, Any]) -> str:
    """experiments/suites.py: DQN and PQN on the adapted suites, final IQM and budget."""
    header = ["env", "algorithm", "seeds × env steps", "final return IQM [95% CI]", "mean"]
    header += ["run s (compile)", "env steps/s"]
    rows = [
        [
            f"`{x['env_id']}`",
            x["algo"].upper(),
            f"{x['seeds']} × {x['env_steps_per_run']:,}",
            f"{x['configs'][0]['final_iqm']:.2f} " + _ci2(x["configs"][0]["final_iqm_ci95"]),
            f"{x['configs'][0]['final_mean']:.2f}",
            f"{x['run_seconds']:.0f} ({x['compile_seconds']:.0f})",
            f"{x['env_steps_per_second']:,.0f}",
        ]
        for x in r["runs"]
    ]
    return _table(header, rows, f"greedy evaluation, 2 CPU cores; {_at(r)}")


def _ci2(values: list[float]) -> str:
    return f"[{values[0]:.2f}, {values[1]:.2f}]"


def render_suite_throughput(r: dict[str, Any]) -> str:
    """benchmarks/suite_throughput.py: bare env steps/s of each suite beside gymnax's."""
    sizes = [str(n) for n in r["sizes"]]
    header = ["env"] + [f"steps/s, {n} run{'s' if n != '1' else ''}" for n in sizes]
    header += [f"× CartPole, {sizes[-1]} runs", f"replay per run ({r['buffer_size']:,})"]
    header += ["runs that fit"]
    rows = [
        [f"`{row['env']}`"]
        + [_si(row["steps_per_second"][n]) for n in sizes]
        + [
            f"{row['vs_cartpole'][sizes[-1]]:.3g}" if "vs_cartpole" in row else "—",
            f"{row['replay_bytes_per_run'] / 2**20:,.0f} MiB",
            f"{row['runs_that_fit']:,}",
        ]
        for row in r["rows"]
    ]
    note = (
        "random actions through the auto-resetting step, one env per run; runs that fit: "
        f"replay buffers in {r['rows'][0]['memory_budget_bytes'] / 2**30:.1f} GiB, the "
        f"memory one compiled chunk may use here; {_at(r)}"
    )
    return _table(header, rows, note)


def render_optimistic_resets(r: dict[str, Any]) -> str:
    """benchmarks/optimistic_resets.py: Craftax steps/s with M fresh worlds per step."""
    header = ["envs N", "fresh worlds per step M", "steps/s", "× auto-reset"]
    rows = [
        [
            f"{row['num_envs']}",
            "every env (gymnax's auto-reset)" if row["resets"] == 0 else f"{row['resets']}",
            _si(row["steps_per_second"]),
            "1" if row["resets"] == 0 else f"{row['vs_auto_reset']:.2f}",
        ]
        for row in r["rows"]
    ]
    note = (
        f"`{r['env']}`, one run of N envs, random actions, median of {r['repeats']} calls; {_at(r)}"
    )
    return _table(header, rows, note)


def render_compare_tasks(r: dict[str, Any]) -> str:
    """experiments/compare_tasks.py: aggregates over tasks and each task's normalisation."""
    methods = list(r["methods"])
    header = ["method", "IQM", "median", "mean", "optimality gap"]
    rows = [
        [m.upper()]
        + [
            f"{r['methods'][m][k]['value']:.2f} " + _ci2(r["methods"][m][k]["ci95"])
            for k in ("iqm", "median", "mean", "optimality_gap")
        ]
        for m in methods
    ]
    tasks = "; ".join(
        f"{env}: random {t['random']:.3g}, reference {t['reference']:g}, final IQM "
        + ", ".join(f"{m.upper()} {t['final_iqm'][m]:.3g}" for m in methods)
        for env, t in r["tasks"].items()
    )
    pairs = "; ".join(
        f"P({k.upper()}) = {v['value']:.2f} " + _ci2(v["ci95"]) for k, v in r["improvement"].items()
    )
    return _table(
        header,
        rows,
        f"normalised final greedy return over {len(r['tasks'])} tasks × {r['seeds']} seeds "
        f"(95% stratified-bootstrap CIs); {tasks}; {pairs}; 2 CPU cores; {_at(r)}",
    )


RENDER: dict[str, Callable[[dict[str, Any]], str]] = {
    "demo": render_demo,
    "cartpole_dqn": render_timed,
    "cartpole_dqn_heldout": render_timed,
    "cartpole_pqn": render_timed,
    "minatar_pqn": render_games,
    "minatar_dqn": render_games,
    "cliff_walking": render_cliff_walking,
    "maximization_bias": render_maximization_bias,
    "baird": render_baird,
    "deadly_triad": render_deadly_triad,
    "throughput": render_throughput,
    "peers": render_peers,
    "loss_cost": render_loss_cost,
    "which_loss_cartpole": render_which_loss,
    "weighting_finite": render_weighting_finite,
    "weighting_cartpole": render_weighting_cartpole,
    "which_loss_breakout": render_which_loss,
    "suite_throughput": render_suite_throughput,
    "optimistic_resets": render_optimistic_resets,
    "suites": render_suites,
    "loss_cost_breakout": render_loss_cost,
    "compare_tasks": render_compare_tasks,
}
BENCHMARKS = ROOT / "benchmarks" / "results"
FROM_BENCHMARKS = (
    "throughput",
    "peers",
    "loss_cost",
    "loss_cost_breakout",
    "suite_throughput",
    "optimistic_resets",
)
"""Blocks rendered from benchmarks/results/ (the others from experiments/results/)."""


def render(text: str) -> str:
    """``text`` (the README) with every results block re-rendered from its file."""

    def block(m: re.Match) -> str:
        name = m.group(2)
        if name not in RENDER:
            raise KeyError(f"README block '{name}' has no renderer in experiments/record.py")
        return m.group(1) + RENDER[name](load(name)) + m.group(4)

    return BLOCK.sub(block, text)


def blocks(text: str) -> dict[str, str]:
    """name -> the text of each results block of ``text``."""
    return {m.group(2): m.group(3) for m in BLOCK.finditer(text)}


def demo(run_dir: str | Path, out: str | Path = RESULTS / "demo.json") -> Path | None:
    """The results file of ``make demo`` from its run directory (summary and provenance)."""
    sys.path.insert(0, str(ROOT))
    from qlearn import runs

    run = runs.load(run_dir)
    timing = run.summary["timing"]
    labels = runs.labels(run.spec)
    report = {
        "run_dir": str(run_dir),
        "runs": run.spec.num_runs,
        "lanes": run.spec.run_lanes,
        "env_steps_per_run": int(run.metrics["env_steps"][0, 0, -1]),
        "compile_seconds": timing["compile_seconds"],
        "run_seconds": timing["run_seconds"],
        "configs": [
            {
                "label": label,
                "final_iqm": c["final"]["iqm"],
                "final_iqm_ci95": c["final"]["iqm_ci95"],
                "final_mean": c["final"]["mean"],
                "diverged": c["diverged"],
                "seeds": c["seeds"],
            }
            for label, c in zip(labels, run.summary["configs"], strict=True)
        ],
    }
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the provenance of the run itself (its commit and command), not of this conversion
    path.write_text(json.dumps(_stamped(run.provenance, report), indent=2) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="record the demo's run directory (as results/demo.json)")
    d.add_argument("run_dir")
    d.add_argument(
        "--out",
        default=str(RESULTS / "demo.json"),
        help="where to write the record (make demo keeps it in the run directory; make "
        "demo-results updates the committed one)",
    )
    sub.add_parser("readme", help="re-render README.md's results blocks")
    args = parser.parse_args()
    if args.command == "demo":
        print(f"wrote {demo(args.run_dir, args.out)}")
    else:
        readme = ROOT / "README.md"
        readme.write_text(render(readme.read_text()))
        print(f"re-rendered {len(blocks(readme.read_text()))} results blocks of {readme}")


if __name__ == "__main__":
    main()
