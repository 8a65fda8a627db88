"""The ``qlearn`` command: train, sweep, reproduce, show, plot.

Every input is validated before anything compiles; a bad value gets one line naming the field
and what is accepted, and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from qlearn import algos, distributed, runs, search, sweep
from qlearn import hparams as hparams_lib
from qlearn import spec as spec_lib

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


def parse_grid(config_cls: type, hparams_cls: type, assignments: list[str]) -> dict[str, list]:
    """``--grid`` values: ``lr=1e-4,3e-4`` (a hyperparameter: traced, one compile) or
    ``hidden_sizes=64,128x128`` (a static config field: one compiled group per value; tuple
    values join their elements with ``x``)."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    grid: dict[str, list] = {}
    for text in assignments:
        name, values = _parse_assignment(text, "--grid")
        search.check_grid_name(config_cls, hparams_cls, name)
        if name in grid:
            raise CLIError(f"--grid {name} is given twice: list its values once, comma-separated")
        items = [v.strip() for v in values.split(",")]
        if name in fields:
            sep = "x" if str(fields[name].type).startswith("tuple[int") else None
            grid[name] = [
                _parse_config_value(fields[name], v.replace(sep, ",") if sep else v) for v in items
            ]
        else:
            grid[name] = [hparams_lib.parse_value(hparams_cls, name, v) for v in items]
    return grid


def parse_dists(hparams_cls: type, assignments: list[str]) -> dict[str, search.Dist]:
    """``--dist lr=loguniform:1e-5:1e-2`` -> {"lr": Dist}."""
    out = {}
    for text in assignments:
        name, value = _parse_assignment(text, "--dist")
        hparams_lib.check_name(hparams_cls, name)
        out[name] = search.parse_dist(value)
    return out


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


def _execute(spec: spec_lib.Spec, out: Path | None, args: argparse.Namespace) -> Any:
    """Run a spec with a progress bar, resuming from ``out``'s finished chunks."""
    import jax

    enable_compilation_cache(not args.no_cache)
    num_configs, num_seeds = spec.num_configs, spec.num_seeds
    if not args.quiet and jax.process_index() == 0:
        print(
            f"{spec.algo}: {num_configs} configs × {num_seeds} seeds = "
            f"{spec.num_runs} runs in {len(spec.groups)} compiled "
            f"group(s), on {jax.device_count()} {jax.default_backend()} device(s)",
            file=sys.stderr,
        )
    return sweep.execute(spec, out, progress=not args.quiet, verbose=not args.quiet)


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
    """Prepare ``out`` (refusing another spec), run or resume, report."""
    if sweep.prepare(out, spec, overwrite=args.overwrite):
        import jax

        if jax.process_index() == 0:
            run = runs.load(out)
            print(f"{out} already holds this run, finished: nothing to do (--overwrite re-runs it)")
            print(runs.summary_table(spec, run.summary["configs"]))
        return 0
    _report(_execute(spec, out, args), out)
    return 0


def _check_lanes(lanes: int) -> None:
    if lanes < 1:
        raise CLIError(f"--lanes = {lanes} must be ≥ 1")


def cmd_train(args: argparse.Namespace) -> int:
    algorithm = algos.get(args.algo)
    loss = args.loss
    if loss is not None and "," in loss:
        loss = tuple(loss.split(","))
    config = parse_config(
        algorithm.config, args.cfg, env_id=args.env, total_steps=args.total_steps, loss=loss
    )
    grid = parse_hparams(algorithm.hparams, args.hp)
    if isinstance(loss, tuple) and "loss_index" not in grid:
        grid["loss_index"] = list(range(len(loss)))  # several losses: compare them all
    if args.seeds < 1:
        raise CLIError(f"--seeds = {args.seeds} must be ≥ 1")
    _check_lanes(args.lanes)
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
    grid = parse_grid(algorithm.config, algorithm.hparams, args.grid)
    dists = parse_dists(algorithm.hparams, args.dist)
    if args.random is None and dists:
        raise CLIError("--dist needs --random N (the number of configurations to draw)")
    _check_lanes(args.lanes)
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

    for key, now in (("jax", jax.__version__), ("backend", jax.default_backend())):
        if run.provenance.get(key) != now:
            print(
                f"note: recorded {key} {run.provenance.get(key)}, now {now}: bitwise "
                "equality is only promised on the same versions and backend",
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


def _lanes_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lanes",
        type=int,
        default=spec_lib.DEFAULT_LANES,
        help="runs per device per compiled call (default %(default)s; part of a run's identity: "
        "a seed gives the same run in any sweep with the same lanes; raise it on a GPU)",
    )


