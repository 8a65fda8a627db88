"""The ``qlearn`` command: train, reproduce, show, plot.

Every input is validated before anything compiles; a bad value gets one line naming the field
and what is accepted, and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
from pathlib import Path
from typing import Any

from qlearn import algos, runs
from qlearn import hparams as hparams_lib

EXIT_USAGE = 2


class CLIError(ValueError):
    """A command-line value is not accepted."""


def _parse_assignment(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise CLIError(f"{flag} '{text}' must look like name=value")
    return name.strip(), value.strip()


def parse_hparams(hparams_cls: type, assignments: list[str]) -> dict[str, list[float]]:
    """``["lr=1e-4,3e-4", "gamma=0.99"]`` -> ``{"lr": [1e-4, 3e-4], "gamma": [0.99]}``."""
    grid: dict[str, list[float]] = {}
    for text in assignments:
        name, values = _parse_assignment(text, "--hp")
        grid[name] = [hparams_lib.parse_value(hparams_cls, name, v) for v in values.split(",")]
    return grid


def _number(text: str) -> int | float | str:
    """'20' -> 20, '0.5' -> 0.5, anything else stays a string."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text.strip()


def _parse_config_value(field: dataclasses.Field, text: str) -> Any:
    kind = str(field.type)
    try:
        if kind.startswith("tuple[tuple"):  # name:value pairs, e.g. n_states:20,seed:3
            pairs = [item.split(":", 1) for item in text.split(",") if item.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError
            return tuple((k.strip(), _number(v)) for k, v in pairs)
        if kind.startswith("tuple"):
            return tuple(int(x) for x in text.split(",") if x.strip())
        if kind.startswith("bool"):
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind.startswith("int"):
            return None if text.lower() == "none" and "None" in kind else int(text)
        if kind.startswith("float"):
            return float(text)
    except ValueError:
        raise CLIError(f"config.{field.name} = '{text}' is not a valid {kind}") from None
    return text


def parse_config(config_cls: type, assignments: list[str], **given: Any) -> Any:
    """Build a config from ``name=value`` strings plus keyword values (validated on creation)."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    values = {k: v for k, v in given.items() if v is not None}
    for name in set(values) - set(fields):
        raise CLIError(f"this algorithm has no {name.replace('_', '-')} (its config has no {name})")
    for text in assignments:
        name, value = _parse_assignment(text, "--cfg")
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise CLIError(f"unknown config field '{name}'{hint}")
        values[name] = _parse_config_value(fields[name], value)
    return config_cls(**values)


def _config_help(config_cls: type) -> str:
    return "\n".join(
        f"  {f.name:<20} default {f.default!s:<12} {f.metadata.get('help', '')}"
        for f in dataclasses.fields(config_cls)
    )


def enable_compilation_cache(enabled: bool) -> None:
    """JAX's persistent compilation cache: a re-run of the same program skips compilation."""
    if not enabled:
        return
    import jax

    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qlearn" / "jax"
    jax.config.update("jax_compilation_cache_dir", os.environ.get("QLEARN_CACHE_DIR", str(default)))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _run_with_progress(spec: dict[str, Any], quiet: bool) -> Any:
    from qlearn.progress import ProgressBar

    module, config, _ = runs.spec_objects(spec)
    per_run, unit = module.progress_total(config)
    num_configs = len(next(iter(spec["hparams"].values())))
    num_seeds = spec["seeds"]["num_seeds"]
    num_runs = num_configs * num_seeds
    if not quiet:
        print(
            f"compiling {spec['algo']} for {num_runs} runs "
            f"({num_configs} configs × {num_seeds} seeds) ...",
            file=sys.stderr,
        )
    total = num_runs * per_run
    with ProgressBar(total, num_runs=num_runs, enabled=not quiet, unit=unit) as bar:
        result = runs.execute(spec, progress=None if quiet else bar)
    print(
        f"compile {result.compile_seconds:.1f} s, run {result.run_seconds:.1f} s: "
        f"{total:,} {unit}s, {total / result.run_seconds:,.0f} {unit}s/s"
    )
    return result


def cmd_train(args: argparse.Namespace) -> int:
    _, config_cls, hparams_cls = algos.get(args.algo)
    loss = args.loss
    if loss is not None and "," in loss:
        loss = tuple(loss.split(","))
    config = parse_config(
        config_cls, args.cfg, env_id=args.env, total_steps=args.total_steps, loss=loss
    )
    grid = parse_hparams(hparams_cls, args.hp)
    if isinstance(loss, tuple) and "loss_index" not in grid:
        grid["loss_index"] = list(range(len(loss)))  # several losses: compare them all
    hp = hparams_lib.grid(hparams_cls, grid)
    if hasattr(config, "validate_hparams"):
        config.validate_hparams(hp)
    if args.seeds < 1:
        raise CLIError(f"--seeds = {args.seeds} must be ≥ 1")
    swept = [k for k, v in grid.items() if len(v) > 1]
    spec = runs.make_spec(
        args.algo, config, hp, num_seeds=args.seeds, base_seed=args.seed, swept=swept
    )
    out = Path(args.out or f"runs/{args.algo}-{config.env_id}")
    if runs.prepare(out, spec, overwrite=args.overwrite):
        run = runs.load(out)
        print(f"{out} already holds this run, finished: nothing to do (--overwrite re-runs it)")
        print(runs.summary_table(spec, run.summary["configs"]))
        return 0
    if hasattr(config, "actual_total_steps") and config.actual_total_steps != config.total_steps:
        print(
            f"note: total_steps {config.total_steps} rounds down to "
            f"{config.actual_total_steps} (whole evaluation intervals)",
            file=sys.stderr,
        )
    enable_compilation_cache(not args.no_cache)
    result = _run_with_progress(spec, args.quiet)
    run = runs.write(out, spec, result)
    print(runs.summary_table(spec, run.summary["configs"]))
    print(f"wrote {out}/ (config.json, metrics.npz, summary.json, learning_curves.png)")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    run = runs.load(args.run)
    if not run.metrics:
        raise CLIError(f"{args.run} has no metrics.npz to compare against")
    import jax

    for key, now in (("jax", jax.__version__), ("backend", jax.default_backend())):
        if run.provenance.get(key) != now:
            print(
                f"note: recorded {key} {run.provenance.get(key)}, now {now}: bitwise "
                "equality is only promised on the same versions and backend",
                file=sys.stderr,
            )
    enable_compilation_cache(not args.no_cache)
    result = _run_with_progress(run.spec, args.quiet)
    matches = runs.compare(run.metrics, result.metrics)
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
    print(runs.figure(run.path, run.spec, run.metrics))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qlearn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _, dqn_config, dqn_hparams = algos.get("dqn")

    train = sub.add_parser(
        "train",
        help="train seeds × a hyperparameter grid in one compiled program",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"hyperparameters (--hp, traced: a grid is one compile):\n"
        f"{hparams_lib.describe(dqn_hparams)}\n\n"
        f"config fields (--cfg, static):\n{_config_help(dqn_config)}",
    )
    train.add_argument("--algo", default="dqn", choices=sorted(algos.ALGOS))
    train.add_argument("--env", default=None, help="env id (default CartPole-v1)")
    train.add_argument("--seeds", type=int, default=8, help="seeds per configuration")
    train.add_argument("--seed", type=int, default=0, help="base seed")
    train.add_argument("--total-steps", type=int, default=None, help="env steps per run")
    train.add_argument(
        "--loss",
        default=None,
        help="huber, mse, residual or package.module:function; several, comma-separated, are "
        "compared in one compile (one configuration per loss)",
    )
    train.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="NAME=V[,V...]",
        help="hyperparameter value(s); several values make a grid",
    )
    train.add_argument(
        "--cfg", action="append", default=[], metavar="FIELD=VALUE", help="static config field"
    )
    train.add_argument("--out", default=None, help="run directory (default runs/ALGO-ENV)")
    train.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--no-cache", action="store_true", help="disable JAX's persistent compilation cache"
    )
    train.set_defaults(func=cmd_train)

    reproduce = sub.add_parser("reproduce", help="re-run a run directory, compare bitwise")
    reproduce.add_argument("run")
    reproduce.add_argument("--quiet", action="store_true")
    reproduce.add_argument("--no-cache", action="store_true")
    reproduce.set_defaults(func=cmd_reproduce)

    show = sub.add_parser("show", help="print a run's summary table")
    show.add_argument("run")
    show.set_defaults(func=cmd_show)

    plot = sub.add_parser("plot", help="redraw a run's learning curves")
    plot.add_argument("run")
    plot.set_defaults(func=cmd_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, runs.RunDirError) as e:
        print(f"qlearn: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())


def console() -> None:
    """Entry point of the ``qlearn`` console script."""
    sys.exit(main())
