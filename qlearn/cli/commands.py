"""The subcommands of ``qlearn``: each ``cmd_*(args) -> exit status``."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from qlearn import algos, devices, runs, sweep, trackers
from qlearn import spec as spec_lib
from qlearn.cli.arguments import (
    CLIError,
    check_lanes,
    parse_config,
    parse_dists,
    parse_grid,
    parse_hparams,
)

STOP = threading.Event()
"""Set by the CLI's SIGTERM handler: a running sweep stops after its current chunk."""


def _trackers(args: argparse.Namespace, run: Path) -> list[Any]:
    """The trackers ``--tensorboard`` / ``--wandb`` ask for (checked usable now, before any
    work starts)."""
    out: list[Any] = []
    if getattr(args, "tensorboard", None):
        out.append(trackers.TensorBoard(args.tensorboard))
    if getattr(args, "wandb", None):
        out.append(trackers.Wandb(args.wandb, group=args.wandb_group or run.name))
    return out


def _execute(
    spec: spec_lib.Spec,
    out: Path | None,
    args: argparse.Namespace,
    tracked: list[Any] | None = None,
) -> Any:
    """Run a spec with a progress bar (and ``tracked`` live), resuming from ``out``'s
    finished chunks."""
    import jax

    devices.enable_compilation_cache(not args.no_cache)
    num_configs, num_seeds = spec.num_configs, spec.num_seeds
    if not args.quiet and jax.process_index() == 0:
        print(
            f"{spec.algo}: {num_configs} configs × {num_seeds} seeds = "
            f"{spec.num_runs} runs in {len(spec.groups)} compiled "
            f"group(s), on {jax.device_count()} {jax.default_backend()} device(s)",
            file=sys.stderr,
        )
    return sweep.execute(
        spec,
        out,
        progress=not args.quiet,
        verbose=not args.quiet,
        trackers=tracked or (),
        stop=STOP.is_set,
    )


def _report(run: Any, out: Path) -> None:
    if run is None:  # not process 0: it wrote its own chunks
        return
    timing = run.summary["timing"]
    per_run, unit = run.spec.algorithm.progress_total(run.spec.compiled_groups()[0][0])
    done = run.spec.num_runs * per_run
    if timing.get("run_seconds"):
        print(
            f"compile {timing['compile_seconds']:.1f} s, run {timing['run_seconds']:.1f} s "
            f"({done / timing['run_seconds']:,.0f} {unit}s/s)"
        )
    print(runs.summary_table(run.spec, run.summary["configs"]))
    print(f"wrote {out}/ (summary.json, records.csv, metrics.npz, figures)")


def _start(spec: spec_lib.Spec, out: Path, args: argparse.Namespace) -> int:
    """Prepare ``out`` (refusing another spec), run or resume (tracked live), report."""
    import jax

    tracked = _trackers(args, out) if jax.process_index() == 0 else []
    if sweep.prepare(out, spec, overwrite=args.overwrite):
        if jax.process_index() == 0:
            run = runs.load(out)
            print(f"{out} already holds this run, finished: nothing to do (--overwrite re-runs it)")
            print(runs.summary_table(spec, run.summary["configs"]))
            if tracked:
                count = trackers.export(out, tracked)
                print(f"exported its {count} evaluation points to {_where(args)}")
        return 0
    _report(_execute(spec, out, args, tracked), out)
    return 0


def _where(args: argparse.Namespace) -> str:
    places = []
    if getattr(args, "tensorboard", None):
        places.append(f"TensorBoard ({args.tensorboard})")
    if getattr(args, "wandb", None):
        places.append(f"wandb ({args.wandb})")
    return " and ".join(places)


def cmd_train(args: argparse.Namespace) -> int:
    algorithm = algos.get(args.algo)
    loss = args.loss
    if loss is not None and "," in loss:
        loss = tuple(loss.split(","))
    config = parse_config(
        algorithm.config, args.cfg, env_id=args.env, total_steps=args.total_steps, loss=loss
    )
    grid = parse_hparams(algorithm.hparams_for(config), args.hp)
    if isinstance(loss, tuple) and "loss_index" not in grid:
        grid["loss_index"] = list(range(len(loss)))  # several losses: compare them all
    if args.seeds < 1:
        raise CLIError(f"--seeds = {args.seeds} must be ≥ 1")
    check_lanes(args.lanes)
    spec = spec_lib.make_spec(config, grid, seeds=args.seeds, base_seed=args.seed, lanes=args.lanes)
    if hasattr(config, "actual_total_steps") and config.actual_total_steps != config.total_steps:
        print(
            f"note: total_steps {config.total_steps} rounds down to "
            f"{config.actual_total_steps} (whole evaluation intervals)",
            file=sys.stderr,
        )
    return _start(spec, Path(args.out or f"runs/{args.algo}-{config.env_id}"), args)


def cmd_sweep(args: argparse.Namespace) -> int:
    import jax

    if args.coordinator is not None and jax.process_count() == 1:
        raise CLIError(
            "--coordinator is read by the qlearn command's entry point (`qlearn sweep` or "
            "`python -m qlearn sweep`), before JAX starts"
        )
    algorithm = algos.get(args.algo)
    config = parse_config(algorithm.config, args.cfg, env_id=args.env, total_steps=args.total_steps)
    hparams_cls = algorithm.hparams_for(config)
    grid = parse_grid(algorithm.config, hparams_cls, args.grid)
    dists = parse_dists(hparams_cls, args.dist)
    if args.random is None and dists:
        raise CLIError("--dist needs --random N (the number of configurations to draw)")
    check_lanes(args.lanes)
    spec = spec_lib.make_spec(
        config,
        grid,
        dist=dists or None,
        n_samples=args.random,
        search_seed=args.search_seed,
        seeds=args.seeds,
        base_seed=args.seed,
        lanes=args.lanes,
    )
    return _start(spec, Path(args.out), args)