def _algo_in(argv: list[str]) -> str:
    """The ``--algo`` given in ``argv`` (default dqn), read before parsing so that ``--help``
    after it documents that algorithm's fields."""
    for i, arg in enumerate(argv):
        if arg == "--algo" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--algo="):
            return arg.split("=", 1)[1]
    return "dqn"


def build_parser(algo: str = "dqn") -> argparse.ArgumentParser:
    """The CLI's parser; ``train --help`` and ``sweep --help`` document ``algo``'s
    hyperparameters and config fields."""
    parser = argparse.ArgumentParser(prog="qlearn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    shown = algos.ALGOS.get(algo, algos.get("dqn"))
    fields = (
        f"hyperparameters of {shown.name} (--hp, traced: a grid is one compile; --algo NAME "
        f"--help for another algorithm's):\n{hparams_lib.describe(shown.hparams)}\n\n"
        f"config fields of {shown.name} (--cfg, static):\n{_config_help(shown.config)}"
    )

    train = sub.add_parser(
        "train",
        help="train seeds × a hyperparameter grid in one compiled program",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=fields,
    )
    train.add_argument("--algo", default="dqn", choices=sorted(algos.ALGOS))
    train.add_argument("--env", default=None, help="env id (default CartPole-v1)")
    train.add_argument("--seeds", type=int, default=8, help="seeds per configuration")
    train.add_argument("--seed", type=int, default=0, help="base seed")
    _lanes_argument(train)
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

    sw = sub.add_parser(
        "sweep",
        help="a grid or random search, in fixed-shape batches over devices and hosts, resumable",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="--grid takes hyperparameters (traced: one compile for all values) and static "
        "config fields (one compiled group per value; tuples as 64x64).\n"
        "Killed? Run the same command again: finished chunks are kept and checked.\n\n"
        + fields.replace("(--hp, ", "(--grid, --dist, ").replace(
            "(--cfg, static)", "(--grid, --cfg)"
        ),
    )
    sw.add_argument("--algo", default="dqn", choices=sorted(algos.ALGOS))
    sw.add_argument("--env", default=None, help="env id (default CartPole-v1)")
    sw.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=V[,V...]",
        help="values of a hyperparameter or config field (repeat for a grid)",
    )
    sw.add_argument(
        "--random",
        type=int,
        default=None,
        metavar="N",
        help="random search: draw N configurations from the --dist distributions",
    )
    sw.add_argument(
        "--dist",
        action="append",
        default=[],
        metavar="NAME=KIND:LOW:HIGH",
        help="loguniform:LOW:HIGH, uniform:LOW:HIGH or choice:A,B,...",
    )
    sw.add_argument("--search-seed", type=int, default=0, help="seed of the random draws")
    sw.add_argument("--seeds", type=int, default=8, help="seeds per configuration")
    sw.add_argument("--seed", type=int, default=0, help="base seed")
    _lanes_argument(sw)
    sw.add_argument("--total-steps", type=int, default=None, help="env steps per run")
    sw.add_argument(
        "--cfg",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="static config field (not swept)",
    )
    sw.add_argument("--out", required=True, help="sweep directory (resumed if it exists)")
    sw.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    sw.add_argument(
        "--no-cache", action="store_true", help="disable JAX's persistent compilation cache"
    )
    distributed.add_arguments(sw)
    sw.set_defaults(func=cmd_sweep)

    reproduce = sub.add_parser(
        "reproduce", help="re-run a run directory (or one run of it), compare bitwise"
    )
    reproduce.add_argument("run")
    reproduce.add_argument(
        "--seed", type=int, default=None, help="re-run only this seed number, alone"
    )
    reproduce.add_argument(
        "--config",
        type=int,
        default=None,
        help="re-run only this configuration index (with --seed; default 0)",
    )
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


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_algo_in(argv)).parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)  # like Ctrl-C: clean up, then exit
    try:
        return args.func(args)
    except (ValueError, runs.RunDirError) as e:
        print(f"qlearn: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        where = f" in {out}" if out else ""
        print(
            f"qlearn: interrupted; the finished chunks are kept{where}: run the same command "
            "again to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
