"""What the training experiments share: run configs × seeds as one compiled batch, timing every
evaluation point, and report returns against env steps and wall-clock seconds.

The wall-clock time of an evaluation point is measured, not extrapolated: a host callback in
the compiled loop (:class:`qlearn.progress.EvalClock`) timestamps it, from the end of
compilation (reported separately). Each script's figures and ``experiment.json`` come from here.
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import record

from qlearn import algos, compare, devices, progress, runs, stats, sweep
from qlearn import spec as spec_lib
from qlearn.cli import arguments as cli_args

# Final returns reported by the MinAtar paper (Young & Tian 2019) and gymnax's PPO checkpoints,
# to print beside ours (README, "Experiments"): qlearn.compare's table of references.
MINATAR_REFERENCE = {
    env_id: ref.score for env_id, ref in compare.REFERENCES.items() if env_id.endswith("MinAtar")
}


def arguments(
    description: str, *, out: str, figure: str, games: str | None = None
) -> argparse.ArgumentParser:
    """The options every training experiment takes (and ``--games`` when ``games`` gives the
    default list). Its numbers go to ``--results`` (default ``experiments/results/NAME.json``,
    NAME the last part of ``out``), the file the README quotes."""
    parser = argparse.ArgumentParser(description=description)
    if games is not None:
        parser.add_argument("--games", default=games, help="comma-separated MinAtar env ids")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="base seed")
    parser.add_argument("--total-steps", type=int, default=None, help="env steps per run")
    parser.add_argument("--hp", action="append", default=[], help="NAME=V[,V...]")
    parser.add_argument("--cfg", action="append", default=[], help="FIELD=VALUE")
    parser.add_argument("--out", default=out)
    parser.add_argument(
        "--figure", default=figure, help="where to copy the learning curves; '' for nowhere"
    )
    parser.add_argument(
        "--results",
        default=f"experiments/results/{Path(out).name}.json",
        help="the committed results file the README quotes; '' for none (other seeds/budgets)",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="disable JAX's persistent compilation cache"
    )
    return parser


def config_entry(
    h: int,
    returns: np.ndarray,
    steps: np.ndarray,
    seconds: np.ndarray,
    threshold: float | None,
) -> dict[str, Any]:
    """Configuration ``h``'s entry of the report from its greedy returns [S, T] (printed as a
    line): the IQM curve over seeds, the final IQM with its 95% CI and mean, and (with
    ``threshold``) the env steps and seconds at which the IQM first reached it."""
    curve = stats.iqm(returns.T)  # [T]
    final = stats.describe(returns[:, -1])
    entry = {
        "config": h,
        "iqm_curve": curve.tolist(),
        "final_iqm": final["iqm"],
        "final_iqm_ci95": final["iqm_ci95"],
        "final_mean": final["mean"],
    }
    line = f"config {h}: final IQM {final['iqm']:.1f} {np.round(final['iqm_ci95'], 1)}"
    if threshold is not None:
        reached = np.flatnonzero(curve >= threshold)
        first = int(reached[0]) if reached.size else None
        entry["threshold"] = threshold
        entry["steps_to_threshold"] = int(steps[first]) if first is not None else None
        entry["seconds_to_threshold"] = float(seconds[first]) if first is not None else None
        line += (
            f"; IQM ≥ {threshold:g} at {entry['steps_to_threshold']:,} env steps, "
            f"{entry['seconds_to_threshold']:.1f} s after compilation"
            if first is not None
            else f"; IQM never reached {threshold:g}"
        )
    print(line)
    return entry


def experiment_spec(
    algo: str, config_defaults: dict[str, Any], hparam_defaults: dict[str, Any], args: Any
) -> tuple[Any, spec_lib.Spec, int]:
    """(config, spec, number of runs) of a timed experiment: the defaults overridden by
    ``args`` (--cfg, --hp, --total-steps), every configuration × seed in one compiled call."""
    if args.total_steps is not None:
        config_defaults = {**config_defaults, "total_steps": args.total_steps}
    algorithm = algos.get(algo)
    config = cli_args.parse_config(algorithm.config, args.cfg, **config_defaults)
    hparams_cls = algorithm.hparams_for(config)
    grid = cli_args.parse_hparams(hparams_cls, args.hp)
    num_runs = math.prod(len(v) for v in grid.values()) * args.seeds
    spec = spec_lib.make_spec(
        config,
        grid,
        hparams=hparams_cls(**hparam_defaults),
        seeds=args.seeds,
        base_seed=args.seed,
        lanes=num_runs,  # one compiled call of every run: the clock times one batch
    )
    return config, spec, num_runs


def run(
    algo: str,
    config_defaults: dict[str, Any],
    hparam_defaults: dict[str, Any],
    args: argparse.Namespace,
    *,
    out: str | Path,
    threshold: float | None = None,
    figure: str | Path | None = None,
    save_results: bool = True,
) -> tuple[runs.Run, dict[str, Any]]:
    """Train ``algo`` ("dqn" or "pqn") with the defaults
    overridden by ``args`` (--cfg, --hp, --total-steps), all configs × seeds in one chunk;
    write ``experiment.json`` beside the run's metrics (and, with ``save_results``, to
    ``args.results``) and print what it says.

    The report: compile and run seconds, env steps [T] and seconds [T] of the evaluation
    points, and per configuration the IQM curve over seeds [T], the final IQM with its 95% CI
    and mean, and (with ``threshold``) the env steps and seconds at which the IQM first
    reached it.
    """
    devices.enable_compilation_cache(not args.no_cache)
    config, spec, num_runs = experiment_spec(algo, config_defaults, hparam_defaults, args)
    clock = progress.EvalClock(config.num_evals)
    runs.prepare(out, spec, overwrite=True)
    result = sweep.execute(spec, out, progress=clock)
    timing = result.summary["timing"]
    seconds = clock.seconds(timing["run_started"])
    steps, returns = (
        result.metrics["env_steps"][0, 0],
        result.metrics["eval_return"],
    )  # [T], [H, S, T]
    report: dict[str, Any] = {
        "algo": spec.algo,
        "env_id": config.env_id,
        "seeds": args.seeds,
        "base_seed": args.seed,
        "env_steps_per_run": config.actual_total_steps,
        "compile_seconds": timing["compile_seconds"],
        "run_seconds": timing["run_seconds"],
        "env_steps_per_second": num_runs * config.actual_total_steps / timing["run_seconds"],
        "env_steps": steps.tolist(),
        "seconds": seconds.tolist(),
        "configs": [],
    }
    print(runs.summary_table(spec, result.summary["configs"]))
    for h in range(returns.shape[0]):
        report["configs"].append(config_entry(h, returns[h], steps, seconds, threshold))
    print(
        f"{config.env_id}: compile {timing['compile_seconds']:.1f} s; run "
        f"{timing['run_seconds']:.1f} s for {num_runs} runs × {config.actual_total_steps:,} "
        f"env steps ({report['env_steps_per_second']:,.0f} env steps/s)"
    )
    runs.write_report(result.path / "experiment.json", report)
    if save_results:
        record.save(args.results, report)
    if figure:
        Path(figure).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.path / "learning_curves.png", figure)
    return result, report


def run_games(
    algo: str,
    config_defaults: dict[str, Any],
    hparam_defaults: dict[str, Any],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """:func:`run` once per game of ``args.games``, into ``args.out/GAME`` (figures
    ``args.figure`` with the game's name before the suffix); prints each game's final IQM
    beside the published reference."""
    reports = []
    for game in args.games.split(","):
        figure = Path(args.figure) if args.figure else None
        _, report = run(
            algo,
            {**config_defaults, "env_id": game},
            hparam_defaults,
            args,
            out=Path(args.out) / game,
            figure=figure.with_stem(f"{figure.stem}_{game}") if figure else None,
            save_results=False,
        )
        reports.append(report | {"reference": MINATAR_REFERENCE.get(game)})
    for report in reports:
        reference = MINATAR_REFERENCE.get(report["env_id"])
        print(
            f"{report['env_id']}: {algo} final IQM {report['configs'][0]['final_iqm']:.1f} after "
            f"{report['env_steps_per_run']:,} env steps ({report['run_seconds']:.0f} s for "
            f"{report['seeds']} seeds)"
            + (f"; reference ≈ {reference:g} at 5M frames" if reference is not None else "")
        )
    record.save(args.results, {"algo": algo, "games": reports})
    return reports


def readme(r: dict[str, Any]) -> list:
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
    return [
        record.Text(
            f"{r['seeds']} seeds × {r['env_steps_per_run']:,} env steps on {r['env_id']}: "
            + (f"{reached}; " if reached else "")
            + f"final IQM {c['final_iqm']:.1f} {record.ci(c['final_iqm_ci95'])}, mean "
            f"{c['final_mean']:.1f}; compile {r['compile_seconds']:.1f} s, run "
            f"{r['run_seconds']:.1f} s ({r['env_steps_per_second']:,.0f} env steps/s) "
            f"({record.at(r)}).\n"
        )
    ]


def games_readme(r: dict[str, Any]) -> list:
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
    return [record.Text("\n".join(lines) + f"\n\n({r['algo'].upper()}, {record.at(r)}.)\n")]


def _iqm_at(report: dict[str, Any], axis: str, limit: float) -> str:
    """The IQM curve's value at the last evaluation point with ``axis`` ≤ ``limit``."""
    points = [i for i, x in enumerate(report[axis]) if x <= limit]
    return f"{report['configs'][0]['iqm_curve'][points[-1]]:.1f}" if points else "—"
