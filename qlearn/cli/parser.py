"""The flags of ``qlearn``'s subcommands; ``train --help`` and ``sweep --help`` document one
algorithm's hyperparameters and config fields (``--algo NAME --help``)."""

from __future__ import annotations

import argparse
import dataclasses

from qlearn import algos, distributed
from qlearn import hparams as hparams_lib
from qlearn import spec as spec_lib
from qlearn.cli import commands


def _config_help(config_cls: type) -> str:
    return "\n".join(
        f"  {f.name:<20} default {f.default!s:<12} {f.metadata.get('help', '')}"
        for f in dataclasses.fields(config_cls)
    )


def algo_in(argv: list[str]) -> str:
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
    parser = argparse.ArgumentParser(
        prog="qlearn",
        description="Train, sweep, reproduce, show, plot, export and compare Q-learning runs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    shown = algos.ALGOS.get(algo, algos.get("dqn"))
    fields = (
        f"hyperparameters of {shown.name} (--hp, traced: a grid is one compile; --algo NAME "
        f"--help for another algorithm's):\n{hparams_lib.describe(shown.hparams)}\n\n"
        f"config fields of {shown.name} (--cfg, static):\n{_config_help(shown.config)}"
    )
    _add_train(sub, fields)
    _add_sweep(sub, fields)
    _add_reproduce(sub)
    show = sub.add_parser("show", help="print a run's summary table")
    show.add_argument("run")
    show.set_defaults(func=commands.cmd_show)
    plot = sub.add_parser("plot", help="redraw a run's learning curves")
    plot.add_argument("run")
    plot.set_defaults(func=commands.cmd_plot)
    export = sub.add_parser(
        "export",
        help="log a finished or partial run directory to TensorBoard and/or wandb",
        description="One tracked run per (configuration, seed), named by its values, with "
        "its hyperparameters; the values of metrics.npz (or of the finished chunks of a "
        "partial sweep), step = env steps.",
    )
    export.add_argument("run")
    _tracker_arguments(export)
    export.set_defaults(func=commands.cmd_export)
    _add_compare(sub)
    _add_dataset(sub)
    return parser


def _add_dataset(sub: argparse._SubParsersAction) -> None:
    from qlearn import datasets

    parser = sub.add_parser(
        "dataset",
        help="collect an offline dataset: a behaviour of known coverage on a finite MDP, or "
        "a DQN run's final replay on any env",
        description="Writes OUT (.npz, qlearn.datasets): on a finite MDP with the behaviour's "
        "exact μ(s, a), and prints its coverage. --behaviour dqn_replay trains DQN for "
        "--dqn-steps env steps with a replay of --size transitions and keeps what it holds at "
        "the end (Agarwal et al. 2020's DQN-Replay). `qlearn train --algo offline --cfg "
        "dataset=OUT` learns from it; `qlearn train --algo dqn --cfg dataset=OUT --cfg "
        "offline_updates=N` pretrains on it, then fine-tunes online.",
    )
    parser.add_argument("--env", required=True, help="a finite MDP, or any env for dqn_replay")
    parser.add_argument("--behaviour", required=True, choices=(*datasets.BEHAVIOURS, "dqn_replay"))
    parser.add_argument("--size", type=int, required=True, help="transitions")
    parser.add_argument(
        "--dqn-steps", type=int, default=100_000, help="dqn_replay: the DQN run's env steps"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gamma", type=float, default=0.99, help="γ of the q* experts act by")
    parser.add_argument("--epsilon", type=float, default=0.3, help="eps_greedy's ε")
    parser.add_argument(
        "--env-kwarg", action="append", default=[], metavar="NAME=VALUE", help="env argument"
    )
    parser.add_argument("--out", required=True, help="the dataset file to write (.npz)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    parser.set_defaults(func=commands.cmd_dataset)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    compare = sub.add_parser(
        "compare",
        help="methods across tasks: normalised scores, rliable's aggregates, profiles, P(X > Y)",
        description="Methods (configurations, matched by label) across tasks (run directories "
        "on different envs): final returns normalised per task by the random policy and a "
        "reference score, then IQM, median, mean and optimality gap with 95%% stratified-"
        "bootstrap CIs, performance profiles and probabilities of improvement.",
    )
    compare.add_argument("runs", nargs="+", help="finished run directories")
    compare.add_argument("--out", required=True, help="report directory")
    compare.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="ENV=SCORE",
        help="the score that normalises to 1 on ENV (overrides qlearn's table)",
    )
    compare.add_argument(
        "--best-seen",
        action="store_true",
        help="normalise a task without a reference by the best final score seen",
    )
    compare.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    compare.set_defaults(func=commands.cmd_compare)


def _tracker_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tensorboard`` and ``--wandb``: where every (configuration, seed) is tracked."""
    parser.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="write TensorBoard event files to DIR, one run per (configuration, seed) with "
        "its hyperparameters (HParams); `tensorboard --logdir DIR` to look",
    )
    parser.add_argument(
        "--wandb",
        default=None,
        metavar="PROJECT",
        help="log to wandb PROJECT, one run per (configuration, seed) (WANDB_MODE=offline "
        "works with no network)",
    )
    parser.add_argument(
        "--wandb-group",
        default=None,
        help="wandb group of the runs (default: the run's directory name)",
    )


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags ``train`` and ``sweep`` share: algorithm, env, seeds, lanes, budget."""
    parser.add_argument("--algo", default="dqn", choices=sorted(algos.ALGOS))
    parser.add_argument("--env", default=None, help="env id (default CartPole-v1)")
    parser.add_argument("--seeds", type=int, default=8, help="seeds per configuration")
    parser.add_argument("--seed", type=int, default=0, help="base seed")
    parser.add_argument(
        "--lanes",
        type=int,
        default=spec_lib.DEFAULT_LANES,
        help="runs per device per compiled call (default %(default)s; part of a run's identity: "
        "a seed gives the same run in any sweep with the same lanes; raise it on a GPU)",
    )
    parser.add_argument("--total-steps", type=int, default=None, help="env steps per run")


def _output_arguments(parser: argparse.ArgumentParser, **out: object) -> None:
    """``--out`` (with ``out``'s argparse options), and how the run is written and shown."""
    parser.add_argument("--out", **out)
    parser.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-cache", action="store_true", help="disable JAX's persistent compilation cache"
    )
    _tracker_arguments(parser)


def _add_train(sub: argparse._SubParsersAction, fields: str) -> None:
    train = sub.add_parser(
        "train",
        help="train seeds × a hyperparameter grid in one compiled program",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=fields,
    )
    _run_arguments(train)
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
    _output_arguments(train, default=None, help="run directory (default runs/ALGO-ENV)")
    train.set_defaults(func=commands.cmd_train)


def _add_sweep(sub: argparse._SubParsersAction, fields: str) -> None:
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
    _run_arguments(sw)
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
    sw.add_argument(
        "--cfg",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="static config field (not swept)",
    )
    _output_arguments(sw, required=True, help="sweep directory (resumed if it exists)")
    distributed.add_arguments(sw)
    sw.set_defaults(func=commands.cmd_sweep)


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
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
    reproduce.set_defaults(func=commands.cmd_reproduce)
