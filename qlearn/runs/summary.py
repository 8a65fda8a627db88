"""What a finished run's metrics say, in numbers: divergence masked, per-configuration
statistics (final / best / area under the curve, IQM with its bootstrap CI), per-run records,
the probability of improvement between configurations, and the plain-text table."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from qlearn import diagnostics, stats
from qlearn import hparams as hparams_lib
from qlearn.spec import Spec, jsonable


def mask_diverged(metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """NaN every floating metric of a run from the evaluation where it first diverged on, and
    add ``diverged_at`` [config, seed] (that evaluation's index, −1 if it never diverged)."""
    if "diverged" not in metrics:
        return metrics
    diverged = metrics["diverged"].astype(bool)
    first = np.where(diverged.any(-1), diverged.argmax(-1), -1)
    later = (
        np.arange(diverged.shape[-1]) >= np.where(first < 0, diverged.shape[-1], first)[..., None]
    )
    out = {
        k: np.where(later, np.nan, v).astype(v.dtype) if np.issubdtype(v.dtype, np.floating) else v
        for k, v in metrics.items()
    }
    return out | {"diverged_at": first.astype(np.int32)}


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "x".join(map(str, value))
    return str(value)


def shown_values(spec: Spec) -> list[list[tuple[str, str]]]:
    """Per configuration, (name, value as text) of each swept hyperparameter or field; an
    indexed hyperparameter (``Algorithm.indexed_hparams``) as the entry it picks, under the
    field's name (``loss=huber``, not ``loss_index=0``)."""
    algorithm = spec.algorithm

    def shown(k: str, v: Any) -> tuple[str, str]:
        field = algorithm.indexed_field(k)
        entries = spec.config.get(field) if field else None
        if isinstance(entries, list):
            return field, str(entries[int(v)])
        return k, format_value(v)

    return [[shown(k, vals[k]) for k in spec.swept] for vals in spec.config_values()]


def labels(spec: Spec) -> list[str]:
    """A label per configuration naming the swept hyperparameters' and fields' values."""
    return [", ".join(f"{k}={v}" for k, v in row) for row in shown_values(spec)]


def curve_stats(spec: Spec, metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per run [config, seed]: the algorithm's final return, and best and AUC of its curve."""
    algorithm = spec.algorithm
    x, curves, _, _ = algorithm.learning_curve(metrics)
    return {
        "final": algorithm.final_returns(metrics),
        "best": stats.best(curves),
        "auc": stats.area_under_curve(x, curves) if len(x) > 1 else curves[..., 0],
    }


def summarize(spec: Spec, metrics: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per configuration: its values, final / best / AUC statistics (mean, median, IQM, 95% CI
    of the IQM) over the runs that did not diverge, and how many runs diverged and when; for a
    run with diagnostics, ``diagnostics``: the same statistics of each headline diagnostic at
    the last evaluation (:data:`qlearn.diagnostics.HEADLINE`)."""
    curve = curve_stats(spec, metrics)
    final = diagnostics.final_values(metrics)
    diverged_at = metrics.get("diverged_at")
    rows = []
    for h, values in enumerate(spec.config_values()):
        row: dict[str, Any] = {"config": h, "values": values}
        for kind, per_run in curve.items():
            row[kind] = stats.describe(per_run[h], seed=h)
        seeds = per_run.shape[1]
        row["seeds"] = seeds
        if diverged_at is not None:
            at = diverged_at[h]
            row["diverged"] = int(np.sum(at >= 0))
            steps = metrics["env_steps"][h] if "env_steps" in metrics else None
            row["diverged_at_steps"] = [
                int(steps[s, at[s]]) if steps is not None else int(at[s])
                for s in range(seeds)
                if at[s] >= 0
            ]
        else:
            row["diverged"] = 0
        if final:
            row["diagnostics"] = {k: stats.describe(v[h], seed=h) for k, v in final.items()}
        rows.append(row)
    return rows


def records(spec: Spec, metrics: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One record per (configuration, seed): its values, final / best / AUC, divergence."""
    curve = curve_stats(spec, metrics)
    diverged_at = metrics.get("diverged_at")
    out = []
    for h, values in enumerate(spec.config_values()):
        for s in range(curve["final"].shape[1]):
            row = {"config": h, "seed": spec.base_seed + s}
            row |= {k: format_value(v) if isinstance(v, list) else v for k, v in values.items()}
            row |= {k: float(v[h, s]) for k, v in curve.items()}
            row["diverged_at"] = int(diverged_at[h, s]) if diverged_at is not None else -1
            out.append(row)
    return out


def statistic(spec: Spec) -> str:
    return (
        f"{spec.algorithm.final_statistic}; over the runs that did not diverge (a "
        "diverged run's metrics are NaN from the evaluation where it diverged on)"
    )


def improvement_matrix(spec: Spec, metrics: dict[str, np.ndarray]) -> list[list[float]]:
    """[i][j] = P(final return of a run of configuration i > one of j) + ½ P(equal), over the
    runs that did not diverge (NaN where one side has none)."""
    final = curve_stats(spec, metrics)["final"]
    runs_of = [f[np.isfinite(f)] for f in final]
    return [
        [
            stats.probability_of_improvement(a, b) if a.size and b.size else float("nan")
            for b in runs_of
        ]
        for a in runs_of
    ]


def ranking(rows: list[dict[str, Any]]) -> list[int]:
    """Configuration indices by final IQM, best first (ties and NaNs: lower index first, NaNs
    last)."""
    iqms = [r["final"]["iqm"] for r in rows]
    return sorted(range(len(rows)), key=lambda i: (np.isnan(iqms[i]), -np.nan_to_num(iqms[i])))


def search_report(spec: Spec, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What a random search found: the configurations ranked by final IQM (with their CIs),
    how many others have a final IQM inside the best one's 95% CI (not distinguishable from
    it at these seeds), and the best configuration as a ready ``qlearn train`` line."""
    order = ranking(rows)
    best = rows[order[0]]
    lo, hi = best["final"]["iqm_ci95"]
    within = [i for i in order[1:] if np.isfinite(lo) and lo <= rows[i]["final"]["iqm"] <= hi]
    return {
        "ranking": [
            {
                "rank": k + 1,
                "config": i,
                "iqm": rows[i]["final"]["iqm"],
                "iqm_ci95": rows[i]["final"]["iqm_ci95"],
            }
            for k, i in enumerate(order)
        ],
        "best": order[0],
        "within_best_ci": within,
        "rerun": rerun_command(spec, order[0]),
    }


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "x".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}" if float(f"{value:g}") == value else repr(value)
    return str(value)


def rerun_command(spec: Spec, config: int, seeds: int = 32) -> str:
    """``qlearn train`` of configuration ``config`` alone with ``seeds`` seeds: the spec's
    algorithm, env, budget and non-default config fields, the configuration's static overrides
    and every hyperparameter that differs from its default."""
    algorithm = spec.algorithm
    defaults = dataclasses.asdict(algorithm.config())
    values = spec.config_values()[config]
    base = {k: v for k, v in spec.config.items() if k in defaults}
    parts = ["qlearn train", f"--algo {spec.algo}", f"--env {base.get('env_id')}"]
    if "total_steps" in base:
        parts.append(f"--total-steps {base['total_steps']}")
    fields = {k: v for k, v in base.items() if k not in ("env_id", "total_steps")}
    fields |= {k: v for k, v in values.items() if k in defaults}
    indexed = dict(algorithm.indexed_hparams)
    for name, field in indexed.items():  # the entry a configuration picks, by name
        if isinstance(fields.get(field), list):
            fields[field] = fields[field][int(values[name])]
    if "loss" in fields and jsonable(fields["loss"]) != jsonable(defaults.get("loss")):
        parts.append(f"--loss {fields.pop('loss')}")
    for k, v in fields.items():
        if jsonable(v) != jsonable(defaults[k]):
            parts.append(f"--cfg {k}={_cli_value(v)}")
    hparams_cls = algorithm.hparams_for(spec.base_config())
    default_hp = hparams_cls()
    for k, v in values.items():
        if k not in defaults and k not in indexed and hasattr(default_hp, k):
            cast = hparams_lib.dtype_of(hparams_cls, k).type
            if cast(v) != cast(getattr(default_hp, k)):
                parts.append(f"--hp {k}={_cli_value(v)}")
    parts.append(f"--seeds {seeds}")
    return " ".join(parts)


def summary_table(spec: Spec, rows: list[dict[str, Any]]) -> str:
    """A plain-text table, one row per configuration (final return over non-diverged runs);
    a random search's ranked by final IQM, best first, with what the ranking says."""
    swept = spec.swept
    values = shown_values(spec)
    header = ["#", *swept, "final mean", "IQM", "95% CI", "best IQM", "AUC IQM", "diverged"]
    random_search = not spec.is_grid
    order = ranking(rows) if random_search else list(range(len(rows)))
    if random_search:
        header.insert(0, "rank")
    body = []
    for k, i in enumerate(order):
        r, shown = rows[i], values[i]
        lo, hi = r["final"]["iqm_ci95"]
        body.append(
            [
                *([str(k + 1)] if random_search else []),
                str(r["config"]),
                *(v for _, v in shown),
                f"{r['final']['mean']:.1f}",
                f"{r['final']['iqm']:.1f}",
                f"[{lo:.1f}, {hi:.1f}]",
                f"{r['best']['iqm']:.1f}",
                f"{r['auc']['iqm']:.1f}",
                f"{r['diverged']}/{r['seeds']}",
            ]
        )
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = [
        "  ".join(x.rjust(w) for x, w in zip(row, widths, strict=True)) for row in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    fixed = {k: v[0] for k, v in spec.hparams.items() if k not in swept}
    fixed_text = ", ".join(f"{k}={v:g}" for k, v in fixed.items())
    text = "\n".join(lines) + f"\n(fixed: {fixed_text})"
    if random_search:
        report = search_report(spec, rows)
        best = rows[report["best"]]
        lo, hi = best["final"]["iqm_ci95"]
        others = len(rows) - 1
        text += (
            f"\nbest: configuration {report['best']}, final IQM {best['final']['iqm']:.1f} "
            f"[{lo:.1f}, {hi:.1f}]; {len(report['within_best_ci'])} of the {others} others "
            "have a final IQM inside that CI (not told apart at these seeds)\n"
            f"re-run it with more seeds: {report['rerun']}"
        )
    return text
