"""Methods across tasks, as a paper compares them (``qlearn compare``).

A **task** is an env (one or more run directories on it); a **method** is a configuration,
matched across tasks by its label: the algorithm and the swept values (``dqn lr=0.001``; the
algorithm alone when nothing is swept). Each run's score is its final return
(``Algorithm.final_returns``), normalised per task,

    normalised = (score − random) / (reference − random),

``random`` the mean return of the uniformly random policy on the task's env (measured here,
1,000 episodes, seeded), ``reference`` the task's entry in :data:`REFERENCES`, a score given on
the command line, or, asked for explicitly, the best final score seen in the comparison. A
diverged run scores as the random policy (0), and is counted.

The aggregates are rliable's (Agarwal et al. 2021), over every run of every task, with 95%
stratified-bootstrap CIs: IQM, median, mean and optimality gap; the performance profile (the
fraction of runs above each normalised score τ); and the probability of improvement of each
method over each other, averaged over tasks. The report (``compare.json``, ``table.md``,
``aggregates``, ``profiles`` and ``improvement`` figures as PNG and PDF, paper-sized) is written
to a temporary folder and renamed into place, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qlearn import diagnostics, runs, stats

RANDOM_EPISODES = 1000


class CompareError(ValueError):
    """Runs that cannot be compared as asked (no shared method, no reference score, ...)."""


@dataclasses.dataclass(frozen=True)
class Reference:
    """The score a task's normalised score calls 1, and where it comes from."""

    score: float
    source: str


REFERENCES: dict[str, Reference] = {
    "CartPole-v1": Reference(500.0, "the maximum return: 500 steps (the time limit), reward 1"),
    "Catch-bsuite": Reference(1.0, "the maximum return: the ball caught, reward +1"),
    "navix:Navix-Empty-8x8-v0": Reference(1.0, "the maximum return: the goal reached, reward 1"),
    "navix:Navix-DoorKey-5x5-v0": Reference(1.0, "the maximum return: the goal reached, reward 1"),
    **{
        game: Reference(score, "published: the MinAtar paper (Young & Tian 2019) and gymnax's PPO")
        for game, score in (
            ("Breakout-MinAtar", 28.0),
            ("Asterix-MinAtar", 15.0),
            ("Freeway-MinAtar", 58.0),
            ("SpaceInvaders-MinAtar", 131.0),
        )
    },
}
"""The reference scores of envs qlearn ships: the maximum return where the env defines one,
else a published final return (the experiments print the same beside their results)."""


@dataclasses.dataclass
class Task:
    """One env of a comparison: its runs' final scores per method, its normalisation."""

    env_id: str
    scores: dict[str, np.ndarray]
    """method -> [runs] final returns (NaN: diverged)."""
    sources: dict[str, str]
    """method -> the run directory it came from."""
    random: float = float("nan")
    reference: float = float("nan")
    reference_source: str = ""
    diagnostics: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    """method -> headline diagnostic -> [runs] at the last evaluation (runs with diagnostics
    only; :data:`qlearn.diagnostics.HEADLINE`)."""

    def normalised(self, method: str) -> np.ndarray:
        """[runs] normalised scores, a diverged run counted as the random policy's (0)."""
        x = (self.scores[method] - self.random) / (self.reference - self.random)
        return np.where(np.isnan(x), 0.0, x)


def method_names(spec: runs.Spec) -> list[str]:
    """The method of each configuration: the algorithm and its swept values."""
    return [f"{spec.algo} {label}".strip() for label in runs.labels(spec)]


def load_tasks(paths: Sequence[str | Path]) -> list[Task]:
    """The tasks of finished run directories ``paths`` (grouped by env id), each with the
    final scores of every method found on it.

    Raises:
      RunDirError: a path that holds no qlearn run.
      CompareError: an unfinished run, or two runs of one method on one task.
    """
    tasks: dict[str, Task] = {}
    for path in paths:
        run = runs.load(path)
        if not run.metrics:
            raise CompareError(f"{path} has not finished (no metrics.npz): nothing to compare")
        env_id = run.spec.config.get("env_id")
        if env_id is None:
            raise CompareError(f"{path}: its config names no env")
        task = tasks.setdefault(env_id, Task(env_id, {}, {}))
        final = run.spec.algorithm.final_returns(run.metrics)
        measured = diagnostics.final_values(runs.mask_diverged(dict(run.metrics)))
        for c, method in enumerate(method_names(run.spec)):
            if method in task.scores:
                raise CompareError(
                    f"{env_id}: method {method!r} is in both {task.sources[method]} and {path}; "
                    "compare one run of each method per task"
                )
            task.scores[method] = np.asarray(final[c], np.float64)
            task.sources[method] = str(path)
            if measured:
                task.diagnostics[method] = {
                    k: np.asarray(v[c], np.float64) for k, v in measured.items()
                }
    return list(tasks.values())