def cmd_reproduce(args: argparse.Namespace) -> int:
    run = runs.load(args.run)
    if not run.metrics:
        raise CLIError(f"{args.run} has no metrics.npz to compare against")
    import jax

    recorded = run.provenance
    now = {"jax": jax.__version__, "backend": jax.default_backend(), "cpu": runs.cpu()}
    for key in ("jax", "backend") + (("cpu",) if "cpu" in recorded else ()):
        if recorded.get(key) != now[key]:
            print(
                f"note: recorded {key} {recorded.get(key)}, now {now[key]}: bitwise "
                "equality is only promised on the same versions, backend and CPU",
                file=sys.stderr,
            )
    spec, expected = run.spec, run.metrics
    if spec.lanes is None:
        print(
            f"note: {args.run} predates recorded lanes (format {spec.format}): re-running "
            f"with {spec.run_lanes} lanes, which need not be the batch it ran in",
            file=sys.stderr,
        )
    if args.seed is not None or args.config is not None:
        config = 0 if args.config is None else args.config
        seed = spec.base_seed if args.seed is None else args.seed
        spec = spec.select(config, seed)
        s = seed - run.spec.base_seed
        expected = {k: v[config : config + 1, s : s + 1] for k, v in expected.items()}
        print(f"re-running configuration {config}, seed {seed} alone", file=sys.stderr)
    result = _execute(spec, None, args)
    matches = runs.compare(expected, result.metrics)
    for name, ok in matches.items():
        print(f"  {name:<16} {'bitwise identical' if ok else 'MISMATCH'}")
    if all(matches.values()):
        print(f"reproduced: all {len(matches)} metric arrays are bitwise identical")
        return 0
    print(
        f"NOT reproduced: {sum(not ok for ok in matches.values())} of {len(matches)} "
        "metric arrays differ"
    )
    return 1


def cmd_show(args: argparse.Namespace) -> int:
    run = runs.load(args.run)
    if run.summary is None:
        raise CLIError(f"{args.run} has no summary.json (the run did not finish)")
    print(runs.summary_table(run.spec, run.summary["configs"]))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    run = runs.load(args.run)
    if not run.metrics:
        raise CLIError(f"{args.run} has no metrics.npz (the run did not finish)")
    for path in runs.figure(run.path, run.spec, run.metrics):
        print(f"{path} (and .pdf)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if not (args.tensorboard or args.wandb):
        raise CLIError("export needs --tensorboard DIR and/or --wandb PROJECT")
    run = runs.load(args.run)
    if not run.metrics and not runs.scan_chunks(run.path, quarantine=False)[0]:
        raise CLIError(f"{args.run} has no finished runs yet (no metrics.npz, no chunks)")
    tracked = _trackers(args, Path(args.run).resolve())
    count = trackers.export(args.run, tracked)
    state = "finished" if run.metrics else "partial: its finished chunks"
    print(f"exported {count} evaluation points of {args.run} ({state}) to {_where(args)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from qlearn import compare

    references = {}
    for text in args.reference:
        env_id, sep, value = text.rpartition("=")
        try:
            references[env_id] = float(value)
        except ValueError:
            sep = ""
        if not sep or not env_id:
            raise CLIError(f"--reference {text!r}: write ENV=SCORE (e.g. Breakout-MinAtar=60)")
    if args.resamples < 100:
        raise CLIError(f"--resamples = {args.resamples}: use at least 100")
    result = compare.compare(
        args.runs,
        args.out,
        references=references,
        best_seen=args.best_seen,
        n_resamples=args.resamples,
    )
    print(compare.markdown_table(result, list(result["methods"])), end="")
    print(f"wrote {args.out}/ (compare.json, table.md, aggregates, profiles, improvement)")
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    import json

    from qlearn import datasets, envs

    kwargs = {}
    for text in args.env_kwarg:
        name, _, value = text.partition("=")
        if not name or not value:
            raise CLIError(f"--env-kwarg {text!r}: write NAME=VALUE")
        kwargs[name] = json.loads(value) if value[:1] in "-0123456789[{tf" else value
    if Path(args.out).exists() and not args.overwrite:  # before any training
        raise CLIError(f"{args.out} exists: nothing written (--overwrite replaces it)")
    if args.behaviour == "dqn_replay":
        from qlearn.algos import dqn

        config = dqn.DQNConfig(
            env_id=args.env, env_kwargs=kwargs, total_steps=args.dqn_steps, buffer_size=args.size
        )
        hp = dqn.DQNHParams(gamma=args.gamma)
        data = datasets.from_dqn_replay(config, hp, args.seed)
    else:
        data = datasets.finite_dataset(
            args.env,
            args.behaviour,
            args.size,
            args.seed,
            gamma=args.gamma,
            epsilon=args.epsilon,
            env_kwargs=kwargs,
        )
    path = datasets.save(args.out, data, overwrite=args.overwrite)
    line = f"wrote {path}: {len(data):,} transitions of {args.behaviour} on {args.env} "
    line += f"(seed {args.seed})"
    if data.state is not None:
        cover = datasets.coverage(data, envs.make(args.env, **kwargs)[1])
        line += f"; pairs seen {cover['pairs_seen']:.1%}, states seen {cover['states_seen']:.1%}"
        if "pairs_mu" in cover:
            line += f", pairs with μ > 0 {cover['pairs_mu']:.1%}"
    if "dqn_final_return" in data.meta:
        line += f"; the DQN run's final greedy return {data.meta['dqn_final_return']:.1f}"
    print(line)
    return 0