def shared_methods(tasks: Sequence[Task]) -> list[str]:
    """The methods every task has (in first-seen order); CompareError if there are none, or if
    a method has different numbers of runs on different tasks."""
    first = list(tasks[0].scores)
    shared = [m for m in first if all(m in t.scores for t in tasks)]
    if not shared:
        listing = "; ".join(f"{t.env_id}: {', '.join(t.scores)}" for t in tasks)
        raise CompareError(f"the tasks share no method (matched by label): {listing}")
    for method in shared:
        counts = {t.env_id: t.scores[method].size for t in tasks}
        if len(set(counts.values())) > 1:
            raise CompareError(
                f"method {method!r} has different numbers of runs per task ({counts}): the "
                "stratified bootstrap needs as many runs of a method on every task"
            )
    return shared


def random_score(path: str | Path, episodes: int = RANDOM_EPISODES, seed: int = 0) -> float:
    """Mean return of the uniformly random policy on the env of run directory ``path``, over
    ``episodes`` episodes (key ``seed``)."""
    import jax

    from qlearn import envs
    from qlearn.algos import rollout

    env, env_params = envs.make_for(runs.load(path).spec.base_config())
    fn = jax.jit(rollout.random_policy_returns, static_argnums=(0, 3))
    return float(np.mean(fn(env, env_params, jax.random.key(seed), episodes)))


def normalise(
    tasks: Sequence[Task],
    references: Mapping[str, float] | None = None,
    *,
    best_seen: bool = False,
    episodes: int = RANDOM_EPISODES,
) -> None:
    """Set each task's random and reference scores: ``references`` (env id -> score) first,
    then :data:`REFERENCES`, then (with ``best_seen``) the best final score of any run of the
    task. CompareError, before anything is measured, for a task with none, or a reference
    the random policy reaches."""
    references = dict(references or {})
    for task in tasks:
        if task.env_id in references:
            task.reference, task.reference_source = references[task.env_id], "given"
        elif task.env_id in REFERENCES:
            ref = REFERENCES[task.env_id]
            task.reference, task.reference_source = ref.score, ref.source
        elif best_seen:
            seen = np.concatenate(list(task.scores.values()))
            task.reference = float(np.nanmax(seen)) if np.isfinite(seen).any() else float("nan")
            task.reference_source = "the best final score seen in this comparison"
        else:
            raise CompareError(
                f"{task.env_id} has no reference score: pass --reference "
                f"{task.env_id}=SCORE, or --best-seen to use the best final score seen"
            )
    for task in tasks:
        task.random = random_score(next(iter(task.sources.values())), episodes)
        if not task.reference > task.random:
            raise CompareError(
                f"{task.env_id}: the reference {task.reference:g} ({task.reference_source}) "
                f"is not above the random policy's {task.random:g}: nothing to normalise by"
            )


def aggregate(
    tasks: Sequence[Task],
    methods: Sequence[str],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    taus: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every number of the report: per method the aggregates with their 95% CIs, the
    performance profile at ``taus``, and the probability of improvement of each method over
    each other (with its CI) — all over the normalised scores [runs, tasks]."""
    scores = {m: np.stack([t.normalised(m) for t in tasks], axis=1) for m in methods}
    if taus is None:
        top = max(1.0, max(float(s.max()) for s in scores.values()))
        taus = np.linspace(0.0, top, 41)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"methods": {}, "taus": taus.tolist(), "improvement": {}}
    for m, x in scores.items():
        resamples = stats.stratified_resamples(x, n_resamples, rng)
        row: dict[str, Any] = {"runs_per_task": int(x.shape[0])}
        for name, fn in stats.TASK_AGGREGATES.items():
            low, high = np.percentile(fn(resamples), [2.5, 97.5])
            row[name] = {"value": float(fn(x)), "ci95": [float(low), float(high)]}
        profile = stats.score_distribution(resamples, taus)
        row["profile"] = {
            "value": stats.score_distribution(x, taus).tolist(),
            "ci95": np.percentile(profile, [2.5, 97.5], axis=0).tolist(),
        }
        row["diverged"] = int(sum(np.isnan(t.scores[m]).sum() for t in tasks))
        out["methods"][m] = row
    for a in methods:
        for b in methods:
            if a == b:
                continue
            x, y = scores[a], scores[b]
            value = float(stats.task_probability_of_improvement(x, y))
            rx = stats.stratified_resamples(x, n_resamples, rng)
            ry = stats.stratified_resamples(y, n_resamples, rng)
            low, high = np.percentile(stats.task_probability_of_improvement(rx, ry), [2.5, 97.5])
            out["improvement"][f"{a} > {b}"] = {"value": value, "ci95": [float(low), float(high)]}
    out["scores"] = {m: x.tolist() for m, x in scores.items()}
    return out


def compare(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    references: Mapping[str, float] | None = None,
    best_seen: bool = False,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare the methods of run directories ``paths`` across their tasks and write the
    report to ``out`` (see the module's docstring); returns what ``compare.json`` holds."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "compare.json").exists():
        raise CompareError(
            f"{out} is not empty and holds no qlearn comparison: choose another --out"
        )
    tasks = load_tasks(paths)
    methods = shared_methods(tasks)
    normalise(tasks, references, best_seen=best_seen)
    result = aggregate(tasks, methods, n_resamples=n_resamples, seed=seed)
    result["tasks"] = {
        t.env_id: {
            "random": t.random,
            "random_episodes": RANDOM_EPISODES,
            "reference": t.reference,
            "reference_source": t.reference_source,
            "runs": {m: t.sources[m] for m in methods},
            "final_iqm": {m: float(stats.describe(t.scores[m])["iqm"]) for m in methods},
            "diagnostics": {
                m: {k: stats.describe(v) for k, v in t.diagnostics[m].items()}
                for m in methods
                if m in t.diagnostics
            },
        }
        for t in tasks
    }
    result["dropped"] = {
        t.env_id: [m for m in t.scores if m not in methods]
        for t in tasks
        if set(t.scores) - set(methods)
    }
    result["statistic"] = (
        "final return, normalised per task as (score - random) / (reference - random); a "
        "diverged run counts as 0; 95% stratified-bootstrap CIs "
        f"({n_resamples} resamples, seed {seed})"
    )
    _write(out, result, methods)
    return result


def _write(out: Path, result: dict[str, Any], methods: Sequence[str]) -> None:
    """Write the report into a temporary folder beside ``out``, then swap it into place."""
    from qlearn import plots

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (tmp / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
        (tmp / "table.md").write_text(markdown_table(result, methods))
        plots.save(plots.aggregate_intervals(result, methods), tmp / "aggregates.png", pdf=True)
        plots.save(plots.performance_profiles(result, methods), tmp / "profiles.png", pdf=True)
        plots.save(plots.improvement_intervals(result, methods), tmp / "improvement.png", pdf=True)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _interval(entry: Mapping[str, Any], digits: int = 2) -> str:
    low, high = entry["ci95"]
    return f"{entry['value']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def markdown_table(result: Mapping[str, Any], methods: Sequence[str]) -> str:
    """The report as Markdown: the aggregates per method, each task's raw final IQM and its
    normalisation, and the probabilities of improvement."""
    tasks = result["tasks"]
    lines = [
        f"Normalised final return over {len(tasks)} task(s); {result['statistic']}.",
        "",
        "| method | runs/task | IQM | median | mean | optimality gap | diverged |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        row = result["methods"][m]
        cells = [_interval(row[k]) for k in ("iqm", "median", "mean", "optimality_gap")]
        lines.append(f"| {m} | {row['runs_per_task']} | {' | '.join(cells)} | {row['diverged']} |")
    lines += ["", "| task | random | reference | " + " | ".join(methods) + " |"]
    lines.append("|---" * (3 + len(methods)) + "|")
    for env_id, t in tasks.items():
        raw = " | ".join(f"{t['final_iqm'][m]:.4g}" for m in methods)
        lines.append(
            f"| {env_id} | {t['random']:.4g} | {t['reference']:.4g} ({t['reference_source']}) "
            f"| {raw} |"
        )
    if result["improvement"]:
        lines += ["", "| P(X > Y) | value [95% CI] |", "|---|---|"]
        lines += [f"| {k} | {_interval(v)} |" for k, v in result["improvement"].items()]
    for env_id, t in tasks.items():
        lines += diagnostics_table(env_id, t.get("diagnostics", {}))
    return "\n".join(lines) + "\n"


def diagnostics_table(env_id: str, measured: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The Markdown lines of a task's diagnostics at the last evaluation: IQM [95% CI] over
    each method's runs, one row per diagnostic (none where no run has diagnostics)."""
    if not measured:
        return []
    methods = list(measured)
    names = [n for n in diagnostics.HEADLINE if any(n in measured[m] for m in methods)]
    lines = ["", f"Diagnostics on {env_id} at the last evaluation, IQM [95% CI] over runs:", ""]
    lines += ["| diagnostic | " + " | ".join(methods) + " |", "|---" * (1 + len(methods)) + "|"]
    for name in names:
        cells = []
        for m in methods:
            d = measured[m].get(name)
            cells.append(
                "–"
                if d is None
                else f"{d['iqm']:.3g} [{d['iqm_ci95'][0]:.3g}, {d['iqm_ci95'][1]:.3g}]"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines
